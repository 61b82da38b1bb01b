#define BOOST_TEST_MODULE moe_model
#include <boost/test/unit_test.hpp>

#include "experts.hpp"
#include "gate_metrics.hpp"
#include "gates.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using modlab::Value;

modlab::runner::RunHost& host() {
  static modlab::runner::RunHost h(modlab::runner::default_registry(), modlab::runner::HostOptions{});
  return h;
}

modlab::DatasetSpec flat_spec(std::int64_t inputs, std::int64_t classes) {
  modlab::DatasetSpec s;
  s.name = "fixed";
  s.input_shape = {inputs};
  s.task = modlab::TaskKind::Classification;
  s.num_classes = classes;
  s.splits = {"train", "test"};
  return s;
}

Value ints(const std::vector<std::int64_t>& v) {
  Value::Array a;
  for (auto x : v) a.push_back(Value::integer(x));
  return Value::array(a);
}

std::shared_ptr<modlab::Model> make_model(const Value::Table& table, const modlab::DatasetSpec& spec) {
  modlab::Config config(std::make_shared<Value>(Value::table(table)), "model");
  return host().create_model("moe", config, spec);
}

std::map<std::string, torch::Tensor> params(modlab::Model& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : m.named_parameters()) out[kv.key()] = kv.value();
  return out;
}

modlab::Batch batch_of(torch::Tensor x, torch::Tensor y) {
  modlab::Batch b;
  b.inputs = std::move(x);
  b.targets = std::move(y);
  return b;
}

double entropy2(std::vector<double> p) {
  double h = 0;
  for (double v : p)
    if (v > 0) h -= v * std::log2(v);
  return h;
}

/// Captures what a model records.
struct CaptureRecorder : modlab::Recorder {
  std::map<std::string, std::vector<torch::Tensor>> appended;
  std::map<std::string, std::vector<std::string>> dims;
  std::map<std::string, torch::Tensor> tensors;
  void scalar(const std::string&, double) override {}
  void tensor(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
    tensors[n] = v.clone();
    dims[n] = d;
  }
  void append(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
    appended[n].push_back(v.clone());
    dims[n] = d;
  }
  void note(const std::string&, const std::string&) override {}
};

}  // namespace

BOOST_AUTO_TEST_CASE(output_shapes_and_probabilities) {
  torch::manual_seed(1);
  auto m = make_model({{"num_experts", Value::integer(4)}}, flat_spec(2, 3));
  auto out = m->forward(batch_of(torch::randn({5, 2}), torch::zeros({5}, torch::kLong)));
  BOOST_TEST((out.prediction.sizes() == torch::IntArrayRef{5, 3}));
  BOOST_TEST((out.kind == modlab::Output::Kind::Probabilities));
  BOOST_TEST((out.aux.at("gate").sizes() == torch::IntArrayRef{5, 4}));
  BOOST_TEST((out.aux.at("experts").sizes() == torch::IntArrayRef{5, 4, 3}));
  BOOST_TEST((out.prediction.sum(1) - 1).abs().max().item<float>() < 1e-6f);
  BOOST_TEST((out.aux.at("gate").sum(1) - 1).abs().max().item<float>() < 1e-6f);
  BOOST_TEST((out.aux.at("experts").sum(2) - 1).abs().max().item<float>() < 1e-6f);
  // Images are flattened: a [B, 1, 2, 2] input works with a spec of shape {1, 2, 2}.
  modlab::DatasetSpec img = flat_spec(0, 3);
  img.input_shape = {1, 2, 2};
  auto mi = make_model({}, img);
  auto oi = mi->forward(batch_of(torch::randn({3, 1, 2, 2}), torch::zeros({3}, torch::kLong)));
  BOOST_TEST((oi.prediction.sizes() == torch::IntArrayRef{3, 3}));
}

BOOST_AUTO_TEST_CASE(loss_matches_hand_computation) {
  for (double temperature : {1.0, 2.0}) {
    auto m = make_model({{"num_experts", Value::integer(2)}, {"temperature", Value::floating(temperature)}},
                        flat_spec(2, 2));
    auto p = params(*m);
    {
      torch::NoGradGuard ng;
      p.at("gate.layer0.weight").copy_(torch::tensor({{1.f, 0.f}, {0.f, 1.f}}));  // [E, in]
      p.at("gate.layer0.bias").zero_();
      // experts.layer0.weight is [E, in, C]: expert 0 scores class 0 by 2·x0, expert 1 class 1 by x0.
      p.at("experts.layer0.weight").copy_(torch::tensor({{{2.f, 0.f}, {0.f, 0.f}}, {{0.f, 1.f}, {0.f, 0.f}}}));
      p.at("experts.layer0.bias").zero_();
    }
    auto b = batch_of(torch::tensor({{1.f, 0.f}, {0.f, 1.f}}), torch::tensor({0, 1}, torch::kLong));
    auto out = m->forward(b);
    auto losses = m->loss(b, out);
    BOOST_REQUIRE_EQUAL(losses.size(), 1u);
    BOOST_TEST(losses[0].name == "task");
    // Row 1: gate logits (1, 0) → g0 = σ(1/T); f0 = softmax(2, 0), f1 = softmax(0, 1); y = 0.
    // Row 2: gate logits (0, 1); both experts see zero scores → ŷ = (½, ½); y = 1.
    const double e = std::exp(1.0);
    const double g0 = 1.0 / (1.0 + std::exp(-1.0 / temperature));
    const double y0 = g0 * (e * e / (e * e + 1)) + (1 - g0) * (1 / (1 + e));
    const double want = (-std::log(y0 + 1e-15) - std::log(0.5 + 1e-15)) / 2;
    BOOST_TEST(std::abs(losses[0].value.item<double>() - want) < 1e-6, losses[0].value.item<double>()
                                                                           << " vs " << want);
    BOOST_TEST(std::abs(out.prediction[0][0].item<double>() - y0) < 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(gradients_reach_every_parameter) {
  torch::manual_seed(2);
  auto m = make_model({{"num_experts", Value::integer(3)},
                       {"expert", Value::string("mlp")},
                       {"expert_hidden", ints({4, 3})},
                       {"gate", Value::string("mlp")},
                       {"gate_hidden", ints({5})}},
                      flat_spec(2, 4));
  auto b = batch_of(torch::randn({16, 2}), torch::randint(4, {16}, torch::kLong));
  auto out = m->forward(b);
  modlab::total(m->loss(b, out)).backward();
  const auto p = params(*m);
  BOOST_TEST(p.size() == 10u);  // 3 expert layers and 2 gate layers, weight + bias each
  for (const auto& [name, t] : p) {
    BOOST_TEST_CONTEXT(name) {
      BOOST_REQUIRE(t.grad().defined());
      BOOST_TEST(torch::isfinite(t.grad()).all().item<bool>());
      BOOST_TEST(t.grad().abs().sum().item<double>() > 0.0);
    }
  }
  BOOST_TEST((p.at("experts.layer0.weight").sizes() == torch::IntArrayRef{3, 2, 4}));
}

BOOST_AUTO_TEST_CASE(batched_experts_equal_a_loop) {
  torch::manual_seed(3);
  modlab::moe::MlpExpertBank bank(3, 2, {4, 3}, 5);
  const auto x = torch::randn({7, 2});
  const auto out = bank.forward(x);
  BOOST_TEST((out.probs.sizes() == torch::IntArrayRef{7, 3, 5}));
  BOOST_TEST((out.hidden.sizes() == torch::IntArrayRef{7, 3, 3}));
  for (std::int64_t e = 0; e < 3; ++e) {
    torch::Tensor h = x, pre;
    for (std::size_t l = 0; l < bank.layers().size(); ++l) {
      const auto& layer = bank.layers()[l];
      h = torch::matmul(h, layer->weight[e]) + layer->bias[e];
      if (l + 1 < bank.layers().size()) {
        pre = h;
        h = torch::relu(h);
      }
    }
    BOOST_TEST((torch::softmax(h, -1) - out.probs.select(1, e)).abs().max().item<float>() < 1e-6f);
    BOOST_TEST((h - out.logits.select(1, e)).abs().max().item<float>() < 1e-6f);
    BOOST_TEST((pre - out.hidden.select(1, e)).abs().max().item<float>() < 1e-6f);
  }
  // And the mixture is Σ_e g_e f_e.
  const auto g = torch::softmax(torch::randn({7, 3}), -1);
  auto loop = torch::zeros({7, 5});
  for (std::int64_t e = 0; e < 3; ++e) loop += g.select(1, e).unsqueeze(1) * out.probs.select(1, e);
  BOOST_TEST((modlab::moe::mix(g, out.probs) - loop).abs().max().item<float>() < 1e-6f);
}

BOOST_AUTO_TEST_CASE(top_k_masks_all_but_k_experts) {
  torch::manual_seed(4);
  auto m = make_model({{"num_experts", Value::integer(5)}, {"top_k", Value::integer(2)}}, flat_spec(3, 4));
  auto out = m->forward(batch_of(torch::randn({20, 3}), torch::zeros({20}, torch::kLong)));
  const auto g = out.aux.at("gate");
  const auto logits = out.aux.at("gate_logits");
  BOOST_TEST(((g > 0).sum(1) == 2).all().item<bool>());
  const auto top = std::get<1>(logits.topk(2, -1));
  BOOST_TEST(((g.gather(1, top).sum(1) - 1).abs() < 1e-6).all().item<bool>());
  // The kept probabilities are the softmax of the two kept logits.
  const auto kept = torch::softmax(logits.gather(1, top), -1);
  BOOST_TEST((kept - g.gather(1, top)).abs().max().item<float>() < 1e-6f);
  const auto expected = modlab::moe::mix(g, out.aux.at("experts"));
  BOOST_TEST((expected - out.prediction).abs().max().item<float>() < 1e-6f);

  // k = 1: the output is the selected expert; with the reference quirk, its softmax.
  torch::manual_seed(5);
  auto m1 = make_model({{"num_experts", Value::integer(3)}, {"top_k", Value::integer(1)}}, flat_spec(3, 4));
  torch::manual_seed(5);
  auto mq = make_model(
      {{"num_experts", Value::integer(3)}, {"top_k", Value::integer(1)}, {"top1_softmax_quirk", Value::boolean(true)}},
      flat_spec(3, 4));
  const auto x = torch::randn({6, 3});
  auto o1 = m1->forward(batch_of(x, torch::zeros({6}, torch::kLong)));
  auto oq = mq->forward(batch_of(x, torch::zeros({6}, torch::kLong)));
  const auto sel = o1.aux.at("gate").argmax(1);
  const auto chosen = o1.aux.at("experts").gather(1, sel.view({6, 1, 1}).expand({6, 1, 4})).squeeze(1);
  BOOST_TEST((o1.prediction - chosen).abs().max().item<float>() < 1e-6f);
  BOOST_TEST((oq.prediction - torch::softmax(chosen, -1)).abs().max().item<float>() < 1e-6f);
}

BOOST_AUTO_TEST_CASE(gate_metrics_by_hand) {
  namespace moe = modlab::moe;
  // 4 examples, 2 experts, 2 classes. Argmax gate: experts 0, 0, 1, 0.
  const auto gate = torch::tensor({{1.0, 0.0}, {0.75, 0.25}, {0.0, 1.0}, {0.9, 0.1}}, torch::kDouble);
  // The selected expert predicts classes 0, 1, 1, 0; the other expert the opposite.
  const auto experts = torch::tensor(
      {{{0.8, 0.2}, {0.1, 0.9}}, {{0.3, 0.7}, {0.6, 0.4}}, {{0.9, 0.1}, {0.2, 0.8}}, {{0.6, 0.4}, {0.3, 0.7}}},
      torch::kDouble);
  const auto labels = torch::tensor({0, 1, 1, 0}, torch::kLong);

  const double hs = (0 + entropy2({0.75, 0.25}) + 0 + entropy2({0.9, 0.1})) / 4;
  BOOST_TEST(std::abs(moe::sample_entropy_bits(gate) - hs) < 1e-12);
  const double hu = entropy2({2.65 / 4, 1.35 / 4});
  BOOST_TEST(std::abs(moe::usage_entropy_bits(gate) - hu) < 1e-12);

  // Selection counts C[class, expert] = [[2, 0], [1, 1]]: I = H(E) + H(Y) − H(E,Y).
  const auto sel = moe::selection_counts(gate, experts);
  BOOST_TEST(torch::equal(sel, torch::tensor({{2, 0}, {1, 1}}, torch::kLong)));
  const double mi = entropy2({0.75, 0.25}) + entropy2({0.5, 0.5}) - entropy2({0.5, 0.25, 0.25});
  BOOST_TEST(std::abs(moe::mutual_information_bits(sel) - mi) < 1e-12);
  BOOST_TEST(std::abs(mi - 0.31127812445913283) < 1e-12);
  // Independent counts carry no information; a diagonal carries H(E).
  BOOST_TEST(std::abs(moe::mutual_information_bits(torch::tensor({{2, 2}, {3, 3}}))) < 1e-12);
  BOOST_TEST(std::abs(moe::mutual_information_bits(torch::tensor({{5, 0}, {0, 5}})) - 1.0) < 1e-12);

  // Importance (2.65, 1.35): mean 2, unbiased std 0.65·√2.
  const double cv = 0.65 * std::sqrt(2.0) / 2.0;
  BOOST_TEST(std::abs(moe::importance_cv(gate.sum(0)) - cv) < 1e-12);

  const auto alloc = moe::allocation_counts(gate, labels, 2);
  BOOST_TEST(torch::equal(alloc, torch::tensor({{2, 1}, {0, 1}}, torch::kLong)));

  // The accumulator over two batches gives the same numbers.
  moe::GateStats stats(2, 2);
  stats.add(gate.slice(0, 0, 3), experts.slice(0, 0, 3), labels.slice(0, 0, 3));
  stats.add(gate.slice(0, 3, 4), experts.slice(0, 3, 4), labels.slice(0, 3, 4));
  const auto s = stats.summary();
  BOOST_TEST(s.examples == 4);
  BOOST_TEST(std::abs(s.sample_entropy - hs) < 1e-12);
  BOOST_TEST(std::abs(s.usage_entropy - hu) < 1e-12);
  BOOST_TEST(std::abs(s.mutual_information - mi) < 1e-12);
  BOOST_TEST(std::abs(s.importance_cv - cv) < 1e-12);
  BOOST_TEST(torch::equal(s.allocation, alloc));
  BOOST_TEST(torch::equal(s.expert_counts, torch::tensor({3, 1}, torch::kLong)));
  BOOST_TEST((s.gate_mean - torch::tensor({2.65f / 4, 1.35f / 4})).abs().max().item<float>() < 1e-6f);
}

BOOST_AUTO_TEST_CASE(evaluation_hooks_record_metrics_and_tensors) {
  auto m = make_model({{"num_experts", Value::integer(2)}}, flat_spec(2, 2));
  modlab::Output out;
  out.prediction = torch::full({4, 2}, 0.5);
  out.kind = modlab::Output::Kind::Probabilities;
  out.aux["gate"] = torch::tensor({{1.0f, 0.0f}, {0.75f, 0.25f}, {0.0f, 1.0f}, {0.9f, 0.1f}});
  out.aux["experts"] = torch::tensor({{{0.8f, 0.2f}, {0.1f, 0.9f}},
                                      {{0.3f, 0.7f}, {0.6f, 0.4f}},
                                      {{0.9f, 0.1f}, {0.2f, 0.8f}},
                                      {{0.6f, 0.4f}, {0.3f, 0.7f}}});
  const auto b = batch_of(torch::zeros({4, 2}), torch::tensor({0, 1, 1, 0}, torch::kLong));
  CaptureRecorder rec;
  for (int evaluation = 0; evaluation < 2; ++evaluation) {
    for (const std::string split : {"train", "test"}) {
      modlab::MetricSet ms;
      m->eval_begin(split);
      m->eval_batch(split, b, out, ms);
      m->eval_end(split, ms, rec);
      BOOST_TEST(std::abs(ms.get("gate_mutual_information") - 0.31127812445913283) < 1e-6);
      BOOST_TEST(std::abs(ms.get("gate_sample_entropy") - (entropy2({0.75, 0.25}) + entropy2({0.9, 0.1})) / 4) < 1e-6);
      BOOST_TEST(std::abs(ms.get("gate_usage_entropy") - entropy2({0.6625, 0.3375})) < 1e-6);
      BOOST_TEST(std::abs(ms.get("gate_importance_cv") - 0.65 * std::sqrt(2.0) / 2.0) < 1e-6);
    }
  }
  for (const std::string split : {"train", "test"}) {
    BOOST_TEST(rec.appended[split + "/allocation"].size() == 2u);
    BOOST_TEST(torch::equal(rec.appended[split + "/allocation"][1], torch::tensor({{2, 1}, {0, 1}}, torch::kLong)));
    BOOST_TEST((rec.dims[split + "/allocation"] == std::vector<std::string>{"expert", "class"}));
    BOOST_TEST((rec.appended[split + "/gate_mean"][0].sizes() == torch::IntArrayRef{2}));
    BOOST_TEST(torch::equal(rec.appended[split + "/expert_counts"][0], torch::tensor({3, 1}, torch::kLong)));
  }
  m->record(rec);
  BOOST_REQUIRE(rec.tensors.count("allocation"));
  BOOST_TEST(torch::equal(rec.tensors["allocation"], torch::tensor({{2, 1}, {0, 1}}, torch::kLong)));
}

BOOST_AUTO_TEST_CASE(train_eval_switch) {
  torch::manual_seed(6);
  auto m = make_model({{"expert", Value::string("mlp")}}, flat_spec(2, 3));
  const auto b = batch_of(torch::randn({8, 2}), torch::zeros({8}, torch::kLong));
  BOOST_TEST(m->is_training());
  const auto a = m->forward(b).prediction;
  m->eval();
  BOOST_TEST(!m->is_training());
  for (const auto& child : m->modules(/*include_self=*/false)) BOOST_TEST(!child->is_training());
  torch::Tensor e;
  {
    torch::NoGradGuard ng;
    e = m->forward(b).prediction;
  }
  BOOST_TEST(!e.requires_grad());
  BOOST_TEST(torch::allclose(a, e));  // the expectation model is deterministic in both modes
  m->train();
  BOOST_TEST(m->is_training());
  for (const auto& child : m->modules(false)) BOOST_TEST(child->is_training());
}

BOOST_AUTO_TEST_CASE(bad_configs_name_the_key) {
  auto error_of = [](const Value::Table& t, const modlab::DatasetSpec& spec) -> std::string {
    try {
      make_model(t, spec);
    } catch (const modlab::ConfigError& e) {
      return e.what();
    }
    return "";
  };
  const auto spec = flat_spec(2, 3);
  BOOST_TEST(error_of({{"expert", Value::string("cnn")}}, spec).find("model.expert") != std::string::npos);
  BOOST_TEST(error_of({{"top_k", Value::integer(9)}}, spec).find("model.top_k") != std::string::npos);
  BOOST_TEST(error_of({{"gate", Value::string("mlp")}}, spec).find("model.gate_hidden") != std::string::npos);
  BOOST_TEST(error_of({{"temperature", Value::floating(0.0)}}, spec).find("model.temperature") != std::string::npos);
  modlab::DatasetSpec multilabel = spec;
  multilabel.task = modlab::TaskKind::MultiLabel;
  multilabel.num_outputs = 2;
  BOOST_TEST(error_of({}, multilabel).find("classification") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(learns_toy_multi_class) {
  torch::manual_seed(0);
  modlab::Config dcfg(std::make_shared<Value>(Value::table({{"task", Value::string("multi_class")}})), "dataset");
  auto ds = host().create_dataset("toy", dcfg);
  auto m = make_model({{"num_experts", Value::integer(4)}}, ds->spec());
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(0.05));
  auto train = ds->split("train");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const std::int64_t steps = 600, batch = 64;
  for (std::int64_t s = 0; s < steps; ++s) {
    auto idx = torch::randint(train->size(), {batch}, gen, torch::TensorOptions().dtype(torch::kLong));
    auto b = train->get(idx, true);
    opt.zero_grad();
    auto loss = modlab::total(m->loss(b, m->forward(b)));
    loss.backward();
    opt.step();
  }
  m->eval();
  torch::NoGradGuard ng;
  auto all = train->all();
  auto out = m->forward(all);
  const double acc = m->correct(all, out).mean().item<double>();
  BOOST_TEST_MESSAGE("train accuracy after " << steps << " Adam steps: " << acc);
  BOOST_TEST(acc > 0.8);
  auto test = ds->split("test")->all();
  BOOST_TEST(m->correct(test, m->forward(test)).mean().item<double>() > 0.75);
}

#define BOOST_TEST_MODULE moe_model
#include <boost/test/unit_test.hpp>

#include <modlab/mixture/gate_metrics.hpp>
#include <modlab/mixture/networks.hpp>
#include "regularizers.hpp"
#include "config_builders.hpp"
#include "model_builders.hpp"

#include <modlab/errors.hpp>
#include <modlab/population.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

using modlab::Value;
using test_config::ints;

using test_model::batch_of;
using test_model::CaptureRecorder;
using test_model::flat_spec;
using test_model::host;
using test_model::params;

std::shared_ptr<modlab::Model> make_model(const Value::Table& table, const modlab::DatasetSpec& spec) {
  return test_model::make_model("moe", table, spec);
}

double entropy2(std::vector<double> p) {
  double h = 0;
  for (double v : p)
    if (v > 0) h -= v * std::log2(v);
  return h;
}


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
  modlab::mixture::MlpExpertBank bank(3, 2, {4, 3}, 5);
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
  BOOST_TEST((modlab::mixture::mix(g, out.probs) - loop).abs().max().item<float>() < 1e-6f);
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
  const auto expected = modlab::mixture::mix(g, out.aux.at("experts"));
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
  namespace mixture = modlab::mixture;
  // 4 examples, 2 experts, 2 classes. Argmax gate: experts 0, 0, 1, 0.
  const auto gate = torch::tensor({{1.0, 0.0}, {0.75, 0.25}, {0.0, 1.0}, {0.9, 0.1}}, torch::kDouble);
  // The selected expert predicts classes 0, 1, 1, 0; the other expert the opposite.
  const auto experts = torch::tensor(
      {{{0.8, 0.2}, {0.1, 0.9}}, {{0.3, 0.7}, {0.6, 0.4}}, {{0.9, 0.1}, {0.2, 0.8}}, {{0.6, 0.4}, {0.3, 0.7}}},
      torch::kDouble);
  const auto labels = torch::tensor({0, 1, 1, 0}, torch::kLong);

  const double hs = (0 + entropy2({0.75, 0.25}) + 0 + entropy2({0.9, 0.1})) / 4;
  BOOST_TEST(std::abs(mixture::sample_entropy_bits(gate) - hs) < 1e-12);
  const double hu = entropy2({2.65 / 4, 1.35 / 4});
  BOOST_TEST(std::abs(mixture::usage_entropy_bits(gate) - hu) < 1e-12);

  // Selection counts C[class, expert] = [[2, 0], [1, 1]]: I = H(E) + H(Y) − H(E,Y).
  const auto sel = mixture::selection_counts(gate, experts);
  BOOST_TEST(torch::equal(sel, torch::tensor({{2, 0}, {1, 1}}, torch::kLong)));
  const double mi = entropy2({0.75, 0.25}) + entropy2({0.5, 0.5}) - entropy2({0.5, 0.25, 0.25});
  BOOST_TEST(std::abs(mixture::mutual_information_bits(sel) - mi) < 1e-12);
  BOOST_TEST(std::abs(mi - 0.31127812445913283) < 1e-12);
  // Independent counts carry no information; a diagonal carries H(E).
  BOOST_TEST(std::abs(mixture::mutual_information_bits(torch::tensor({{2, 2}, {3, 3}}))) < 1e-12);
  BOOST_TEST(std::abs(mixture::mutual_information_bits(torch::tensor({{5, 0}, {0, 5}})) - 1.0) < 1e-12);

  // Importance (2.65, 1.35): mean 2, unbiased std 0.65·√2.
  const double cv = 0.65 * std::sqrt(2.0) / 2.0;
  BOOST_TEST(std::abs(mixture::importance_cv(gate.sum(0)) - cv) < 1e-12);

  const auto alloc = mixture::allocation_counts(gate, labels, 2);
  BOOST_TEST(torch::equal(alloc, torch::tensor({{2, 1}, {0, 1}}, torch::kLong)));

  // The accumulator over two batches gives the same numbers.
  mixture::GateStats stats(2, 2);
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

// ---------------------------------------------------------------- variants and regularizers

namespace {

namespace moe = modlab::moe;
namespace mixture = modlab::mixture;

/// Central finite differences of scalar `f` w.r.t. every entry of `x` (double), compared with autograd.
double max_grad_error(const std::function<torch::Tensor(torch::Tensor)>& f, torch::Tensor x) {
  x = x.detach().clone().set_requires_grad(true);
  auto y = f(x);
  auto g = torch::autograd::grad({y}, {x})[0];
  double worst = 0;
  const double h = 1e-6;
  auto flat = x.detach().view(-1);
  for (std::int64_t i = 0; i < flat.numel(); ++i) {
    const double v = flat[i].item<double>();
    flat[i] = v + h;
    const double up = f(x.detach()).item<double>();
    flat[i] = v - h;
    const double down = f(x.detach()).item<double>();
    flat[i] = v;
    worst = std::max(worst, std::abs((up - down) / (2 * h) - g.view(-1)[i].item<double>()));
  }
  return worst;
}

torch::Tensor dbl(std::vector<double> v, std::vector<std::int64_t> shape) {
  return torch::tensor(v, torch::kDouble).reshape(shape);
}

/// A StepContext that runs a plain SGD step on the given parameters.
struct SgdContext : modlab::StepContext {
  std::vector<torch::Tensor> params;
  double lr = 0.1;
  void zero_grad() override {
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().zero_();
  }
  void apply() override {
    torch::NoGradGuard ng;
    for (auto& p : params)
      if (p.grad().defined()) p.sub_(lr * p.grad());
  }
  void optimize(const modlab::Losses& l) override {
    zero_grad();
    modlab::total(l).backward();
    apply();
  }
  std::int64_t step() const override { return 0; }
  std::int64_t epoch() const override { return 0; }
};

}  // namespace

// The training step builds only what its loss reads (no [B, …] views or aux entries when the loss
// is the NLL of the mixture); its loss and update must be those of forward() + loss() + backward.
BOOST_AUTO_TEST_CASE(training_step_equals_forward_loss_and_backward) {
  const std::vector<std::pair<std::string, Value::Table>> cases = {
      {"linear", {}},
      {"mlp", {{"expert", Value::string("mlp")}, {"expert_hidden", ints({5})}, {"gate", Value::string("mlp")}, {"gate_hidden", ints({4})}}},
      {"top-2", {{"top_k", Value::integer(2)}}},
      {"temperature 2", {{"temperature", Value::floating(2.0)}}},
      {"importance", {{"w_importance", Value::floating(0.5)}}},
      {"stochastic", {{"method", Value::string("stochastic")}}},
  };
  for (const auto& [name, extra] : cases) {
    BOOST_TEST_CONTEXT(name) {
      Value::Table table = {{"num_experts", Value::integer(3)}};
      for (const auto& [k, v] : extra) table[k] = v;
      torch::manual_seed(11);
      auto stepped = make_model(table, flat_spec(2, 4));
      torch::manual_seed(11);
      auto manual = make_model(table, flat_spec(2, 4));
      const auto b = batch_of(torch::randn({16, 2}), torch::randint(4, {16}, torch::kLong));
      SgdContext ctx;
      for (auto& p : stepped->parameters()) ctx.params.push_back(p);
      torch::manual_seed(5);  // the stochastic method samples an expert
      const auto losses = stepped->train_step(b, ctx);
      torch::manual_seed(5);
      const auto out = manual->forward(b);
      BOOST_TEST(out.aux.count("gate") == 1u);  // forward() itself still returns every aux entry
      const auto want = manual->loss(b, out);
      modlab::total(want).backward();
      {
        torch::NoGradGuard ng;
        for (auto& p : manual->parameters()) p.sub_(ctx.lr * p.grad());
      }
      BOOST_REQUIRE(losses.size() == want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        BOOST_TEST(losses[i].name == want[i].name);
        BOOST_TEST(losses[i].value.item<double>() == want[i].value.item<double>(), boost::test_tools::tolerance(1e-6));
      }
      const auto p1 = params(*stepped), p2 = params(*manual);
      for (const auto& [pname, t] : p1)
        BOOST_TEST((t - p2.at(pname)).abs().max().item<double>() < 1e-6, pname);
    }
  }
}

BOOST_AUTO_TEST_CASE(regularizers_by_hand) {
  // 2 examples, 2 experts, 2 classes.
  const auto g = dbl({0.8, 0.2, 0.3, 0.7}, {2, 2});
  const auto f = dbl({0.9, 0.1, 0.4, 0.6, 0.2, 0.8, 0.3, 0.7}, {2, 2, 2});
  const auto y = torch::tensor({0, 1}, torch::kLong);
  // Importance (1.1, 0.9): mean 1, unbiased var 0.02 → CV² 0.02.
  BOOST_TEST(std::abs(moe::importance_loss(g).item<double>() - 0.02) < 1e-12);
  BOOST_TEST(moe::cv_squared(dbl({3.0}, {1})).item<double>() == 0.0);
  // Ortho (master): mixture rows (0.8·0.9+0.2·0.4, ...) = (0.8, 0.2), (0.27, 0.73); sums (1.07, 0.93).
  const double mo = std::pow(0.07 * std::sqrt(2.0), 2) / 1.0;
  BOOST_TEST(std::abs(moe::ortho_loss(g, f, "master").item<double>() - mo) < 1e-12);
  // Ortho (xai): Σ_i Σ_e f_e = (0.9+0.4+0.2+0.3, 0.1+0.6+0.8+0.7) = (1.8, 2.2): var 0.08, mean 2.
  BOOST_TEST(std::abs(moe::ortho_loss(g, f, "xai").item<double>() - 0.08 / 4) < 1e-12);
  BOOST_CHECK_THROW(moe::ortho_loss(g, f, "other"), modlab::ArgumentError);
  // Ideal gate: best experts 0 (0.9 > 0.4) and 0 (0.8 > 0.7) → onehots (1,0), (1,0).
  const double ig = (0.04 + 0.04 + 0.49 + 0.49) / 4;
  BOOST_TEST(std::abs(moe::ideal_gate_loss(g, f, y).item<double>() - ig) < 1e-12);
  // Jacobs: −mean log(Σ g_e √f_e[y]).
  const double j = -(std::log(0.8 * std::sqrt(0.9) + 0.2 * std::sqrt(0.4) + 1e-15) +
                     std::log(0.3 * std::sqrt(0.8) + 0.7 * std::sqrt(0.7) + 1e-15)) / 2;
  BOOST_TEST(std::abs(moe::jacobs_loss(g, f, y, 0.0).item<double>() - j) < 1e-12);
  // EM with assignments (1, 0): −mean(log(0.4)·0.2, log(0.8)·0.3).
  const double em = -(std::log(0.4 + 1e-7) * 0.2 + std::log(0.8 + 1e-7) * 0.3) / 2;
  BOOST_TEST(std::abs(moe::em_loss(g, f, y, torch::tensor({1, 0}, torch::kLong), 1e-7).item<double>() - em) < 1e-12);
  // Expert-loss gate: Σ_e mean_i |g_e − log f_e[y]|.
  const double el = (std::abs(0.8 - std::log(0.9)) + std::abs(0.3 - std::log(0.8))) / 2 +
                    (std::abs(0.2 - std::log(0.4)) + std::abs(0.7 - std::log(0.7))) / 2;
  BOOST_TEST(std::abs(moe::expert_loss_gate_loss(g, f, y, 0.0).item<double>() - el) < 1e-12);
}

BOOST_AUTO_TEST_CASE(sample_similarity_by_hand) {
  // Three points on a line at 0, 1, 3: D = [[0,1,3],[1,0,2],[3,2,0]] / 3.
  const auto x = dbl({0, 0, 1, 0, 3, 0}, {3, 2});
  const auto g = dbl({1, 0, 0.5, 0.5, 0, 1}, {3, 2});
  const double d[3][3] = {{0, 1, 3}, {1, 0, 2}, {3, 2, 0}};
  const double gv[3][2] = {{1, 0}, {0.5, 0.5}, {0, 1}};
  double m[2][2] = {{0, 0}, {0, 0}};
  for (int e = 0; e < 2; ++e)
    for (int e2 = 0; e2 < 2; ++e2)
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) m[e][e2] += gv[a][e] * gv[b][e2] * d[a][b] / 3.0;
  const double same = (m[0][0] + m[1][1]) / 2, diff = (m[0][1] + m[1][0]) / 2;
  const double bs = 0.5, bd = 2.0;
  BOOST_TEST(std::abs(moe::sample_similarity_loss(x, g, bs, bd, "normalized").item<double>() -
                      (bs * same - bd * diff) / 9) < 1e-12);
  BOOST_TEST(std::abs(moe::sample_similarity_loss(x, g, bs, bd, "reference").item<double>() -
                      (bs * same - bd * diff / 9)) < 1e-12);
  BOOST_CHECK_THROW(moe::sample_similarity_loss(x, g, bs, bd, "x"), modlab::ArgumentError);
}

// In a population of P members (the batch holds P·B rows, member m rows m·B …) every batch-level
// term is each member's own over its own rows: [P], equal to the term of that member's batch.
BOOST_AUTO_TEST_CASE(regularizers_in_a_population_are_each_members_own) {
  torch::manual_seed(5);
  const std::int64_t p = 3, b = 4;
  const auto g = torch::softmax(torch::randn({p * b, 3}, torch::kDouble), -1);
  const auto f = torch::softmax(torch::randn({p * b, 3, 5}, torch::kDouble), -1);
  const auto x = torch::randn({p * b, 1, 2, 3}, torch::kDouble);
  const auto y = torch::randint(5, {p * b}, torch::kLong);
  using Term = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                           const torch::Tensor&)>;
  const std::map<std::string, Term> terms = {
      {"importance", [](auto& g, auto&, auto&, auto&) { return moe::importance_loss(g); }},
      {"ortho master", [](auto& g, auto& f, auto&, auto&) { return moe::ortho_loss(g, f, "master"); }},
      {"ortho xai", [](auto& g, auto& f, auto&, auto&) { return moe::ortho_loss(g, f, "xai"); }},
      {"ideal gate", [](auto& g, auto& f, auto&, auto& y) { return moe::ideal_gate_loss(g, f, y); }},
      {"similarity normalized",
       [](auto& g, auto&, auto& x, auto&) { return moe::sample_similarity_loss(x, g, 0.5, 2.0, "normalized"); }},
      {"similarity reference",
       [](auto& g, auto&, auto& x, auto&) { return moe::sample_similarity_loss(x, g, 0.5, 2.0, "reference"); }},
  };
  for (const auto& [name, term] : terms) {
    torch::Tensor folded;
    {
      modlab::PopulationScope scope(p);
      folded = term(g, f, x, y);
    }
    BOOST_TEST_REQUIRE(folded.sizes() == torch::IntArrayRef({p}), name);
    for (std::int64_t m = 0; m < p; ++m) {
      const auto rows = torch::arange(m * b, (m + 1) * b);
      const double own = term(g.index({rows}), f.index({rows}), x.index({rows}), y.index({rows})).item<double>();
      BOOST_TEST(folded[m].item<double>() == own, boost::test_tools::tolerance(1e-12));
    }
  }
  modlab::PopulationScope odd(5);  // 12 rows do not split among 5 members
  BOOST_CHECK_THROW(moe::importance_loss(g), modlab::ArgumentError);
}

BOOST_AUTO_TEST_CASE(regularizer_gradients_match_finite_differences) {
  torch::manual_seed(11);
  const auto a0 = torch::randn({5, 3}, torch::kDouble);      // gate logits
  const auto z0 = torch::randn({5, 3, 4}, torch::kDouble);   // expert logits
  const auto x = torch::randn({5, 6}, torch::kDouble);
  const auto y = torch::randint(4, {5}, torch::kLong);
  const auto assign = torch::tensor({0, 2, 1, 1, 0}, torch::kLong);
  const auto f0 = torch::softmax(z0, -1);
  const auto g0 = torch::softmax(a0, -1);
  using Fn = std::function<torch::Tensor(torch::Tensor)>;
  const std::map<std::string, Fn> of_gate = {
      {"importance", [](torch::Tensor a) { return moe::importance_loss(torch::softmax(a, -1)); }},
      {"ortho_master", [&](torch::Tensor a) { return moe::ortho_loss(torch::softmax(a, -1), f0, "master"); }},
      {"ideal_gate", [&](torch::Tensor a) { return moe::ideal_gate_loss(torch::softmax(a, -1), f0, y); }},
      {"similarity", [&](torch::Tensor a) {
         return moe::sample_similarity_loss(x, torch::softmax(a, -1), 0.3, 0.7, "normalized");
       }},
      {"similarity_ref", [&](torch::Tensor a) {
         return moe::sample_similarity_loss(x, torch::softmax(a, -1), 0.3, 0.7, "reference");
       }},
      {"jacobs", [&](torch::Tensor a) { return moe::jacobs_loss(torch::softmax(a, -1), f0, y, 1e-15); }},
      {"em", [&](torch::Tensor a) { return moe::em_loss(torch::softmax(a, -1), f0, y, assign, 1e-7); }},
  };
  for (const auto& [name, fn] : of_gate) BOOST_TEST_CONTEXT(name) { BOOST_TEST(max_grad_error(fn, a0) < 1e-6); }
  const std::map<std::string, Fn> of_experts = {
      {"ortho_master", [&](torch::Tensor z) { return moe::ortho_loss(g0, torch::softmax(z, -1), "master"); }},
      {"ortho_xai", [&](torch::Tensor z) { return moe::ortho_loss(g0, torch::softmax(z, -1), "xai"); }},
      {"jacobs", [&](torch::Tensor z) { return moe::jacobs_loss(g0, torch::softmax(z, -1), y, 1e-15); }},
      {"em", [&](torch::Tensor z) { return moe::em_loss(g0, torch::softmax(z, -1), y, assign, 1e-7); }},
  };
  for (const auto& [name, fn] : of_experts) BOOST_TEST_CONTEXT(name) { BOOST_TEST(max_grad_error(fn, z0) < 1e-6); }
  // The expert-loss gate term does not reach the experts.
  auto z = z0.clone().set_requires_grad(true);
  auto t = moe::expert_loss_gate_loss(g0.clone().set_requires_grad(true), torch::softmax(z, -1), y, 1e-15);
  BOOST_TEST(!torch::autograd::grad({t}, {z}, {}, false, false, true)[0].defined());
}

BOOST_AUTO_TEST_CASE(every_method_forwards_and_trains) {
  torch::manual_seed(12);
  const auto spec = flat_spec(2, 3);
  const auto b = batch_of(torch::randn({8, 2}), torch::randint(3, {8}, torch::kLong));
  for (const std::string method :
       {"expectation", "stochastic", "pre_softmax", "em", "dual_temperature", "no_gate", "expert_loss"}) {
    BOOST_TEST_CONTEXT(method) {
      auto m = make_model({{"method", Value::string(method)},
                           {"num_experts", Value::integer(3)},
                           {"w_importance", Value::floating(0.1)},
                           {"w_ortho", Value::floating(0.1)},
                           {"w_ideal_gate", Value::floating(0.1)},
                           {"beta_same", Value::floating(1e-3)},
                           {"beta_diff", Value::floating(1e-3)}},
                          spec);
      auto out = m->forward(b);
      BOOST_TEST((out.prediction.sizes() == torch::IntArrayRef{8, 3}));
      BOOST_TEST((out.prediction.sum(1) - 1).abs().max().item<float>() < 1e-5f);
      BOOST_TEST((out.aux.at("gate").sizes() == torch::IntArrayRef{8, 3}));
      auto losses = m->loss(b, out);
      BOOST_TEST(torch::isfinite(modlab::total(losses)).item<bool>());
      std::set<std::string> names;
      for (const auto& l : losses) names.insert(l.name);
      BOOST_TEST(names.count("task") == 1u);
      if (method != "no_gate") {
        BOOST_TEST(names.count("importance") == 1u);
        BOOST_TEST(names.count("ortho") == 1u);
        BOOST_TEST(names.count("ideal_gate") == 1u);
        BOOST_TEST(names.count("sample_similarity") == 1u);
      }
      SgdContext ctx;
      for (const auto& g : m->param_groups(m->phases().front().name))
        ctx.params.insert(ctx.params.end(), g.params.begin(), g.params.end());
      const auto before = params(*m);
      std::map<std::string, torch::Tensor> copy;
      for (const auto& [k, v] : before) copy[k] = v.detach().clone();
      m->train_step(b, ctx);
      double moved = 0;
      for (const auto& [k, v] : params(*m)) moved += (v - copy[k]).abs().sum().item<double>();
      BOOST_TEST(moved > 0.0);
    }
  }
}

BOOST_AUTO_TEST_CASE(stochastic_and_selecting_methods_pick_one_expert) {
  torch::manual_seed(13);
  const auto b = batch_of(torch::randn({10, 2}), torch::randint(3, {10}, torch::kLong));
  for (const std::string method : {"stochastic", "em", "expert_loss"}) {
    auto m = make_model({{"method", Value::string(method)}, {"num_experts", Value::integer(3)}}, flat_spec(2, 3));
    m->eval();
    torch::NoGradGuard ng;
    auto out = m->forward(b);
    const auto chosen = moe::select_expert(out.aux.at("experts"), out.aux.at("gate").argmax(1));
    BOOST_TEST((out.prediction - chosen).abs().max().item<float>() < 1e-7f, method);
  }
  // In training the stochastic model outputs one expert's row, not the mixture.
  auto m = make_model({{"method", Value::string("stochastic")}, {"num_experts", Value::integer(3)}}, flat_spec(2, 3));
  auto out = m->forward(b);
  const auto diff = (out.aux.at("experts") - out.prediction.unsqueeze(1)).abs().sum(2).min(1);
  BOOST_TEST(std::get<0>(diff).max().item<float>() < 1e-7f);
}

BOOST_AUTO_TEST_CASE(pre_softmax_mixes_logits) {
  torch::manual_seed(14);
  auto m = make_model({{"method", Value::string("pre_softmax")}, {"num_experts", Value::integer(3)},
                       {"temperature", Value::floating(2.0)}},
                      flat_spec(2, 4));
  auto out = m->forward(batch_of(torch::randn({5, 2}), torch::zeros({5}, torch::kLong)));
  const auto z = mixture::mix(out.aux.at("gate"), out.aux.at("expert_logits"));
  BOOST_TEST((out.prediction - torch::softmax(z / 2.0, -1)).abs().max().item<float>() < 1e-6f);
  BOOST_TEST((out.aux.at("gate") - torch::softmax(out.aux.at("gate_logits") / 2.0, -1)).abs().max().item<float>() <
             1e-6f);
}

BOOST_AUTO_TEST_CASE(dual_temperature_updates_experts_and_gate_from_different_losses) {
  torch::manual_seed(15);
  modlab::Value::Array sched{Value::floating(4.0), Value::floating(2.0)};
  auto m = make_model({{"method", Value::string("dual_temperature")},
                       {"num_experts", Value::integer(3)},
                       {"temperature_schedule", Value::array(sched)},
                       {"temperature_decay", Value::floating(1.0)},
                       {"temperature_decay_start", Value::integer(1)}},
                      flat_spec(2, 3));
  const auto b = batch_of(torch::randn({6, 2}), torch::randint(3, {6}, torch::kLong));
  modlab::EpochContext ec;
  ec.epoch = 0;
  m->begin_epoch(ec);
  // The schedule: T[0] = 4 (training forward), evaluation at T = 1; epoch 2: T[1] = 2 / (1 + 1·(2 − 1)) = 1.
  {
    auto o = m->forward(b);
    BOOST_TEST((o.aux.at("gate") - torch::softmax(o.aux.at("gate_logits") / 4.0, -1)).abs().max().item<float>() < 1e-6f);
    m->eval();
    auto e = m->forward(b);
    BOOST_TEST((e.aux.at("gate") - torch::softmax(e.aux.at("gate_logits"), -1)).abs().max().item<float>() < 1e-6f);
    m->train();
    ec.epoch = 2;
    m->begin_epoch(ec);
    auto o2 = m->forward(b);
    BOOST_TEST((o2.aux.at("gate") - torch::softmax(o2.aux.at("gate_logits"), -1)).abs().max().item<float>() < 1e-6f);
    ec.epoch = 0;
    m->begin_epoch(ec);
  }
  std::map<std::string, torch::Tensor> g4, g1;
  auto grads_at = [&](double t) {
    // T enters only through the gate softmax: recompute the model's forward by hand.
    auto p = params(*m);
    for (auto& [k, v] : p)
      if (v.grad().defined()) v.mutable_grad().zero_();
    auto x = b.inputs;
    auto a = torch::addmm(p.at("gate.layer0.bias"), x, p.at("gate.layer0.weight").t());
    auto f = torch::softmax(torch::baddbmm(p.at("experts.layer0.bias").unsqueeze(1), x.unsqueeze(0).expand({3, 6, 2}),
                                           p.at("experts.layer0.weight")).permute({1, 0, 2}), -1);
    auto y = mixture::mix(torch::softmax(a / t, -1), f);
    torch::nn::functional::nll_loss(torch::log(y + 1e-15), b.targets).backward();
    std::map<std::string, torch::Tensor> out;
    for (auto& [k, v] : p) out[k] = v.grad().clone();
    return out;
  };
  g4 = grads_at(4.0);
  g1 = grads_at(1.0);
  auto p = params(*m);
  std::map<std::string, torch::Tensor> copy;
  for (const auto& [k, v] : p) copy[k] = v.detach().clone();
  SgdContext ctx;
  ctx.lr = 1.0;
  for (const auto& g : m->param_groups("train")) ctx.params.insert(ctx.params.end(), g.params.begin(), g.params.end());
  auto logged = m->train_step(b, ctx);
  BOOST_TEST(logged.back().name == "gate_t1");
  for (const auto& [k, v] : params(*m)) {
    const auto& want = k.rfind("experts", 0) == 0 ? g4.at(k) : g1.at(k);
    BOOST_TEST_CONTEXT(k) { BOOST_TEST(((copy[k] - v) - want).abs().max().item<float>() < 1e-6f); }
  }
}

BOOST_AUTO_TEST_CASE(em_e_step_assigns_the_best_weighted_expert) {
  torch::manual_seed(16);
  auto m = make_model({{"method", Value::string("em")}, {"num_experts", Value::integer(3)},
                       {"em_estep_samples", Value::integer(4)}},
                      flat_spec(2, 3));
  modlab::Batch data;
  data.inputs = torch::randn({6, 2});
  data.targets = torch::randint(3, {6}, torch::kLong);
  auto split = std::make_shared<modlab::TensorSplit>(data);
  modlab::EpochContext ec;
  ec.train = split.get();
  m->begin_epoch(ec);
  // Exactly the 4 sampled examples now hold argmax_e g_e f_e[y]; the loss of a training batch uses them.
  torch::Tensor out_g, out_f;
  {
    torch::NoGradGuard ng;
    auto o = m->forward(data);
    out_g = o.aux.at("gate");
    out_f = o.aux.at("experts");
  }
  const auto best = (out_g * moe::true_class_probs(out_f, data.targets)).argmax(1);
  auto b = split->get(torch::arange(6, torch::kLong), true);
  BOOST_REQUIRE(b.indices.defined());
  auto out = m->forward(b);
  const double l = m->loss(b, out)[0].value.item<double>();
  // The loss with the hidden buffer equals em_loss with some assignment that agrees with `best` on ≥ 4 rows.
  int matches = 0;
  for (std::int64_t code = 0; code < 729; ++code) {
    auto a = best.clone();
    std::int64_t c = code;
    int agree = 0;
    for (int i = 0; i < 6; ++i, c /= 3) {
      a[i] = c % 3;
      agree += a[i].item<std::int64_t>() == best[i].item<std::int64_t>();
    }
    if (agree >= 4 && std::abs(moe::em_loss(out_g, out_f, data.targets, a, 1e-7).item<double>() - l) < 1e-7) ++matches;
  }
  BOOST_TEST(matches >= 1);
  // Evaluation uses the argmax gate.
  m->eval();
  torch::NoGradGuard ng;
  auto e = m->forward(data);
  BOOST_TEST(std::abs(m->loss(data, e)[0].value.item<double>() -
                      moe::em_loss(out_g, out_f, data.targets, out_g.argmax(1), 1e-7).item<double>()) < 1e-6);
}

BOOST_AUTO_TEST_CASE(no_gate_selection_and_gate_phase) {
  torch::manual_seed(17);
  auto m = make_model({{"method", Value::string("no_gate")}, {"num_experts", Value::integer(3)},
                       {"selection", Value::string("entropy")}, {"selection_output", Value::string("expectation")},
                       {"gate_epochs", Value::integer(2)}},
                      flat_spec(2, 3));
  const auto phases = m->phases();
  BOOST_REQUIRE_EQUAL(phases.size(), 2u);
  BOOST_TEST(phases[0].name == "experts");
  BOOST_TEST(phases[1].name == "gate");
  BOOST_TEST(phases[1].epochs == 2);
  const auto b = batch_of(torch::randn({5, 2}), torch::randint(3, {5}, torch::kLong));
  m->begin_phase(phases[0]);
  auto out = m->forward(b);
  const auto f = out.aux.at("experts");
  const auto h = -(f * torch::log2(f + 1e-15)).sum(2);
  BOOST_TEST((out.aux.at("gate") - torch::softmax(-h, 1)).abs().max().item<float>() < 1e-6f);
  BOOST_TEST((out.prediction - mixture::mix(out.aux.at("gate"), f)).abs().max().item<float>() < 1e-6f);
  BOOST_TEST(m->param_groups("experts").front().name == "experts");
  // Gate phase: CE of the gate logits against the loudest (lowest-entropy) expert; only gate params.
  m->begin_phase(phases[1]);
  const auto groups = m->param_groups("gate");
  BOOST_REQUIRE_EQUAL(groups.size(), 1u);
  BOOST_TEST(groups[0].name == "gate");
  out = m->forward(b);
  auto l = m->loss(b, out);
  BOOST_REQUIRE_EQUAL(l.size(), 1u);
  BOOST_TEST(l[0].name == "gate_distill");
  const auto want = torch::nn::functional::cross_entropy(out.aux.at("gate_logits"), h.argmin(1));
  BOOST_TEST(std::abs(l[0].value.item<double>() - want.item<double>()) < 1e-6);
  // Self-information in eval mode: p = softmin(−log2 f_e[y]).
  auto s = make_model({{"method", Value::string("no_gate")}, {"num_experts", Value::integer(3)}}, flat_spec(2, 3));
  s->eval();
  torch::NoGradGuard ng;
  auto so = s->forward(b);
  const auto hs = -torch::log2(moe::true_class_probs(so.aux.at("experts"), b.targets) + 1e-15);
  BOOST_TEST((so.aux.at("gate") - torch::softmax(-hs, 1)).abs().max().item<float>() < 1e-6f);
  BOOST_TEST((so.prediction - moe::select_expert(so.aux.at("experts"), hs.argmin(1))).abs().max().item<float>() <
             1e-6f);
}

BOOST_AUTO_TEST_CASE(attentive_gate_by_hand) {
  torch::manual_seed(18);
  auto m = make_model({{"gating", Value::string("attentive")}, {"num_experts", Value::integer(3)},
                       {"expert", Value::string("mlp")}, {"expert_hidden", ints({6})},
                       {"gate", Value::string("mlp")}, {"gate_hidden", ints({5})},
                       {"attention_dim", Value::integer(4)}},
                      flat_spec(2, 3));
  auto p = params(*m);
  BOOST_TEST((p.at("attention.query.weight").sizes() == torch::IntArrayRef{4, 5}));
  BOOST_TEST((p.at("attention.key.weight").sizes() == torch::IntArrayRef{4, 6}));
  BOOST_TEST(p.count("gate.layer1.weight") == 1u);  // the gate's last layer exists but is not used for routing
  const auto x = torch::randn({7, 2});
  auto out = m->forward(batch_of(x, torch::zeros({7}, torch::kLong)));
  const auto hg = torch::addmm(p.at("gate.layer0.bias"), x, p.at("gate.layer0.weight").t());  // pre-ReLU
  for (std::int64_t e = 0; e < 3; ++e) {
    const auto he = torch::matmul(x, p.at("experts.layer0.weight")[e]) + p.at("experts.layer0.bias")[e];
    const auto score = (hg.matmul(p.at("attention.query.weight").t()) * he.matmul(p.at("attention.key.weight").t())).sum(1) / 2.0;
    BOOST_TEST((score - out.aux.at("gate_logits").select(1, e)).abs().max().item<float>() < 1e-5f);
  }
  BOOST_TEST((out.aux.at("gate") - torch::softmax(out.aux.at("gate_logits"), 1)).abs().max().item<float>() < 1e-6f);
  // Both the query and key paths get gradients.
  modlab::total(m->loss(batch_of(x, torch::zeros({7}, torch::kLong)), out)).backward();
  BOOST_TEST(p.at("attention.query.weight").grad().abs().sum().item<double>() > 0);
  BOOST_TEST(p.at("attention.key.weight").grad().abs().sum().item<double>() > 0);
}

BOOST_AUTO_TEST_CASE(conv_experts_equal_a_loop_and_cnn_models_have_the_reference_shapes) {
  torch::manual_seed(19);
  mixture::ConvExpertBank bank(4, {1, 28, 28}, 1, {5, 32}, 10);
  const auto x = torch::randn({3, 1, 28, 28});
  const auto out = bank.forward(x);
  BOOST_TEST((out.probs.sizes() == torch::IntArrayRef{3, 4, 10}));
  BOOST_TEST((out.hidden.sizes() == torch::IntArrayRef{3, 4, 32}));
  BOOST_TEST((bank.mlp()->layers()[0]->weight.sizes() == torch::IntArrayRef{4, 169, 5}));
  for (std::int64_t e = 0; e < 4; ++e) {
    auto h = torch::conv2d(x, bank.conv()->weight[e], bank.conv()->bias[e]);
    h = torch::max_pool2d(torch::relu(h), 2).reshape({3, -1});
    const auto& layers = bank.mlp()->layers();
    for (std::size_t l = 0; l < layers.size(); ++l) {
      h = torch::matmul(h, layers[l]->weight[e]) + layers[l]->bias[e];
      if (l + 1 < layers.size()) h = torch::relu(h);
    }
    BOOST_TEST((torch::softmax(h, -1) - out.probs.select(1, e)).abs().max().item<float>() < 1e-6f);
  }
  modlab::DatasetSpec img = flat_spec(0, 10);
  img.input_shape = {1, 28, 28};
  for (const std::string net : {"mnist_cnn", "fmnist_cnn"}) {
    BOOST_TEST_CONTEXT(net) {
      auto m = make_model({{"expert", Value::string(net)}, {"gate", Value::string(net)},
                           {"num_experts", Value::integer(5)}, {"gating", Value::string("attentive")}},
                          img);
      auto o = m->forward(batch_of(torch::randn({2, 1, 28, 28}), torch::zeros({2}, torch::kLong)));
      BOOST_TEST((o.prediction.sizes() == torch::IntArrayRef{2, 10}));
      BOOST_TEST((o.aux.at("experts").sizes() == torch::IntArrayRef{2, 5, 10}));
      const auto p = params(*m);
      const bool fashion = net == "fmnist_cnn";
      BOOST_TEST((p.at("experts.mlp.layer1.weight").sizes() ==
                  torch::IntArrayRef{5, fashion ? 64 : 5, 32}));
      BOOST_TEST((p.at("gate.mlp.layer0.weight").sizes() ==
                  torch::IntArrayRef{fashion ? 512 : 128, fashion ? 8 * 169 : 169}));
      BOOST_TEST(p.count("gate.bn.weight") == (fashion ? 1u : 0u));
    }
  }
}

BOOST_AUTO_TEST_CASE(per_expert_metrics_and_decision_maps) {
  auto m = make_model({{"num_experts", Value::integer(2)}, {"decision_grid", Value::integer(4)}}, flat_spec(2, 2));
  modlab::Output out;
  out.prediction = torch::full({4, 2}, 0.5);
  out.kind = modlab::Output::Kind::Probabilities;
  out.aux["gate"] = torch::tensor({{1.0f, 0.0f}, {0.75f, 0.25f}, {0.0f, 1.0f}, {0.9f, 0.1f}});
  out.aux["experts"] = torch::tensor({{{0.8f, 0.2f}, {0.1f, 0.9f}},
                                      {{0.3f, 0.7f}, {0.6f, 0.4f}},
                                      {{0.9f, 0.1f}, {0.2f, 0.8f}},
                                      {{0.6f, 0.4f}, {0.3f, 0.7f}}});
  const auto b = batch_of(torch::tensor({{0.f, 0.f}, {1.f, 2.f}, {3.f, 1.f}, {2.f, 4.f}}),
                          torch::tensor({0, 1, 1, 0}, torch::kLong));
  CaptureRecorder rec;
  modlab::MetricSet ms;
  m->eval_begin("test");
  m->eval_batch("test", b, out, ms);
  m->eval_end("test", ms, rec);
  BOOST_TEST(ms.get("expert0_count") == 3.0);
  BOOST_TEST(ms.get("expert1_count") == 1.0);
  // Gate-weighted loss of expert 0: (1·−ln .8 + .75·−ln .7 + 0 + .9·−ln .6) / 4.
  const double l0 = (-std::log(0.8) - 0.75 * std::log(0.7) - 0.9 * std::log(0.6)) / 4;
  const double l1 = (-0.25 * std::log(0.4) - std::log(0.8) - 0.1 * std::log(0.3)) / 4;
  BOOST_TEST(std::abs(ms.get("expert0_loss") - l0) < 1e-6);
  BOOST_TEST(std::abs(ms.get("expert1_loss") - l1) < 1e-6);
  m->record(rec);
  BOOST_REQUIRE(rec.tensors.count("decision/gate"));
  BOOST_TEST((rec.tensors["decision/gate"].sizes() == torch::IntArrayRef{4, 4}));
  BOOST_TEST((rec.tensors["decision/experts"].sizes() == torch::IntArrayRef{2, 4, 4}));
  BOOST_TEST(torch::allclose(rec.tensors["decision/x"], torch::tensor({0.f, 1.f, 2.f, 3.f})));
  BOOST_TEST(torch::allclose(rec.tensors["decision/y"], torch::tensor({0.f, 4.f / 3, 8.f / 3, 4.f})));
  // Cell (row 2, column 1) is the point (x = 1, y = 8/3): the map agrees with a forward there.
  m->eval();
  torch::NoGradGuard ng;
  auto o = m->forward(batch_of(torch::tensor({{1.f, 8.f / 3}}), torch::zeros({1}, torch::kLong)));
  BOOST_TEST(rec.tensors["decision/gate"][2][1].item<std::int64_t>() == o.aux.at("gate").argmax(1).item<std::int64_t>());
  BOOST_TEST(rec.tensors["decision/experts"][1][2][1].item<std::int64_t>() ==
             o.aux.at("experts")[0][1].argmax().item<std::int64_t>());
}

namespace {

modlab::DatasetSpec image_spec(std::vector<std::int64_t> shape, std::int64_t classes) {
  modlab::DatasetSpec s = flat_spec(0, classes);
  s.input_shape = std::move(shape);
  return s;
}

Value floats(const std::vector<double>& v) {
  Value::Array a;
  for (auto x : v) a.push_back(Value::floating(x));
  return Value::array(a);
}

}  // namespace

BOOST_AUTO_TEST_CASE(conv_stack_experts_equal_a_loop_in_train_and_eval_mode) {
  namespace F = torch::nn::functional;
  torch::manual_seed(21);
  const std::int64_t e_count = 3, b = 4;
  const std::vector<std::int64_t> ch = {4, 6, 8, 5};
  const std::vector<bool> bn = {false, true, false, true};
  mixture::ConvStackExpertBank bank(e_count, {3, 16, 16}, ch, bn, {12, 7}, 10);
  const auto x = torch::randn({b, 3, 16, 16});
  // Non-trivial BatchNorm affine parameters and running statistics.
  {
    torch::NoGradGuard ng;
    for (const auto& n : bank.convs()->norms()) {
      if (!n) continue;
      n->weight.uniform_(0.5, 1.5);
      n->bias.uniform_(-0.5, 0.5);
      n->running_mean.uniform_(-0.2, 0.2);
      n->running_var.uniform_(0.5, 2.0);
    }
  }
  auto loop = [&](std::int64_t e, bool training) {
    torch::Tensor h = x;
    const auto& convs = bank.convs()->convs();
    const auto& norms = bank.convs()->norms();
    for (std::size_t i = 0; i < convs.size(); ++i) {
      const auto rows = [&](const torch::Tensor& t) { return t.slice(0, e * ch[i], (e + 1) * ch[i]); };
      h = torch::conv2d(h, convs[i]->weight[e], convs[i]->bias[e], 1, 1);
      if (norms[i]) {
        auto rm = rows(norms[i]->running_mean).clone(), rv = rows(norms[i]->running_var).clone();
        h = F::batch_norm(h, rm, rv,
                          F::BatchNormFuncOptions().weight(rows(norms[i]->weight)).bias(rows(norms[i]->bias))
                              .training(training).momentum(0.1).eps(1e-5));
      }
      h = torch::max_pool2d(torch::relu(h), 2);
    }
    h = h.reshape({b, -1});
    const auto& layers = bank.mlp()->layers();
    torch::Tensor hidden;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      h = torch::matmul(h, layers[l]->weight[e]) + layers[l]->bias[e];
      if (l + 1 < layers.size()) {
        hidden = h;
        h = torch::relu(h);
      }
    }
    return std::make_pair(torch::softmax(h, -1), hidden);
  };
  for (const bool training : {true, false}) {
    BOOST_TEST_CONTEXT((training ? "train" : "eval")) {
      std::vector<std::pair<torch::Tensor, torch::Tensor>> want;
      for (std::int64_t e = 0; e < e_count; ++e) want.push_back(loop(e, training));  // before the stats move
      bank.train(training);
      const auto out = bank.forward(x);
      BOOST_TEST((out.probs.sizes() == torch::IntArrayRef{b, e_count, 10}));
      BOOST_TEST((out.hidden.sizes() == torch::IntArrayRef{b, e_count, 7}));
      for (std::int64_t e = 0; e < e_count; ++e) {
        BOOST_TEST((want[e].first - out.probs.select(1, e)).abs().max().item<float>() < 1e-6f);
        BOOST_TEST((want[e].second - out.hidden.select(1, e)).abs().max().item<float>() < 1e-5f);
      }
    }
  }
  // A grouped layer: expert 0's output does not depend on expert 1's block-1 weights.
  bank.eval();
  auto w = bank.convs()->convs()[1]->weight;
  const auto p0 = bank.forward(x).probs.select(1, 0).clone();
  {
    torch::NoGradGuard ng;
    w[1].add_(1.0);
  }
  BOOST_TEST((bank.forward(x).probs.select(1, 0) - p0).abs().max().item<float>() == 0.0f);
}

BOOST_AUTO_TEST_CASE(cifar_cnn_expert_and_gate_have_the_reference_shapes) {
  torch::manual_seed(22);
  auto m = make_model({{"expert", Value::string("cifar_cnn")}, {"gate", Value::string("cifar_cnn")},
                       {"num_experts", Value::integer(2)}, {"gating", Value::string("attentive")}},
                      image_spec({3, 32, 32}, 100));
  const auto b = batch_of(torch::randn({2, 3, 32, 32}), torch::tensor({3, 97}, torch::kLong));
  auto o = m->forward(b);
  BOOST_TEST((o.prediction.sizes() == torch::IntArrayRef{2, 100}));
  BOOST_TEST((o.aux.at("experts").sizes() == torch::IntArrayRef{2, 2, 100}));
  BOOST_TEST((o.prediction.sum(1) - 1).abs().max().item<float>() < 1e-5f);
  const auto p = params(*m);
  // Experts: 3 → 16 → 32 → 64 → 128 channels (block 0 one conv for both experts, then groups = 2),
  // 128·2·2 = 512 → 1024 → 256 → 100.
  BOOST_TEST((p.at("experts.convs.conv0.weight").sizes() == torch::IntArrayRef{2, 16, 3, 3, 3}));
  BOOST_TEST((p.at("experts.convs.conv1.weight").sizes() == torch::IntArrayRef{2, 32, 16, 3, 3}));
  BOOST_TEST((p.at("experts.convs.conv3.weight").sizes() == torch::IntArrayRef{2, 128, 64, 3, 3}));
  BOOST_TEST((p.at("experts.mlp.layer0.weight").sizes() == torch::IntArrayRef{2, 512, 1024}));
  BOOST_TEST((p.at("experts.mlp.layer1.weight").sizes() == torch::IntArrayRef{2, 1024, 256}));
  BOOST_TEST((p.at("experts.mlp.layer2.weight").sizes() == torch::IntArrayRef{2, 256, 100}));
  BOOST_TEST(p.count("experts.convs.bn1.weight") == 1u);
  BOOST_TEST(p.count("experts.convs.bn3.weight") == 1u);
  BOOST_TEST(p.count("experts.convs.bn0.weight") == 0u);
  BOOST_TEST(p.count("experts.convs.bn2.weight") == 0u);
  // Gate: 64 → 128 → 256 → 512 channels, 512·2·2 = 2048 → 1024 → 256 (→ E, unused when attentive).
  BOOST_TEST((p.at("gate.convs.conv0.weight").sizes() == torch::IntArrayRef{1, 64, 3, 3, 3}));
  BOOST_TEST((p.at("gate.convs.conv3.weight").sizes() == torch::IntArrayRef{1, 512, 256, 3, 3}));
  BOOST_TEST((p.at("gate.mlp.layer0.weight").sizes() == torch::IntArrayRef{1024, 2048}));
  BOOST_TEST((p.at("gate.mlp.layer1.weight").sizes() == torch::IntArrayRef{256, 1024}));
  BOOST_TEST((p.at("attention.key.weight").sizes() == torch::IntArrayRef{32, 256}));
  auto losses = m->loss(b, o);
  modlab::total(losses).backward();
  for (const auto& [k, v] : p)
    BOOST_TEST_CONTEXT(k) {
      if (k.rfind("gate.mlp.layer2", 0) == 0) continue;  // the attentive gate's unused output layer
      BOOST_TEST((v.grad().defined() && v.grad().abs().sum().item<double>() > 0.0));
    }
  // Images too small for 4 pooled blocks.
  try {
    make_model({{"expert", Value::string("cifar_cnn")}}, image_spec({3, 8, 8}, 10));
    BOOST_FAIL("8x8 images accepted");
  } catch (const modlab::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("cifar_cnn") != std::string::npos);
  }
}

namespace {

/// One optimizer step per call with a per-element learning rate `lr` (a tensor broadcast against
/// each parameter): RMSprop (alpha .99, eps 1e-8, momentum) or Adam (.9, .999, 1e-8), written out
/// as torch::optim computes them, so an expert's block can get its own rate.
struct ManualContext : modlab::StepContext {
  std::vector<torch::Tensor> params, lrs, s1, s2;
  bool adam = false;
  double momentum = 0.9;
  std::int64_t t = 0;
  void zero_grad() override {
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().zero_();
  }
  void apply() override {
    torch::NoGradGuard ng;
    ++t;
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto p = params[i];
      const auto g = p.grad();
      if (s1.size() <= i) {
        s1.push_back(torch::zeros_like(p));
        s2.push_back(torch::zeros_like(p));
      }
      if (adam) {
        s1[i].mul_(0.9).add_(g, 0.1);
        s2[i].mul_(0.999).addcmul_(g, g, 0.001);
        const double bc1 = 1 - std::pow(0.9, static_cast<double>(t)), bc2 = 1 - std::pow(0.999, static_cast<double>(t));
        const auto denom = s2[i].sqrt() / std::sqrt(bc2) + 1e-8;
        p.sub_(lrs[i] / bc1 * s1[i] / denom);
      } else {
        s2[i].mul_(0.99).addcmul_(g, g, 0.01);
        const auto avg = s2[i].sqrt() + 1e-8;
        s1[i].mul_(momentum).addcdiv_(g, avg);
        p.sub_(lrs[i] * s1[i]);
      }
    }
  }
  void optimize(const modlab::Losses& l) override {
    zero_grad();
    modlab::total(l).backward();
    apply();
  }
  std::int64_t step() const override { return t; }
  std::int64_t epoch() const override { return 0; }
};

/// torch::optim behind the StepContext interface.
struct OptimContext : modlab::StepContext {
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Optimizer> opt;
  void zero_grad() override { opt->zero_grad(); }
  void apply() override { opt->step(); }
  void optimize(const modlab::Losses& l) override {
    zero_grad();
    modlab::total(l).backward();
    apply();
  }
  std::int64_t step() const override { return 0; }
  std::int64_t epoch() const override { return 0; }
};

}  // namespace

BOOST_AUTO_TEST_CASE(expert_lr_scale_equals_per_expert_learning_rates_for_rmsprop_and_adam) {
  const std::vector<double> scale = {1.0, 0.01};
  const double lr = 0.01;
  const auto spec = flat_spec(2, 3);
  for (const bool adam : {false, true}) {
    for (const std::string expert : {"linear", "mlp"}) {
      BOOST_TEST_CONTEXT((adam ? "adam " : "rmsprop ") << expert) {
        torch::manual_seed(23);
        auto scaled = make_model({{"num_experts", Value::integer(2)}, {"expert", Value::string(expert)},
                                  {"expert_lr_scale", floats(scale)}}, spec);
        torch::manual_seed(23);
        auto plain = make_model({{"num_experts", Value::integer(2)}, {"expert", Value::string(expert)}}, spec);
        const auto b = batch_of(torch::randn({16, 2}), torch::randint(3, {16}, torch::kLong));
        // The model with expert_lr_scale under torch::optim with one learning rate ...
        OptimContext oc;
        for (const auto& g : scaled->param_groups("train")) oc.params.insert(oc.params.end(), g.params.begin(), g.params.end());
        if (adam)
          oc.opt = std::make_unique<torch::optim::Adam>(oc.params, torch::optim::AdamOptions(lr));
        else
          oc.opt = std::make_unique<torch::optim::RMSprop>(oc.params, torch::optim::RMSpropOptions(lr).momentum(0.9));
        // ... against the plain model under an optimizer with lr·s_e on expert e's block.
        ManualContext mc;
        mc.adam = adam;
        for (const auto& g : plain->param_groups("train"))
          for (const auto& p : g.params) {
            mc.params.push_back(p);
            if (g.name == "experts") {
              std::vector<std::int64_t> shape(static_cast<std::size_t>(p.dim()), 1);
              shape[0] = 2;
              mc.lrs.push_back(lr * torch::tensor(scale, torch::kFloat).view(shape));
            } else {
              mc.lrs.push_back(torch::tensor(lr, torch::kFloat));
            }
          }
        for (int step = 0; step < 6; ++step) {
          scaled->train_step(b, oc);
          plain->train_step(b, mc);
        }
        const auto ps = params(*scaled), pp = params(*plain);
        double moved = 0;
        for (const auto& [k, v] : ps)
          BOOST_TEST_CONTEXT(k) { BOOST_TEST((v - pp.at(k)).abs().max().item<float>() < 2e-6f); }
        // The slow expert really moved ~100× less than the fast one in the first layer.
        torch::manual_seed(23);
        auto init = make_model({{"num_experts", Value::integer(2)}, {"expert", Value::string(expert)}}, spec);
        const auto d = (ps.at("experts.layer0.weight") - params(*init).at("experts.layer0.weight")).abs();
        moved = d[0].sum().item<double>();
        BOOST_TEST(moved > 20 * d[1].sum().item<double>());
      }
    }
  }
  // All factors 1: exactly the unscaled step.
  torch::manual_seed(24);
  auto ones = make_model({{"num_experts", Value::integer(2)}, {"expert_lr_scale", floats({1.0, 1.0})}}, spec);
  torch::manual_seed(24);
  auto none = make_model({{"num_experts", Value::integer(2)}}, spec);
  const auto b = batch_of(torch::randn({8, 2}), torch::randint(3, {8}, torch::kLong));
  SgdContext c1, c2;
  for (const auto& g : ones->param_groups("train")) c1.params.insert(c1.params.end(), g.params.begin(), g.params.end());
  for (const auto& g : none->param_groups("train")) c2.params.insert(c2.params.end(), g.params.begin(), g.params.end());
  ones->train_step(b, c1);
  none->train_step(b, c2);
  const auto p2 = params(*none);
  for (const auto& [k, v] : params(*ones)) BOOST_TEST(torch::equal(v, p2.at(k)));
  // CNN experts: the conv block of expert e is block e of the stacked conv weight; a zero factor freezes it.
  torch::manual_seed(25);
  auto cnn = make_model({{"num_experts", Value::integer(3)}, {"expert", Value::string("mnist_cnn")},
                         {"gate", Value::string("mnist_cnn")}, {"expert_lr_scale", floats({1.0, 0.0, 1.0})}},
                        image_spec({1, 28, 28}, 10));
  const auto before = params(*cnn);
  std::map<std::string, torch::Tensor> copy;
  for (const auto& [k, v] : before) copy[k] = v.detach().clone();
  SgdContext c3;
  for (const auto& g : cnn->param_groups("train")) c3.params.insert(c3.params.end(), g.params.begin(), g.params.end());
  cnn->train_step(batch_of(torch::randn({4, 1, 28, 28}), torch::randint(10, {4}, torch::kLong)), c3);
  for (const auto& [k, v] : params(*cnn)) {
    if (k.rfind("experts", 0) != 0) continue;
    BOOST_TEST_CONTEXT(k) {
      const auto rows = v.size(0) / 3;
      BOOST_TEST(torch::equal(v.slice(0, rows, 2 * rows), copy[k].slice(0, rows, 2 * rows)));
      BOOST_TEST(!torch::equal(v.slice(0, 0, rows), copy[k].slice(0, 0, rows)));
    }
  }
  // Config errors name the key.
  try {
    make_model({{"num_experts", Value::integer(3)}, {"expert_lr_scale", floats({1.0, 0.1})}}, spec);
    BOOST_FAIL("wrong length accepted");
  } catch (const modlab::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("model.expert_lr_scale") != std::string::npos);
  }
  try {
    make_model({{"num_experts", Value::integer(2)}, {"expert_lr_scale", floats({1.0, -0.1})}}, spec);
    BOOST_FAIL("negative factor accepted");
  } catch (const modlab::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("model.expert_lr_scale") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(em_loss_forms_push_the_assigned_gate_in_opposite_directions) {
  // One example, E = 2, assigned to expert 0 with f_0[y] = 0.5, f_1[y] = 0.9, g = (0.6, 0.4).
  auto g = torch::tensor({{0.6, 0.4}}, torch::kDouble).requires_grad_(true);
  const auto f = torch::tensor({{{0.5, 0.5}, {0.9, 0.1}}}, torch::kDouble);
  const auto y = torch::tensor({0}, torch::kLong);
  const auto a = torch::tensor({0}, torch::kLong);
  const auto ref = moe::em_loss(g, f, y, a, 1e-7);
  BOOST_TEST(std::abs(ref.item<double>() - (-std::log(0.5 + 1e-7) * 0.6)) < 1e-12);
  const auto full = moe::em_complete_data_loss(g, f, y, a, 1e-7);
  BOOST_TEST(std::abs(full.item<double>() - (-std::log(0.5 + 1e-7) - std::log(0.6 + 1e-7))) < 1e-12);
  // d/dg_0: the reference form is +(−log f_0[y]) > 0, so descent lowers the assigned gate; the
  // complete-data form is −1/g_0 < 0, so descent raises it.
  const auto d_ref = torch::autograd::grad({ref}, {g})[0];
  const auto d_full = torch::autograd::grad({full}, {g})[0];
  BOOST_TEST(d_ref[0][0].item<double>() > 0.0);
  BOOST_TEST(d_full[0][0].item<double>() < 0.0);
  // The model key selects the form.
  torch::manual_seed(26);
  auto m = make_model({{"method", Value::string("em")}, {"num_experts", Value::integer(2)},
                       {"em_loss_form", Value::string("complete_data")}},
                      flat_spec(2, 3));
  m->eval();
  torch::NoGradGuard ng;
  const auto b = batch_of(torch::randn({5, 2}), torch::randint(3, {5}, torch::kLong));
  auto o = m->forward(b);
  const auto& gg = o.aux.at("gate");
  BOOST_TEST(std::abs(m->loss(b, o)[0].value.item<double>() -
                      moe::em_complete_data_loss(gg, o.aux.at("experts"), b.targets, gg.argmax(1), 1e-7)
                          .item<double>()) < 1e-6);
}

BOOST_AUTO_TEST_CASE(conv_experts_in_batch_slices_equal_one_pass) {
  // E = 20 MNIST experts: about 54 KB of conv output per example, so a batch of 100 runs as two
  // slices of ~77 examples.
  torch::manual_seed(27);
  mixture::ConvExpertBank bank(20, {1, 28, 28}, 1, {5, 32}, 10);
  const auto x = torch::randn({100, 1, 28, 28});
  const auto f = bank.features(x);
  const auto& conv = bank.conv();
  const auto whole =
      torch::relu(torch::max_pool2d(torch::conv2d(x, conv->weight.flatten(0, 1), conv->bias.flatten()), 2));
  const auto want = whole.reshape({100, 20, -1}).permute({1, 0, 2});
  BOOST_TEST((f.sizes() == torch::IntArrayRef{20, 100, 169}));
  BOOST_TEST((f - want).abs().max().item<float>() == 0.0f);
  const auto gw = torch::autograd::grad({(f * f).sum()}, {conv->weight})[0];
  const auto gw_want = torch::autograd::grad({(want * want).sum()}, {conv->weight})[0];
  BOOST_TEST(((gw - gw_want).abs().max() / gw_want.abs().max()).item<float>() < 1e-5f);
}

// ---------------------------------------------------------------- prechosen experts (MNIST XAI Exp. 2)

BOOST_AUTO_TEST_CASE(expert_classes_restrict_each_expert_to_its_classes) {
  torch::manual_seed(3);
  auto m = make_model({{"num_experts", Value::integer(3)},
                       {"expert_classes", Value::array({ints({0, 1}), ints({2, 3}), ints({4, 5})})}},
                      flat_spec(2, 6));
  auto out = m->forward(batch_of(torch::randn({7, 2}), torch::zeros({7}, torch::kLong)));
  const auto f = out.aux.at("experts");  // [B, E, C]
  BOOST_TEST(torch::allclose(f.sum(-1), torch::ones({7, 3})));
  for (std::int64_t e = 0; e < 3; ++e)
    for (std::int64_t c = 0; c < 6; ++c) {
      const bool own = c / 2 == e;
      const auto col = f.select(1, e).select(1, c);
      BOOST_TEST((own ? (col > 0).all().item<bool>() : (col == 0).all().item<bool>()), "expert " << e << " class " << c);
    }
}

BOOST_AUTO_TEST_CASE(own_classes_objective_is_each_experts_nll_on_its_classes) {
  torch::manual_seed(4);
  auto m = make_model({{"num_experts", Value::integer(2)},
                       {"expert_classes", Value::array({ints({0, 1}), ints({1, 2})})},
                       {"expert_objective", Value::string("own_classes")}},
                      flat_spec(3, 3));
  const auto y = torch::tensor({0, 1, 2, 2}, torch::kLong);
  const auto b = batch_of(torch::randn({4, 3}), y);
  auto out = m->forward(b);
  const auto losses = m->loss(b, out);
  BOOST_TEST_REQUIRE(losses.size() == 1u);
  BOOST_TEST(losses[0].name == "own_classes");
  const auto f = out.aux.at("experts").to(torch::kDouble);
  // expert 0 owns examples 0, 1 (classes 0, 1); expert 1 owns examples 1, 2, 3 (classes 1, 2)
  const double e0 = -(std::log(f[0][0][0].item<double>() + 1e-7) + std::log(f[1][0][1].item<double>() + 1e-7)) / 2;
  const double e1 = -(std::log(f[1][1][1].item<double>() + 1e-7) + std::log(f[2][1][2].item<double>() + 1e-7) +
                      std::log(f[3][1][2].item<double>() + 1e-7)) / 3;
  BOOST_TEST(std::abs(losses[0].value.item<double>() - (e0 + e1)) < 1e-5);
  // the gate gets no gradient from it
  m->zero_grad();
  losses[0].value.backward();
  for (const auto& [name, p] : params(*m))
    if (name.rfind("gate.", 0) == 0) BOOST_TEST((!p.grad().defined() || p.grad().abs().sum().item<double>() == 0.0), name);
}

BOOST_AUTO_TEST_CASE(train_parts_selects_the_parameter_groups) {
  for (const std::string parts : {"all", "experts", "gate"}) {
    auto m = make_model({{"train_parts", Value::string(parts)}}, flat_spec(2, 3));
    std::set<std::string> names;
    for (const auto& g : m->param_groups("train"))
      if (!g.params.empty()) names.insert(g.name);
    const std::set<std::string> want = parts == "all" ? std::set<std::string>{"experts", "gate"}
                                                      : std::set<std::string>{parts};
    BOOST_TEST((names == want), parts);
  }
}

BOOST_AUTO_TEST_CASE(expert_init_seed_fixes_the_initial_experts_only) {
  auto build = [](std::uint64_t run_seed, std::int64_t expert_seed) {
    torch::manual_seed(run_seed);
    return params(*make_model({{"expert_init_seed", Value::integer(expert_seed)}}, flat_spec(2, 3)));
  };
  const auto a = build(1, 7), b = build(2, 7), c = build(1, 8);
  BOOST_TEST(torch::equal(a.at("experts.layer0.weight"), b.at("experts.layer0.weight")));
  BOOST_TEST(!torch::equal(a.at("experts.layer0.weight"), c.at("experts.layer0.weight")));
  BOOST_TEST(!torch::equal(a.at("gate.layer0.weight"), b.at("gate.layer0.weight")));  // the gate follows the run seed
  BOOST_TEST(torch::equal(a.at("gate.layer0.weight"), c.at("gate.layer0.weight")));   // and is not shifted by it
}

BOOST_AUTO_TEST_CASE(prechosen_expert_options_are_checked) {
  auto err = [](const Value::Table& t) {
    try {
      make_model(t, flat_spec(2, 3));
    } catch (const modlab::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto m = err({{"num_experts", Value::integer(2)}, {"expert_classes", Value::array({ints({0})})}});
  BOOST_TEST(m.find("model.expert_classes: expected one class list per expert") != std::string::npos, m);
  m = err({{"num_experts", Value::integer(2)}, {"expert_classes", Value::array({ints({0}), ints({3})})}});
  BOOST_TEST(m.find("class 3 is outside the dataset's 0..2") != std::string::npos, m);
  m = err({{"expert_objective", Value::string("own_classes")}});
  BOOST_TEST(m.find("set expert_classes") != std::string::npos, m);
  m = err({{"train_parts", Value::string("gates")}});
  BOOST_TEST(m.find("expected one of \"all\", \"experts\", \"gate\", got \"gates\"") != std::string::npos, m);
  m = err({{"init_experts_from", Value::string("/nonexistent/results/abc123")}});
  BOOST_TEST(m.find("model.init_experts_from") != std::string::npos, m);
  BOOST_TEST(m.find("no finished run file") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(fit_gate_metrics_accumulate_the_training_batches_of_an_epoch) {
  // H_s, H_u, I(E;Y), the expert × class table and the error over the training forwards of one
  // epoch (before each step), written by end_epoch (moe §1.2, §1.4).
  torch::manual_seed(31);
  const auto spec = flat_spec(2, 3);
  auto m = make_model({{"num_experts", Value::integer(3)}, {"fit_gate_metrics", Value::boolean(true)}}, spec);
  OptimContext oc;
  for (const auto& g : m->param_groups("train")) oc.params.insert(oc.params.end(), g.params.begin(), g.params.end());
  oc.opt = std::make_unique<torch::optim::SGD>(oc.params, torch::optim::SGDOptions(0.0));  // lr 0: the gate stays
  const std::vector<modlab::Batch> batches = {batch_of(torch::randn({16, 2}), torch::randint(3, {16}, torch::kLong)),
                                              batch_of(torch::randn({24, 2}), torch::randint(3, {24}, torch::kLong))};
  const modlab::EpochContext epoch{"train", 0, 1, 0, nullptr};
  m->begin_epoch(epoch);
  m->train();
  for (const auto& b : batches) m->train_step(b, oc);
  // the same statistics from the forwards on the two batches together
  m->eval();
  const auto all = batch_of(torch::cat({batches[0].inputs, batches[1].inputs}),
                            torch::cat({batches[0].targets, batches[1].targets}));
  torch::Tensor g, f, pred;
  {
    torch::NoGradGuard ng;
    const auto out = m->forward(all);
    g = out.aux.at("gate").to(torch::kDouble);
    f = out.aux.at("experts").to(torch::kDouble);
    pred = out.prediction.argmax(1);
  }
  CaptureRecorder rec;
  m->end_epoch(epoch, rec);
  namespace mx = modlab::mixture;
  BOOST_TEST(rec.scalars.at("fit_gate_sample_entropy") == mx::sample_entropy_bits(g), boost::test_tools::tolerance(1e-9));
  BOOST_TEST(rec.scalars.at("fit_gate_usage_entropy") == mx::usage_entropy_bits(g), boost::test_tools::tolerance(1e-9));
  BOOST_TEST(rec.scalars.at("fit_gate_mutual_information") ==
                 mx::mutual_information_bits(mx::selection_counts(g, f).to(torch::kDouble)),
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(rec.scalars.at("fit_error") == (pred != all.targets).to(torch::kDouble).mean().item<double>(),
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(torch::equal(rec.appended.at("fit/allocation").at(0), mx::allocation_counts(g, all.targets, 3)));
  // the next epoch starts afresh: without training batches it writes nothing
  m->begin_epoch(epoch);
  CaptureRecorder again;
  m->end_epoch(epoch, again);
  BOOST_TEST(again.scalars.count("fit_error") == 0u);
  // off by default: no fit_* metrics
  auto plain = make_model({{"num_experts", Value::integer(3)}}, spec);
  plain->begin_epoch(epoch);
  plain->train();
  OptimContext pc;
  for (const auto& gr : plain->param_groups("train")) pc.params.insert(pc.params.end(), gr.params.begin(), gr.params.end());
  pc.opt = std::make_unique<torch::optim::SGD>(pc.params, torch::optim::SGDOptions(0.0));
  plain->train_step(batches[0], pc);
  CaptureRecorder none;
  plain->end_epoch(epoch, none);
  BOOST_TEST(none.scalars.count("fit_error") == 0u);
}

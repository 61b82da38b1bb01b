#define BOOST_TEST_MODULE masked_analyzer
// masked_analyzer: Gumbel-sigmoid statistics and the straight-through gradient, sub-task
// restriction, a planted modular network whose masks come out disjoint, the inverse of a
// keep-everything mask, and the errors of bad configs.
#include <boost/test/unit_test.hpp>

#include "analysis.hpp"
#include "masks.hpp"
#include "subtasks.hpp"

#include "config_builders.hpp"
#include "model_builders.hpp"

#include <modlab/errors.hpp>
#include <modlab/model.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <torch/torch.h>

#include <map>
#include <tuple>

using namespace modlab;
using namespace modlab::runner;
using namespace test_config;

namespace {

/// Two separable parts of a multi-label task: output 0 = [x0 > 0], output 1 = [x2 > 0]; part "a"
/// owns inputs 0–1 and output 0, part "b" inputs 2–3 and output 1.
DatasetSpec planted_spec() {
  DatasetSpec s;
  s.name = "planted";
  s.task = TaskKind::MultiLabel;
  s.input_shape = {4};
  s.num_outputs = 2;
  s.splits = {"train", "valid"};
  SubTask a, b;
  a.name = "a";
  a.outputs = {0};
  a.zeroed_inputs = {2, 3};
  b.name = "b";
  b.outputs = {1};
  b.zeroed_inputs = {0, 1};
  s.subtasks = {a, b};
  return s;
}

Batch planted_batch(std::int64_t n) {
  Batch b;
  b.inputs = torch::randn({n, 4});
  b.targets = torch::stack({b.inputs.select(1, 0) > 0, b.inputs.select(1, 2) > 0}, 1).to(torch::kFloat);
  b.indices = torch::arange(n, torch::kLong);
  return b;
}

Config analyzer_config(Value::Table extra) {
  Value::Table inner{{"plugin", str("mask_fnn")}, {"layer_sizes", ints({4})}};
  Value::Table t{{"plugin", str("masked_analyzer")}, {"inner", Value::table(inner)}};
  for (auto& [k, v] : extra) t[k] = v;
  return make_config(t, "model");
}

/// Two disjoint sub-networks: hidden units 0–1 read x0 and feed output 0, units 2–3 read x2 and feed
/// output 1 (logit = relu(10x) − relu(−10x)); every other weight is zero.
void plant(Model& m) {
  torch::NoGradGuard ng;
  auto p = m.named_parameters();
  p["inner.layers0.weight"].copy_(torch::tensor({{10.f, 0.f, 0.f, 0.f}, {-10.f, 0.f, 0.f, 0.f},
                                                  {0.f, 0.f, 10.f, 0.f}, {0.f, 0.f, -10.f, 0.f}}));
  p["inner.layers0.bias"].zero_();
  p["inner.layers1.weight"].copy_(torch::tensor({{1.f, -1.f, 0.f, 0.f}, {0.f, 0.f, 1.f, -1.f}}));
  p["inner.layers1.bias"].zero_();
}

class AdamStep : public StepContext {
 public:
  AdamStep(std::vector<torch::Tensor> params, double lr) : params_(params), opt_(params, torch::optim::AdamOptions(lr)) {}
  void zero_grad() override { opt_.zero_grad(); }
  void apply() override {
    torch::nn::utils::clip_grad_norm_(params_, 1.0);
    opt_.step();
    ++step_;
  }
  void optimize(const Losses& l) override {
    zero_grad();
    total(l).backward();
    apply();
  }
  std::int64_t step() const override { return step_; }
  std::int64_t epoch() const override { return 0; }

 private:
  std::vector<torch::Tensor> params_;
  torch::optim::Adam opt_;
  std::int64_t step_ = 0;
};

/// Trains every mask phase of `m` for `steps` steps on planted batches.
void train_masks(Model& m, std::int64_t steps) {
  for (const auto& p : m.phases()) {
    if (p.name.rfind("mask_", 0) != 0) continue;
    m.begin_phase(p);
    AdamStep ctx(m.param_groups(p.name).front().params, 0.05);
    m.train();
    for (std::int64_t s = 0; s < steps; ++s) m.train_step(planted_batch(128), ctx);
  }
}

/// The final evaluation of `m` on one planted split, and its record().
test_model::CaptureRecorder final_analysis(Model& m) {
  const auto phases = m.phases();
  m.begin_epoch(EpochContext{phases.back().name, 0, 1, 0, nullptr});
  m.eval();
  torch::NoGradGuard ng;
  test_model::CaptureRecorder rec;
  MetricSet ms;
  m.eval_begin("valid");
  const Batch b = planted_batch(2000);
  m.eval_batch("valid", b, m.forward(b), ms);
  m.eval_end("valid", ms, rec);
  m.record(rec);
  return rec;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(gumbel_sigmoid_keeps_with_probability_sigmoid_of_the_logit) {
  torch::manual_seed(0);
  const auto logits = torch::tensor({-2.0f, 0.0f, 1.0f, 3.0f});
  for (double tau : {1.0, 0.5}) {
    const auto m = masked::sample_masked_weights(logits, torch::ones_like(logits), 40000, tau);  // W = 1: m
    BOOST_TEST((m.sizes().vec() == std::vector<std::int64_t>{40000, 4}));
    BOOST_TEST(((m == 0) | (m == 1)).all().item<bool>(), "samples are hard 0/1");
    const auto freq = m.mean(0);
    const auto want = torch::sigmoid(logits);  // P(l + ν > 0) for logistic ν, whatever τ
    BOOST_TEST((freq - want).abs().max().item<double>() < 0.01, "tau " << tau << ": " << freq << " vs " << want);
  }
}

BOOST_AUTO_TEST_CASE(straight_through_gradient_is_the_soft_samples_gradient) {
  // d m / d l is the gradient of the soft sample σ((l + ν)/τ), i.e. σ'((l + ν)/τ)/τ: over logistic
  // noise ν its mean is ∫ σ'(x/τ)/τ · σ'(x − l) dx (numerically: 1/6 for τ = 1, l = 0).
  const std::vector<std::tuple<double, double, double>> cases = {
      {1.0, 0.0, 1.0 / 6.0}, {1.0, 1.0, 0.150948}, {0.5, 0.0, 0.214602}, {2.0, 1.0, 0.102854}};
  torch::manual_seed(1);
  for (const auto& [tau, l, want] : cases) {
    auto logits = torch::full({1}, l, torch::kDouble).requires_grad_(true);
    const std::int64_t K = 400000;
    masked::sample_masked_weights(logits, torch::ones_like(logits), K, tau).sum().backward();
    const double mean = logits.grad().item<double>() / static_cast<double>(K);
    BOOST_TEST(std::abs(mean - want) < 0.002, "tau " << tau << ", logit " << l << ": " << mean << " vs " << want);
  }
}

BOOST_AUTO_TEST_CASE(masked_weights_are_w_times_the_mask_and_w_gets_the_sum_of_the_masks) {
  torch::manual_seed(2);
  const auto logits = torch::randn({3, 5}).requires_grad_(true);
  const auto w = torch::randn({3, 5}).requires_grad_(true);
  const auto s = masked::sample_masked_weights(logits, w, 6, 1.0);
  BOOST_TEST((s.sizes().vec() == std::vector<std::int64_t>{6, 3, 5}));
  const auto m = (s.detach() / w.detach()).round();  // w has no zeros
  BOOST_TEST(((m == 0) | (m == 1)).all().item<bool>());
  s.sum().backward();
  BOOST_TEST(torch::allclose(w.grad(), m.sum(0)));
  // a frozen weight gets nothing and the logits still do
  const auto frozen = w.detach();
  const auto l2 = logits.detach().clone().requires_grad_(true);
  masked::sample_masked_weights(l2, frozen, 2, 1.0).sum().backward();
  BOOST_TEST(l2.grad().defined());
  // the same global seed draws the same masks
  torch::manual_seed(9);
  const auto a = masked::sample_masked_weights(logits, frozen, 4, 1.0);
  torch::manual_seed(9);
  BOOST_TEST(torch::equal(a, masked::sample_masked_weights(logits, frozen, 4, 1.0)));
}

BOOST_AUTO_TEST_CASE(a_subtask_keeps_its_rows_blanks_the_others_inputs_and_scores_its_outputs) {
  SubTask t;
  t.name = "add";
  t.groups = {0};
  t.outputs = {1};
  t.zeroed_inputs = {0, 3};
  Batch b;
  b.inputs = torch::arange(12, torch::kFloat).reshape({3, 2, 2});
  b.targets = torch::tensor({{1, 2}, {3, 4}, {5, 6}}, torch::kLong);
  b.groups = torch::tensor({0, 1, 0}, torch::kLong);
  b.indices = torch::arange(3, torch::kLong);
  Batch r = masked::restrict_batch(b, t);
  BOOST_TEST(r.size() == 2);
  BOOST_TEST(torch::equal(r.indices, torch::tensor({0, 2}, torch::kLong)));
  BOOST_TEST(torch::equal(r.inputs, torch::tensor({{{0.f, 1.f}, {2.f, 0.f}}, {{0.f, 9.f}, {10.f, 0.f}}})));
  BOOST_TEST(masked::restrict_batch(b, t, /*keep_rows=*/true).size() == 3);
  Output out;
  out.prediction = torch::randn({2, 2, 10});
  const auto second = out.prediction.select(1, 1).clone();
  masked::restrict_outputs(t, r, out);
  BOOST_TEST((out.prediction.sizes().vec() == std::vector<std::int64_t>{2, 1, 10}));
  BOOST_TEST(torch::equal(out.prediction.select(1, 0), second));
  BOOST_TEST(torch::equal(r.targets, torch::tensor({{2}, {6}}, torch::kLong)));
}

BOOST_AUTO_TEST_CASE(a_planted_modular_network_gets_disjoint_masks) {
  RunHost host(default_registry(), HostOptions{});
  torch::manual_seed(3);
  auto m = host.create_model("masked_analyzer", analyzer_config({{"control_stage", Value::boolean(false)},
                                                                 {"mask_loss_weight", Value::floating(1e-3)}}),
                             planted_spec());
  plant(*m);
  train_masks(*m, 300);
  const test_model::CaptureRecorder rec = final_analysis(*m);
  BOOST_TEST(rec.tables.at("iou").at("total", "a ~ b") < 0.01, "the two parts' masks overlap");
  // each part keeps its own path and nothing of the other's
  const auto a0 = rec.tensors.at("masks/a/layers0.weight"), b0 = rec.tensors.at("masks/b/layers0.weight");
  BOOST_TEST((a0[0][0].item<bool>() && a0[1][0].item<bool>() && !a0[2][2].item<bool>() && !a0[3][2].item<bool>()));
  BOOST_TEST((b0[2][2].item<bool>() && b0[3][2].item<bool>() && !b0[0][0].item<bool>() && !b0[1][0].item<bool>()));
  // removing a part's weights destroys that part and keeps the other
  const auto& acc = rec.tables.at("valid/accuracy");
  BOOST_TEST(acc.at("trained", "a") == 1.0);
  BOOST_TEST(acc.at("mask a", "a") > 0.99);
  BOOST_TEST(acc.at("inverse a", "a") < 0.6);
  BOOST_TEST(acc.at("inverse a", "b") > 0.99);
  BOOST_TEST(acc.at("inverse b", "b") < 0.6);
  BOOST_TEST(acc.at("inverse b", "a") > 0.99);
  BOOST_TEST(rec.notes.at("masked_analyzer.stages") == "a,b");
}

BOOST_AUTO_TEST_CASE(the_inverse_of_a_mask_that_keeps_everything_is_at_chance) {
  RunHost host(default_registry(), HostOptions{});
  torch::manual_seed(4);
  auto m = host.create_model("masked_analyzer", analyzer_config({}), planted_spec());
  plant(*m);
  {
    torch::NoGradGuard ng;
    for (auto& p : m->named_parameters())
      if (p.key().rfind("masks", 0) == 0) p.value().fill_(5.0);  // every stage keeps every weight
  }
  m->begin_phase(m->phases().back());
  const test_model::CaptureRecorder rec = final_analysis(*m);
  const auto& acc = rec.tables.at("valid/accuracy");
  BOOST_TEST((acc.rows == std::vector<std::string>{"trained", "mask full", "mask a", "mask b", "inverse full",
                                                    "inverse a", "inverse b", "half first", "half second"}));
  BOOST_TEST((acc.columns == std::vector<std::string>{"full", "a", "b"}));
  for (const auto* col : {"full", "a", "b"}) {
    BOOST_TEST(acc.at("mask full", col) == 1.0);
    BOOST_TEST(std::abs(acc.at("inverse full", col) - 0.5) < 0.05, col << ": " << acc.at("inverse full", col));
  }
  BOOST_TEST(rec.tables.at("kept").at("total", "full") == 1.0);
  BOOST_TEST(rec.tables.at("iou").at("total", "a ~ b") == 1.0);
}

BOOST_AUTO_TEST_CASE(the_sequential_protocol_keeps_earlier_weights_and_redraws_the_others) {
  RunHost host(default_registry(), HostOptions{});
  torch::manual_seed(6);
  auto m = host.create_model("masked_analyzer", analyzer_config({{"protocol", str("sequential")}}), planted_spec());
  const auto phases = m->phases();
  BOOST_TEST_REQUIRE(phases.size() == 2u);  // one stage per sub-task, no control, no inner training
  BOOST_TEST(phases[0].name == "mask_a");
  auto p = m->named_parameters();
  const auto w0 = p["inner.layers0.weight"];
  {
    torch::NoGradGuard ng;  // stage a's mask keeps the first column of the first layer only
    p["masks0.p0"].fill_(-3.0);
    p["masks0.p0"].select(1, 0).fill_(3.0);
  }
  const auto kept = torch::zeros_like(w0, torch::kBool);
  kept.select(1, 0).fill_(true);
  const auto before = w0.detach().clone();
  m->begin_phase(phases[1]);
  m->begin_epoch(EpochContext{phases[1].name, 0, 1, 1, nullptr});
  BOOST_TEST(torch::equal(w0.detach().masked_select(kept), before.masked_select(kept)), "kept weights were redrawn");
  BOOST_TEST(!torch::equal(w0.detach().masked_select(~kept), before.masked_select(~kept)), "free weights not redrawn");
  const auto start = w0.detach().clone();
  auto groups = m->param_groups(phases[1].name);
  BOOST_TEST_REQUIRE(groups.size() == 2u);
  std::vector<torch::Tensor> all = groups[0].params;
  all.insert(all.end(), groups[1].params.begin(), groups[1].params.end());
  AdamStep ctx(all, 0.05);
  m->train();
  for (int s = 0; s < 5; ++s) m->train_step(planted_batch(64), ctx);
  BOOST_TEST(torch::equal(w0.detach().masked_select(kept), start.masked_select(kept)), "frozen weights moved");
  BOOST_TEST(!torch::equal(w0.detach().masked_select(~kept), start.masked_select(~kept)), "free weights did not train");
  // a resumed stage (epoch > 0) keeps what it has trained
  const auto trained = w0.detach().clone();
  m->begin_phase(phases[1]);
  m->begin_epoch(EpochContext{phases[1].name, 1, 2, 2, nullptr});
  BOOST_TEST(torch::equal(w0.detach(), trained));
}

BOOST_AUTO_TEST_CASE(bad_configs_are_refused_with_the_key) {
  RunHost host(default_registry(), HostOptions{});
  const auto spec = planted_spec();
  auto msg = error_of([&] { host.create_model("masked_analyzer", analyzer_config({{"stages", strs({"a", "c"})}}), spec); });
  BOOST_TEST(msg.find("model.stages: dataset 'planted' has no sub-task 'c' (it has: a, b)") != std::string::npos, msg);
  msg = error_of([&] { host.create_model("masked_analyzer", analyzer_config({{"mask_loss_weight", Value::floating(0)}}), spec); });
  BOOST_TEST(msg.find("mask_loss_weight") != std::string::npos, msg);
  msg = error_of([&] { host.create_model("masked_analyzer", analyzer_config({{"temperature", Value::floating(-1)}}), spec); });
  BOOST_TEST(msg.find("temperature") != std::string::npos, msg);
  msg = error_of([&] {
    host.create_model("masked_analyzer", make_config({{"plugin", str("masked_analyzer")}}, "model"), spec);
  });
  BOOST_TEST(msg.find("model.inner.plugin") != std::string::npos, msg);
  Registry reg;
  reg.load_file(std::string(MODLAB_FIXTURE_PLUGIN_DIR) + "/basic/fixture_basic.so");
  reg.load_directories({std::string(std::getenv("MODLAB_PLUGIN_PATH"))});
  RunHost fixtures(reg, HostOptions{});
  DatasetSpec flat;
  flat.name = "flat";
  flat.input_shape = {3};
  flat.num_classes = 2;
  Value::Table t{{"plugin", str("masked_analyzer")}, {"inner", Value::table({{"plugin", str("fixture_prior")}})}};
  msg = error_of([&] { fixtures.create_model("masked_analyzer", make_config(t, "model"), flat); });
  BOOST_TEST(msg.find("the inner model 'fixture_prior' has nothing to mask") != std::string::npos, msg);
}

namespace {

/// dm_math's shape: tokens 0 <pad>, 1 <start>, 2 <end>, then digits.
DatasetSpec math_spec() {
  DatasetSpec s;
  s.name = "math";
  s.task = TaskKind::Sequence;
  s.input_shape = {5};
  s.vocabulary = {"<pad>", "<start>", "<end>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  s.splits = {"train", "test"};
  s.info = {{"start_token", "1"}, {"end_token", "2"}, {"max_question_length", "5"}, {"max_answer_length", "4"}};
  return s;
}

std::shared_ptr<Model> small_transformer(Value::Table extra = {}) {
  Value::Table t{{"plugin", str("mask_transformer")}, {"dim", Value::integer(16)}, {"heads", Value::integer(2)},
                 {"encoder_layers", Value::integer(1)}, {"decoder_layers", Value::integer(2)},
                 {"dropout", Value::floating(0.0)}};
  for (auto& [k, v] : extra) t[k] = v;
  return test_model::make_model("mask_transformer", t, math_spec());
}

Batch math_batch() {
  Batch b;
  b.inputs = torch::tensor({{4, 5, 6, 0, 0}, {7, 3, 9, 8, 4}}, torch::kLong);
  b.lengths = torch::tensor({3, 5}, torch::kLong);
  b.targets = torch::tensor({{5, 2, 0, 0}, {3, 4, 6, 2}}, torch::kLong);
  b.target_lengths = torch::tensor({2, 4}, torch::kLong);
  b.indices = torch::arange(2, torch::kLong);
  return b;
}

}  // namespace

// Teacher forcing: the decoder reads <start> and the answer shifted right, so the prediction at
// position t depends on answer tokens before t only; the loss ignores padding.
BOOST_AUTO_TEST_CASE(transformer_teacher_forcing_and_its_loss) {
  torch::manual_seed(3);
  auto m = small_transformer();
  m->eval();
  torch::NoGradGuard ng;
  Batch b = math_batch();
  const auto p = m->forward(b).prediction;
  BOOST_TEST((p.sizes().vec() == std::vector<std::int64_t>{2, 4, 13}));
  Batch changed = b;
  changed.targets = b.targets.clone();
  changed.targets[1][1] = 9;  // answer token 1
  const auto q = m->forward(changed).prediction;
  BOOST_TEST(torch::allclose(p.narrow(1, 0, 2), q.narrow(1, 0, 2)));  // positions 0 and 1 do not see it
  BOOST_TEST(!torch::allclose(p.narrow(1, 2, 1), q.narrow(1, 2, 1)));
  // Cross-entropy over the 6 non-padding answer tokens.
  const auto logp = torch::log_softmax(p, -1);
  double want = 0;
  int n = 0;
  for (int r = 0; r < 2; ++r)
    for (int t = 0; t < 4; ++t) {
      const auto tok = b.targets[r][t].item<std::int64_t>();
      if (tok == 0) continue;
      want -= logp[r][t][tok].item<double>();
      ++n;
    }
  BOOST_TEST(total(m->loss(b, m->forward(b))).item<double>() == want / n, boost::test_tools::tolerance(1e-5));
}

// Greedy decoding stops at <end>: an output layer that always prefers <end> decodes [<end>, pad, …].
BOOST_AUTO_TEST_CASE(transformer_greedy_decoding_stops_at_the_end_token) {
  auto m = small_transformer({{"tied_embeddings", Value::boolean(false)}});
  {
    torch::NoGradGuard ng;
    auto params = test_model::params(*m);
    params.at("output.weight").zero_();
    params.at("output.bias").zero_();
    params.at("output.bias")[2] = 10.0;
  }
  m->eval();
  torch::NoGradGuard ng;
  Batch b = math_batch();
  const auto out = m->forward(b);
  BOOST_TEST(torch::equal(out.aux.at("greedy"), torch::tensor({{2, 0, 0, 0}, {2, 0, 0, 0}}, torch::kLong)));
  BOOST_TEST(torch::equal(m->correct(b, out), torch::zeros({2})));
  b.targets = torch::tensor({{2, 0, 0, 0}, {3, 2, 0, 0}}, torch::kLong);
  BOOST_TEST(torch::equal(m->correct(b, m->forward(b)), torch::tensor({1.0f, 0.0f})));
  MetricSet ms;
  m->eval_batch("test", b, m->forward(b), ms);
  BOOST_TEST(ms.get("char_accuracy") == 1.0 / 3.0, boost::test_tools::tolerance(1e-9));  // <end>, then 3 vs <end>, 2 vs pad
  auto msg = error_of([&] { small_transformer({{"max_length", Value::integer(4)}}); });
  BOOST_TEST(msg.find("model.max_length: dataset math has max_question_length 5, longer than max_length = 4") !=
                 std::string::npos,
             msg);
}

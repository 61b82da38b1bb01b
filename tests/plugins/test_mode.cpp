#define BOOST_TEST_MODULE mode_model
#include <boost/test/unit_test.hpp>

#include "distill.hpp"
#include "config_builders.hpp"
#include "model_builders.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using modlab::Value;
using test_config::ints;
namespace md = modlab::mode;
namespace F = torch::nn::functional;

using test_model::batch_of;
using test_model::CaptureRecorder;
using test_model::flat_spec;
using test_model::host;
using test_model::params;

std::shared_ptr<modlab::Model> make_model(const Value::Table& table, const modlab::DatasetSpec& spec) {
  return test_model::make_model("mode", table, spec);
}

double term(const modlab::Losses& losses, const std::string& name) {
  for (const auto& l : losses)
    if (l.name == name) return l.value.item<double>();
  BOOST_FAIL("no loss term " << name);
  return 0.0;
}

std::vector<double> softmax(std::vector<double> z, double t) {
  double m = -1e300, s = 0;
  for (double v : z) m = std::max(m, v / t);
  for (double& v : z) s += (v = std::exp(v / t - m));
  for (double& v : z) v /= s;
  return z;
}

/// The reference's double loop (KL form): Σ_{i≠j} w_ij · F.kl_div(log p_i, p_j detached, batchmean)
/// / (E(E−1)), with w_ij = ḡ_i ḡ_j (code) or ḡ_i (README), optionally × T².
torch::Tensor loop_kl(const torch::Tensor& z, const torch::Tensor& gate, double t, bool student, bool t2) {
  const auto e = z.size(1);
  torch::Tensor loss = torch::zeros({}, z.options());
  for (std::int64_t i = 0; i < e; ++i)
    for (std::int64_t j = 0; j < e; ++j) {
      if (i == j) continue;
      torch::Tensor target;
      {
        torch::NoGradGuard ng;
        target = torch::softmax(z.select(1, j) / t, 1);
      }
      const auto log_probs = torch::log_softmax(z.select(1, i) / t, 1);
      const auto kl = F::kl_div(log_probs, target, F::KLDivFuncOptions().reduction(torch::kBatchMean));
      const auto w = student ? gate.select(1, i).mean() : gate.select(1, i).mean() * gate.select(1, j).mean();
      loss = loss + kl * w;
    }
  loss = loss / static_cast<double>(e * (e - 1));
  return t2 ? loss * (t * t) : loss;
}


}  // namespace

BOOST_AUTO_TEST_CASE(forward_shapes) {
  torch::manual_seed(1);
  auto m = make_model({{"num_experts", Value::integer(3)}, {"expert_hidden", ints({8, 8})}}, flat_spec(6, 4));
  auto out = m->forward(batch_of(torch::randn({5, 6}), torch::zeros({5}, torch::kLong)));
  BOOST_TEST((out.prediction.sizes() == torch::IntArrayRef{5, 4}));
  BOOST_TEST((out.kind == modlab::Output::Kind::Logits));
  BOOST_TEST((out.aux.at("gate").sizes() == torch::IntArrayRef{5, 3}));
  BOOST_TEST((out.aux.at("expert_logits").sizes() == torch::IntArrayRef{5, 3, 4}));
  BOOST_TEST((out.aux.at("gate").sum(1) - 1).abs().max().item<float>() < 1e-6f);
  // The prediction is the gated sum of expert logits.
  const auto want = (out.aux.at("gate").unsqueeze(2) * out.aux.at("expert_logits")).sum(1);
  BOOST_TEST((out.prediction - want).abs().max().item<float>() < 1e-5f);
  // Expert layers: in -> H -> H -> C, stacked over experts; the gate in -> 64 -> E.
  const auto p = params(*m);
  BOOST_TEST((p.at("experts.layer0.weight").sizes() == torch::IntArrayRef{3, 6, 8}));
  BOOST_TEST((p.at("experts.layer2.weight").sizes() == torch::IntArrayRef{3, 8, 4}));
  BOOST_TEST((p.at("gate.layer0.weight").sizes() == torch::IntArrayRef{64, 6}));
  BOOST_TEST((p.at("gate.layer1.weight").sizes() == torch::IntArrayRef{3, 64}));
  // Images with the CNN experts and gate of moe_parts.
  modlab::DatasetSpec img = flat_spec(0, 10);
  img.input_shape = {1, 12, 12};
  auto mc = make_model({{"num_experts", Value::integer(2)}, {"expert", Value::string("mnist_cnn")},
                        {"gate", Value::string("mnist_cnn")}}, img);
  auto oc = mc->forward(batch_of(torch::randn({3, 1, 12, 12}), torch::zeros({3}, torch::kLong)));
  BOOST_TEST((oc.prediction.sizes() == torch::IntArrayRef{3, 10}));
  BOOST_TEST((oc.aux.at("expert_logits").sizes() == torch::IntArrayRef{3, 2, 10}));
}

BOOST_AUTO_TEST_CASE(kd_two_experts_matches_hand_computation) {
  // B = 2, E = 2, C = 3; MSE(softmax(z1/T), softmax(z2/T)) · ḡ1 · ḡ2.
  const std::vector<std::vector<std::vector<double>>> z = {{{1, 0, -1}, {0.5, 0.5, 0}}, {{0, 2, 0}, {1, 0, 0}}};
  const std::vector<std::vector<double>> g = {{0.7, 0.3}, {0.4, 0.6}};
  for (double t : {1.0, 0.5}) {
    double se = 0;
    for (int b = 0; b < 2; ++b) {
      const auto p1 = softmax(z[b][0], t), p2 = softmax(z[b][1], t);
      for (int c = 0; c < 3; ++c) se += (p1[c] - p2[c]) * (p1[c] - p2[c]);
    }
    const double g1 = (0.7 + 0.4) / 2, g2 = (0.3 + 0.6) / 2;
    const double want = se / 6.0 * g1 * g2;
    const auto zt = torch::tensor({1., 0., -1., .5, .5, 0., 0., 2., 0., 1., 0., 0.}, torch::kDouble).reshape({2, 2, 3});
    const auto gt = torch::tensor({.7, .3, .4, .6}, torch::kDouble).reshape({2, 2});
    md::DistillOptions o;
    o.form = md::auto_form(2);
    o.temperature = t;
    BOOST_TEST((o.form == md::KdForm::Mse));
    const double got = md::distillation_loss(zt, gt, o).item<double>();
    BOOST_TEST(std::abs(got - want) < 1e-12, got << " vs " << want);
  }
}

BOOST_AUTO_TEST_CASE(kd_three_experts_matches_hand_computation) {
  // B = 2, E = 3, C = 2: (1/6) Σ_{i≠j} ḡ_i ḡ_j · (1/B) Σ_b KL(p_j ‖ p_i).
  const std::vector<std::vector<std::vector<double>>> z = {{{1, 0}, {0, 1}, {2, 2}}, {{0, 0}, {3, 0}, {0, -1}}};
  const std::vector<double> gbar = {(0.5 + 0.2) / 2, (0.3 + 0.5) / 2, (0.2 + 0.3) / 2};
  const double t = 2.0;
  double want = 0, want_readme = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      if (i == j) continue;
      double kl = 0;
      for (int b = 0; b < 2; ++b) {
        const auto pi = softmax(z[b][i], t), pj = softmax(z[b][j], t);
        for (int c = 0; c < 2; ++c) kl += pj[c] * std::log(pj[c] / pi[c]);
      }
      kl /= 2;
      want += gbar[i] * gbar[j] * kl;
      want_readme += gbar[i] * kl;
    }
  want /= 6;
  want_readme = want_readme / 6 * t * t;
  const auto zt = torch::tensor({1., 0., 0., 1., 2., 2., 0., 0., 3., 0., 0., -1.}, torch::kDouble).reshape({2, 3, 2});
  const auto gt = torch::tensor({.5, .3, .2, .2, .5, .3}, torch::kDouble).reshape({2, 3});
  md::DistillOptions o;
  o.form = md::auto_form(3);
  o.temperature = t;
  BOOST_TEST((o.form == md::KdForm::Kl));
  BOOST_TEST(std::abs(md::distillation_loss(zt, gt, o).item<double>() - want) < 1e-12);
  o.weight = md::PairWeight::Student;
  o.t_squared = true;
  BOOST_TEST(std::abs(md::distillation_loss(zt, gt, o).item<double>() - want_readme) < 1e-12);
}

BOOST_AUTO_TEST_CASE(kd_gate_gradient_off_leaves_the_gate_out_of_l_kd) {
  torch::manual_seed(11);
  const auto z = torch::randn({4, 3, 5}, torch::kDouble).requires_grad_();
  const auto g = torch::softmax(torch::randn({4, 3}, torch::kDouble), -1).requires_grad_();
  md::DistillOptions o;
  o.temperature = 0.5;
  const auto with = md::distillation_loss(z, g, o);
  const auto gw = torch::autograd::grad({with}, {z, g});
  o.gate_gradient = false;
  const auto without = md::distillation_loss(z, g, o);
  BOOST_TEST(std::abs(with.item<double>() - without.item<double>()) < 1e-15);  // same value
  const auto gz = torch::autograd::grad({without}, {z, g}, {}, false, false, /*allow_unused=*/true);
  BOOST_TEST(torch::allclose(gz[0], gw[0], 1e-12, 1e-12));  // same expert gradients
  BOOST_TEST(gw[1].abs().sum().item<double>() > 0.0);
  BOOST_TEST((!gz[1].defined() || gz[1].abs().sum().item<double>() == 0.0));  // none for the gate
}

BOOST_AUTO_TEST_CASE(vectorised_kl_equals_double_loop) {
  torch::manual_seed(5);
  for (double t : {0.02, 1.0, 2.0}) {
    for (bool readme : {false, true}) {
      BOOST_TEST_CONTEXT("T = " << t << ", readme variant " << readme) {
        const auto z0 = torch::randn({16, 5, 7}, torch::kDouble) * 3;
        const auto a0 = torch::randn({16, 5}, torch::kDouble);
        auto z1 = z0.clone().requires_grad_(), a1 = a0.clone().requires_grad_();
        auto z2 = z0.clone().requires_grad_(), a2 = a0.clone().requires_grad_();
        md::DistillOptions o;
        o.form = md::KdForm::Kl;
        o.temperature = t;
        o.weight = readme ? md::PairWeight::Student : md::PairWeight::Product;
        o.t_squared = readme;
        const auto fast = md::distillation_loss(z1, torch::softmax(a1, 1), o);
        const auto slow = loop_kl(z2, torch::softmax(a2, 1), t, readme, readme);
        fast.backward();
        slow.backward();
        const double scale = std::max(1.0, std::abs(slow.item<double>()));
        BOOST_TEST(std::abs(fast.item<double>() - slow.item<double>()) < 1e-6 * scale,
                   fast.item<double>() << " vs " << slow.item<double>());
        BOOST_TEST((z1.grad() - z2.grad()).abs().max().item<double>() < 1e-6);
        BOOST_TEST((a1.grad() - a2.grad()).abs().max().item<double>() < 1e-6);
      }
    }
  }
  // In single precision too (the training dtype), relative to the loop.
  const auto z = torch::randn({64, 8, 10}) * 2;
  const auto g = torch::softmax(torch::randn({64, 8}), 1);
  md::DistillOptions o;
  o.temperature = 0.5;
  const double fast = md::distillation_loss(z, g, o).item<double>();
  const double slow = loop_kl(z, g, 0.5, false, false).item<double>();
  BOOST_TEST(std::abs(fast - slow) < 1e-5 * std::max(1.0, std::abs(slow)));
}

BOOST_AUTO_TEST_CASE(alpha_zero_is_the_plain_moe) {
  // With α = 0 the loss and every gradient equal those of the plain gated-logit MoE
  // CE(Σ_e g_e z_e, y), computed here by hand from the model's own parameters.
  torch::manual_seed(6);
  const Value::Table cfg = {{"num_experts", Value::integer(3)},
                            {"expert_hidden", ints({6, 5})},
                            {"gate_hidden", ints({4})},
                            {"dropout", Value::floating(0.0)},
                            {"alpha", Value::floating(0.0)}};
  auto m = make_model(cfg, flat_spec(4, 3));
  m->train();
  const auto x = torch::randn({10, 4});
  const auto y = torch::randint(3, {10}, torch::kLong);
  const auto b = batch_of(x, y);
  const auto losses = m->loss(b, m->forward(b));
  BOOST_TEST(term(losses, "distill") == 0.0);
  modlab::total(losses).backward();

  std::map<std::string, torch::Tensor> ref;
  for (const auto& [name, p] : params(*m)) ref[name] = p.detach().clone().requires_grad_();
  std::vector<torch::Tensor> zs;
  for (std::int64_t e = 0; e < 3; ++e) {
    auto h = x;
    for (int l = 0; l < 3; ++l) {
      const std::string n = "experts.layer" + std::to_string(l);
      h = torch::matmul(h, ref.at(n + ".weight")[e]) + ref.at(n + ".bias")[e];
      if (l < 2) h = torch::relu(h);
    }
    zs.push_back(h);
  }
  auto a = torch::relu(F::linear(x, ref.at("gate.layer0.weight"), ref.at("gate.layer0.bias")));
  const auto g = torch::softmax(F::linear(a, ref.at("gate.layer1.weight"), ref.at("gate.layer1.bias")), 1);
  auto zmix = torch::zeros({10, 3});
  for (std::int64_t e = 0; e < 3; ++e) zmix = zmix + g.select(1, e).unsqueeze(1) * zs[e];
  const auto want = F::cross_entropy(zmix, y);
  want.backward();
  BOOST_TEST(std::abs(modlab::total(losses).item<double>() - want.item<double>()) < 1e-6);
  for (const auto& [name, p] : params(*m)) {
    BOOST_TEST_CONTEXT(name) {
      BOOST_REQUIRE(p.grad().defined());
      BOOST_TEST((p.grad() - ref.at(name).grad()).abs().max().item<float>() < 1e-6f);
    }
  }

  // And α > 0 adds a non-zero distillation term that changes the expert gradients.
  Value::Table cfg2 = cfg;
  cfg2["alpha"] = Value::floating(0.5);
  cfg2["temperature"] = Value::floating(1.0);
  auto m2 = make_model(cfg2, flat_spec(4, 3));
  {
    torch::NoGradGuard ng;
    for (const auto& [name, p] : params(*m2)) p.copy_(ref.at(name));
  }
  m2->train();
  const auto l2 = m2->loss(b, m2->forward(b));
  BOOST_TEST(std::abs(term(l2, "ce") - want.item<double>()) < 1e-6);
  BOOST_TEST(term(l2, "distill") > 0.0);
}

BOOST_AUTO_TEST_CASE(separate_forward_equals_shared_without_dropout) {
  torch::manual_seed(7);
  Value::Table cfg = {{"num_experts", Value::integer(4)}, {"expert_hidden", ints({5, 5})},
                      {"alpha", Value::floating(0.3)}, {"temperature", Value::floating(1.5)},
                      {"dropout", Value::floating(0.0)}};
  auto shared = make_model(cfg, flat_spec(3, 4));
  cfg["kd_outputs"] = Value::string("separate");
  auto separate = make_model(cfg, flat_spec(3, 4));
  {
    torch::NoGradGuard ng;
    auto ps = params(*shared);
    for (const auto& [name, p] : params(*separate)) p.copy_(ps.at(name));
  }
  const auto b = batch_of(torch::randn({9, 3}), torch::randint(4, {9}, torch::kLong));
  const auto ls = shared->loss(b, shared->forward(b));
  const auto lp = separate->loss(b, separate->forward(b));
  BOOST_TEST(std::abs(term(ls, "distill") - term(lp, "distill")) < 1e-6);
  BOOST_TEST(term(ls, "distill") > 0.0);
  // With dropout the separate forward draws new masks: the distillation term changes, CE does not.
  cfg["dropout"] = Value::floating(0.5);
  auto drop = make_model(cfg, flat_spec(3, 4));
  {
    torch::NoGradGuard ng;
    auto ps = params(*shared);
    for (const auto& [name, p] : params(*drop)) p.copy_(ps.at(name));
  }
  drop->train();
  torch::manual_seed(8);
  const auto out = drop->forward(b);
  const auto ld = drop->loss(b, out);
  const auto shared_kd = 0.3 * md::distillation_loss(out.aux.at("expert_logits"), out.aux.at("gate"),
                                                     md::DistillOptions{md::KdForm::Kl, md::PairWeight::Product, 1.5, false});
  BOOST_TEST(std::abs(term(ld, "distill") - shared_kd.item<double>()) > 1e-6);
  // Evaluation reports the plain cross-entropy only.
  drop->eval();
  const auto le = drop->loss(b, drop->forward(b));
  BOOST_REQUIRE_EQUAL(le.size(), 1u);
  BOOST_TEST(le[0].name == "ce");
}

BOOST_AUTO_TEST_CASE(sparse_top_k_reference_quirk_and_renormalized) {
  const auto g = torch::tensor({{0.5, 0.3, 0.2}, {0.1, 0.6, 0.3}}, torch::kDouble);
  const auto ref = md::combine_weights(g, 2, md::SparseForm::Reference);
  const auto ren = md::combine_weights(g, 2, md::SparseForm::Renormalized);
  const auto want_ref = torch::tensor({{0.5, 0.3, 0.0}, {0.0, 0.6, 0.3}}, torch::kDouble);
  const auto want_ren = torch::tensor({{0.625, 0.375, 0.0}, {0.0, 2.0 / 3, 1.0 / 3}}, torch::kDouble);
  BOOST_TEST((ref - want_ref).abs().max().item<double>() < 1e-12);
  BOOST_TEST((ren - want_ren).abs().max().item<double>() < 1e-12);
  BOOST_TEST(torch::equal(md::combine_weights(g, 0, md::SparseForm::Reference), g));
  BOOST_TEST(torch::equal(md::combine_weights(g, 3, md::SparseForm::Renormalized), g));
  // Fixed expert logits: only the selected experts contribute.
  const auto z = torch::tensor({{{1.0, 0.0}, {0.0, 2.0}, {5.0, 5.0}}, {{9.0, 9.0}, {1.0, 1.0}, {2.0, 0.0}}},
                               torch::kDouble);
  const auto zr = md::combine(ref, z), zn = md::combine(ren, z);
  BOOST_TEST(std::abs(zr[0][0].item<double>() - 0.5) < 1e-12);
  BOOST_TEST(std::abs(zr[0][1].item<double>() - 0.6) < 1e-12);
  BOOST_TEST(std::abs(zn[0][1].item<double>() - 0.75) < 1e-12);
  BOOST_TEST(std::abs(zr[1][0].item<double>() - 1.2) < 1e-12);
  BOOST_TEST(std::abs(zn[1][0].item<double>() - 4.0 / 3) < 1e-12);
  // Through the model: the prediction uses the weights of the chosen form.
  torch::manual_seed(9);
  for (const char* form : {"reference", "renormalized"}) {
    auto m = make_model({{"num_experts", Value::integer(4)}, {"top_k", Value::integer(2)},
                         {"sparse_form", Value::string(form)}}, flat_spec(3, 5));
    m->eval();
    const auto out = m->forward(batch_of(torch::randn({6, 3}), torch::zeros({6}, torch::kLong)));
    const auto w = out.aux.at("weights");
    BOOST_TEST(((w > 0).sum(1) == 2).all().item<bool>());
    const double row_sum = w.sum(1).mean().item<double>();
    if (std::string(form) == "renormalized") BOOST_TEST(std::abs(row_sum - 1.0) < 1e-6);
    else BOOST_TEST(row_sum < 1.0);
    const auto want = (w.unsqueeze(2) * out.aux.at("expert_logits")).sum(1);
    BOOST_TEST((out.prediction - want).abs().max().item<float>() < 1e-5f);
  }
}

BOOST_AUTO_TEST_CASE(expert_probing_on_a_hand_built_example) {
  // 5 examples, 2 experts, 3 classes. Gate argmax: 0, 0, 1, 1, 1.
  const auto gate = torch::tensor({{.9, .1}, {.6, .4}, {.2, .8}, {.3, .7}, {.4, .6}});
  // Expert 0 predicts classes 0, 1, 2, 0, 0; expert 1 predicts 1, 1, 2, 2, 2.
  const auto logits = torch::tensor({{{5.f, 0.f, 0.f}, {0.f, 5.f, 0.f}},
                                     {{0.f, 5.f, 0.f}, {0.f, 5.f, 0.f}},
                                     {{0.f, 0.f, 5.f}, {0.f, 0.f, 5.f}},
                                     {{5.f, 0.f, 0.f}, {0.f, 0.f, 5.f}},
                                     {{5.f, 0.f, 0.f}, {0.f, 0.f, 5.f}}});
  const auto y = torch::tensor({0, 2, 2, 0, 2}, torch::kLong);
  md::ExpertProbe probe(2);
  probe.add(gate.slice(0, 0, 2), logits.slice(0, 0, 2), y.slice(0, 0, 2));  // two batches
  probe.add(gate.slice(0, 2), logits.slice(0, 2), y.slice(0, 2));
  BOOST_TEST(probe.examples() == 5);
  // Expert 0: routed {0, 1}: correct 1 of 2; on all: correct on 0, 2, 3 → 3/5.
  // Expert 1: routed {2, 3, 4}: correct on 2, 4 → 2/3; on all: 2, 4 → 2/5.
  const auto routed = probe.routed_accuracy(), all = probe.accuracy();
  BOOST_TEST(std::abs(routed[0].item<double>() - 0.5) < 1e-12);
  BOOST_TEST(std::abs(routed[1].item<double>() - 2.0 / 3) < 1e-12);
  BOOST_TEST(std::abs(all[0].item<double>() - 0.6) < 1e-12);
  BOOST_TEST(std::abs(all[1].item<double>() - 0.4) < 1e-12);
  BOOST_TEST(probe.routed_count()[0].item<std::int64_t>() == 2);
  BOOST_TEST(probe.routed_count()[1].item<std::int64_t>() == 3);
  BOOST_TEST(std::abs(probe.hard_routing_accuracy() - 0.6) < 1e-12);
  // An expert nobody is routed to has no routed accuracy.
  md::ExpertProbe empty(3);
  empty.add(torch::cat({gate, torch::zeros({5, 1})}, 1), torch::cat({logits, torch::zeros({5, 1, 3})}, 1), y);
  BOOST_TEST(std::isnan(empty.routed_accuracy()[2].item<double>()));
  // All-zero logits predict class 0 (argmax of ties): right on the two examples of class 0.
  BOOST_TEST(std::abs(empty.accuracy()[2].item<double>() - 0.4) < 1e-12);
}

BOOST_AUTO_TEST_CASE(eval_hooks_record_probing_and_the_gate_heatmap) {
  torch::manual_seed(10);
  auto m = make_model({{"num_experts", Value::integer(3)}, {"expert_hidden", ints({4, 4})},
                       {"heatmap_samples", Value::integer(7)}}, flat_spec(2, 3));
  m->eval();
  torch::NoGradGuard ng;
  CaptureRecorder rec;
  modlab::MetricSet ms;
  const auto x = torch::randn({12, 2});
  const auto y = torch::randint(3, {12}, torch::kLong);
  md::ExpertProbe want(3);
  for (int epoch = 0; epoch < 2; ++epoch) {
    ms.clear();
    m->eval_begin("test");
    for (std::int64_t lo = 0; lo < 12; lo += 5) {  // batches of 5, 5, 2
      const auto idx = torch::arange(lo, std::min<std::int64_t>(lo + 5, 12), torch::kLong);
      const auto b = batch_of(x.index_select(0, idx), y.index_select(0, idx));
      const auto out = m->forward(b);
      if (epoch == 0) want.add(out.aux.at("gate"), out.aux.at("expert_logits"), b.targets);
      m->eval_batch("test", b, out, ms);
    }
    m->eval_end("test", ms, rec);
  }
  for (std::int64_t e = 0; e < 3; ++e) {
    const std::string p = "expert" + std::to_string(e);
    BOOST_TEST(ms.get(p + "_accuracy") == want.accuracy()[e].item<double>());
    BOOST_TEST(ms.get(p + "_count") == static_cast<double>(want.routed_count()[e].item<std::int64_t>()));
  }
  BOOST_TEST(ms.get("probe_hard_accuracy") == want.hard_routing_accuracy());
  BOOST_REQUIRE_EQUAL(rec.appended["test/gate_heatmap"].size(), 2u);
  BOOST_TEST((rec.appended["test/gate_heatmap"][0].sizes() == torch::IntArrayRef{7, 3}));
  BOOST_TEST((rec.appended["test/probe_routed_accuracy"][1].sizes() == torch::IntArrayRef{3}));
  m->record(rec);
  BOOST_TEST((rec.tensors.at("gate_heatmap") - m->forward(batch_of(x, y)).aux.at("gate").slice(0, 0, 7))
                 .abs().max().item<float>() < 1e-6f);
  BOOST_TEST(torch::equal(rec.tensors.at("gate_heatmap_targets"), y.slice(0, 0, 7)));
  BOOST_TEST(rec.tensors.count("probe_accuracy") == 1u);
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
  BOOST_TEST(error_of({{"alpha", Value::floating(-0.1)}}, spec).find("model.alpha") != std::string::npos);
  BOOST_TEST(error_of({{"temperature", Value::floating(0.0)}}, spec).find("model.temperature") != std::string::npos);
  BOOST_TEST(error_of({{"kd_form", Value::string("js")}}, spec).find("model.kd_form") != std::string::npos);
  BOOST_TEST(error_of({{"kd_outputs", Value::string("both")}}, spec).find("model.kd_outputs") != std::string::npos);
  BOOST_TEST(error_of({{"kd_pair_weight", Value::string("x")}}, spec).find("model.kd_pair_weight") != std::string::npos);
  BOOST_TEST(error_of({{"ce_weight", Value::string("half")}}, spec).find("model.ce_weight") != std::string::npos);
  BOOST_TEST(error_of({{"top_k", Value::integer(9)}}, spec).find("model.top_k") != std::string::npos);
  BOOST_TEST(error_of({{"sparse_form", Value::string("x")}}, spec).find("model.sparse_form") != std::string::npos);
  BOOST_TEST(error_of({{"dropout", Value::floating(1.0)}}, spec).find("model.dropout") != std::string::npos);
  BOOST_TEST(error_of({{"expert", Value::string("cnn")}}, spec).find("model.expert") != std::string::npos);
  BOOST_TEST(error_of({{"expert_hidden", ints({})}}, spec).find("model.expert_hidden") != std::string::npos);
  BOOST_TEST(error_of({{"heatmap_samples", Value::integer(-1)}}, spec).find("model.heatmap_samples") !=
             std::string::npos);
  BOOST_TEST(error_of({{"expert", Value::string("mnist_cnn")}}, spec).find("image") != std::string::npos);
  modlab::DatasetSpec multilabel = spec;
  multilabel.task = modlab::TaskKind::MultiLabel;
  multilabel.num_outputs = 2;
  BOOST_TEST(error_of({}, multilabel).find("classification") != std::string::npos);
}

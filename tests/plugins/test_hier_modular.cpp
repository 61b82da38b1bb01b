#define BOOST_TEST_MODULE hier_modular
#include <boost/test/unit_test.hpp>

// The plugin's header-only parts (true routing tables, recovery test, routing operations) are
// tested directly; the models through the registry, as the host builds them.
#include "../../plugins/datasets/toy/boolean_table.hpp"
#include "../../plugins/models/hier_modular/routing.hpp"
#include "../../plugins/models/hier_modular/routing_ops.hpp"
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
namespace hm = modlab::hier_modular;

using test_model::CaptureRecorder;
using test_model::host;
using test_model::make_model;
using test_model::params;

modlab::Config config(const Value::Table& table, const std::string& prefix) {
  return modlab::Config(std::make_shared<Value>(Value::table(table)), prefix);
}

std::shared_ptr<modlab::Dataset> boolean_data(const std::vector<std::int64_t>& structure, double train_fraction = 1.0,
                                              std::int64_t tasks = 1) {
  auto c = config({{"task", Value::string("boolean")},
                   {"structure", ints(structure)},
                   {"train_fraction", Value::floating(train_fraction)},
                   {"num_tasks", Value::integer(tasks)}},
                  "dataset");
  return modlab::runner::default_registry().dataset("toy").factory(c, host());
}



/// Full-batch Adam on `data` (the model's parameter groups, group lr where set); returns the
/// per-bit accuracy afterwards in eval mode.
double train_and_score(modlab::Model& m, const modlab::Batch& data, int steps, double lr) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const auto& g : m.param_groups("train"))
    if (!g.params.empty()) groups.emplace_back(g.params, std::make_unique<torch::optim::AdamOptions>(g.lr.value_or(lr)));
  torch::optim::Adam opt(groups, torch::optim::AdamOptions(lr));
  m.train();
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    auto out = m.forward(data);
    modlab::total(m.loss(data, out)).backward();
    opt.step();
  }
  m.eval();
  torch::NoGradGuard ng;
  return m.correct(data, m.forward(data)).mean().item<double>();
}

/// The true function of a routing evaluated with ideal modules: XOR in layer 0, AND in the
/// layers above, OR in the third hidden layer of [6,3,3,2,2] (hier_modular §5.1).
std::array<int, 2> ideal_outputs(const hm::Routing& r, int row) {
  std::vector<int> h(6);
  for (int i = 0; i < 6; ++i) h[static_cast<std::size_t>(i)] = modlab::toy::boolean_input_bit(row, i);
  for (std::size_t l = 0; l < r.layers.size(); ++l) {
    std::vector<int> next;
    for (const auto& in : r.layers[l]) {
      const int a = h[static_cast<std::size_t>(in[0])], b = h[static_cast<std::size_t>(in[1])];
      next.push_back(l == 0 ? (a ^ b) : l == 1 ? (a & b) : (a | b));
    }
    h = next;
  }
  return {h[static_cast<std::size_t>(r.output[0])], h[static_cast<std::size_t>(r.output[1])]};
}

const std::vector<std::vector<std::int64_t>> kStructures = {{6, 2, 2}, {6, 3, 2, 2}, {6, 3, 3, 2, 2}};

}  // namespace

// ------------------------------------------------------------------------------ routing tables

BOOST_AUTO_TEST_CASE(true_routing_tables_match_the_spec) {
  auto r = hm::true_routing({6, 3, 2, 2});
  BOOST_REQUIRE(r.has_value());
  BOOST_TEST((r->layers == std::vector<std::vector<hm::Indices>>{{{0, 1}, {2, 3}, {4, 5}}, {{0, 1}, {1, 2}}}));
  BOOST_TEST((r->output == hm::Indices{0, 1}));
  BOOST_TEST((r->locations == std::vector<hm::Indices>{{0, 0, 0}, {1, 1}}));
  auto r5 = hm::true_routing({6, 3, 3, 2, 2});
  BOOST_REQUIRE(r5.has_value());
  BOOST_TEST((r5->layers ==
              std::vector<std::vector<hm::Indices>>{{{0, 1}, {2, 3}, {4, 5}}, {{0, 1}, {1, 2}, {0, 2}}, {{0, 2}, {1, 2}}}));
  BOOST_TEST((r5->locations == std::vector<hm::Indices>{{0, 0, 0}, {1, 1, 1}, {2, 2}}));
  auto r3 = hm::true_routing({6, 2, 2});
  BOOST_REQUIRE(r3.has_value());
  BOOST_TEST((r3->layers == std::vector<std::vector<hm::Indices>>{{{0, 1}, {2, 3}}}));
  BOOST_TEST((r3->locations == std::vector<hm::Indices>{{0, 0}}));
  BOOST_TEST(!hm::true_routing({6, 2}).has_value());
  // Multi-task: task 1 rotates the layer-0 pairs.
  auto t1 = hm::true_routing({6, 3, 2, 2}, 1);
  BOOST_TEST((t1->layers[0] == std::vector<hm::Indices>{{2, 3}, {4, 5}, {0, 1}}));
}

BOOST_AUTO_TEST_CASE(true_routing_with_ideal_modules_computes_the_dataset_function) {
  for (const auto& s : kStructures)
    for (int task = 0; task < modlab::toy::kBooleanMaxTasks; ++task) {
      const auto r = hm::true_routing(s, task);
      BOOST_REQUIRE(r.has_value());
      for (int row = 0; row < 64; ++row) {
        const auto want = modlab::toy::boolean_outputs(s, row, task);
        const auto got = ideal_outputs(*r, row);
        BOOST_TEST((got == want), "structure " << modlab::toy::structure_text(s) << " task " << task << " row " << row);
      }
    }
}

BOOST_AUTO_TEST_CASE(known_selection_and_logits) {
  BOOST_TEST((hm::known_selection({2, 0}, 2, 3) == hm::Indices{2, 0}));
  BOOST_TEST((hm::known_selection({2, 0}, 3, 3) == hm::Indices{2, 0, 1}));
  BOOST_TEST(hm::known_selection({2, 0}, 4, 3).empty());
  BOOST_TEST(hm::known_selection({2, 0}, 1, 3).empty());
  BOOST_TEST(hm::known_logit(0, 2) == 1.1);
  BOOST_TEST(hm::known_logit(1, 2) == 1.0);
  BOOST_TEST(std::abs(hm::known_logit(2, 3) - 1.098) < 1e-12);
  BOOST_TEST((hm::parse_structure("6,3,2,2") == std::vector<std::int64_t>{6, 3, 2, 2}));
  BOOST_TEST(hm::parse_structure("6,x").empty());
  BOOST_TEST((hm::hidden_layers({6, 3, 3, 2, 2}) == std::vector<std::int64_t>{3, 3, 2}));
}

BOOST_AUTO_TEST_CASE(recovery_up_to_symmetries) {
  const std::vector<hm::Routing> truth = {*hm::true_routing({6, 3, 2, 2})};
  auto learned = truth;
  BOOST_TEST(hm::recovers(learned, truth));

  // 1. the order of a module's inputs does not matter
  learned[0].layers[0][1] = {3, 2};
  learned[0].layers[1][0] = {1, 0};
  BOOST_TEST(hm::recovers(learned, truth));

  // 2. permuting layer-0 modules (f3, f1, f2) with layer 1 reading the new positions
  learned = truth;
  learned[0].layers[0] = {{4, 5}, {0, 1}, {2, 3}};
  learned[0].layers[1] = {{1, 2}, {2, 0}};
  BOOST_TEST(hm::recovers(learned, truth));
  // ... but not without remapping layer 1
  learned[0].layers[1] = {{0, 1}, {1, 2}};
  BOOST_TEST(!hm::recovers(learned, truth));

  // permuting layer-1 modules with the output routing following
  learned = truth;
  learned[0].layers[1] = {{1, 2}, {0, 1}};
  learned[0].output = {1, 0};
  BOOST_TEST(hm::recovers(learned, truth));
  // the outputs themselves are ordered: g2 on output 0 is wrong
  learned[0].output = {0, 1};
  BOOST_TEST(!hm::recovers(learned, truth));
  BOOST_TEST(hm::recovers(learned, truth, hm::RecoveryCheck{true, false, true}));

  // wrong pairing of the raw inputs
  learned = truth;
  learned[0].layers[0] = {{0, 2}, {1, 3}, {4, 5}};
  BOOST_TEST(!hm::recovers(learned, truth));
  // a module reading the same inputs as another (f1 twice, f3 never)
  learned = truth;
  learned[0].layers[1] = {{0, 1}, {0, 1}};
  BOOST_TEST(!hm::recovers(learned, truth));
  // size mismatches are "not recovered", not errors
  learned = truth;
  learned[0].layers.pop_back();
  BOOST_TEST(!hm::recovers(learned, truth));

  // k = 3 inputs per module: the true inputs must be among the selected ones
  learned = truth;
  learned[0].layers[0] = {{1, 0, 5}, {2, 3, 0}, {4, 5, 1}};
  learned[0].layers[1] = {{0, 1, 2}, {2, 1, 0}};
  BOOST_TEST(hm::recovers(learned, truth));
  learned[0].layers[0][0] = {1, 2, 5};
  BOOST_TEST(!hm::recovers(learned, truth));
}

BOOST_AUTO_TEST_CASE(recovery_of_shared_module_locations) {
  const std::vector<hm::Routing> truth = {*hm::true_routing({6, 3, 2, 2})};
  auto learned = truth;
  // relabelling the pool (module 1 is the XOR, module 0 the AND) changes nothing
  learned[0].locations = {{1, 1, 1}, {0, 0}};
  BOOST_TEST(hm::recovers(learned, truth));
  // one XOR slot filled by the AND module
  learned[0].locations = {{1, 0, 1}, {0, 0}};
  BOOST_TEST(!hm::recovers(learned, truth));
  BOOST_TEST(!hm::recovers(learned, truth, hm::RecoveryCheck{false, false, true}));
  BOOST_TEST(hm::recovers(learned, truth, hm::RecoveryCheck{true, true, false}));
  // the same module in both layers
  learned[0].locations = {{0, 0, 0}, {0, 0}};
  BOOST_TEST(!hm::recovers(learned, truth, hm::RecoveryCheck{false, false, true}));
  // multi-task: one permutation for all tasks
  const std::vector<hm::Routing> truth2 = {*hm::true_routing({6, 3, 2, 2}, 0), *hm::true_routing({6, 3, 2, 2}, 1)};
  auto l2 = truth2;
  BOOST_TEST(hm::recovers(l2, truth2));
  l2[1].layers[1] = {{1, 2}, {0, 1}};  // task 1's layer 1 swapped without its output following
  BOOST_TEST(!hm::recovers(l2, truth2));
}

// ------------------------------------------------------------------------- routing operations

BOOST_AUTO_TEST_CASE(straight_through_selectors_match_the_soft_path_gradient) {
  torch::manual_seed(3);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const std::int64_t B = 5, I = 6, M = 3, k = 2;
  // one routing per batch, per sample, per task (T = 2, shared by the task's samples), per sample and task
  for (const auto& [per_sample, T] : std::vector<std::pair<bool, std::int64_t>>{{false, 1}, {true, 1}, {false, 2}, {true, 2}})
    for (double tau : {1.0, 2.0}) {
      const auto x = torch::randn({B, I}, opts).requires_grad_(true);
      const auto task = torch::tensor({0, 1, 1, 0, 1}, torch::kLong).remainder(T);
      auto logits = torch::randn({T, M, I}, opts).requires_grad_(true);
      const auto w = torch::randn({B, M * k}, opts);
      hm::RouteMode mode{k, tau, false, per_sample};
      const auto r = hm::route(x, logits, task, mode);
      // forward: exactly the selected inputs, in rank order
      BOOST_TEST((r.inputs.sizes() == torch::IntArrayRef{B, M * k}));
      const auto top = std::get<1>(logits.detach().topk(k, -1));
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t j = 0; j < k; ++j) {
            const auto t = task[b].item<std::int64_t>();
            BOOST_TEST(r.inputs[b][m * k + j].item<double>() == x[b][top[t][m][j].item<std::int64_t>()].item<double>());
          }
      (r.inputs * w).sum().backward();
      const auto grad = logits.grad().clone();
      // The straight-through gradient is that of the soft path:
      //   F(R) = Σ_b Σ_m (Σ_j w[b, m·k + j]) ⟨x_b, σ(R[t(b), m] / τ)⟩.
      const auto xd = x.detach();
      auto soft = [&](const torch::Tensor& R) {
        const auto s = torch::sigmoid(R / tau);  // [T, M, I]
        double f = 0;
        for (std::int64_t b = 0; b < B; ++b) {
          const auto t = task[b].item<std::int64_t>();
          for (std::int64_t m = 0; m < M; ++m)
            f += (w[b].slice(0, m * k, m * k + k).sum() * (xd[b] * s[t][m]).sum()).item<double>();
        }
        return f;
      };
      const double h = 1e-6;
      torch::NoGradGuard ng;
      auto R = logits.detach().clone();
      double worst = 0;
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t i = 0; i < I; ++i) {
            auto p = R.clone(), q = R.clone();
            p[t][m][i] += h;
            q[t][m][i] -= h;
            const double fd = (soft(p) - soft(q)) / (2 * h);
            worst = std::max(worst, std::abs(fd - grad[t][m][i].item<double>()));
          }
      BOOST_TEST(worst < 1e-7, "per_sample " << per_sample << " T " << T << " tau " << tau
                                             << ": max |fd - autograd| = " << worst);
      BOOST_TEST(grad.abs().sum().item<double>() > 0);
      // and the gradient to the inputs is that of the hard selection (F is linear in x)
      double worst_x = 0;
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < I; ++i) {
          auto p = xd.clone(), q = xd.clone();
          p[b][i] += h;
          q[b][i] -= h;
          const double fd = ((hm::route(p, R, task, mode).inputs - hm::route(q, R, task, mode).inputs) * w).sum().item<double>() / (2 * h);
          worst_x = std::max(worst_x, std::abs(fd - x.grad()[b][i].item<double>()));
        }
      BOOST_TEST(worst_x < 1e-7, "input gradient: max |fd - autograd| = " << worst_x);
    }
}

BOOST_AUTO_TEST_CASE(block_diagonal_banks_equal_the_stacked_evaluation) {
  torch::manual_seed(11);
  const std::int64_t E = 3, R = 7;
  for (const auto& arch : std::vector<std::vector<std::int64_t>>{{2, 12, 1}, {3, 5, 4, 1}}) {
    hm::ModuleBank bank(E, arch);
    const std::int64_t in = arch.front();
    const auto x = torch::randn({R, E * in});
    const auto stacked = bank->forward(x.view({R, E, in}).permute({1, 0, 2})).squeeze(-1).t();  // [R, E]
    BOOST_TEST(torch::allclose(bank->forward_blocks(x), stacked, 1e-5, 1e-6));
    const auto xs = torch::randn({R, in});
    const auto all = bank->forward(xs.unsqueeze(0).expand({E, R, in})).squeeze(-1).t();
    BOOST_TEST(torch::allclose(bank->forward_shared(xs), all, 1e-5, 1e-6));
    // gradients agree too
    auto sum_grads = [&](bool blocks) {
      bank->zero_grad();
      (blocks ? bank->forward_blocks(x) : bank->forward(x.view({R, E, in}).permute({1, 0, 2})).squeeze(-1).t()).pow(2).sum().backward();
      return bank->layers().front()->weight.grad().clone();
    };
    BOOST_TEST(torch::allclose(sum_grads(true), sum_grads(false), 1e-5, 1e-6));
  }
}

BOOST_AUTO_TEST_CASE(noise_is_per_sample_or_per_batch) {
  torch::manual_seed(4);
  const std::int64_t B = 64, I = 6, M = 3;
  const auto x = torch::randn({B, I});
  const auto task = torch::zeros({B}, torch::kLong);
  const auto logits = torch::zeros({1, M, I}).requires_grad_(true);
  const auto batch = hm::route(x, logits, task, hm::RouteMode{2, 1.0, true, false});
  BOOST_TEST((batch.indices.sizes() == torch::IntArrayRef{1, M, 2}));
  const auto sample = hm::route(x, logits, task, hm::RouteMode{2, 1.0, true, true});
  BOOST_TEST((sample.indices.sizes() == torch::IntArrayRef{B, M, 2}));
  // equal logits: only the noise decides, and it differs between samples
  BOOST_TEST(!torch::equal(sample.indices, sample.indices[0].unsqueeze(0).expand_as(sample.indices)));
  // without noise every sample of one task routes alike
  const auto clean = hm::route(x, torch::randn({1, M, I}), task, hm::RouteMode{2, 1.0, false, true});
  BOOST_TEST(torch::equal(clean.indices, clean.indices[0].unsqueeze(0).expand_as(clean.indices)));
  // locations: [N, slots, S] one-hots
  const auto loc = torch::randn({1, 3, 2}).requires_grad_(true);
  const auto wb = hm::locations(loc, task, B, 1.0, true, false);
  const auto ws = hm::locations(loc, task, B, 1.0, true, true);
  BOOST_TEST((wb.sizes() == torch::IntArrayRef{1, 3, 2}));
  BOOST_TEST((ws.sizes() == torch::IntArrayRef{B, 3, 2}));
  BOOST_TEST(torch::allclose(ws.sum(-1), torch::ones({B, 3})));
}

// -------------------------------------------------------------------------------------- models

BOOST_AUTO_TEST_CASE(forward_shapes_of_all_models) {
  torch::manual_seed(5);
  auto data = boolean_data({6, 3, 2, 2}, 0.8);
  const auto spec = data->spec();
  const auto b = data->split("train")->all();
  const std::int64_t B = b.size();
  for (const char* name : {"mlp", "hierarchically_modular", "hierarchically_modular_shared_modules"}) {
    auto m = make_model(name, {}, spec);
    m->train();
    auto out = m->forward(b);
    BOOST_TEST((out.prediction.sizes() == torch::IntArrayRef{B, 2}), name);
    BOOST_TEST((out.kind == modlab::Output::Kind::Logits));
    BOOST_TEST(std::isfinite(modlab::total(m->loss(b, out)).item<double>()));
    BOOST_TEST((m->correct(b, out).sizes() == torch::IntArrayRef{B, 2}));
  }
  // modular: routing indices per layer, per batch by default, per sample with per_sample_routing
  for (bool per_sample : {false, true}) {
    auto m = make_model("hierarchically_modular_shared_modules",
                        {{"use_gumbel", Value::boolean(true)}, {"per_sample_routing", Value::boolean(per_sample)}}, spec);
    m->train();
    auto out = m->forward(b);
    const std::int64_t N = per_sample ? B : 1;
    BOOST_TEST((out.aux.at("routing.layer0").sizes() == torch::IntArrayRef{N, 3, 2}));
    BOOST_TEST((out.aux.at("routing.layer1").sizes() == torch::IntArrayRef{N, 2, 2}));
    BOOST_TEST((out.aux.at("routing.output").sizes() == torch::IntArrayRef{N, 1, 2}));
    BOOST_TEST((out.aux.at("locations.layer0").sizes() == torch::IntArrayRef{N, 3, 2}));
    BOOST_TEST((out.aux.at("locations.layer1").sizes() == torch::IntArrayRef{N, 2, 2}));
    m->eval();
    torch::NoGradGuard ng;
    auto ev = m->forward(b);  // eval: no noise, one routing per task
    BOOST_TEST((ev.aux.at("routing.layer0").sizes() == torch::IntArrayRef{1, 3, 2}));
  }
  // multi-task: logits per task, indexed by the task id of each sample
  auto data3 = boolean_data({6, 3, 2, 2}, 0.8, 3);
  const auto b3 = data3->split("train")->all();
  for (const char* name : {"mlp", "hierarchically_modular", "hierarchically_modular_shared_modules"}) {
    auto m = make_model(name, {}, data3->spec());
    auto out = m->forward(b3);
    BOOST_TEST((out.prediction.sizes() == torch::IntArrayRef{b3.size(), 2}), name);
  }
  auto m3 = make_model("hierarchically_modular", {}, data3->spec());
  BOOST_TEST((params(*m3).at("routing_logits0").sizes() == torch::IntArrayRef{3, 3, 6}));
  BOOST_TEST((params(*m3).at("output_logits").sizes() == torch::IntArrayRef{3, 1, 2}));
}

BOOST_AUTO_TEST_CASE(modules_of_a_layer_are_one_batched_bank) {
  auto data = boolean_data({6, 3, 3, 2, 2});
  auto m = make_model("hierarchically_modular", {{"module_arch", ints({2, 12, 1})}}, data->spec());
  auto p = params(*m);
  BOOST_TEST((p.at("modules0.fc0.weight").sizes() == torch::IntArrayRef{3, 2, 12}));
  BOOST_TEST((p.at("modules0.fc1.weight").sizes() == torch::IntArrayRef{3, 12, 1}));
  BOOST_TEST((p.at("modules2.fc0.weight").sizes() == torch::IntArrayRef{2, 2, 12}));
  BOOST_TEST((p.at("routing_logits1").sizes() == torch::IntArrayRef{1, 3, 3}));
  auto s = make_model("hierarchically_modular_shared_modules", {}, data->spec());
  auto ps = params(*s);
  BOOST_TEST((ps.at("modules.fc0.weight").sizes() == torch::IntArrayRef{3, 2, 12}));  // one per hidden layer
  BOOST_TEST((ps.at("location_logits2").sizes() == torch::IntArrayRef{1, 2, 3}));
}

BOOST_AUTO_TEST_CASE(known_routing_reproduces_the_function) {
  for (const auto& structure : kStructures) {
    torch::manual_seed(6);
    auto data = boolean_data(structure);
    const auto all = data->split("train")->all();
    BOOST_REQUIRE_EQUAL(all.size(), 64);
    auto m = make_model("hierarchically_modular", {{"known_module_inputs", Value::boolean(true)}}, data->spec());
    const double acc = train_and_score(*m, all, 600, 0.02);
    BOOST_TEST(acc == 1.0, "structure " << modlab::toy::structure_text(structure) << ": accuracy " << acc);
    modlab::MetricSet ms;
    CaptureRecorder rec;
    m->eval_end("test", ms, rec);
    BOOST_TEST(ms.get("routing_correct") == 1.0);
  }
}

BOOST_AUTO_TEST_CASE(shared_modules_with_known_locations) {
  torch::manual_seed(7);
  auto data = boolean_data({6, 3, 2, 2});
  const auto all = data->split("train")->all();
  auto m = make_model("hierarchically_modular_shared_modules",
                      {{"known_module_inputs", Value::boolean(true)}, {"known_module_locations", Value::boolean(true)}},
                      data->spec());
  // the chosen module of every slot is the table's, also in training mode (known: no noise)
  m->train();
  auto out = m->forward(all);
  BOOST_TEST(torch::equal(out.aux.at("locations.layer0").argmax(-1), torch::tensor({{0, 0, 0}}, torch::kLong)));
  BOOST_TEST(torch::equal(out.aux.at("locations.layer1").argmax(-1), torch::tensor({{1, 1}}, torch::kLong)));
  CaptureRecorder rec;
  m->record(rec);
  BOOST_TEST(torch::equal(rec.tensors.at("locations.layer0"), torch::tensor({{0, 0, 0}}, torch::kLong)));
  BOOST_TEST(torch::equal(rec.tensors.at("locations.layer1"), torch::tensor({{1, 1}}, torch::kLong)));
  BOOST_TEST(rec.tensors.at("locations.correct").item<std::int64_t>() == 1);
  // only the shared modules train
  for (const auto& g : m->param_groups("train")) BOOST_TEST((g.name == "modules") == !g.params.empty(), g.name);
  const double acc = train_and_score(*m, all, 600, 0.02);
  BOOST_TEST(acc == 1.0);

  // learned locations: a group with its own lr, and the recorded choice is the argmax of the logits
  auto l = make_model("hierarchically_modular_shared_modules", {{"lr_module_location", Value::floating(0.1)}}, data->spec());
  bool found = false;
  for (const auto& g : l->param_groups("train"))
    if (g.name == "locations") {
      found = true;
      BOOST_TEST(g.params.size() == 2u);
      BOOST_TEST(g.lr.value_or(0.0) == 0.1);
    }
  BOOST_TEST(found);
  CaptureRecorder rl;
  l->record(rl);
  BOOST_TEST(torch::equal(rl.tensors.at("locations.layer0"), params(*l).at("location_logits0").argmax(-1)));
}

BOOST_AUTO_TEST_CASE(recorded_routing_and_recovery_metric) {
  torch::manual_seed(8);
  auto data = boolean_data({6, 3, 2, 2}, 0.5);
  auto m = make_model("hierarchically_modular", {{"routing_init", Value::string("known")}}, data->spec());
  CaptureRecorder rec;
  m->record(rec);
  BOOST_TEST(torch::equal(rec.tensors.at("routing.layer0"), torch::tensor({{{0, 1}, {2, 3}, {4, 5}}}, torch::kLong)));
  BOOST_TEST(torch::equal(rec.tensors.at("routing.layer1"), torch::tensor({{{0, 1}, {1, 2}}}, torch::kLong)));
  BOOST_TEST(torch::equal(rec.tensors.at("routing.output"), torch::tensor({{0, 1}}, torch::kLong)));
  BOOST_TEST(torch::equal(rec.tensors.at("routing.true.layer1"), rec.tensors.at("routing.layer1")));
  BOOST_TEST(rec.tensors.at("routing.correct").item<std::int64_t>() == 1);
  // learned (known init) logits are in the routing group with lr_module_input
  auto g = make_model("hierarchically_modular", {{"lr_module_input", Value::floating(0.1)}}, data->spec());
  for (const auto& pg : g->param_groups("train"))
    if (pg.name == "routing") {
      BOOST_TEST(pg.params.size() == 3u);  // two layers + output routing
      BOOST_TEST(pg.lr.value_or(0.0) == 0.1);
    }
  // permute layer 0 consistently by hand: still recovered; break the output order: not
  auto p = params(*m);
  {
    torch::NoGradGuard ng;
    auto r0 = p.at("routing_logits0");
    r0.copy_(r0.index_select(1, torch::tensor({2, 0, 1}, torch::kLong)));  // modules (f3, f1, f2)
    auto r1 = p.at("routing_logits1");
    r1.copy_(r1.index_select(2, torch::tensor({2, 0, 1}, torch::kLong)));  // read f1 at 1, f2 at 2, f3 at 0
  }
  modlab::MetricSet ms;
  m->eval_end("test", ms, rec);
  BOOST_TEST(ms.get("routing_correct") == 1.0);
  {
    torch::NoGradGuard ng;
    auto o = p.at("output_logits");
    o.copy_(o.flip(2));
  }
  m->eval_end("test", ms, rec);
  BOOST_TEST(ms.get("routing_correct") == 0.0);
}

BOOST_AUTO_TEST_CASE(pruning_removes_one_global_percentile_of_all_weights) {
  auto data = boolean_data({6, 3, 2, 2}, 0.8);
  const auto b = data->split("train")->all();
  for (double q : {0.0, 12.5, 50.0, 90.0, 100.0}) {
    torch::manual_seed(9);
    auto m = make_model("mlp", {{"pruning_ratio", Value::floating(q)}}, data->spec());
    std::vector<std::int64_t> layer_zeros;
    auto check = [&](const std::string& when) {
      std::int64_t zeros = 0, n = 0;
      layer_zeros.clear();
      for (int i = 0; i < 4; ++i) {
        const auto w = params(*m).at("fc" + std::to_string(i) + ".weight");
        const auto bias = params(*m).at("fc" + std::to_string(i) + ".bias");
        layer_zeros.push_back((w == 0).sum().item<std::int64_t>());
        zeros += layer_zeros.back();
        n += w.numel();
        const auto dead_rows = (w != 0).sum(1) == 0;
        BOOST_TEST(torch::equal(bias.masked_select(dead_rows), torch::zeros({dead_rows.sum().item<std::int64_t>()})));
      }
      // 6·36 + 36·36 + 36·36 + 36·2 = 2880 weights; one threshold over all of them
      BOOST_TEST(n == 2880);
      BOOST_TEST(zeros == std::llround(q / 100.0 * static_cast<double>(n)), when << " q " << q);
    };
    check("at init");
    if (q == 50.0) {  // one global cut, not a count per layer: the layers' shares differ
      const std::vector<std::int64_t> per_layer = {108, 648, 648, 36};
      BOOST_TEST(layer_zeros != per_layer);
    }
    train_and_score(*m, b, 20, 0.1);  // pruned weights stay pruned under Adam with its updates
    check("after training");
    CaptureRecorder rec;
    m->record(rec);
    BOOST_TEST(rec.tensors.count("pruning.mask0") == (q > 0 ? 1u : 0u));
  }
}

BOOST_AUTO_TEST_CASE(location_noise_and_temperature_follow_the_routing_as_the_reference) {
  auto data = boolean_data({6, 3, 2, 2});
  const auto all = data->split("train")->all();
  // The chosen module of each slot in training forwards: with noise it changes between calls.
  auto choices_vary = [&](const Value::Table& keys) {
    torch::manual_seed(3);
    auto m = make_model("hierarchically_modular_shared_modules", keys, data->spec());
    m->train();
    const auto first = m->forward(all).aux.at("locations.layer0").argmax(-1);
    for (int i = 0; i < 20; ++i)
      if (!torch::equal(m->forward(all).aux.at("locations.layer0").argmax(-1), first)) return true;
    return false;
  };
  BOOST_TEST(!choices_vary({}));  // no use_gumbel: no location noise (straight-through argmax)
  BOOST_TEST(choices_vary({{"use_gumbel", Value::boolean(true)}}));
  BOOST_TEST(choices_vary({{"location_noise", Value::boolean(true)}}));
  // location_tau 0 (the default) takes the routing tau: the location gradients equal those of an
  // explicit location_tau = tau, and differ from location_tau = 1.
  auto location_grad = [&](const Value::Table& keys) {
    torch::manual_seed(4);
    auto m = make_model("hierarchically_modular_shared_modules", keys, data->spec());
    m->to(torch::kDouble);
    m->train();
    modlab::total(m->loss(all, m->forward(all))).backward();
    return params(*m).at("location_logits0").grad().clone();
  };
  const auto follows = location_grad({{"tau", Value::floating(2.0)}});
  BOOST_TEST(torch::allclose(follows, location_grad({{"tau", Value::floating(2.0)}, {"location_tau", Value::floating(2.0)}})));
  BOOST_TEST(!torch::allclose(follows, location_grad({{"tau", Value::floating(2.0)}, {"location_tau", Value::floating(1.0)}})));
}

BOOST_AUTO_TEST_CASE(zeros_baseline_is_the_share_of_zero_target_bits) {
  auto data = boolean_data({6, 3, 2, 2}, 0.3);
  for (const std::string split : {"train", "test"}) {
    const auto b = data->split(split)->all();
    const double expected = (b.targets == 0).to(torch::kDouble).mean().item<double>();
    for (const std::string model : {"mlp", "hierarchically_modular", "hierarchically_modular_shared_modules"}) {
      auto m = make_model(model, {}, data->spec());
      m->eval();
      torch::NoGradGuard ng;
      modlab::MetricSet ms;
      m->eval_begin(split);
      // two batches: the metric is the mean over all bits, weighted by batch size
      const auto n = b.inputs.size(0), half = n / 2;
      for (auto [from, count] : {std::pair<std::int64_t, std::int64_t>{0, half}, {half, n - half}}) {
        const auto part = b.select(torch::arange(from, from + count));
        m->eval_batch(split, part, m->forward(part), ms);
      }
      BOOST_TEST(ms.get("zeros_accuracy") == expected, boost::test_tools::tolerance(1e-12));
      BOOST_TEST(expected > 0.5);  // the Boolean targets are mostly 0 (hier_modular §5.1)
    }
  }
}

BOOST_AUTO_TEST_CASE(gradients_reach_routing_logits_in_the_model) {
  torch::manual_seed(10);
  auto data = boolean_data({6, 3, 2, 2}, 0.8);
  const auto b = data->split("train")->all();
  for (bool gumbel : {false, true}) {
    auto m = make_model("hierarchically_modular_shared_modules",
                        {{"use_gumbel", Value::boolean(gumbel)}, {"per_sample_routing", Value::boolean(gumbel)},
                         {"tau", Value::floating(2.0)}},
                        data->spec());
    m->to(torch::kDouble);
    m->train();
    modlab::total(m->loss(b, m->forward(b))).backward();
    for (const auto& [name, p] : params(*m)) {
      BOOST_REQUIRE_MESSAGE(p.grad().defined(), name << " got no gradient");
      BOOST_TEST(std::isfinite(p.grad().abs().sum().item<double>()), name);
      // an unchosen shared module gets no gradient (its one-hot weight is 0); every logit does
      if (name.find("logits") != std::string::npos) BOOST_TEST(p.grad().abs().sum().item<double>() > 0, name);
    }
  }
}

BOOST_AUTO_TEST_CASE(config_errors_name_the_key) {
  auto data = boolean_data({6, 3, 2, 2}, 0.8);
  auto expect = [&](const char* model, const Value::Table& t, const std::string& key) {
    try {
      make_model(model, t, data->spec());
      BOOST_ERROR("no error for " << key);
    } catch (const modlab::ConfigError& e) {
      BOOST_TEST(std::string(e.what()).find(key) != std::string::npos, e.what());
    }
  };
  expect("hierarchically_modular", {{"num_modules", ints({4, 2})}, {"known_module_inputs", Value::boolean(true)}},
         "known_module_inputs");
  expect("hierarchically_modular", {{"module_arch", ints({3, 12, 1})}}, "module_arch");
  expect("hierarchically_modular", {{"topk", Value::integer(4)}, {"module_arch", ints({4, 12, 1})}}, "topk");
  expect("hierarchically_modular", {{"routing_init", Value::string("zeros")}}, "routing_init");
  expect("mlp", {{"arch", ints({5, 36, 2})}}, "arch");
  expect("mlp", {{"pruning_ratio", Value::floating(120.0)}}, "pruning_ratio");
  expect("hierarchically_modular_shared_modules",
         {{"num_shared_modules", Value::integer(1)}, {"known_module_locations", Value::boolean(true)}},
         "known_module_locations");
}

// ------------------------------------------------------------------ image modules (§5.2)

namespace {

/// What rotated_mnist's digit_pairs mode declares: two flattened images, 3 bits each, [6,3,2,2].
modlab::DatasetSpec pair_spec(std::int64_t pixels = 784) {
  modlab::DatasetSpec s;
  s.name = "test/digit_pairs";
  s.input_shape = {2, pixels};
  s.task = modlab::TaskKind::MultiLabel;
  s.num_outputs = 2;
  s.splits = {"train"};
  s.info = {{"structure", "6,3,2,2"}, {"images", "2"}, {"image_bits", "3"}};
  return s;
}

/// Synthetic digit pairs: digit d is a fixed random prototype image plus a little noise; the
/// label is the §5.2 function of the two digits' bits. All 64 pairs, `per_pair` samples each.
modlab::Batch synthetic_pairs(std::int64_t pixels, std::int64_t per_pair) {
  auto gen = at::detail::createCPUGenerator(7);
  const auto protos = torch::rand({8, pixels}, gen);
  std::vector<torch::Tensor> x;
  std::vector<float> y;
  for (int d1 = 0; d1 < 8; ++d1)
    for (int d2 = 0; d2 < 8; ++d2)
      for (std::int64_t s = 0; s < per_pair; ++s) {
        x.push_back(torch::stack({protos[d1], protos[d2]}) + 0.05 * torch::randn({2, pixels}, gen));
        const int f2 = ((d1 >> 2) ^ (d2 >> 2)) & 1, f1 = ((d1 >> 1) ^ (d2 >> 1)) & 1, f0 = (d1 ^ d2) & 1;
        y.push_back(static_cast<float>(f2 & f1));
        y.push_back(static_cast<float>(f1 & f0));
      }
  modlab::Batch b;
  b.inputs = torch::stack(x);
  b.targets = torch::tensor(y).view({-1, 2});
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(image_modules_shapes_truth_and_gradients) {
  const auto spec = pair_spec();
  const auto data = synthetic_pairs(784, 1);  // 64 samples
  for (bool shared : {false, true}) {
    const std::string name = shared ? "hierarchically_modular_shared_modules" : "hierarchically_modular";
    auto m = make_model(name, {{"tau", Value::floating(2.0)}}, spec);
    auto ps = params(*m);
    // image modules 784 → 128 → 64 → 3 (§5.2), one per image, stacked
    BOOST_REQUIRE(ps.count("image_modules.fc0.weight"));
    BOOST_TEST(ps.at("image_modules.fc0.weight").sizes() == (std::vector<std::int64_t>{2, 784, 128}), boost::test_tools::per_element());
    BOOST_TEST(ps.at("image_modules.fc1.weight").sizes() == (std::vector<std::int64_t>{2, 128, 64}), boost::test_tools::per_element());
    BOOST_TEST(ps.at("image_modules.fc2.weight").sizes() == (std::vector<std::int64_t>{2, 64, 3}), boost::test_tools::per_element());
    BOOST_TEST(ps.at("image_logits").sizes() == (std::vector<std::int64_t>{1, 2, 2}), boost::test_tools::per_element());
    BOOST_TEST(ps.at("routing_logits0").sizes() == (std::vector<std::int64_t>{1, 3, 6}), boost::test_tools::per_element());

    m->train();
    auto out = m->forward(data);
    BOOST_TEST(out.prediction.sizes() == (std::vector<std::int64_t>{64, 2}), boost::test_tools::per_element());
    BOOST_TEST(out.aux.at("images.selection").sizes() == (std::vector<std::int64_t>{1, 2, 2}), boost::test_tools::per_element());
    // the selection is one-hot in value
    BOOST_TEST(torch::equal(out.aux.at("images.selection").sum(-1), torch::ones({1, 2})));
    modlab::total(m->loss(data, out)).backward();
    for (const auto& [pname, p] : ps) {
      if (pname.rfind("location_logits", 0) == 0) continue;  // shared: an unchosen module may get none
      BOOST_REQUIRE_MESSAGE(p.grad().defined(), name << ": " << pname << " got no gradient");
      BOOST_TEST(std::isfinite(p.grad().abs().sum().item<double>()), pname);
    }
    for (const char* pname : {"image_logits", "routing_logits0", "routing_logits1", "output_logits",
                              "image_modules.fc0.weight", "image_modules.fc2.weight"})
      BOOST_TEST(ps.at(pname).grad().abs().sum().item<double>() > 0, name << ": " << pname);

    // groups: image modules train with the modules, the image selection with the routing
    bool in_modules = false, in_routing = false;
    for (const auto& g : m->param_groups("train"))
      for (const auto& p : g.params) {
        if (p.is_same(ps.at("image_modules.fc0.weight"))) in_modules = g.name == "modules";
        if (p.is_same(ps.at("image_logits"))) in_routing = g.name == "routing";
      }
    BOOST_TEST(in_modules);
    BOOST_TEST(in_routing);
  }

  // The true routing reads bit k of both images: [[0,3],[1,4],[2,5]] (§5.2); known selection and
  // known routing are recovered, with every image read by one module.
  auto known = make_model("hierarchically_modular",
                          {{"known_module_inputs", Value::boolean(true)}, {"known_image_inputs", Value::boolean(true)}},
                          spec);
  BOOST_TEST(!params(*known).at("image_logits").requires_grad());
  CaptureRecorder rec;
  known->eval();
  known->record(rec);
  BOOST_TEST(torch::equal(rec.tensors.at("routing.true.layer0"),
                          torch::tensor({0, 3, 1, 4, 2, 5}, torch::kLong).view({1, 3, 2})));
  BOOST_TEST(torch::equal(rec.tensors.at("routing.layer0"), rec.tensors.at("routing.true.layer0")));
  BOOST_TEST(torch::equal(rec.tensors.at("images.selection"), torch::tensor({0, 1}, torch::kLong).view({1, 2})));
  BOOST_TEST(rec.tensors.at("routing.correct").item<std::int64_t>() == 1);
  BOOST_TEST(rec.tensors.at("images.correct").item<std::int64_t>() == 1);
  modlab::MetricSet ms;
  known->eval_end("test", ms, rec);
  BOOST_TEST(ms.get("routing_correct") == 1.0);
  BOOST_TEST(ms.get("images_correct") == 1.0);

  // Image keys on a dataset without images, and a bad image_arch, are configuration errors.
  auto boolean = boolean_data({6, 3, 2, 2}, 0.8);
  BOOST_CHECK_THROW(make_model("hierarchically_modular", {{"known_image_inputs", Value::boolean(true)}}, boolean->spec()),
                    modlab::ConfigError);
  try {
    make_model("hierarchically_modular", {{"image_arch", ints({784, 64, 4})}}, spec);
    BOOST_ERROR("no error for image_arch");
  } catch (const modlab::ConfigError& e) {
    BOOST_TEST(std::string(e.what()).find("image_arch") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(recovery_with_images_allows_relabelled_bits) {
  // A learned routing that reads the image modules' bits in another order (module 0's bit 2 with
  // module 1's bit 0, ...) computes the same function once the image modules relabel their bits.
  auto m = make_model("hierarchically_modular", {{"known_image_inputs", Value::boolean(true)}}, pair_spec(16));
  {
    torch::NoGradGuard ng;
    auto ps = params(*m);
    auto r0 = ps.at("routing_logits0");
    r0.zero_();
    const int pairs[3][2] = {{2, 3}, {0, 5}, {1, 4}};  // [[2,3],[0,5],[1,4]]: a relabelling of the truth
    for (int j = 0; j < 3; ++j) {
      r0[0][j][pairs[j][0]] = 2.0;
      r0[0][j][pairs[j][1]] = 1.0;
    }
    auto r1 = ps.at("routing_logits1");
    r1.zero_();
    r1[0][0][0] = 2.0, r1[0][0][1] = 1.0, r1[0][1][1] = 2.0, r1[0][1][2] = 1.0;
    auto ro = ps.at("output_logits");
    ro.zero_();
    ro[0][0][0] = 2.0, ro[0][0][1] = 1.0;
  }
  modlab::MetricSet ms;
  CaptureRecorder rec;
  m->eval_end("test", ms, rec);
  BOOST_TEST(ms.get("routing_correct") == 1.0);
  {
    torch::NoGradGuard ng;
    auto r0 = params(*m).at("routing_logits0");
    r0[0][0][3] = 0.0, r0[0][0][4] = 1.0;  // module 0 now reads module 0's bit 2 and module 1's bit 1: no longer pairs
  }
  m->eval_end("test", ms, rec);
  BOOST_TEST(ms.get("routing_correct") == 0.0);
}

BOOST_AUTO_TEST_CASE(image_model_learns_synthetic_digit_pairs) {
  // A short end-to-end training run: known routing and image selection, image modules 64-16-3 on
  // 64-pixel synthetic digits; the loss must fall well below its starting value.
  const auto data = synthetic_pairs(64, 2);
  auto m = make_model("hierarchically_modular",
                      {{"known_module_inputs", Value::boolean(true)},
                       {"known_image_inputs", Value::boolean(true)},
                       {"image_arch", ints({64, 16, 3})}},
                      pair_spec(64));
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const auto& g : m->param_groups("train"))
    if (!g.params.empty()) groups.emplace_back(g.params, std::make_unique<torch::optim::AdamOptions>(0.01));
  torch::optim::Adam opt(groups, torch::optim::AdamOptions(0.01));
  m->train();
  double first = 0, last = 0;
  for (int i = 0; i < 300; ++i) {
    opt.zero_grad();
    auto loss = modlab::total(m->loss(data, m->forward(data)));
    if (i == 0) first = loss.item<double>();
    last = loss.item<double>();
    loss.backward();
    opt.step();
  }
  BOOST_TEST_MESSAGE("loss " << first << " -> " << last);
  BOOST_TEST(last < 0.5 * first);
}

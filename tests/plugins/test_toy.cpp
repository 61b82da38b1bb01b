#define BOOST_TEST_MODULE toy_dataset
#include <boost/test/unit_test.hpp>

#include "../../plugins/datasets/toy/boolean_table.hpp"
#include "../../plugins/datasets/toy/numpy_random.hpp"
#include "config_builders.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <torch/torch.h>

#include <array>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

using modlab::Value;
using test_config::ints;

Value::Table base(const std::string& task) { return {{"task", Value::string(task)}}; }

std::shared_ptr<modlab::Dataset> make(const Value::Table& table) {
  static modlab::runner::RunHost host(modlab::runner::default_registry(), modlab::runner::HostOptions{});
  modlab::Config config(std::make_shared<Value>(Value::table(table)), "dataset");
  return host.create_dataset("toy", config);
}

std::shared_ptr<modlab::Dataset> boolean(const std::vector<std::int64_t>& structure, double train_fraction = 0.8,
                                         double noise = 0.0, std::int64_t tasks = 1) {
  auto t = base("boolean");
  t["structure"] = ints(structure);
  t["train_fraction"] = Value::floating(train_fraction);
  t["train_noise"] = Value::floating(noise);
  t["num_tasks"] = Value::integer(tasks);
  return make(t);
}

/// Row index of a 0/1 input row, x0 the most significant bit (itertools.product order).
std::int64_t row_index(const torch::Tensor& bits) {
  std::int64_t r = 0;
  for (std::int64_t i = 0; i < bits.size(0); ++i) r = 2 * r + static_cast<std::int64_t>(bits[i].item<float>() > 0.5f);
  return r;
}

/// The three Boolean functions written out independently of the plugin's helper: inputs come
/// from six nested loops in product order, XORs as OR(AND(a, ¬b), AND(b, ¬a)) as the reference builds them.
std::vector<std::array<int, 2>> expected_table(const std::string& which) {
  auto xor_ = [](int a, int b) { return (a && !b) || (b && !a) ? 1 : 0; };
  std::vector<std::array<int, 2>> out;
  for (int x0 = 0; x0 < 2; ++x0)
    for (int x1 = 0; x1 < 2; ++x1)
      for (int x2 = 0; x2 < 2; ++x2)
        for (int x3 = 0; x3 < 2; ++x3)
          for (int x4 = 0; x4 < 2; ++x4)
            for (int x5 = 0; x5 < 2; ++x5) {
              const int f1 = xor_(x0, x1), f2 = xor_(x2, x3), f3 = xor_(x4, x5);
              if (which == "622") {
                out.push_back({f1, f2});
              } else if (which == "6322") {
                out.push_back({f1 && f2, f2 && f3});
              } else {
                const int g1 = f1 && f2, g2 = f2 && f3, g3 = f1 && f3;
                out.push_back({g1 || g3, g2 || g3});
              }
            }
  return out;
}

std::string error_of(const Value::Table& t) {
  try {
    make(t);
  } catch (const modlab::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ------------------------------------------------------------------------- Boolean truth tables

BOOST_AUTO_TEST_CASE(truth_table_rows_by_hand) {
  using modlab::toy::boolean_outputs;
  // row 40 = 101000: f = (1, 1, 0); row 10 = 001010: f = (0, 1, 1); row 34 = 100010: f = (1, 0, 1);
  // row 25 = 011001: f = (1, 1, 1); row 0 and row 63: f = (0, 0, 0).
  const std::vector<std::int64_t> s622{6, 2, 2}, s6322{6, 3, 2, 2}, s63322{6, 3, 3, 2, 2};
  using P = std::array<int, 2>;
  BOOST_TEST((boolean_outputs(s622, 40) == P{1, 1}));
  BOOST_TEST((boolean_outputs(s622, 10) == P{0, 1}));
  BOOST_TEST((boolean_outputs(s622, 34) == P{1, 0}));
  BOOST_TEST((boolean_outputs(s622, 63) == P{0, 0}));
  BOOST_TEST((boolean_outputs(s6322, 40) == P{1, 0}));
  BOOST_TEST((boolean_outputs(s6322, 10) == P{0, 1}));
  BOOST_TEST((boolean_outputs(s6322, 34) == P{0, 0}));
  BOOST_TEST((boolean_outputs(s6322, 25) == P{1, 1}));
  BOOST_TEST((boolean_outputs(s6322, 0) == P{0, 0}));
  BOOST_TEST((boolean_outputs(s63322, 40) == P{1, 0}));
  BOOST_TEST((boolean_outputs(s63322, 10) == P{0, 1}));
  BOOST_TEST((boolean_outputs(s63322, 34) == P{1, 1}));
  BOOST_TEST((boolean_outputs(s63322, 25) == P{1, 1}));
  BOOST_TEST((boolean_outputs(s63322, 63) == P{0, 0}));
  // Input bits: x0 is the MSB of the row index.
  BOOST_TEST(modlab::toy::boolean_input_bit(32, 0) == 1);
  BOOST_TEST(modlab::toy::boolean_input_bit(32, 5) == 0);
  BOOST_TEST(modlab::toy::boolean_input_bit(1, 5) == 1);
  BOOST_CHECK_THROW(boolean_outputs({6, 3, 2}, 0), modlab::ArgumentError);
}

BOOST_AUTO_TEST_CASE(truth_tables_match_independent_formulas) {
  const std::vector<std::pair<std::vector<std::int64_t>, std::string>> cases = {
      {{6, 2, 2}, "622"}, {{6, 3, 2, 2}, "6322"}, {{6, 3, 3, 2, 2}, "63322"}};
  for (const auto& [structure, which] : cases) {
    const auto want = expected_table(which);
    const auto table = modlab::toy::boolean_truth_table(structure);
    BOOST_REQUIRE_EQUAL(table.outputs.size(), 64u);
    for (int r = 0; r < 64; ++r) BOOST_TEST((table.outputs[r] == want[r]), which << " row " << r);

    // The dataset holds the same table: every row of every split has the expected targets.
    auto ds = boolean(structure);
    BOOST_TEST(ds->spec().info.at("structure") == modlab::toy::structure_text(structure));
    std::set<std::int64_t> seen;
    for (const std::string split : {"train", "val", "test"}) {
      auto b = ds->split(split)->all();
      for (std::int64_t i = 0; i < b.size(); ++i) {
        const auto r = row_index(b.inputs[i]);
        seen.insert(r);
        BOOST_TEST(b.targets[i][0].item<float>() == static_cast<float>(want[r][0]));
        BOOST_TEST(b.targets[i][1].item<float>() == static_cast<float>(want[r][1]));
      }
    }
    BOOST_TEST(seen.size() == 64u);
  }
  // Both outputs are non-trivial functions for the main task.
  const auto t = expected_table("6322");
  int ones0 = 0, ones1 = 0;
  for (const auto& p : t) ones0 += p[0], ones1 += p[1];
  BOOST_TEST(ones0 == 16);  // f1 ∧ f2 with each XOR true in half the rows
  BOOST_TEST(ones1 == 16);
}

BOOST_AUTO_TEST_CASE(boolean_split_sizes_and_torch_permutation) {
  auto half = boolean({6, 3, 2, 2}, 0.5);
  BOOST_TEST(half->split("train")->size() == 32);
  BOOST_TEST(half->split("val")->size() == 16);
  BOOST_TEST(half->split("test")->size() == 16);
  auto ds = boolean({6, 3, 2, 2}, 0.8);
  BOOST_TEST(ds->split("train")->size() == 51);
  BOOST_TEST(ds->split("val")->size() == 6);
  BOOST_TEST(ds->split("test")->size() == 7);
  // torch.randperm(64, generator=torch.Generator().manual_seed(40)) begins
  // [6, 57, 41, 58, 16, ...] and ends [..., 2, 40, 14, 32]: random_split's train rows come first,
  // test rows last.
  auto train = ds->split("train")->all();
  const std::vector<std::int64_t> head{6, 57, 41, 58, 16};
  for (std::size_t i = 0; i < head.size(); ++i) BOOST_TEST(row_index(train.inputs[i]) == head[i]);
  auto test = ds->split("test")->all();
  const std::vector<std::int64_t> tail{2, 40, 14, 32};
  for (std::size_t i = 0; i < tail.size(); ++i) BOOST_TEST(row_index(test.inputs[3 + i]) == tail[i]);

  const auto spec = ds->spec();
  BOOST_TEST((spec.splits == std::vector<std::string>{"train", "val", "test"}));
  BOOST_TEST(spec.num_outputs == 2);
  BOOST_TEST((spec.task == modlab::TaskKind::MultiLabel));
  BOOST_TEST(spec.group_kind == "task");
  BOOST_TEST(train.groups.defined());
  BOOST_TEST(train.groups.sum().item<std::int64_t>() == 0);
}

BOOST_AUTO_TEST_CASE(boolean_determinism_and_seed) {
  auto a = boolean({6, 3, 2, 2})->split("train")->all();
  auto b = boolean({6, 3, 2, 2})->split("train")->all();
  BOOST_TEST(torch::equal(a.inputs, b.inputs));
  BOOST_TEST(torch::equal(a.targets, b.targets));
  auto t = base("boolean");
  t["split_seed"] = Value::integer(7);
  auto c = make(t)->split("train")->all();
  BOOST_TEST(!torch::equal(a.inputs, c.inputs));
  // torch.randperm(64, generator=torch.Generator().manual_seed(7)) begins [47, 14, 15, 18, 0].
  BOOST_TEST(row_index(c.inputs[0]) == 47);
  BOOST_TEST(row_index(c.inputs[4]) == 0);
}

BOOST_AUTO_TEST_CASE(training_noise_only_on_training_batches) {
  auto ds = boolean({6, 3, 2, 2}, 0.8, 0.1);
  auto train = ds->split("train");
  const auto idx = torch::arange(train->size(), torch::kLong);
  const auto clean = train->get(idx, false);
  const auto noisy = train->get(idx, true);
  BOOST_TEST(torch::equal(clean.inputs, train->all().inputs));
  BOOST_TEST(!torch::equal(noisy.inputs, clean.inputs));
  BOOST_TEST(torch::equal(noisy.targets, clean.targets));
  const double sd = (noisy.inputs - clean.inputs).std().item<double>();
  BOOST_TEST(sd > 0.07);
  BOOST_TEST(sd < 0.13);
  // Clean inputs are exactly 0/1.
  BOOST_TEST(((clean.inputs == 0) | (clean.inputs == 1)).all().item<bool>());
  // Validation and test never get noise, even for a batch marked as training.
  for (const std::string split : {"val", "test"}) {
    auto s = ds->split(split);
    auto i = torch::arange(s->size(), torch::kLong);
    BOOST_TEST(torch::equal(s->get(i, true).inputs, s->get(i, false).inputs));
  }
  // Without train_noise a training batch is clean.
  auto quiet = boolean({6, 3, 2, 2})->split("train");
  BOOST_TEST(torch::equal(quiet->get(idx, true).inputs, quiet->get(idx, false).inputs));
}

BOOST_AUTO_TEST_CASE(multi_task_groups) {
  auto ds = boolean({6, 3, 2, 2}, 0.8, 0.0, 3);
  const auto spec = ds->spec();
  BOOST_TEST(spec.group_names.size() == 3u);
  BOOST_TEST(ds->split("train")->size() == 3 * 51);
  auto b = ds->split("train")->all();
  for (std::int64_t t = 0; t < 3; ++t) BOOST_TEST((b.groups == t).sum().item<std::int64_t>() == 51);
  // Task 1 rotates the layer-1 modules: y = [f2 ∧ f3, f3 ∧ f1].
  for (std::int64_t i = 0; i < b.size(); ++i) {
    if (b.groups[i].item<std::int64_t>() != 1) continue;
    const auto r = row_index(b.inputs[i]);
    const int f1 = ((r >> 5) ^ (r >> 4)) & 1, f2 = ((r >> 3) ^ (r >> 2)) & 1, f3 = ((r >> 1) ^ r) & 1;
    BOOST_TEST(b.targets[i][0].item<float>() == static_cast<float>(f2 & f3));
    BOOST_TEST(b.targets[i][1].item<float>() == static_cast<float>(f3 & f1));
  }
}

// One sub-task per output: the masked analysis of hier_modular trains a mask per output module.
BOOST_AUTO_TEST_CASE(boolean_subtasks_one_per_output) {
  for (std::int64_t tasks : {1, 3}) {
    const auto spec = boolean({6, 3, 3, 2, 2}, 0.8, 0.0, tasks)->spec();
    BOOST_REQUIRE_EQUAL(spec.subtasks.size(), 2u);
    for (std::int64_t k = 0; k < 2; ++k) {
      const auto& s = spec.subtasks[static_cast<std::size_t>(k)];
      BOOST_TEST(s.name == "output" + std::to_string(k));
      BOOST_TEST(s.outputs == std::vector<std::int64_t>{k}, boost::test_tools::per_element());
      BOOST_TEST(s.groups.empty());  // every example, of every task
      BOOST_TEST(s.classes.empty());
      BOOST_TEST(s.zeroed_inputs.empty());
      BOOST_TEST(s.train_split.empty());
      BOOST_TEST(s.description.find("6,3,3,2,2") != std::string::npos, s.description);
    }
  }
  // The 2-D classification tasks declare none.
  BOOST_TEST(make(base("checker_board-2"))->spec().subtasks.empty());
}

// ------------------------------------------------------------------------------ numpy streams

BOOST_AUTO_TEST_CASE(numpy_random_state_streams) {
  // /usr/bin/python3: rs = np.random.RandomState(4058803790); rs.random_sample(3); rs.randint(1000)
  modlab::toy::NumpyRandomState rs(4058803790u);
  BOOST_TEST(rs.random_sample() == 0.819729631643332);
  BOOST_TEST(rs.random_sample() == 0.6294849817349071);
  BOOST_TEST(rs.random_sample() == 0.26031508562898653);
  BOOST_TEST(rs.randint(1000) == 94u);
  // np.random.RandomState(7).standard_normal(3)
  modlab::toy::NumpyRandomState g(7);
  BOOST_TEST(g.gauss() == 1.690525703800356);
  BOOST_TEST(g.gauss() == -0.4659373705408328);
  BOOST_TEST(g.gauss() == 0.0328201636785844);
  // rs = np.random.RandomState(3); a = np.arange(10); rs.shuffle(a)
  modlab::toy::NumpyRandomState s(3);
  std::vector<int> a{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  s.shuffle(a);
  BOOST_TEST((a == std::vector<int>{5, 4, 1, 2, 9, 6, 7, 0, 3, 8}));
  // rs = np.random.RandomState(0); rs.randint(2**32 - 1), rs.randint(7)
  modlab::toy::NumpyRandomState z(0);
  BOOST_TEST(z.randint(4294967295ull) == 2357136044u);
  BOOST_TEST(z.randint(7) == 5u);
}

// ------------------------------------------------------------------------------ 2-D tasks

BOOST_AUTO_TEST_CASE(multi_class_shapes_and_numpy_points) {
  auto ds = make(base("multi_class"));
  const auto spec = ds->spec();
  BOOST_TEST(spec.num_classes == 6);
  BOOST_TEST((spec.input_shape == std::vector<std::int64_t>{2}));
  BOOST_TEST((spec.splits == std::vector<std::string>{"train", "test"}));
  auto train = ds->split("train")->all();
  auto test = ds->split("test")->all();
  BOOST_TEST(train.size() == 2400);
  BOOST_TEST(test.size() == 600);
  BOOST_TEST(!train.groups.defined());
  const auto x = torch::cat({train.inputs, test.inputs});
  const auto y = torch::cat({train.targets, test.targets});
  BOOST_TEST((x.sizes() == torch::IntArrayRef{3000, 2}));
  BOOST_TEST(x.scalar_type() == torch::kFloat);
  BOOST_TEST(y.scalar_type() == torch::kLong);
  const auto counts = torch::bincount(y, {}, 6);
  for (int c = 0; c < 6; ++c) {
    BOOST_TEST(counts[c].item<std::int64_t>() == 500);
    BOOST_TEST((test.targets == c).sum().item<std::int64_t>() == 100);  // stratified
  }
  // Points of the unit disk, rescaled by (X + 1)/2, plus cluster spread.
  BOOST_TEST(x.min().item<float>() > -0.2f);
  BOOST_TEST(x.max().item<float>() < 1.2f);

  // Reference values, computed once with /usr/bin/python3 (numpy 1.24) running the reference
  // algorithm (datagen.gm_kmc, ininum=1000, nn=0.06, clu=6, nump=500, seed=4058803790):
  //   rs = np.random.RandomState(4058803790)
  //   no = np.sqrt(rs.uniform(0, 1, 1000)); a = rs.uniform(0, 2*np.pi, 1000)
  //   X = np.array((np.cos(a)*no, np.sin(a)*no)).T; K = X @ X.T; d = np.diag(K).reshape(1, -1)
  //   D = -2*K + d + d.T; lm = [rs.randint(1000)]
  //   for i in range(5):
  //       cdl = np.cumsum(np.min(D[lm, :]**2, axis=0)); r = rs.random()*cdl[-1]
  //       lm += [np.min(np.flatnonzero(cdl >= r))]
  //   sub = D[lm][:, lm]; sig = 0.06*np.min(sub[sub > 0].reshape(6, 5), axis=1)
  //   P = (np.vstack([rs.multivariate_normal(X[lm[i]], sig[i]*np.eye(2), 500) for i in range(6)]) + 1)/2
  // giving lm = [115, 613, 172, 704, 343, 243] and the rows below (P[0:3], P[500:502], P[2998:3000]).
  struct Ref {
    double x, y;
    std::int64_t label;
  };
  const std::vector<Ref> refs = {
      {0.34721949468677377, 0.7485247613872903, 0}, {0.4098129157899405, 0.7153928292642807, 0},
      {0.30469320959131596, 0.7250905706695417, 0}, {0.6647615469322641, 0.1876736571815989, 1},
      {0.6435291366850814, 0.07731020173494824, 1}, {0.7102611307157192, 0.30873800004622365, 5},
      {0.7643731365124633, 0.30750568629699543, 5}};
  for (const auto& r : refs) {
    const auto ref = torch::tensor({static_cast<float>(r.x), static_cast<float>(r.y)});
    const auto dist = (x - ref).abs().amax(1);
    const auto i = dist.argmin().item<std::int64_t>();
    BOOST_TEST(dist[i].item<float>() == 0.0f, "reference point (" << r.x << ", " << r.y << ") not found");
    BOOST_TEST(y[i].item<std::int64_t>() == r.label);
  }
}

BOOST_AUTO_TEST_CASE(two_d_determinism_and_seeds) {
  auto a = make(base("multi_class"))->split("train")->all();
  auto b = make(base("multi_class"))->split("train")->all();
  BOOST_TEST(torch::equal(a.inputs, b.inputs));
  BOOST_TEST(torch::equal(a.targets, b.targets));
  // Another split seed: the same points, split differently.
  auto t = base("multi_class");
  t["split_seed"] = Value::integer(1);
  auto c = make(t);
  auto c_all = torch::cat({c->split("train")->all().inputs, c->split("test")->all().inputs});
  auto a_all = torch::cat({a.inputs, make(base("multi_class"))->split("test")->all().inputs});
  BOOST_TEST(!torch::equal(c->split("train")->all().inputs, a.inputs));
  BOOST_TEST(torch::allclose(std::get<0>(c_all.sum(1).sort()), std::get<0>(a_all.sum(1).sort())));
  // Another data seed: other points.
  auto u = base("multi_class");
  u["seed"] = Value::integer(1);
  BOOST_TEST(!torch::equal(make(u)->split("train")->all().inputs, a.inputs));
}

BOOST_AUTO_TEST_CASE(label_noise_changes_some_labels) {
  auto t = base("checker_board-0");
  t["noise"] = Value::floating(0.3);
  auto noisy = make(t)->split("train")->all();
  auto clean = make(base("checker_board-0"))->split("train")->all();
  // Same points (the split depends on labels, so compare the label of each point via its disc test).
  auto inside = ((noisy.inputs * noisy.inputs).sum(1) < 0.66).to(torch::kLong);
  const double flipped = (inside != noisy.targets).to(torch::kDouble).mean().item<double>();
  BOOST_TEST(flipped > 0.2);
  BOOST_TEST(flipped < 0.4);
  auto clean_inside = ((clean.inputs * clean.inputs).sum(1) < 0.66).to(torch::kLong);
  BOOST_TEST(torch::equal(clean_inside, clean.targets));
}

BOOST_AUTO_TEST_CASE(checker_boards_follow_their_rules) {
  auto b1 = make(base("checker_board-1"))->split("train")->all();
  auto x = b1.inputs.to(torch::kDouble);
  auto want = (torch::ceil(1.5 * (x.select(1, 0) + 1)) + torch::ceil(x.select(1, 1) + 1)).remainder(2).to(torch::kLong);
  BOOST_TEST(torch::equal(want, b1.targets));
  BOOST_TEST(b1.groups.max().item<std::int64_t>() <= 5);
  auto b2 = make(base("checker_board-2"))->split("test")->all();
  auto x2 = b2.inputs.to(torch::kDouble);
  auto want2 = torch::ceil(2 * x2).sum(1).remainder(2).to(torch::kLong);
  BOOST_TEST(torch::equal(want2, b2.targets));
  // The 4×4 cell determines the label: parity of the cell's row + column.
  auto parity = (b2.groups.floor_divide(4) + b2.groups.remainder(4)).remainder(2);
  BOOST_TEST(torch::equal(parity, b2.targets));
  // Rotated board: groups are quadrants, and each point stays inside its quadrant.
  auto rot = make(base("checker_board_rotated"));
  auto r = rot->split("train")->all();
  BOOST_TEST(rot->spec().group_names.size() == 4u);
  for (std::int64_t q = 0; q < 4; ++q) {
    auto pts = r.inputs.index({r.groups == q});
    const float xlo = q < 2 ? -1.f : 0.f, ylo = (q % 2 == 0) ? -1.f : 0.f;
    BOOST_TEST(pts.size(0) > 300);
    BOOST_TEST(pts.select(1, 0).min().item<float>() >= xlo - 1e-6f);
    BOOST_TEST(pts.select(1, 0).max().item<float>() <= xlo + 1.f + 1e-6f);
    BOOST_TEST(pts.select(1, 1).min().item<float>() >= ylo - 1e-6f);
    BOOST_TEST(pts.select(1, 1).max().item<float>() <= ylo + 1.f + 1e-6f);
  }
  // Concentric circles are standardised.
  auto circ = make(base("con_circles"));
  auto all = torch::cat({circ->split("train")->all().inputs, circ->split("test")->all().inputs}).to(torch::kDouble);
  BOOST_TEST(all.mean(0).abs().max().item<double>() < 1e-6);
  BOOST_TEST((all.std(0, false) - 1).abs().max().item<double>() < 1e-5);
}

BOOST_AUTO_TEST_CASE(spec_agrees_with_batches_for_every_task) {
  for (const std::string task : {"multi_class", "checker_board-0", "checker_board-1", "checker_board-2",
                                 "checker_board_rotated", "con_circles", "non_linear", "boolean"}) {
    BOOST_TEST_CONTEXT("task " << task) {
      auto ds = make(base(task));
      const auto spec = ds->spec();
      BOOST_TEST(spec.name == "toy/" + task);
      BOOST_REQUIRE(!spec.splits.empty());
      std::int64_t total = 0;
      for (const auto& name : spec.splits) {
        auto split = ds->split(name);
        auto idx = torch::arange(std::min<std::int64_t>(split->size(), 5), torch::kLong);
        auto b = split->get(idx, name == "train");
        total += split->size();
        std::vector<std::int64_t> shape(b.inputs.sizes().begin() + 1, b.inputs.sizes().end());
        BOOST_TEST(shape == spec.input_shape);
        BOOST_TEST(b.inputs.scalar_type() == torch::kFloat);
        if (spec.task == modlab::TaskKind::Classification) {
          BOOST_TEST(b.targets.dim() == 1);
          BOOST_TEST(b.targets.scalar_type() == torch::kLong);
          auto all = split->all().targets;
          BOOST_TEST(all.min().item<std::int64_t>() >= 0);
          BOOST_TEST(all.max().item<std::int64_t>() < spec.num_classes);
        } else {
          BOOST_TEST((spec.task == modlab::TaskKind::MultiLabel));
          BOOST_TEST((b.targets.sizes() == torch::IntArrayRef{b.size(), spec.num_outputs}));
          BOOST_TEST(b.targets.scalar_type() == torch::kFloat);
        }
        BOOST_TEST(b.groups.defined() == !spec.group_kind.empty());
        if (b.groups.defined()) {
          BOOST_TEST(b.groups.scalar_type() == torch::kLong);
          BOOST_TEST(split->all().groups.max().item<std::int64_t>() <
                     static_cast<std::int64_t>(spec.group_names.size()));
        }
      }
      if (task == "boolean")
        BOOST_TEST(total == 64);
      else if (task != "checker_board_rotated")
        BOOST_TEST(total == 3000);
    }
  }
}

// ----------------------------------------------------------------------------------- errors

BOOST_AUTO_TEST_CASE(bad_configs_name_the_key) {
  auto t = base("boolean");
  t["structure"] = ints({6, 3, 2});
  const auto e1 = error_of(t);
  BOOST_TEST(e1.find("dataset.structure") != std::string::npos, e1);
  BOOST_TEST(e1.find("[6,3,3,2,2]") != std::string::npos, e1);

  const auto e2 = error_of(base("spiral"));
  BOOST_TEST(e2.find("dataset.task") != std::string::npos, e2);
  BOOST_TEST(e2.find("multi_class") != std::string::npos, e2);

  auto f = base("multi_class");
  f["test_fraction"] = Value::floating(1.5);
  BOOST_TEST(error_of(f).find("dataset.test_fraction") != std::string::npos);

  auto s = base("multi_class");
  s["seed"] = Value::integer(-3);
  BOOST_TEST(error_of(s).find("dataset.seed") != std::string::npos);

  auto k = base("multi_class");
  k["num_clases"] = Value::integer(3);  // a typo is caught by key validation
  BOOST_TEST(!error_of(k).empty());
}

// The `toy` dataset plugin: the 2-D classification toys of the gated-MoE experiments (moe §1.5)
// and the hierarchically modular Boolean truth tables (hier_modular §5.1).
//
// The 2-D generators draw from a re-implementation of numpy's legacy RandomState, so that for the
// same integer seed they produce the reference's points (see README.md for what is bit-exact).
#include "boolean_table.hpp"
#include "numpy_random.hpp"
#include "output_subtasks.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace modlab::toy {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr std::int64_t kDefaultDataSeed = 4058803790LL;  // the reference's multi_class seed
constexpr std::int64_t kSplitSeed2d = 42;                // sklearn train_test_split(random_state=42)
constexpr std::int64_t kSplitSeedBoolean = 40;           // hier_modular's dataset_split_seed
constexpr int kBasePoints = 1000;                        // gm_kmc ininum
constexpr double kClusterWidth = 0.06;                   // gm_kmc nn
constexpr double kCircleNoise = 0.11;
constexpr double kCircleFactor = 0.5;

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {
      "multi_class",           "checker_board-0", "checker_board-1", "checker_board-2",
      "checker_board_rotated", "con_circles",     "non_linear",      "boolean"};
  return names;
}

/// A generated 2-D task before splitting.
struct Points {
  std::vector<double> xy;           // [N, 2] row-major
  std::vector<std::int64_t> label;  // [N]
  std::vector<std::int64_t> group;  // [N] or empty
  std::int64_t num_classes = 2;
  std::string group_kind;
  std::vector<std::string> group_names;

  std::int64_t size() const { return static_cast<std::int64_t>(label.size()); }
  void add(double x, double y, std::int64_t l) {
    xy.push_back(x);
    xy.push_back(y);
    label.push_back(l);
  }
};

std::int64_t py_mod(std::int64_t a, std::int64_t m) { return ((a % m) + m) % m; }

// ------------------------------------------------------------------------------------ multi_class

/// datagen.gm_kmc: k-means++-like centres among 1000 points of the unit disk, one isotropic
/// Gaussian per centre, rescaled by (X + 1)/2.
Points multi_class(NumpyRandomState& rs, std::int64_t num_samples, std::int64_t clusters) {
  const int n = kBasePoints;
  std::vector<double> radius(n), angle(n), bx(n), by(n), sq(n);
  for (int i = 0; i < n; ++i) radius[i] = std::sqrt(rs.uniform(0.0, 1.0));
  for (int i = 0; i < n; ++i) angle[i] = rs.uniform(0.0, 2.0 * kPi);
  for (int i = 0; i < n; ++i) {
    by[i] = std::sin(angle[i]) * radius[i];
    bx[i] = std::cos(angle[i]) * radius[i];
    sq[i] = bx[i] * bx[i] + by[i] * by[i];
  }
  // Squared distances as the reference forms them: (−2·⟨xi,xj⟩ + |xj|²) + |xi|².
  auto dist = [&](int i, int j) { return (-2.0 * (bx[i] * bx[j] + by[i] * by[j]) + sq[j]) + sq[i]; };

  std::vector<int> centres = {static_cast<int>(rs.randint(n))};
  std::vector<double> weight(n), cdf(n);
  for (std::int64_t k = 1; k < clusters; ++k) {
    // Probability ∝ min over centres of D², the square of the squared distance (reference quirk).
    for (int j = 0; j < n; ++j) {
      double m = std::numeric_limits<double>::infinity();
      for (int c : centres) {
        const double d = dist(c, j);
        m = std::min(m, d * d);
      }
      weight[j] = m;
    }
    double acc = 0.0;
    for (int j = 0; j < n; ++j) cdf[j] = acc += weight[j];
    const double r = rs.random_sample() * cdf[n - 1];
    int pick = 0;
    for (int j = 0; j < n; ++j)
      if (cdf[j] >= r) {
        pick = j;
        break;
      }
    centres.push_back(pick);
  }
  // Variance of cluster i: 0.06 × the squared distance from centre i to its nearest other centre.
  std::vector<double> variance(clusters);
  for (std::int64_t i = 0; i < clusters; ++i) {
    double m = std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < clusters; ++j) {
      const double d = dist(centres[i], centres[j]);
      if (d > 0) m = std::min(m, d);
    }
    if (!std::isfinite(m))
      throw DataError("toy/multi_class: two cluster centres coincide for this seed; choose another seed");
    variance[i] = kClusterWidth * m;
  }
  Points p;
  p.num_classes = clusters;
  const std::int64_t per = num_samples / clusters;
  for (std::int64_t i = 0; i < clusters; ++i) {
    const double sd = std::sqrt(variance[i]);
    const double cx = bx[centres[i]], cy = by[centres[i]];
    for (std::int64_t s = 0; s < per; ++s) {
      const double g0 = rs.gauss();
      const double g1 = rs.gauss();
      p.add((g0 * sd + cx + 1.0) / 2.0, (g1 * sd + cy + 1.0) / 2.0, i);
    }
  }
  return p;
}

// ---------------------------------------------------------------------------- checker boards

/// Uniform points in [−1, 1)², drawn as numpy's `2·random((N, 2)) − 1`.
std::vector<double> uniform_square(NumpyRandomState& rs, std::int64_t n) {
  std::vector<double> xy(2 * n);
  for (auto& v : xy) v = 2.0 * rs.random_sample() - 1.0;
  return xy;
}

/// Column of the 4×4 board (0..3) of a coordinate in [−1, 1).
std::int64_t quarter_cell(double v) {
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(2.0 * v)) + 1, 0, 3);
}

/// Parity label of the 4×4 board: sum(ceil(2x)) mod 2.
std::int64_t board4_label(double x, double y) {
  return py_mod(static_cast<std::int64_t>(std::ceil(2.0 * x)) + static_cast<std::int64_t>(std::ceil(2.0 * y)), 2);
}

/// checker_board-{0,1,2}: a disc r² < 0.66, a 3×2 or a 4×4 board; the class is the cell parity.
/// Groups: the board cell (row-major from the bottom-left) for boards 1 and 2.
Points checker_board(NumpyRandomState& rs, std::int64_t n, int variant) {
  const auto xy = uniform_square(rs, n);
  Points p;
  p.num_classes = 2;
  if (variant == 1) {
    p.group_kind = "cell";
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) p.group_names.push_back("row" + std::to_string(r) + "_col" + std::to_string(c));
  } else if (variant == 2) {
    p.group_kind = "cell";
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) p.group_names.push_back("row" + std::to_string(r) + "_col" + std::to_string(c));
  }
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = xy[2 * i], y = xy[2 * i + 1];
    if (variant == 0) {
      p.add(x, y, x * x + y * y < 0.66 ? 1 : 0);
    } else if (variant == 1) {
      const auto cx = static_cast<std::int64_t>(std::ceil(1.5 * (x + 1.0)));
      const auto cy = static_cast<std::int64_t>(std::ceil(y + 1.0));
      p.add(x, y, py_mod(cx + cy, 2));
      p.group.push_back(std::clamp<std::int64_t>(cy - 1, 0, 1) * 3 + std::clamp<std::int64_t>(cx - 1, 0, 2));
    } else {
      p.add(x, y, board4_label(x, y));
      p.group.push_back(quarter_cell(y) * 4 + quarter_cell(x));
    }
  }
  return p;
}

/// checker_board_rotated: the 4×4 board; the points of each quadrant are rotated about the
/// quadrant's bottom-left corner (30°, 45°, 60°, 120°) and min-max rescaled back into the quadrant,
/// keeping their original labels. Output is ordered by quadrant; groups = quadrant.
Points checker_board_rotated(NumpyRandomState& rs, std::int64_t n, const Config& config) {
  const auto xy = uniform_square(rs, n);
  const double xa[4] = {-1.0, -1.0, 0.0, 0.0}, xb[4] = {0.0, 0.0, 1.0, 1.0};
  const double ya[4] = {-1.0, 0.0, -1.0, 0.0}, yb[4] = {0.0, 1.0, 0.0, 1.0};
  const double degrees[4] = {30.0, 45.0, 60.0, 120.0};
  Points p;
  p.num_classes = 2;
  p.group_kind = "quadrant";
  p.group_names = {"rot30", "rot45", "rot60", "rot120"};
  for (int q = 0; q < 4; ++q) {
    const double th = degrees[q] * kPi / 180.0, c = std::cos(th), s = std::sin(th);
    std::vector<double> rx, ry;
    std::vector<std::int64_t> lab;
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = xy[2 * i], y = xy[2 * i + 1];
      if (!(x >= xa[q] && x <= xb[q] && y >= ya[q] && y <= yb[q])) continue;
      const double tx = x - xa[q], ty = y - ya[q];
      rx.push_back(c * tx - s * ty + xa[q]);
      ry.push_back(s * tx + c * ty + ya[q]);
      lab.push_back(board4_label(x, y));
    }
    if (rx.size() < 2)
      config.fail("num_samples", "too few samples for checker_board_rotated: quadrant " + std::to_string(q) +
                                     " got fewer than 2 points");
    const auto [xmin, xmax] = std::minmax_element(rx.begin(), rx.end());
    const auto [ymin, ymax] = std::minmax_element(ry.begin(), ry.end());
    const double x0 = *xmin, x1 = *xmax, y0 = *ymin, y1 = *ymax;
    for (std::size_t k = 0; k < rx.size(); ++k) {
      p.add((xb[q] - xa[q]) * (rx[k] - x0) / (x1 - x0) + xa[q], (yb[q] - ya[q]) * (ry[k] - y0) / (y1 - y0) + ya[q],
            lab[k]);
      p.group.push_back(q);
    }
  }
  return p;
}

// ------------------------------------------------------------------------ circles and blobs

/// sklearn make_circles(n, factor=0.5, noise=0.11, shuffle=True) on this generator, then
/// standardised per feature (mean 0, population std 1).
Points con_circles(NumpyRandomState& rs, std::int64_t n) {
  const std::int64_t n_out = n / 2, n_in = n - n_out;
  std::vector<double> xs, ys;
  std::vector<std::int64_t> ls;
  for (std::int64_t i = 0; i < n_out; ++i) {
    const double t = static_cast<double>(i) * (2.0 * kPi / static_cast<double>(n_out));
    xs.push_back(std::cos(t));
    ys.push_back(std::sin(t));
    ls.push_back(0);
  }
  for (std::int64_t i = 0; i < n_in; ++i) {
    const double t = static_cast<double>(i) * (2.0 * kPi / static_cast<double>(n_in));
    xs.push_back(std::cos(t) * kCircleFactor);
    ys.push_back(std::sin(t) * kCircleFactor);
    ls.push_back(1);
  }
  std::vector<std::int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  rs.shuffle(order);
  Points p;
  p.num_classes = 2;
  for (auto i : order) p.add(xs[i], ys[i], ls[i]);
  for (auto& v : p.xy) v += rs.normal(0.0, kCircleNoise);
  for (int d = 0; d < 2; ++d) {
    double mean = 0.0, var = 0.0;
    for (std::int64_t i = 0; i < n; ++i) mean += p.xy[2 * i + d];
    mean /= static_cast<double>(n);
    for (std::int64_t i = 0; i < n; ++i) var += (p.xy[2 * i + d] - mean) * (p.xy[2 * i + d] - mean);
    const double sd = std::sqrt(var / static_cast<double>(n));
    for (std::int64_t i = 0; i < n; ++i) p.xy[2 * i + d] = (p.xy[2 * i + d] - mean) / (sd > 0 ? sd : 1.0);
  }
  return p;
}

/// non_linear: standard normal points; the first third shifted by −3, the second third by +3
/// (both class 1), the rest stay at the origin (class 0). Groups = blob.
Points non_linear(NumpyRandomState& rs, std::int64_t n) {
  const std::int64_t third = n / 3;
  Points p;
  p.num_classes = 2;
  p.group_kind = "blob";
  p.group_names = {"minus3", "plus3", "origin"};
  for (std::int64_t i = 0; i < n; ++i) {
    const double g0 = rs.gauss();
    const double g1 = rs.gauss();
    const std::int64_t blob = i < third ? 0 : (i < 2 * third ? 1 : 2);
    const double shift = blob == 0 ? -3.0 : (blob == 1 ? 3.0 : 0.0);
    p.add(g0 + shift, g1 + shift, blob == 2 ? 0 : 1);
    p.group.push_back(blob);
  }
  return p;
}

/// Label noise: every example draws u ~ U[0,1) (as gm_kmc does); those with u < `noise` get a
/// uniformly chosen different class, drawn afterwards from the same generator.
void apply_label_noise(NumpyRandomState& rs, Points& p, double noise) {
  std::vector<bool> flip(p.label.size());
  for (std::size_t i = 0; i < flip.size(); ++i) flip[i] = rs.random_sample() < noise;
  if (noise <= 0.0 || p.num_classes < 2) return;
  for (std::size_t i = 0; i < flip.size(); ++i)
    if (flip[i])
      p.label[i] = (p.label[i] + 1 + rs.randint(static_cast<std::uint64_t>(p.num_classes - 1))) % p.num_classes;
}

// --------------------------------------------------------------------------------- splitting

Batch make_batch(const Points& p, const std::vector<std::int64_t>& rows) {
  const auto n = static_cast<std::int64_t>(rows.size());
  auto x = torch::empty({n, 2}, torch::kFloat);
  auto y = torch::empty({n}, torch::kLong);
  auto xa = x.accessor<float, 2>();
  auto ya = y.accessor<std::int64_t, 1>();
  for (std::int64_t k = 0; k < n; ++k) {
    xa[k][0] = static_cast<float>(p.xy[2 * rows[k]]);
    xa[k][1] = static_cast<float>(p.xy[2 * rows[k] + 1]);
    ya[k] = p.label[rows[k]];
  }
  Batch b;
  b.inputs = x;
  b.targets = y;
  if (!p.group.empty()) {
    auto g = torch::empty({n}, torch::kLong);
    auto ga = g.accessor<std::int64_t, 1>();
    for (std::int64_t k = 0; k < n; ++k) ga[k] = p.group[rows[k]];
    b.groups = g;
  }
  return b;
}

/// Stratified split: ceil(f·N) test examples shared among classes by largest remainder; each
/// class's examples shuffled and its first share taken; train and test then shuffled. All draws
/// come from a RandomState seeded with `seed`.
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> stratified_split(const Points& p, double f,
                                                                                 std::uint32_t seed) {
  NumpyRandomState rs(seed);
  const std::int64_t n = p.size();
  const auto n_test = static_cast<std::int64_t>(std::ceil(f * static_cast<double>(n)));
  std::vector<std::vector<std::int64_t>> by_class(p.num_classes);
  for (std::int64_t i = 0; i < n; ++i) by_class[p.label[i]].push_back(i);
  std::vector<std::int64_t> share(p.num_classes);
  std::vector<std::pair<double, std::int64_t>> rest;
  std::int64_t given = 0;
  for (std::int64_t c = 0; c < p.num_classes; ++c) {
    const double exact = static_cast<double>(by_class[c].size()) * static_cast<double>(n_test) / static_cast<double>(n);
    share[c] = static_cast<std::int64_t>(std::floor(exact));
    given += share[c];
    rest.emplace_back(-(exact - static_cast<double>(share[c])), c);
  }
  std::sort(rest.begin(), rest.end());
  for (std::size_t k = 0; given < n_test && k < rest.size(); ++k, ++given) ++share[rest[k].second];
  std::vector<std::int64_t> train, test;
  for (std::int64_t c = 0; c < p.num_classes; ++c) {
    auto idx = by_class[c];
    rs.shuffle(idx);
    for (std::size_t k = 0; k < idx.size(); ++k)
      (static_cast<std::int64_t>(k) < share[c] ? test : train).push_back(idx[k]);
  }
  rs.shuffle(train);
  rs.shuffle(test);
  return {train, test};
}

std::uint32_t seed_of(const Config& c, const std::string& key, std::int64_t value) {
  if (value < 0 || value > static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max()))
    c.fail(key, "expected a seed in [0, 4294967295], got " + std::to_string(value));
  return static_cast<std::uint32_t>(value);
}

// ------------------------------------------------------------------------------------ datasets

/// The `[dataset]` table.
struct Settings {
  std::string task = "multi_class";
  std::int64_t num_samples = 3000;
  std::int64_t num_classes = 6;
  std::int64_t seed = kDefaultDataSeed;
  double test_fraction = 0.2;
  double noise = 0.0;
  std::int64_t split_seed = -1;  ///< -1: the reference's, resolved by read_settings
  std::vector<std::int64_t> structure = {6, 3, 2, 2};
  double train_fraction = 0.8;
  double train_noise = 0.0;
  std::int64_t num_tasks = 1;
};

constexpr double kMaxSeed = 4294967295.0;  // numpy RandomState and the split take 32-bit seeds

const Options<Settings>& toy_options() {
  using S = Settings;
  static const auto o =
      Options<S>()
          .key("task", &S::task, "2-D task or the Boolean truth tables").choices(task_names())
          .key("num_samples", &S::num_samples, "2-D tasks: number of generated points").at_least(10)
          .key("num_classes", &S::num_classes, "multi_class: number of Gaussian clusters (= classes)").at_least(2)
          .key("seed", &S::seed, "2-D tasks: data seed (numpy RandomState), independent of the run seed")
          .in_range(0, kMaxSeed).per_member()
          .key("test_fraction", &S::test_fraction, "2-D tasks: stratified test fraction").greater_than(0).less_than(1)
          .key("noise", &S::noise, "2-D tasks: probability that a label is replaced by another class").in_range(0, 1)
          .per_member()
          .key("split_seed", &S::split_seed, "seed of the split; -1 = the reference's: 42 (2-D tasks), 40 (boolean)")
          .in_range(-1, kMaxSeed).per_member()
          .key("structure", &S::structure, "boolean: [6,2,2], [6,3,2,2] or [6,3,3,2,2]").at_least(1)
          .key("train_fraction", &S::train_fraction, "boolean: fraction of the 64 rows used for training")
          .greater_than(0).at_most(1)
          .key("train_noise", &S::train_noise, "boolean: std of Gaussian noise added to training inputs per access")
          .at_least(0).finite().per_member()
          .key("num_tasks", &S::num_tasks, "boolean: number of tasks; the task id is in groups")
          .in_range(1, kBooleanMaxTasks);
  return o;
}

Settings read_settings(const Config& c) {
  Settings s = toy_options().parse(c);
  if (s.split_seed == -1) s.split_seed = s.task == "boolean" ? kSplitSeedBoolean : kSplitSeed2d;
  return s;
}

std::shared_ptr<Dataset> make_2d(const Config& c, const Settings& s) {
  NumpyRandomState rs(seed_of(c, "seed", s.seed));
  const auto split_seed = seed_of(c, "split_seed", s.split_seed);
  Points p;
  if (s.task == "multi_class") {
    if (s.num_samples < s.num_classes)
      c.fail("num_samples", "expected at least one sample per class (" + std::to_string(s.num_classes) + ")");
    p = multi_class(rs, s.num_samples, s.num_classes);
  } else if (s.task.rfind("checker_board-", 0) == 0) {
    p = checker_board(rs, s.num_samples, s.task.back() - '0');
  } else if (s.task == "checker_board_rotated") {
    p = checker_board_rotated(rs, s.num_samples, c);
  } else if (s.task == "con_circles") {
    p = con_circles(rs, s.num_samples);
  } else {
    p = non_linear(rs, s.num_samples);
  }
  apply_label_noise(rs, p, s.noise);
  const auto [train_rows, test_rows] = stratified_split(p, s.test_fraction, split_seed);

  DatasetSpec spec;
  spec.name = "toy/" + s.task;
  spec.input_shape = {2};
  spec.task = TaskKind::Classification;
  spec.num_classes = p.num_classes;
  spec.group_kind = p.group_kind;
  spec.group_names = p.group_names;
  spec.splits = {"train", "test"};
  spec.info["task"] = s.task;
  spec.info["seed"] = std::to_string(s.seed);
  spec.info["split_seed"] = std::to_string(s.split_seed);
  spec.info["num_samples"] = std::to_string(p.size());
  spec.info["train_size"] = std::to_string(train_rows.size());
  spec.info["test_size"] = std::to_string(test_rows.size());
  std::map<std::string, std::shared_ptr<const Split>> splits;
  splits["train"] = std::make_shared<TensorSplit>(make_batch(p, train_rows));
  splits["test"] = std::make_shared<TensorSplit>(make_batch(p, test_rows));
  return std::make_shared<TensorDataset>(std::move(spec), std::move(splits));
}

std::shared_ptr<Dataset> make_boolean(const Config& c, const Settings& s) {
  const auto& supported = boolean_structures();
  if (std::find(supported.begin(), supported.end(), s.structure) == supported.end())
    c.fail("structure", "unsupported structure [" + structure_text(s.structure) +
                            "] (supported: " + supported_structures_text() + ")");
  const auto split_seed = seed_of(c, "split_seed", s.split_seed);

  // torch.utils.data.random_split(64 rows, [⌊64·s⌋, ⌊rest/2⌋, rest − ⌊rest/2⌋]) with
  // torch.Generator().manual_seed(split_seed): the same randperm LibTorch draws here.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<std::uint64_t>(split_seed));
  const auto perm = torch::randperm(kBooleanRows, gen, torch::TensorOptions().dtype(torch::kLong));
  const auto n_train = static_cast<std::int64_t>(std::floor(kBooleanRows * s.train_fraction));
  const std::int64_t rest = kBooleanRows - n_train, n_val = rest / 2;
  const std::int64_t bounds[4] = {0, n_train, n_train + n_val, kBooleanRows};

  const std::int64_t rows = kBooleanRows * s.num_tasks;
  auto x = torch::empty({rows, kBooleanInputs}, torch::kFloat);
  auto y = torch::empty({rows, kBooleanOutputs}, torch::kFloat);
  auto g = torch::empty({rows}, torch::kLong);
  auto xa = x.accessor<float, 2>();
  auto ya = y.accessor<float, 2>();
  auto ga = g.accessor<std::int64_t, 1>();
  for (int t = 0; t < s.num_tasks; ++t) {
    const auto table = boolean_truth_table(s.structure, t);
    for (int r = 0; r < kBooleanRows; ++r) {
      const std::int64_t k = t * kBooleanRows + r;
      for (int i = 0; i < kBooleanInputs; ++i) xa[k][i] = static_cast<float>(table.inputs[r][i]);
      for (int o = 0; o < kBooleanOutputs; ++o) ya[k][o] = static_cast<float>(table.outputs[r][o]);
      ga[k] = t;
    }
  }
  Batch all;
  all.inputs = x;
  all.targets = y;
  all.groups = g;
  const char* names[3] = {"train", "val", "test"};
  std::map<std::string, std::shared_ptr<const Split>> splits;
  DatasetSpec spec;
  for (int part = 0; part < 3; ++part) {
    std::vector<std::int64_t> idx;
    for (int t = 0; t < s.num_tasks; ++t)
      for (std::int64_t k = bounds[part]; k < bounds[part + 1]; ++k)
        idx.push_back(t * kBooleanRows + perm[k].item<std::int64_t>());
    const auto sel = torch::tensor(idx, torch::kLong);
    splits[names[part]] = std::make_shared<TensorSplit>(all.select(sel), part == 0 ? s.train_noise : 0.0);
    spec.info[std::string(names[part]) + "_size"] = std::to_string(idx.size());
  }
  spec.name = "toy/boolean";
  spec.input_shape = {kBooleanInputs};
  spec.task = TaskKind::MultiLabel;
  spec.num_outputs = kBooleanOutputs;
  spec.group_kind = "task";
  for (int t = 0; t < s.num_tasks; ++t) spec.group_names.push_back("task" + std::to_string(t));
  spec.splits = {"train", "val", "test"};
  spec.info["task"] = "boolean";
  spec.info["structure"] = structure_text(s.structure);
  spec.info["split_seed"] = std::to_string(s.split_seed);
  spec.info["num_tasks"] = std::to_string(s.num_tasks);
  // Each output is its own function of the inputs (its own upper module): a sub-task apiece.
  spec.subtasks = output_subtasks(kBooleanOutputs, "the Boolean function [" + structure_text(s.structure) + "]");
  return std::make_shared<TensorDataset>(std::move(spec), std::move(splits));
}

std::shared_ptr<Dataset> make_toy(const Config& config, Host&) {
  const Settings s = read_settings(config);
  return s.task == "boolean" ? make_boolean(config, s) : make_2d(config, s);
}

void register_toy(Registrar& registrar) {
  DatasetEntry e;
  e.name = "toy";
  e.description = "2-D toy classification tasks (gated MoE) and hierarchically modular Boolean truth tables";
  e.keys = toy_options().specs();
  e.factory = &make_toy;
  registrar.add_dataset(std::move(e));
}

}  // namespace
}  // namespace modlab::toy

MODLAB_PLUGIN("toy", modlab::kDatasetPlugin, "1.0.0", "toy 2-D and Boolean datasets", modlab::toy::register_toy)

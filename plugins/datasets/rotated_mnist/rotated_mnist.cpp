// rotated_mnist: MNIST and Fashion-MNIST from IDX files, either as the rotation task of the
// graph-of-experts experiments (every image in four rotations, the rotation as group metadata)
// or as the plain classification dataset with the official train/test split.
//
// Everything is decoded once into contiguous tensors laid out in split order, so every split is
// a view (narrow) of one tensor and batches are index_select on it.

#include "idx_reader.hpp"
#include "python_random.hpp"

// The Boolean truth tables, numpy's RandomState and the per-output sub-tasks are the toy
// plugin's (header-only, shared rather than copied).
#include "../toy/boolean_table.hpp"
#include "../toy/numpy_random.hpp"
#include "../toy/output_subtasks.hpp"
#include "permuted_tasks.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <numeric>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace modlab::mnist {
namespace {

constexpr const char* kName = "rotated_mnist";

enum class Variant { Mnist, Fashion, FashionMnist12 };

const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct Options {
  Variant variant = Variant::Mnist;
  std::string variant_name;
  bool rotated_mode = true;
  std::vector<std::int64_t> quarter_turns;  // rotations / 90
  bool invert_unrotated = true;
  std::vector<double> split_fractions;
  std::uint64_t split_seed = 40;
  std::int64_t subsample = 20;
  std::uint64_t subsample_seed = 0;
  double val_fraction = 0.0;
  std::uint64_t val_seed = 42;
  std::int64_t train_limit = 0;
  std::int64_t test_limit = 0;
  bool normalize = false;
  double mean = 0.0;
  double stdev = 1.0;
  std::string normalize_name;
  bool flatten = false;
  std::uint32_t permutation = 0;          // seed of the pixel permutation, 0 = none
  std::vector<std::int64_t> pixel_order;  // output pixel q takes pixel pixel_order[q]; empty = identity
  std::vector<std::vector<std::int64_t>> class_subtasks;
  std::vector<std::int64_t> permutations;  // permuted-MNIST tasks (seeds), [] = none
  // mode = "digit_pairs" (hier_modular §5.2)
  bool pairs_mode = false;
  double train_fraction = 0.8;
  std::uint64_t pair_seed = 0;
  std::int64_t samples_per_pair = 100;
  std::int64_t test_samples_per_pair = 100;
  std::uint64_t sample_seed = 0;
  std::vector<std::int64_t> structure = {6, 3, 2, 2};
};

// ------------------------------------------------------------------ finding the files

bool has_idx(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "train-images-idx3-ubyte.gz", ec) ||
         fs::is_regular_file(dir / "train-images-idx3-ubyte", ec);
}

// " (file:line:column)" where a key was written, or "" for values that did not come from a file.
std::string written_at(const Config& c, const std::string& key) {
  const Value* v = c.find(key);
  return v == nullptr || v->where().file.empty() ? std::string() : " (" + v->where().str() + ")";
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// Where the files are looked for, in order, when `root` is not set. `subdirs` are the folder
// names below each base ("mnist"), `torchvision` the folder torchvision downloads into ("MNIST").
std::vector<fs::path> default_candidates(Host& host, const std::vector<std::string>& subdirs, bool fashion) {
  std::vector<fs::path> bases;
  if (auto d = env_or_empty("MODLAB_DATA_DIR"); !d.empty()) bases.emplace_back(d);
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  if (!ec) {
    bases.push_back(cwd / "data");
    bases.push_back(cwd / ".." / "shared" / "data");
  }
  bases.emplace_back(host.resolve_path("data"));
  bases.emplace_back(host.resolve_path("../data"));
  bases.emplace_back(host.resolve_path("../../shared/data"));
  if (auto x = env_or_empty("XDG_CACHE_HOME"); !x.empty()) bases.push_back(fs::path(x) / "modlab");
  else if (auto h = env_or_empty("HOME"); !h.empty()) bases.push_back(fs::path(h) / ".cache" / "modlab");

  std::vector<fs::path> out;
  auto add = [&](const fs::path& p) {
    fs::path n = fs::absolute(p, ec).lexically_normal();
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  };
  for (const auto& b : bases)
    for (const auto& s : subdirs) add(b / s);
  if (fashion) add("/usr/share/datasets/fashion-mnist");  // Debian package dataset-fashion-mnist
  return out;
}

// The folder holding the IDX files for one variant ("mnist" or "fashion").
std::string find_root(const Config& c, const std::string& key, bool fashion, Host& host) {
  const std::string tv = fashion ? "FashionMNIST" : "MNIST";
  const std::string what = fashion ? "Fashion-MNIST" : "MNIST";
  if (c.has(key) && !c.get<std::string>(key).empty()) {
    fs::path root = host.resolve_path(c.get<std::string>(key));
    if (has_idx(root)) return root.string();
    if (has_idx(root / tv / "raw")) return (root / tv / "raw").string();
    throw DataError(std::string(kName) + ": " + c.dotted(key) + " = '" + root.string() + "'" +
                    written_at(c, key) + " holds no train-images-idx3-ubyte[.gz] (looked in " + root.string() +
                    " and " + (root / tv / "raw").string() + ")");
  }
  std::vector<std::string> subdirs = fashion ? std::vector<std::string>{"fashion_mnist", "fashion-mnist", "FashionMNIST/raw"}
                                             : std::vector<std::string>{"mnist", "MNIST/raw"};
  auto candidates = default_candidates(host, subdirs, fashion);
  for (const auto& p : candidates)
    if (has_idx(p)) return p.string();
  std::string looked;
  for (const auto& p : candidates) looked += (looked.empty() ? "" : ", ") + p.string();
  std::string how =
      fashion ? "On Debian, 'apt-get install dataset-fashion-mnist' installs them in /usr/share/datasets/fashion-mnist; "
                "otherwise download them from https://github.com/zalandoresearch/fashion-mnist (data/fashion)"
              : "Download them from https://yann.lecun.com/exdb/mnist/ (or use a torchvision download: <root>/MNIST/raw)";
  throw DataError(std::string(kName) + ": " + what + " not found; looked for train-images-idx3-ubyte[.gz] in: " + looked +
                  ". Put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                  "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in one of these folders, or set [dataset] " +
                  key + " or MODLAB_DATA_DIR. " + how + ".");
}

// "<dir>/<stem>" when present (faster), else "<dir>/<stem>.gz".
std::string idx_file(const std::string& dir, const std::string& stem) {
  std::error_code ec;
  fs::path raw = fs::path(dir) / stem;
  if (fs::is_regular_file(raw, ec)) return raw.string();
  fs::path gz = fs::path(dir) / (stem + ".gz");
  if (fs::is_regular_file(gz, ec)) return gz.string();
  throw DataError(std::string(kName) + ": " + dir + " has no " + stem + " or " + stem + ".gz");
}

// ------------------------------------------------------------------ pools of source images

// The images of one IDX pair that take part (after the limit and a class filter), with their labels.
struct PoolPart {
  std::string images_file, labels_file;
  std::vector<std::int64_t> rows;    // record index in the file, ascending
  std::vector<std::int64_t> labels;  // label of each kept row, already mapped
};

// A pool is one or more parts back to back; pool index p runs over the parts in order.
struct Pool {
  std::vector<PoolPart> parts;
  std::int64_t height = 0, width = 0;
  std::int64_t size() const {
    std::int64_t n = 0;
    for (const auto& p : parts) n += static_cast<std::int64_t>(p.rows.size());
    return n;
  }
  std::string files() const {
    std::string s;
    for (const auto& p : parts) s += (s.empty() ? "" : ", ") + p.images_file + ", " + p.labels_file;
    return s;
  }
};

// Reads the label file whole and the image header, checks they agree, and keeps the first
// `limit` records (0 = all) whose label `map` sends to a class id >= 0.
PoolPart make_part(const std::string& dir, const std::string& prefix, std::int64_t limit, const std::string& limit_key,
                   const std::function<std::int64_t(std::int64_t)>& map, Pool& pool) {
  PoolPart part;
  part.images_file = idx_file(dir, prefix + "-images-idx3-ubyte");
  part.labels_file = idx_file(dir, prefix + "-labels-idx1-ubyte");
  IdxHeader ih = read_idx_header(part.images_file, 3);
  torch::Tensor labels = read_idx(part.labels_file, 1);
  const std::int64_t n = ih.dims[0];
  if (labels.size(0) != n)
    throw DataError(std::string(kName) + ": count mismatch: " + part.images_file + " holds " + std::to_string(n) +
                    " images but " + part.labels_file + " holds " + std::to_string(labels.size(0)) + " labels");
  if (pool.height == 0) {
    pool.height = ih.dims[1];
    pool.width = ih.dims[2];
  } else if (pool.height != ih.dims[1] || pool.width != ih.dims[2]) {
    throw DataError(std::string(kName) + ": " + part.images_file + " holds " + std::to_string(ih.dims[1]) + "x" +
                    std::to_string(ih.dims[2]) + " images, unlike the " + std::to_string(pool.height) + "x" +
                    std::to_string(pool.width) + " images of " + pool.parts.front().images_file);
  }
  if (limit > n)
    throw DataError(std::string(kName) + ": " + limit_key + " = " + std::to_string(limit) + " but " + part.images_file +
                    " holds only " + std::to_string(n) + " images");
  const std::int64_t used = limit > 0 ? limit : n;
  const auto* lab = labels.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < used; ++i) {
    if (lab[i] > 9)
      throw DataError(part.labels_file + ": label " + std::to_string(lab[i]) + " of record " + std::to_string(i) +
                      " is outside 0..9");
    std::int64_t cls = map(lab[i]);
    if (cls < 0) continue;
    part.rows.push_back(i);
    part.labels.push_back(cls);
  }
  return part;
}

Pool make_pool(Variant v, const std::string& mnist_dir, const std::string& fashion_dir, const std::string& prefix,
               std::int64_t limit, const std::string& limit_key) {
  Pool pool;
  auto identity = [](std::int64_t l) { return l; };
  switch (v) {
    case Variant::Mnist: pool.parts.push_back(make_part(mnist_dir, prefix, limit, limit_key, identity, pool)); break;
    case Variant::Fashion: pool.parts.push_back(make_part(fashion_dir, prefix, limit, limit_key, identity, pool)); break;
    case Variant::FashionMnist12:
      // moe §1.5: Fashion classes 0-5 keep their ids; MNIST digits 4-9 become 6-11.
      pool.parts.push_back(
          make_part(fashion_dir, prefix, limit, limit_key, [](std::int64_t l) { return l < 6 ? l : -1; }, pool));
      pool.parts.push_back(
          make_part(mnist_dir, prefix, limit, limit_key, [](std::int64_t l) { return l >= 4 ? l + 2 : -1; }, pool));
      break;
  }
  return pool;
}

torch::Tensor pool_labels(const Pool& pool) {
  std::vector<std::int64_t> all;
  for (const auto& p : pool.parts) all.insert(all.end(), p.labels.begin(), p.labels.end());
  return torch::tensor(all, torch::kLong);
}

// ------------------------------------------------------------------ splitting

// torch.utils.data.random_split with fractions: floor(n * f) each, the remainder dealt one by one
// from the first split on.
std::vector<std::int64_t> split_lengths(std::int64_t n, const std::vector<double>& fractions) {
  std::vector<std::int64_t> len;
  std::int64_t sum = 0;
  for (double f : fractions) {
    len.push_back(static_cast<std::int64_t>(std::floor(static_cast<double>(n) * f)));
    sum += len.back();
  }
  for (std::int64_t i = 0; i < n - sum; ++i) len[static_cast<std::size_t>(i) % len.size()] += 1;
  return len;
}

at::Generator generator(std::uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Keeps 1/factor of `items` (at least one when not empty), chosen without replacement.
torch::Tensor subsample(const torch::Tensor& items, std::int64_t factor, at::Generator& gen) {
  if (factor <= 1) return items;
  const std::int64_t n = items.size(0);
  std::int64_t k = n / factor;
  if (n > 0 && k == 0) k = 1;
  return items.index_select(0, torch::randperm(n, gen, torch::kLong).narrow(0, 0, k));
}

// ------------------------------------------------------------------ building tensors

// Writes one example: image `img` (H x W bytes) turned `turns` quarter turns counter-clockwise,
// scaled as ToTensor (float(x) / 255), colour-inverted (max - x) when asked, normalised, then its
// pixels permuted by o.pixel_order. The arithmetic is the same float32 operations the tensor
// versions perform, in the same order.
void write_example(const std::uint8_t* img, std::int64_t h, std::int64_t w, std::int64_t turns, bool invert,
                   const Options& o, float* dst) {
  float max = 0.0f;
  if (invert) max = static_cast<float>(*std::max_element(img, img + h * w)) / 255.0f;
  const auto mean = static_cast<float>(o.mean), stdv = static_cast<float>(o.stdev);
  const std::int64_t* order = o.pixel_order.empty() ? nullptr : o.pixel_order.data();
  // out[q] = turned[order[q]] (numpy's x.view(-1)[perm]), and turned[i][j] = in[si][sj]: one turn
  // (square images only) maps turned[i][j] = in[j][W-1-i].
  for (std::int64_t q = 0; q < h * w; ++q) {
    const std::int64_t p = order ? order[q] : q;
    const std::int64_t i = p / w, j = p % w;
    std::int64_t si = i, sj = j;
    switch (turns) {
      case 1: si = j, sj = w - 1 - i; break;
      case 2: si = h - 1 - i, sj = w - 1 - j; break;
      case 3: si = w - 1 - j, sj = i; break;
      default: break;
    }
    float v = static_cast<float>(img[si * w + sj]) / 255.0f;
    if (invert) v = max - v;
    if (o.normalize) v = (v - mean) / stdv;
    dst[q] = v;
  }
}

// numpy's RandomState(seed).permutation(n): arange(n), then the legacy shuffle.
std::vector<std::int64_t> numpy_permutation(std::uint32_t seed, std::int64_t n) {
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  toy::NumpyRandomState(seed).shuffle(perm);
  return perm;
}

// Inputs [M,1,H,W] float for items (pool index, quarter turns), in item order, plus targets and
// groups. The image files are streamed once and every record some item uses is written straight
// into its item rows, so nothing but the output tensor is held in memory.
Batch materialise(const Pool& pool, const torch::Tensor& all_labels, const torch::Tensor& item_pool,
                  const torch::Tensor& item_turns, const Options& o) {
  const std::int64_t m = item_pool.size(0);
  const std::int64_t h = pool.height, w = pool.width;
  torch::Tensor ip_t = item_pool.contiguous(), turns_t = item_turns.contiguous();
  const std::int64_t* ip = ip_t.data_ptr<std::int64_t>();
  const std::int64_t* turns = turns_t.data_ptr<std::int64_t>();
  std::vector<std::int64_t> order(static_cast<std::size_t>(m));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return ip[a] < ip[b]; });

  torch::Tensor out = torch::empty({m, 1, h, w}, torch::kFloat);
  float* base = out.data_ptr<float>();
  std::size_t next = 0;
  std::int64_t offset = 0;
  for (const auto& part : pool.parts) {
    const auto n = static_cast<std::int64_t>(part.rows.size());
    std::vector<std::int64_t> rows;  // file records this part must deliver, ascending
    for (std::size_t k = next; k < order.size() && ip[order[k]] < offset + n; ++k) {
      std::int64_t row = part.rows[static_cast<std::size_t>(ip[order[k]] - offset)];
      if (rows.empty() || rows.back() != row) rows.push_back(row);
    }
    if (!rows.empty())
      for_each_idx_row(part.images_file, 3, rows, [&](std::int64_t row, const std::uint8_t* img) {
        for (; next < order.size() && ip[order[next]] < offset + n &&
               part.rows[static_cast<std::size_t>(ip[order[next]] - offset)] == row;
             ++next) {
          const std::int64_t item = order[next];
          write_example(img, h, w, turns[item], o.invert_unrotated && turns[item] == 0, o, base + item * h * w);
        }
      });
    offset += n;
  }
  Batch b;
  b.inputs = o.flatten ? out.view({m, h * w}) : out;
  b.targets = all_labels.index_select(0, item_pool);
  b.groups = item_turns;
  return b;
}

Batch slice(const Batch& all, std::int64_t start, std::int64_t length, bool groups) {
  Batch b;
  b.inputs = all.inputs.narrow(0, start, length);
  b.targets = all.targets.narrow(0, start, length);
  if (groups) b.groups = all.groups.narrow(0, start, length);
  return b;
}

// ------------------------------------------------------------------ options

/// The `[dataset]` table as written; read_options() resolves it into Options. The defaults are
/// those of mode "rotated"; mode "plain" changes three of them (see read_options).
struct Keys {
  std::string root, fashion_root;
  std::string variant = "mnist";
  std::string mode = "rotated";
  std::vector<std::int64_t> rotations = {0, 90, 180, 270};
  bool invert_unrotated = true;
  std::vector<double> split_fractions = {0.7, 0.2, 0.1};
  std::int64_t split_seed = 40;
  std::int64_t subsample = 20;
  std::int64_t subsample_seed = -1;
  double val_fraction = 0.0;
  std::int64_t val_seed = 42;
  std::int64_t train_limit = 0;
  std::int64_t test_limit = 0;
  std::string normalize = "unit";
  double mean = 0.5;
  double stdev = 0.5;  ///< key "std"
  bool flatten = false;
  std::int64_t permutation = 0;
  std::vector<std::vector<std::int64_t>> class_subtasks;
  std::vector<std::int64_t> permutations;
  double train_fraction = 0.8;
  std::int64_t pair_seed = -1;
  std::int64_t samples_per_pair = 100;
  std::int64_t test_samples_per_pair = 100;
  std::int64_t sample_seed = -1;
  std::vector<std::int64_t> structure = {6, 3, 2, 2};
};

const modlab::Options<Keys>& mnist_options() {
  using K = Keys;
  static const auto o =
      modlab::Options<K>()
          .key("root", &K::root,
               "folder with the four IDX files (.gz or not; also a torchvision root holding MNIST/raw); \"\" = search the "
               "default places (README)")
          .key("fashion_root", &K::fashion_root,
               "variant fashion_mnist12 only: the Fashion-MNIST folder (root is then the MNIST folder)")
          .key("variant", &K::variant,
               "mnist | fashion | fashion_mnist12 (moe's 12 classes: Fashion 0-5 and digits 4-9 as 6-11)")
          .choices({"mnist", "fashion", "fashion_mnist12"})
          .key("mode", &K::mode,
               "rotated: goe rotation task on the train file, split 70/20/10; plain: official train/test split; "
               "digit_pairs: hier_modular's pairs of digits 0-7 labelled by a Boolean function of their 6 bits")
          .choices({"rotated", "plain", "digit_pairs"})
          .key("rotations", &K::rotations,
               "counter-clockwise angles each source image appears in: 0, 90, 180, 270 (mode plain: default [0])")
          .in_range(0, 270)
          .key("invert_unrotated", &K::invert_unrotated,
               "colour-invert the 0-degree copies, x <- max(x) - x per image (mode plain: default false)")
          .key("split_fractions", &K::split_fractions,
               "mode rotated: train/val/test fractions of the items (adding up to 1), as torch random_split")
          .in_range(0, 1)
          .key("split_seed", &K::split_seed, "mode rotated: seed of the split permutation (torch.Generator)").at_least(0)
          .key("subsample", &K::subsample, "keep a random 1/subsample of every split (mode plain: default 1 = all)")
          .at_least(1)
          .key("subsample_seed", &K::subsample_seed, "seed of the subsampling; -1 = the run's seed").at_least(-1)
          .key("val_fraction", &K::val_fraction,
               "mode plain: fraction of the train file held out as split \"val\" (0 = no val split)")
          .at_least(0).less_than(1)
          .key("val_seed", &K::val_seed, "mode plain: seed of the train/val permutation").at_least(0)
          .key("train_limit", &K::train_limit, "use only the first N images of each train file (0 = all)").at_least(0)
          .key("test_limit", &K::test_limit, "mode plain: use only the first M images of each test file (0 = all)")
          .at_least(0)
          .key("normalize", &K::normalize,
               "unit: pixels in [0,1]; standard: (x-mean)/std with the variant's statistics; custom: with mean and std")
          .choices({"unit", "standard", "custom"})
          .key("mean", &K::mean, "normalize = \"custom\": subtracted after scaling to [0,1]").finite()
          .key("std", &K::stdev, "normalize = \"custom\": divisor after subtracting mean").greater_than(0).finite()
          .key("flatten", &K::flatten, "inputs [784] instead of [1, 28, 28]")
          .key("permutation", &K::permutation,
               "permuted MNIST task p: the pixels of every image permuted by numpy's RandomState(p).permutation(784) "
               "(0 = unpermuted)")
          .in_range(0, 4294967295.0)
          .key("permutations", &K::permutations,
               "permuted-MNIST tasks (mode plain): a sub-task perm<p> per seed p (0 = identity), trained on "
               "split train_perm<p>, all evaluated on test_permuted (group = task)")
          .in_range(0, 4294967295.0)
          .key("class_subtasks", &K::class_subtasks,
               "sub-tasks made of classes, e.g. [[0, 1], [2, 5]]: each adds a sub-task \"classes_0_1\" and its "
               "training split \"train_classes_0_1\"")
          .at_least(0)
          .key("train_fraction", &K::train_fraction,
               "mode digit_pairs: fraction s of the 64 digit pairs used for training (floor(64 s) pairs)")
          .greater_than(0).less_than(1)
          .key("pair_seed", &K::pair_seed,
               "mode digit_pairs: seed of Python's random.Random shuffling the pairs; -1 = the run's seed")
          .at_least(-1)
          .key("samples_per_pair", &K::samples_per_pair, "mode digit_pairs: image pairs per train digit pair")
          .at_least(1)
          .key("test_samples_per_pair", &K::test_samples_per_pair,
               "mode digit_pairs: image pairs per digit pair in val, test1 and test2")
          .at_least(1)
          .key("sample_seed", &K::sample_seed, "mode digit_pairs: seed of the image draws; -1 = the run's seed")
          .at_least(-1)
          .key("structure", &K::structure,
               "mode digit_pairs: Boolean function of the 6 bits: [6,2,2], [6,3,2,2] or [6,3,3,2,2]")
          .at_least(1);
  return o;
}

// Keys that mean nothing in the chosen mode are errors, not silently ignored.
void check_mode_keys(const Config& c, const Options& o, const std::string& mode) {
  const std::string this_run = " (this run has mode = \"" + mode + "\")";
  for (const char* k : {"split_fractions", "split_seed"})
    if (!o.rotated_mode && c.has(k)) c.fail(k, "is only used with mode = \"rotated\"" + this_run);
  for (const char* k : {"val_fraction", "val_seed", "test_limit"})
    if (mode != "plain" && c.has(k)) c.fail(k, "is only used with mode = \"plain\"" + this_run);
  for (const char* k : {"rotations", "invert_unrotated", "subsample", "subsample_seed", "train_limit", "permutation"})
    if (o.pairs_mode && c.has(k)) c.fail(k, "is not used with mode = \"digit_pairs\"");
  if (o.pairs_mode && c.has("class_subtasks"))
    c.fail("class_subtasks", "is not used with mode = \"digit_pairs\": its targets are two Boolean outputs, not "
                             "classes (its sub-tasks are output0 and output1)");
  for (const char* k : {"train_fraction", "pair_seed", "samples_per_pair", "test_samples_per_pair", "sample_seed",
                        "structure"})
    if (!o.pairs_mode && c.has(k)) c.fail(k, "is only used with mode = \"digit_pairs\"" + this_run);
  if (o.pairs_mode && o.variant == Variant::FashionMnist12)
    c.fail("variant", "mode = \"digit_pairs\" takes the classes 0-7 of one file set: use \"mnist\" or \"fashion\"");
  if (o.variant != Variant::FashionMnist12 && c.has("fashion_root"))
    c.fail("fashion_root", "is only used with variant = \"fashion_mnist12\" (use root for the one data folder)");
  if (o.normalize_name != "custom")
    for (const char* k : {"mean", "std"})
      if (c.has(k)) c.fail(k, "is only used with normalize = \"custom\"");
}

void resolve_normalization(const Keys& k, Options& o) {
  o.normalize_name = k.normalize;
  o.normalize = k.normalize != "unit";
  if (k.normalize == "custom") o.mean = k.mean, o.stdev = k.stdev;
  if (k.normalize != "standard") return;
  if (o.variant == Variant::Mnist) o.mean = 0.1307, o.stdev = 0.3081;
  else if (o.variant == Variant::Fashion) o.mean = 0.2859, o.stdev = 0.3530;
  else o.mean = 0.5, o.stdev = 0.5;
}

// Every class id of class_subtasks a class of the variant, each list non-empty, no class twice.
void check_class_subtasks(const Config& c, const std::vector<std::vector<std::int64_t>>& lists, std::int64_t classes) {
  std::set<std::int64_t> seen;
  for (std::size_t i = 0; i < lists.size(); ++i) {
    if (lists[i].empty()) c.fail("class_subtasks", "entry " + std::to_string(i) + " is an empty list of classes");
    for (auto id : lists[i]) {
      if (id < 0 || id >= classes)
        c.fail("class_subtasks", "class " + std::to_string(id) + " (entry " + std::to_string(i) +
                                     ") is not a class of this variant, whose classes are 0.." +
                                     std::to_string(classes - 1));
      if (!seen.insert(id).second)
        c.fail("class_subtasks", "class " + std::to_string(id) + " is listed twice (sub-tasks must not share classes)");
    }
  }
}

Options read_options(const Config& c, Host& host) {
  const Keys k = mnist_options().parse(c);
  Options o;
  o.variant_name = k.variant;
  o.variant = k.variant == "fashion" ? Variant::Fashion : k.variant == "fashion_mnist12" ? Variant::FashionMnist12 : Variant::Mnist;
  o.rotated_mode = k.mode == "rotated";
  o.pairs_mode = k.mode == "digit_pairs";
  resolve_normalization(k, o);
  check_mode_keys(c, o, k.mode);

  // mode plain has its own defaults for these three
  const std::vector<std::int64_t> angles = o.rotated_mode || c.has("rotations") ? k.rotations : std::vector<std::int64_t>{0};
  if (angles.empty()) c.fail("rotations", "must list at least one angle");
  for (auto a : angles) {
    if (a != 0 && a != 90 && a != 180 && a != 270)
      c.fail("rotations", "angle " + std::to_string(a) + " is not one of 0, 90, 180, 270");
    if (std::find(o.quarter_turns.begin(), o.quarter_turns.end(), a / 90) != o.quarter_turns.end())
      c.fail("rotations", "angle " + std::to_string(a) + " is listed twice");
    o.quarter_turns.push_back(a / 90);
  }
  o.invert_unrotated = c.has("invert_unrotated") ? k.invert_unrotated : o.rotated_mode;
  o.subsample = c.has("subsample") ? k.subsample : (o.rotated_mode ? 20 : 1);

  o.split_fractions = k.split_fractions;
  if (o.split_fractions.size() != 3) c.fail("split_fractions", "expected 3 fractions (train, val, test)");
  double sum = 0.0;
  for (double f : o.split_fractions) sum += f;
  if (std::abs(sum - 1.0) > 1e-9) c.fail("split_fractions", "fractions must add up to 1");

  auto run_seed = [&](std::int64_t s) { return s == -1 ? host.seed() : static_cast<std::uint64_t>(s); };
  o.split_seed = static_cast<std::uint64_t>(k.split_seed);
  o.val_seed = static_cast<std::uint64_t>(k.val_seed);
  o.subsample_seed = run_seed(k.subsample_seed);
  o.val_fraction = k.val_fraction;
  o.train_limit = k.train_limit;
  o.test_limit = k.test_limit;
  o.flatten = k.flatten;
  o.permutation = static_cast<std::uint32_t>(k.permutation);
  o.class_subtasks = k.class_subtasks;
  o.permutations = k.permutations;
  if (!o.permutations.empty() && (o.rotated_mode || o.pairs_mode))
    c.fail("permutations", "is for mode = \"plain\" (the permuted-MNIST tasks)");
  if (!o.permutations.empty() && k.permutation != 0)
    c.fail("permutations", "cannot be combined with permutation (one fixed permutation of every image)");
  if (!o.permutations.empty() && !o.class_subtasks.empty())
    c.fail("permutations", "cannot be combined with class_subtasks (the sub-tasks would mix)");
  for (std::size_t i = 0; i < o.permutations.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (o.permutations[i] == o.permutations[j])
        c.fail("permutations", "permutation " + std::to_string(o.permutations[i]) + " is listed twice");
  check_class_subtasks(c, o.class_subtasks, o.variant == Variant::FashionMnist12 ? 12 : 10);
  o.train_fraction = k.train_fraction;
  o.pair_seed = run_seed(k.pair_seed);
  o.sample_seed = run_seed(k.sample_seed);
  o.samples_per_pair = k.samples_per_pair;
  o.test_samples_per_pair = k.test_samples_per_pair;
  o.structure = k.structure;
  const auto& supported = toy::boolean_structures();
  if (std::find(supported.begin(), supported.end(), o.structure) == supported.end())
    c.fail("structure", "unsupported structure [" + toy::structure_text(o.structure) +
                            "] (supported: " + toy::supported_structures_text() + ")");
  return o;
}

std::string join_angles(const std::vector<std::int64_t>& turns) {
  std::string s;
  for (auto t : turns) s += (s.empty() ? "" : "/") + std::to_string(t * 90);
  return s;
}

// ------------------------------------------------------------------ digit pairs (hier_modular §5.2)

constexpr int kPairDigits = 8;  // digits 0..7, 3 bits each
constexpr int kPairBits = 3;
constexpr int kPairs = kPairDigits * kPairDigits;

/// Row of the Boolean truth table that digit pair (d1, d2) stands for: with a = bits of d1 and
/// b = bits of d2 (MSB first), x = (a2, b2, a1, b1, a0, b0), so the table's layer-1 XOR of an input
/// pair is f_k = bit_k(d1) ⊕ bit_k(d2) and [6,3,2,2] gives y = [f_b2∧f_b1, f_b1∧f_b0] (§5.2).
int pair_row(int d1, int d2) {
  int row = 0;
  for (int k = kPairBits - 1; k >= 0; --k) row = (row << 2) | (((d1 >> k) & 1) << 1) | ((d2 >> k) & 1);
  return row;
}

std::string pair_name(int pair) { return std::to_string(pair / kPairDigits) + std::to_string(pair % kPairDigits); }

/// One split of digit pairs: `per_pair` image pairs for each pair in `pairs`, images drawn uniformly
/// (with replacement) from `pool`'s images of each digit. Inputs [n, 2, 1, H, W] (or [n, 2, H·W]),
/// targets [n, 2] float, groups = pair id d1·8 + d2.
Batch pair_split(const Pool& pool, const std::vector<std::vector<std::int64_t>>& by_digit, const std::vector<int>& pairs,
                 std::int64_t per_pair, const std::vector<std::int64_t>& structure, at::Generator& gen, const Options& o) {
  const auto n = static_cast<std::int64_t>(pairs.size()) * per_pair;
  std::vector<std::int64_t> images, groups;
  std::vector<float> targets;
  images.reserve(static_cast<std::size_t>(2 * n));
  for (int pair : pairs) {
    const int d[2] = {pair / kPairDigits, pair % kPairDigits};
    torch::Tensor draws[2];
    for (int i = 0; i < 2; ++i) {
      const auto& cand = by_digit[static_cast<std::size_t>(d[i])];
      draws[i] = torch::randint(static_cast<std::int64_t>(cand.size()), {per_pair}, gen, torch::kLong);
    }
    const auto y = toy::boolean_outputs(structure, pair_row(d[0], d[1]));
    const auto a0 = draws[0].accessor<std::int64_t, 1>(), a1 = draws[1].accessor<std::int64_t, 1>();
    const auto& c0 = by_digit[static_cast<std::size_t>(d[0])];
    const auto& c1 = by_digit[static_cast<std::size_t>(d[1])];
    for (std::int64_t s = 0; s < per_pair; ++s) {
      images.push_back(c0[static_cast<std::size_t>(a0[s])]);
      images.push_back(c1[static_cast<std::size_t>(a1[s])]);
      for (int v : y) targets.push_back(static_cast<float>(v));
      groups.push_back(pair);
    }
  }
  const torch::Tensor ids = torch::tensor(images, torch::kLong);
  Batch all = materialise(pool, pool_labels(pool), ids, torch::zeros_like(ids), o);
  Batch b;
  b.inputs = o.flatten ? all.inputs.view({n, 2, pool.height * pool.width})
                       : all.inputs.view({n, 2, 1, pool.height, pool.width});
  b.targets = torch::tensor(targets, torch::kFloat).view({n, 2});
  b.groups = torch::tensor(groups, torch::kLong);
  return b;
}

/// mode = "digit_pairs": two images of digits 0..7 (3 bits each, 6 input bits), labelled by the
/// Boolean function `structure` of the 6 bits. The 64 digit pairs are shuffled with Python's
/// random.Random(pair_seed) and split into ⌊64·s⌋ train pairs and held-out pairs (⌊rest/2⌋ val,
/// the rest test). Splits: train (train pairs, train-file images), val (val pairs), test1 (train
/// pairs) and test2 (unseen test pairs), the last three on test-file images.
std::shared_ptr<Dataset> make_digit_pairs(const Options& o, const std::string& dir, Host& host,
                                          std::chrono::steady_clock::time_point t0) {
  std::vector<int> order(kPairs);
  std::iota(order.begin(), order.end(), 0);
  PythonRandom(o.pair_seed).shuffle(order);
  const auto n_train = static_cast<std::size_t>(std::floor(kPairs * o.train_fraction));
  const std::size_t n_val = (kPairs - n_train) / 2;
  if (n_train == 0 || n_val == 0)
    throw ConfigError(std::string(kName) + ": train_fraction = " + std::to_string(o.train_fraction) + " gives " +
                      std::to_string(n_train) + " train pairs of the 64; need at least 1, and 2 held out (val, test2)");
  const std::vector<int> train_pairs(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_train));
  const std::vector<int> val_pairs(order.begin() + static_cast<std::ptrdiff_t>(n_train),
                                   order.begin() + static_cast<std::ptrdiff_t>(n_train + n_val));
  const std::vector<int> test_pairs(order.begin() + static_cast<std::ptrdiff_t>(n_train + n_val), order.end());

  auto by_digit = [&](const Pool& pool) {
    std::vector<std::vector<std::int64_t>> out(kPairDigits);
    std::int64_t i = 0;
    for (const auto& part : pool.parts)
      for (auto l : part.labels) {
        if (l < kPairDigits) out[static_cast<std::size_t>(l)].push_back(i);
        ++i;
      }
    for (int d = 0; d < kPairDigits; ++d)
      if (out[static_cast<std::size_t>(d)].empty())
        throw DataError(std::string(kName) + ": " + pool.parts.front().labels_file + " has no image of class " +
                        std::to_string(d) + ", which mode = \"digit_pairs\" needs");
    return out;
  };
  const Pool train_pool = make_pool(o.variant, dir, dir, "train", 0, "train_limit");
  const Pool test_pool = make_pool(o.variant, dir, dir, "t10k", 0, "test_limit");
  const auto train_digits = by_digit(train_pool), test_digits = by_digit(test_pool);
  at::Generator gen = generator(o.sample_seed);

  const std::vector<std::string> names = {"train", "val", "test1", "test2"};
  const std::vector<const std::vector<int>*> pairs = {&train_pairs, &val_pairs, &train_pairs, &test_pairs};
  std::map<std::string, std::shared_ptr<const Split>> splits;
  std::map<std::string, std::string> info;
  std::string size_text;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const bool train = i == 0;
    Batch b = pair_split(train ? train_pool : test_pool, train ? train_digits : test_digits, *pairs[i],
                         train ? o.samples_per_pair : o.test_samples_per_pair, o.structure, gen, o);
    info[names[i] + "_size"] = std::to_string(b.inputs.size(0));
    size_text += (i ? "/" : "") + std::to_string(b.inputs.size(0));
    splits[names[i]] = std::make_shared<TensorSplit>(std::move(b));
  }
  auto pair_list = [](const std::vector<int>& v) {
    std::string s;
    for (int p : v) s += (s.empty() ? "" : ",") + pair_name(p);
    return s;
  };

  DatasetSpec spec;
  spec.name = std::string(kName) + "/" + o.variant_name + "/digit_pairs";
  spec.input_shape = o.flatten ? std::vector<std::int64_t>{2, train_pool.height * train_pool.width}
                               : std::vector<std::int64_t>{2, 1, train_pool.height, train_pool.width};
  spec.task = TaskKind::MultiLabel;
  spec.num_outputs = 2;
  spec.group_kind = "digit_pair";
  for (int p = 0; p < kPairs; ++p) spec.group_names.push_back(pair_name(p));
  spec.splits = names;
  info["root"] = dir;
  info["train_files"] = train_pool.files();
  info["test_files"] = test_pool.files();
  info["structure"] = toy::structure_text(o.structure);
  info["images"] = "2";
  info["image_bits"] = std::to_string(kPairBits);
  info["train_pairs"] = pair_list(train_pairs);
  info["val_pairs"] = pair_list(val_pairs);
  info["test_pairs"] = pair_list(test_pairs);
  info["pair_seed"] = std::to_string(o.pair_seed);
  info["sample_seed"] = std::to_string(o.sample_seed);
  info["normalize"] = o.normalize_name;
  spec.info = info;
  spec.subtasks =
      toy::output_subtasks(spec.num_outputs, "the Boolean function [" + toy::structure_text(o.structure) + "]");

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream log;
  log << kName << ": " << spec.name << ": " << train_pairs.size() << "/" << val_pairs.size() << "/" << test_pairs.size()
      << " train/val/test pairs, " << size_text << " examples (train/val/test1/test2), loaded in " << std::fixed
      << std::setprecision(2) << secs << " s";
  host.log(log.str());
  return std::make_shared<TensorDataset>(std::move(spec), std::move(splits));
}

// ------------------------------------------------------------------ the factory

// "classes_0_1" for {0, 1}; the description names the classes when their names are not their ids.
SubTask class_subtask(const std::vector<std::int64_t>& classes, const std::vector<std::string>& class_names) {
  SubTask s;
  s.name = "classes";
  std::string ids, names;
  for (auto id : classes) {
    s.name += "_" + std::to_string(id);
    ids += (ids.empty() ? "" : ", ") + std::to_string(id);
    names += (names.empty() ? "" : ", ") + class_names[static_cast<std::size_t>(id)];
  }
  s.description = "the examples of classes " + ids + (names == ids ? "" : " (" + names + ")");
  s.classes = classes;
  s.train_split = "train_" + s.name;
  return s;
}

// permutations: a task per seed p, a view of the train split with its pixels permuted
// (train_perm<p>) and one test view holding every test image in every task (test_permuted).
void add_permuted_tasks(const Options& o, std::int64_t pixels, DatasetSpec& spec,
                        std::map<std::string, std::shared_ptr<const Split>>& splits) {
  if (o.permutations.empty()) return;
  std::vector<torch::Tensor> orders;
  std::vector<std::int64_t> ids;
  spec.group_kind = "permutation";
  spec.group_names.clear();
  for (std::size_t t = 0; t < o.permutations.size(); ++t) {
    const auto p = o.permutations[t];
    orders.push_back(p == 0 ? torch::arange(pixels, torch::kLong)
                            : torch::tensor(numpy_permutation(static_cast<std::uint32_t>(p), pixels), torch::kLong));
    ids.push_back(static_cast<std::int64_t>(t));
    SubTask s;
    s.name = "perm" + std::to_string(p);
    s.description = p == 0 ? "MNIST as it is" : "MNIST with the pixels permuted by RandomState(" + std::to_string(p) + ")";
    s.groups = {static_cast<std::int64_t>(t)};
    s.train_split = "train_" + s.name;
    splits[s.train_split] = std::make_shared<PermutedTasksSplit>(splits.at("train"), std::vector<torch::Tensor>{orders.back()},
                                                                 std::vector<std::int64_t>{ids.back()});
    spec.splits.push_back(s.train_split);
    spec.group_names.push_back(s.name);
    spec.subtasks.push_back(std::move(s));
  }
  splits["test_permuted"] = std::make_shared<PermutedTasksSplit>(splits.at("test"), orders, ids);
  spec.splits.push_back("test_permuted");
  spec.info["permutations"] = std::to_string(o.permutations.size()) + " tasks";
}

// class_subtasks: a sub-task per list, with a view of the train split holding the examples of its
// classes (in train order), added after the other splits.
void add_class_subtasks(const Options& o, DatasetSpec& spec,
                        std::map<std::string, std::shared_ptr<const Split>>& splits) {
  const std::shared_ptr<const Split> train = splits.at("train");
  const torch::Tensor targets = train->all().targets;
  std::string listed;
  for (const auto& classes : o.class_subtasks) {
    SubTask s = class_subtask(classes, spec.class_names);
    const torch::Tensor rows = torch::isin(targets, torch::tensor(classes, torch::kLong)).nonzero().view(-1);
    if (rows.numel() == 0)
      throw DataError(std::string(kName) + ": class_subtasks: the train split holds no example of sub-task " + s.name +
                      " (" + s.description + "), so it has nothing to train on");
    splits[s.train_split] = std::make_shared<SubsetSplit>(train, rows);
    spec.splits.push_back(s.train_split);
    spec.info[s.train_split + "_size"] = std::to_string(rows.numel());
    listed += (listed.empty() ? "" : " ") + s.name;
    spec.subtasks.push_back(std::move(s));
  }
  if (!listed.empty()) spec.info["class_subtasks"] = listed;
}

// The spec of the plain and rotated modes, before splits and sub-tasks: name, input shape, classes,
// and the rotation as group when there is one.
DatasetSpec classification_spec(const Options& o, std::int64_t height, std::int64_t width, bool groups) {
  DatasetSpec spec;
  spec.name = std::string(kName) + "/" + o.variant_name + "/" + (o.rotated_mode ? "rotated" : "plain");
  spec.input_shape = o.flatten ? std::vector<std::int64_t>{height * width} : std::vector<std::int64_t>{1, height, width};
  spec.task = TaskKind::Classification;
  switch (o.variant) {
    case Variant::Mnist:
      for (int d = 0; d < 10; ++d) spec.class_names.push_back(std::to_string(d));
      break;
    case Variant::Fashion: spec.class_names = kFashionClasses; break;
    case Variant::FashionMnist12:
      spec.class_names.assign(kFashionClasses.begin(), kFashionClasses.begin() + 6);
      for (int d = 4; d < 10; ++d) spec.class_names.push_back(std::to_string(d));
      break;
  }
  spec.num_classes = static_cast<std::int64_t>(spec.class_names.size());
  if (groups) {
    spec.group_kind = "rotation";
    spec.group_names = {"0", "90", "180", "270"};
  }
  return spec;
}

// What was done to the images, for the run file's notes.
void describe_preprocessing(const Options& o, std::map<std::string, std::string>& info) {
  info["rotations"] = join_angles(o.quarter_turns);
  info["invert_unrotated"] = o.invert_unrotated ? "true" : "false";
  info["permutation"] = std::to_string(o.permutation);
  info["normalize"] = o.normalize_name;
  if (o.normalize) {
    std::ostringstream ms;
    ms << o.mean << "/" << o.stdev;
    info["mean_std"] = ms.str();
  }
}

std::shared_ptr<Dataset> make_rotated_mnist(const Config& c, Host& host) {
  const auto t0 = std::chrono::steady_clock::now();
  Options o = read_options(c, host);

  std::string mnist_dir, fashion_dir;
  switch (o.variant) {
    case Variant::Mnist: mnist_dir = find_root(c, "root", false, host); break;
    case Variant::Fashion: fashion_dir = find_root(c, "root", true, host); break;
    case Variant::FashionMnist12:
      mnist_dir = find_root(c, "root", false, host);
      fashion_dir = find_root(c, "fashion_root", true, host);
      break;
  }

  if (o.pairs_mode) return make_digit_pairs(o, o.variant == Variant::Mnist ? mnist_dir : fashion_dir, host, t0);

  const auto r = static_cast<std::int64_t>(o.quarter_turns.size());
  const torch::Tensor turn_of = torch::tensor(o.quarter_turns, torch::kLong);
  // Item i of a pool stands for source image i / R in rotation i % R (goe §2.4 with R = 4).
  auto item_pool = [&](const torch::Tensor& items) { return torch::div(items, r, "floor"); };
  auto item_turns = [&](const torch::Tensor& items) { return turn_of.index_select(0, items.remainder(r)); };

  const bool groups = o.rotated_mode || o.quarter_turns != std::vector<std::int64_t>{0};
  std::vector<std::string> names;
  std::vector<std::int64_t> sizes;
  std::map<std::string, std::shared_ptr<const Split>> splits;
  std::map<std::string, std::string> info;

  Pool train_pool = make_pool(o.variant, mnist_dir, fashion_dir, "train", o.train_limit, "train_limit");
  const bool odd_turns = std::any_of(o.quarter_turns.begin(), o.quarter_turns.end(), [](std::int64_t t) { return t % 2; });
  if (odd_turns && train_pool.height != train_pool.width)
    throw DataError(std::string(kName) + ": rotations by 90 or 270 degrees need square images, but " +
                    train_pool.parts.front().images_file + " holds " + std::to_string(train_pool.height) + "x" +
                    std::to_string(train_pool.width) + " images");
  if (o.permutation != 0) o.pixel_order = numpy_permutation(o.permutation, train_pool.height * train_pool.width);
  at::Generator sub_gen = generator(o.subsample_seed);
  std::vector<torch::Tensor> train_items;  // per split name in `names`, item ids into train_pool x R
  const std::int64_t t = train_pool.size() * r;
  if (o.rotated_mode) {
    at::Generator gen = generator(o.split_seed);
    torch::Tensor perm = torch::randperm(t, gen, torch::kLong);
    auto len = split_lengths(t, o.split_fractions);
    std::int64_t start = 0;
    for (std::size_t i = 0; i < 3; ++i) {
      train_items.push_back(subsample(perm.narrow(0, start, len[i]), o.subsample, sub_gen));
      start += len[i];
    }
    names = {"train", "val", "test"};
  } else if (o.val_fraction > 0.0) {
    at::Generator gen = generator(o.val_seed);
    torch::Tensor perm = torch::randperm(t, gen, torch::kLong);
    auto len = split_lengths(t, {1.0 - o.val_fraction, o.val_fraction});
    train_items.push_back(subsample(perm.narrow(0, 0, len[0]), o.subsample, sub_gen));
    train_items.push_back(subsample(perm.narrow(0, len[0], len[1]), o.subsample, sub_gen));
    names = {"train", "val"};
  } else {
    train_items.push_back(subsample(torch::arange(t, torch::kLong), o.subsample, sub_gen));
    names = {"train"};
  }

  {
    torch::Tensor items = torch::cat(train_items);
    Batch all = materialise(train_pool, pool_labels(train_pool), item_pool(items), item_turns(items), o);
    std::int64_t start = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
      std::int64_t n = train_items[i].size(0);
      splits[names[i]] = std::make_shared<TensorSplit>(slice(all, start, n, groups));
      sizes.push_back(n);
      start += n;
    }
  }
  info["train_files"] = train_pool.files();
  info["train_pool_images"] = std::to_string(train_pool.size());

  if (!o.rotated_mode) {
    Pool test_pool = make_pool(o.variant, mnist_dir, fashion_dir, "t10k", o.test_limit, "test_limit");
    if (test_pool.height != train_pool.height || test_pool.width != train_pool.width)
      throw DataError(std::string(kName) + ": " + test_pool.parts.front().images_file + " holds " +
                      std::to_string(test_pool.height) + "x" + std::to_string(test_pool.width) +
                      " images, unlike the " + std::to_string(train_pool.height) + "x" +
                      std::to_string(train_pool.width) + " images of " + train_pool.parts.front().images_file);
    torch::Tensor items = subsample(torch::arange(test_pool.size() * r, torch::kLong), o.subsample, sub_gen);
    Batch all = materialise(test_pool, pool_labels(test_pool), item_pool(items), item_turns(items), o);
    splits["test"] = std::make_shared<TensorSplit>(slice(all, 0, items.size(0), groups));
    names.push_back("test");
    sizes.push_back(items.size(0));
    info["test_files"] = test_pool.files();
    info["test_pool_images"] = std::to_string(test_pool.size());
  }

  DatasetSpec spec = classification_spec(o, train_pool.height, train_pool.width, groups);
  spec.splits = names;
  if (!mnist_dir.empty()) info["root"] = mnist_dir;
  if (!fashion_dir.empty()) info[o.variant == Variant::Fashion ? "root" : "fashion_root"] = fashion_dir;
  describe_preprocessing(o, info);
  std::string size_text;
  for (std::size_t i = 0; i < names.size(); ++i) {
    info[names[i] + "_size"] = std::to_string(sizes[i]);
    size_text += (i ? "/" : "") + std::to_string(sizes[i]);
  }
  spec.info = info;
  add_class_subtasks(o, spec, splits);
  add_permuted_tasks(o, train_pool.height * train_pool.width, spec, splits);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream log;
  log << kName << ": " << spec.name << ": " << size_text << " examples (";
  for (std::size_t i = 0; i < names.size(); ++i) log << (i ? "/" : "") << names[i];
  log << "), rotations " << info["rotations"];
  if (o.permutation != 0) log << ", pixels permuted (permutation " << o.permutation << ")";
  if (!spec.subtasks.empty()) log << ", " << spec.subtasks.size() << " sub-tasks";
  log << ", loaded in " << std::fixed << std::setprecision(2) << secs << " s";
  host.log(log.str());
  return std::make_shared<TensorDataset>(std::move(spec), std::move(splits));
}

void register_rotated_mnist(Registrar& r) {
  DatasetEntry e;
  e.name = kName;
  e.description = "MNIST / Fashion-MNIST from IDX files: goe's rotation task (rotation as group) or plain classification";
  e.keys = mnist_options().specs();
  e.factory = &make_rotated_mnist;
  r.add_dataset(std::move(e));
}

}  // namespace
}  // namespace modlab::mnist

MODLAB_PLUGIN("rotated_mnist", modlab::kDatasetPlugin, "1.0.0",
              "MNIST and Fashion-MNIST (IDX), plain or as the rotated-digits task", modlab::mnist::register_rotated_mnist)

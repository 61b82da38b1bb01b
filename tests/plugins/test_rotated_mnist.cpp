#define BOOST_TEST_MODULE rotated_mnist
#include <boost/test/unit_test.hpp>

#include <modlab/config.hpp>
#include <modlab/dataset.hpp>
#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include "../temp_dir.hpp"

#include <zlib.h>

#include "../../plugins/datasets/rotated_mnist/python_random.hpp"
#include "../../plugins/datasets/toy/numpy_random.hpp"
#include "config_builders.hpp"

#include <array>
#include <map>
#include <numeric>
#include <set>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
namespace utf = boost::unit_test;
namespace tt = boost::test_tools;
using modlab::Value;
using namespace test_config;

namespace {

// ------------------------------------------------------------------ helpers

struct Loaded {
  std::shared_ptr<modlab::Dataset> dataset;
  std::vector<std::string> log;
};

Loaded load(Value::Table t) {
  Loaded out;
  modlab::runner::HostOptions opts;
  auto* log = &out.log;
  opts.logger = [log](const std::string& m) { log->push_back(m); };
  modlab::runner::RunHost host(modlab::runner::default_registry(), opts);
  out.dataset = host.create_dataset("rotated_mnist", make_config(std::move(t)));
  return out;
}

// The message of the modlab::Error that loading `t` throws ("" if none).
template <class E = modlab::Error>
std::string load_error(Value::Table t) {
  try {
    load(std::move(t));
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

using modlab_test::TempDir;

void put_be32(std::string& s, std::uint32_t v) {
  for (int sh = 24; sh >= 0; sh -= 8) s.push_back(static_cast<char>((v >> sh) & 0xff));
}

// An IDX file: header with `magic` and `dims`, then `data`, written raw or gzipped.
void write_idx(const fs::path& path, std::uint32_t magic, const std::vector<std::uint32_t>& dims,
               const std::vector<std::uint8_t>& data, bool gzip) {
  std::string bytes;
  put_be32(bytes, magic);
  for (auto d : dims) put_be32(bytes, d);
  bytes.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    BOOST_REQUIRE(f != nullptr);
    BOOST_REQUIRE_EQUAL(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

constexpr int kSide = 28;

// Image k of the generated set: asymmetric under every rotation, with a per-image maximum.
std::uint8_t pixel(int k, int i, int j) { return static_cast<std::uint8_t>((i * 31 + j * 17 + k * 13) % 200 + 5 * k); }

std::vector<std::uint8_t> generated_images(int n) {
  std::vector<std::uint8_t> v;
  for (int k = 0; k < n; ++k)
    for (int i = 0; i < kSide; ++i)
      for (int j = 0; j < kSide; ++j) v.push_back(pixel(k, i, j));
  return v;
}

// Writes a complete 4-file set: n images (image k has label k % 10) in train and test files.
void write_set(const fs::path& dir, int n, bool gzip) {
  std::vector<std::uint8_t> labels;
  for (int k = 0; k < n; ++k) labels.push_back(static_cast<std::uint8_t>(k % 10));
  const std::string ext = gzip ? ".gz" : "";
  const auto N = static_cast<std::uint32_t>(n);
  for (std::string prefix : {"train", "t10k"}) {
    write_idx(dir / (prefix + "-images-idx3-ubyte" + ext), 0x803, {N, kSide, kSide}, generated_images(n), gzip);
    write_idx(dir / (prefix + "-labels-idx1-ubyte" + ext), 0x801, {N}, labels, gzip);
  }
}

// Expected pixel (i, j) of image k turned r quarter turns counter-clockwise:
// one turn maps out[i][j] = in[j][W-1-i].
std::uint8_t rotated_pixel(int k, int r, int i, int j) {
  for (int t = 0; t < r; ++t) {
    int ni = j, nj = kSide - 1 - i;
    i = ni;
    j = nj;
  }
  return pixel(k, i, j);
}

bool has_real_mnist() {
  const char* d = std::getenv("MODLAB_DATA_DIR");
  return d && fs::exists(fs::path(d) / "mnist" / "train-images-idx3-ubyte.gz");
}
struct RealMnist {
  tt::assertion_result operator()(utf::test_unit_id) const {
    tt::assertion_result r(has_real_mnist());
    r.message() << "MNIST not found at $MODLAB_DATA_DIR/mnist (MODLAB_DATA_DIR="
                << (std::getenv("MODLAB_DATA_DIR") ? std::getenv("MODLAB_DATA_DIR") : "unset") << "); skipped";
    return r;
  }
};

constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";
struct RealFashion {
  tt::assertion_result operator()(utf::test_unit_id) const {
    tt::assertion_result r(fs::exists(fs::path(kFashionDir) / "train-images-idx3-ubyte.gz") && has_real_mnist());
    r.message() << "Fashion-MNIST (" << kFashionDir << ", Debian package dataset-fashion-mnist) or MNIST missing; skipped";
    return r;
  }
};

std::string real_mnist_dir() { return (fs::path(std::getenv("MODLAB_DATA_DIR")) / "mnist").string(); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ------------------------------------------------------------------ generated files

BOOST_AUTO_TEST_CASE(rotation_and_inversion_pixel_by_pixel) {
  TempDir dir;
  write_set(dir.path, 10, true);
  auto ds = load({{"root", str(dir.str())}, {"subsample", Value::integer(1)}}).dataset;
  auto spec = ds->spec();
  BOOST_TEST(spec.group_kind == "rotation");
  BOOST_TEST(spec.group_names == (std::vector<std::string>{"0", "90", "180", "270"}), tt::per_element());
  BOOST_TEST(spec.splits == (std::vector<std::string>{"train", "val", "test"}), tt::per_element());
  BOOST_TEST(spec.input_shape == (std::vector<std::int64_t>{1, 28, 28}), tt::per_element());
  BOOST_TEST(spec.num_classes == 10);

  std::set<std::pair<int, int>> seen;
  std::int64_t checked = 0;
  for (const auto& name : spec.splits) {
    auto b = ds->split(name)->all();
    BOOST_REQUIRE(b.groups.defined());
    BOOST_TEST(b.inputs.dtype() == torch::kFloat);
    BOOST_TEST(b.inputs.is_contiguous());
    for (std::int64_t n = 0; n < b.size(); ++n) {
      const int k = static_cast<int>(b.targets[n].item<std::int64_t>());
      const int r = static_cast<int>(b.groups[n].item<std::int64_t>());
      BOOST_REQUIRE(seen.insert({k, r}).second);
      auto x = b.inputs[n][0].contiguous();
      if (r != 0) {  // the same as torch.rot90(image, r, dims = [0, 1])
        std::vector<float> src;
        for (int i = 0; i < kSide; ++i)
          for (int j = 0; j < kSide; ++j) src.push_back(static_cast<float>(pixel(k, i, j)) / 255.0f);
        BOOST_TEST(torch::equal(x, torch::rot90(torch::tensor(src).view({kSide, kSide}), r, {0, 1})));
      }
      const float* p = x.data_ptr<float>();
      int max = 0;
      for (int i = 0; i < kSide; ++i)
        for (int j = 0; j < kSide; ++j) max = std::max<int>(max, pixel(k, i, j));
      for (int i = 0; i < kSide; ++i)
        for (int j = 0; j < kSide; ++j) {
          const float v = static_cast<float>(rotated_pixel(k, r, i, j)) / 255.0f;
          const float expected = r == 0 ? static_cast<float>(max) / 255.0f - v : v;
          if (std::abs(p[i * kSide + j] - expected) > 1e-6f) {
            BOOST_ERROR("image " << k << " rotation " << r * 90 << " pixel (" << i << "," << j << "): "
                                 << p[i * kSide + j] << " != " << expected);
            return;
          }
          ++checked;
        }
    }
  }
  BOOST_TEST(seen.size() == 40u);  // every image in every rotation exactly once
  BOOST_TEST(checked == 40 * kSide * kSide);
}

// torch.utils.data.random_split(range(40), [0.7, 0.2, 0.1], generator=torch.Generator().manual_seed(40)),
// as printed by PyTorch 1.13.
BOOST_AUTO_TEST_CASE(split_equals_torch_random_split) {
  const std::vector<std::vector<std::int64_t>> expected = {
      {38, 12, 39, 3, 16, 24, 6, 31, 20, 34, 36, 18, 15, 28, 17, 11, 35, 22, 27, 4, 37, 10, 19, 33, 13, 32, 29, 23},
      {21, 14, 30, 2, 9, 7, 26, 25},
      {1, 5, 8, 0}};
  TempDir dir;
  write_set(dir.path, 10, false);  // uncompressed files take the same path
  auto ds = load({{"root", str(dir.str())}, {"subsample", Value::integer(1)}}).dataset;
  const std::vector<std::string> names = {"train", "val", "test"};
  for (std::size_t s = 0; s < 3; ++s) {
    auto b = ds->split(names[s])->all();
    auto items = (b.targets * 4 + b.groups).contiguous();
    std::vector<std::int64_t> got(items.data_ptr<std::int64_t>(), items.data_ptr<std::int64_t>() + items.numel());
    BOOST_TEST(got == expected[s], tt::per_element());
  }
}

BOOST_AUTO_TEST_CASE(subsample_and_rotation_subset) {
  TempDir dir;
  write_set(dir.path, 50, true);
  // 200 items -> 140/40/20, every split subsampled by 20 -> 7/2/1
  auto ds = load({{"root", str(dir.str())}}).dataset;
  BOOST_TEST(ds->split("train")->size() == 7);
  BOOST_TEST(ds->split("val")->size() == 2);
  BOOST_TEST(ds->split("test")->size() == 1);

  auto two = load({{"root", str(dir.str())},
                   {"rotations", ints({90, 270})},
                   {"subsample", Value::integer(1)},
                   {"invert_unrotated", Value::boolean(false)}})
                 .dataset;
  std::int64_t total = 0;
  for (const auto& name : {"train", "val", "test"}) {
    auto b = two->split(name)->all();
    total += b.size();
    BOOST_TEST(((b.groups == 1) | (b.groups == 3)).all().item<bool>());
  }
  BOOST_TEST(total == 100);
}

BOOST_AUTO_TEST_CASE(plain_mode_official_split_and_options) {
  TempDir dir;
  write_set(dir.path, 10, true);
  auto ds = load({{"root", str(dir.str())}, {"mode", str("plain")}}).dataset;
  auto spec = ds->spec();
  BOOST_TEST(spec.group_kind.empty());
  BOOST_TEST(spec.splits == (std::vector<std::string>{"train", "test"}), tt::per_element());
  auto train = ds->split("train")->all();
  BOOST_TEST(!train.groups.defined());
  BOOST_TEST(train.size() == 10);
  BOOST_TEST(torch::equal(train.targets, torch::arange(10, torch::kLong)));  // file order
  // unrotated, not inverted: ToTensor values
  BOOST_TEST(train.inputs[3][0][5][7].item<float>() == static_cast<float>(pixel(3, 5, 7)) / 255.0f);
  BOOST_TEST(ds->split("test")->size() == 10);

  // held-out validation, normalisation, flattening, limits
  auto v = load({{"root", str(dir.str())},
                 {"mode", str("plain")},
                 {"val_fraction", Value::floating(0.2)},
                 {"normalize", str("standard")},
                 {"flatten", Value::boolean(true)},
                 {"test_limit", Value::integer(4)}})
               .dataset;
  BOOST_TEST(v->spec().splits == (std::vector<std::string>{"train", "val", "test"}), tt::per_element());
  auto tr = v->split("train")->all(), va = v->split("val")->all();
  BOOST_TEST(tr.size() == 8);
  BOOST_TEST(va.size() == 2);
  BOOST_TEST(v->split("test")->size() == 4);
  BOOST_TEST(torch::equal(std::get<0>(torch::sort(torch::cat({tr.targets, va.targets}))), torch::arange(10, torch::kLong)));
  BOOST_TEST(v->spec().input_shape == (std::vector<std::int64_t>{784}), tt::per_element());
  BOOST_TEST(tr.inputs.sizes() == (std::vector<std::int64_t>{8, 784}), tt::per_element());
  const std::int64_t k = tr.targets[0].item<std::int64_t>();
  const float expected = (static_cast<float>(pixel(static_cast<int>(k), 1, 2)) / 255.0f - 0.1307f) / 0.3081f;
  BOOST_TEST(std::abs(tr.inputs[0][1 * 28 + 2].item<float>() - expected) < 1e-6f);

  auto custom = load({{"root", str(dir.str())},
                      {"mode", str("plain")},
                      {"normalize", str("custom")},
                      {"mean", Value::floating(0.5)},
                      {"std", Value::floating(0.5)},
                      {"train_limit", Value::integer(3)}})
                    .dataset;
  auto c = custom->split("train")->all();
  BOOST_TEST(c.size() == 3);
  BOOST_TEST(std::abs(c.inputs[2][0][0][0].item<float>() - (pixel(2, 0, 0) / 255.0f - 0.5f) / 0.5f) < 1e-6f);
}

BOOST_AUTO_TEST_CASE(batches_are_index_selects_of_the_split) {
  TempDir dir;
  write_set(dir.path, 10, true);
  auto ds = load({{"root", str(dir.str())}, {"subsample", Value::integer(1)}}).dataset;
  auto split = ds->split("train");
  auto all = split->all();
  auto idx = torch::tensor(std::vector<std::int64_t>{5, 0, 27}, torch::kLong);
  auto b = split->get(idx);
  BOOST_TEST(torch::equal(b.inputs, all.inputs.index_select(0, idx)));
  BOOST_TEST(torch::equal(b.groups, all.groups.index_select(0, idx)));
  BOOST_TEST(torch::equal(b.indices, idx));
}

// ------------------------------------------------------------------ permuted MNIST (masked_analyzer §4.3 d)

namespace {

// /usr/bin/python3 -c "import numpy as np; print(np.random.RandomState(p).permutation(784)[:12])"
// (numpy 1.24) for p = 1 and p = 3.
const std::map<std::int64_t, std::vector<std::int64_t>> kNumpyPermutationStart = {
    {1, {649, 265, 111, 301, 339, 559, 742, 202, 600, 680, 223, 764}},
    {3, {294, 102, 51, 453, 457, 701, 445, 575, 27, 288, 48, 731}}};

// The whole permutation, drawn with the numpy re-implementation the plugin uses.
torch::Tensor numpy_permutation(std::uint32_t seed) {
  std::vector<std::int64_t> perm(784);
  std::iota(perm.begin(), perm.end(), 0);
  modlab::toy::NumpyRandomState(seed).shuffle(perm);
  return torch::tensor(perm, torch::kLong);
}

torch::Tensor flat_inputs(const std::shared_ptr<modlab::Dataset>& ds, const std::string& split) {
  auto x = ds->split(split)->all().inputs;
  return x.reshape({x.size(0), -1});
}

}  // namespace

BOOST_AUTO_TEST_CASE(permutation_is_numpys) {
  for (const auto& [seed, start] : kNumpyPermutationStart) {
    auto perm = numpy_permutation(static_cast<std::uint32_t>(seed));
    std::vector<std::int64_t> got(perm.data_ptr<std::int64_t>(), perm.data_ptr<std::int64_t>() + 12);
    BOOST_TEST(got == start, tt::per_element());
    BOOST_TEST(torch::equal(std::get<0>(torch::sort(perm)), torch::arange(784, torch::kLong)));
  }
}

// Output pixel q of a permuted image is pixel perm[q] of the unpermuted one (x.view(-1)[perm]),
// in train and test, flattened or not, after rotation and inversion.
BOOST_AUTO_TEST_CASE(permutation_applied_output_from_input) {
  TempDir dir;
  write_set(dir.path, 10, true);
  const Value::Table plain = {{"root", str(dir.str())}, {"mode", str("plain")}};
  auto with = [&](Value::Table extra) {
    Value::Table t = plain;
    for (auto& [k, v] : extra) t[k] = v;
    return load(t).dataset;
  };
  auto none = with({});
  BOOST_TEST(none->spec().info.at("permutation") == "0");
  for (const auto& [seed, start] : kNumpyPermutationStart) {
    auto ds = with({{"permutation", Value::integer(seed)}});
    BOOST_TEST(ds->spec().info.at("permutation") == std::to_string(seed));
    BOOST_TEST(ds->spec().input_shape == (std::vector<std::int64_t>{1, 28, 28}), tt::per_element());
    const auto perm = numpy_permutation(static_cast<std::uint32_t>(seed));
    for (const std::string split : {"train", "test"}) {
      const auto x0 = flat_inputs(none, split), x = flat_inputs(ds, split);
      for (std::size_t q = 0; q < start.size(); ++q)
        BOOST_TEST(torch::equal(x.select(1, static_cast<std::int64_t>(q)), x0.select(1, start[q])));
      BOOST_TEST(torch::equal(x, x0.index_select(1, perm)));
      // The other way round (new[perm[q]] = old[q]) gives other images, so the check above can fail.
      BOOST_TEST(!torch::equal(x, x0.index_select(1, torch::argsort(perm))));
    }
  }
  // Permutation 0 is the identity; flattening and rotation compose with the permutation.
  BOOST_TEST(
      torch::equal(flat_inputs(with({{"permutation", Value::integer(0)}}), "train"), flat_inputs(none, "train")));
  auto flat = with({{"permutation", Value::integer(3)}, {"flatten", Value::boolean(true)}});
  BOOST_TEST(torch::equal(flat->split("test")->all().inputs,
                          flat_inputs(none, "test").index_select(1, numpy_permutation(3))));
  const Value::Table rotated = {{"root", str(dir.str())}, {"subsample", Value::integer(1)}};
  Value::Table rotated_perm = rotated;
  rotated_perm["permutation"] = Value::integer(1);
  auto r0 = load(rotated).dataset, r1 = load(rotated_perm).dataset;
  BOOST_TEST(torch::equal(flat_inputs(r1, "val"), flat_inputs(r0, "val").index_select(1, numpy_permutation(1))));
  BOOST_TEST(torch::equal(r1->split("val")->all().groups, r0->split("val")->all().groups));
}

BOOST_AUTO_TEST_CASE(permutation_errors_name_the_key) {
  TempDir dir;
  write_set(dir.path, 40, false);
  std::string msg = load_error<modlab::ConfigError>(
      {{"root", str(dir.str())}, {"mode", str("digit_pairs")}, {"permutation", Value::integer(1)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "dataset.permutation"));
  BOOST_TEST(contains(msg, "digit_pairs"));
  msg = load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"permutation", Value::integer(-1)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "dataset.permutation"));
  msg = load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"permutation", Value::integer(1LL << 32)}});
  BOOST_TEST(contains(msg, "dataset.permutation"));
}

// The permuted-MNIST tasks: one sub-task and one permuted train view per seed, and a test view
// holding every test image in every task, the task as group.
BOOST_AUTO_TEST_CASE(permutations_make_one_task_per_seed) {
  TempDir dir;
  write_set(dir.path, 10, true);
  const Value::Table plain = {{"root", str(dir.str())}, {"mode", str("plain")}};
  Value::Table tasks = plain;
  tasks["permutations"] = ints({0, 3});
  auto none = load(plain).dataset, ds = load(tasks).dataset;
  const auto spec = ds->spec();
  BOOST_TEST_REQUIRE(spec.subtasks.size() == 2u);
  BOOST_TEST(spec.subtasks[1].name == "perm3");
  BOOST_TEST(spec.subtasks[1].groups == (std::vector<std::int64_t>{1}), tt::per_element());
  BOOST_TEST(spec.subtasks[1].train_split == "train_perm3");
  BOOST_TEST(spec.group_kind == "permutation");
  BOOST_TEST(torch::equal(flat_inputs(ds, "train_perm0"), flat_inputs(none, "train")));
  BOOST_TEST(torch::equal(flat_inputs(ds, "train_perm3"), flat_inputs(none, "train").index_select(1, numpy_permutation(3))));
  BOOST_TEST(torch::equal(ds->split("train_perm3")->all().groups, torch::ones({10}, torch::kLong)));
  const auto test = ds->split("test_permuted")->all();
  const auto n = none->split("test")->size();
  BOOST_TEST(test.size() == 2 * n);
  BOOST_TEST(torch::equal(test.inputs.reshape({2 * n, -1}).narrow(0, n, n),
                          flat_inputs(none, "test").index_select(1, numpy_permutation(3))));
  BOOST_TEST(torch::equal(test.targets.narrow(0, n, n), none->split("test")->all().targets));
  BOOST_TEST(test.groups.narrow(0, 0, n).sum().item<std::int64_t>() == 0);
  Value::Table twice = plain;
  twice["permutations"] = ints({2, 2});
  BOOST_TEST(contains(load_error<modlab::ConfigError>(twice), "dataset.permutations"));
  Value::Table both = tasks;
  both["permutation"] = Value::integer(1);
  BOOST_TEST(contains(load_error<modlab::ConfigError>(both), "dataset.permutations"));
}

// ------------------------------------------------------------------ class sub-tasks

namespace {

Value int_lists(const std::vector<std::vector<std::int64_t>>& lists) {
  Value::Array a;
  for (const auto& l : lists) a.push_back(ints(l));
  return Value::array(a);
}

// The mixture-of-experts XAI split into class pairs.
const std::vector<std::vector<std::int64_t>> kClassPairs = {{0, 1}, {2, 5}, {3, 4}, {6, 9}, {7, 8}};

// Split `name` holds exactly the examples of `train` whose class is in `classes`, in train order.
void check_class_split(const std::shared_ptr<modlab::Dataset>& ds, const std::string& name,
                       const std::vector<std::int64_t>& classes) {
  const auto train = ds->split("train")->all();
  const auto sub = ds->split(name)->all();
  const auto wanted = torch::isin(train.targets, torch::tensor(classes, torch::kLong));
  BOOST_TEST(sub.size() == wanted.sum().item<std::int64_t>(), name);
  BOOST_TEST(sub.size() > 0, name);
  BOOST_TEST(torch::isin(sub.targets, torch::tensor(classes, torch::kLong)).all().item<bool>(), name);
  const auto rows = wanted.nonzero().view(-1);
  BOOST_TEST(torch::equal(sub.indices, rows), name);  // the train split's own rows, in order
  BOOST_TEST(torch::equal(sub.inputs, train.inputs.index_select(0, rows)), name);
  BOOST_TEST(torch::equal(sub.targets, train.targets.index_select(0, rows)), name);
  BOOST_TEST(ds->spec().info.at(name + "_size") == std::to_string(sub.size()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(class_subtasks_names_classes_and_splits) {
  TempDir dir;
  write_set(dir.path, 40, true);
  auto ds = load({{"root", str(dir.str())},
                  {"mode", str("plain")},
                  {"val_fraction", Value::floating(0.25)},
                  {"class_subtasks", int_lists(kClassPairs)}})
                .dataset;
  const auto spec = ds->spec();
  BOOST_TEST(spec.splits == (std::vector<std::string>{"train", "val", "test", "train_classes_0_1", "train_classes_2_5",
                                                       "train_classes_3_4", "train_classes_6_9", "train_classes_7_8"}),
             tt::per_element());
  BOOST_REQUIRE_EQUAL(spec.subtasks.size(), kClassPairs.size());
  for (std::size_t i = 0; i < kClassPairs.size(); ++i) {
    const auto& s = spec.subtasks[i];
    const std::string name = "classes_" + std::to_string(kClassPairs[i][0]) + "_" + std::to_string(kClassPairs[i][1]);
    BOOST_TEST(s.name == name);
    BOOST_TEST(s.classes == kClassPairs[i], tt::per_element());
    BOOST_TEST(s.train_split == "train_" + name);
    BOOST_TEST(s.groups.empty());
    BOOST_TEST(s.outputs.empty());
    BOOST_TEST(s.zeroed_inputs.empty());
    BOOST_TEST(contains(s.description, std::to_string(kClassPairs[i][0]) + ", " + std::to_string(kClassPairs[i][1])));
    check_class_split(ds, s.train_split, s.classes);
  }
  BOOST_TEST(spec.info.at("class_subtasks") == "classes_0_1 classes_2_5 classes_3_4 classes_6_9 classes_7_8");
  // Batches of a class split are the train split's rows.
  auto idx = torch::tensor(std::vector<std::int64_t>{1, 0}, torch::kLong);
  auto b = ds->split("train_classes_2_5")->get(idx);
  BOOST_TEST(torch::equal(b.inputs, ds->split("train_classes_2_5")->all().inputs.index_select(0, idx)));

  // Rotated mode: the groups come along; one class alone, and several classes in one sub-task.
  auto rot = load({{"root", str(dir.str())},
                   {"subsample", Value::integer(1)},
                   {"class_subtasks", int_lists({{3}, {9, 0, 4}})}})
                 .dataset;
  BOOST_TEST(rot->spec().subtasks.at(1).name == "classes_9_0_4");
  check_class_split(rot, "train_classes_3", {3});
  check_class_split(rot, "train_classes_9_0_4", {9, 0, 4});
  const auto threes = rot->split("train_classes_3")->all();
  BOOST_TEST(torch::equal(threes.groups, rot->split("train")->all().groups.index_select(0, threes.indices)));
  // No option, no sub-tasks and no extra split.
  BOOST_TEST(load({{"root", str(dir.str())}}).dataset->spec().subtasks.empty());
  BOOST_TEST(load({{"root", str(dir.str())}}).dataset->spec().splits.size() == 3u);
}

BOOST_AUTO_TEST_CASE(class_subtasks_errors_name_the_key) {
  TempDir dir;
  write_set(dir.path, 40, false);
  auto error = [&](const std::vector<std::vector<std::int64_t>>& lists, const std::string& mode = "plain") {
    std::string msg = load_error<modlab::ConfigError>(
        {{"root", str(dir.str())}, {"mode", str(mode)}, {"class_subtasks", int_lists(lists)}});
    BOOST_TEST_MESSAGE(msg);
    BOOST_TEST(contains(msg, "dataset.class_subtasks"), msg);
    return msg;
  };
  BOOST_TEST(
      contains(error({{0, 1}, {10}}), "class 10 (entry 1) is not a class of this variant, whose classes are 0..9"));
  BOOST_TEST(contains(error({{0, -1}}), "-1"));
  BOOST_TEST(contains(error({{0, 1}, {}}), "entry 1 is an empty list"));
  BOOST_TEST(contains(error({{0, 1}, {2, 1}}), "class 1 is listed twice"));
  BOOST_TEST(contains(error({{4, 4}}), "class 4 is listed twice"));
  BOOST_TEST(contains(error({{0, 1}}, "digit_pairs"), "digit_pairs"));
  // A class without any training example (the first 5 train images are classes 0..4).
  std::string msg = load_error<modlab::DataError>({{"root", str(dir.str())},
                                                   {"mode", str("plain")},
                                                   {"train_limit", Value::integer(5)},
                                                   {"class_subtasks", int_lists({{0, 1}, {6, 7}})}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "class_subtasks"));
  BOOST_TEST(contains(msg, "classes_6_7"));
}

// ------------------------------------------------------------------ corrupt files

BOOST_AUTO_TEST_CASE(truncated_gzip_images) {
  TempDir dir;
  write_set(dir.path, 10, true);
  auto p = dir.path / "train-images-idx3-ubyte.gz";
  auto b = read_bytes(p);
  write_bytes(p, b.substr(0, b.size() / 2));
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, p.string()));
  BOOST_TEST(contains(msg, "truncated"));
}

BOOST_AUTO_TEST_CASE(truncated_raw_images_and_labels) {
  TempDir dir;
  write_set(dir.path, 10, false);
  auto p = dir.path / "train-images-idx3-ubyte";
  auto b = read_bytes(p);
  write_bytes(p, b.substr(0, 16 + 784 * 3 + 100));
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, p.string()));
  BOOST_TEST(contains(msg, "truncated"));
  BOOST_TEST(contains(msg, "3 whole records"));

  write_set(dir.path, 10, false);
  auto l = dir.path / "train-labels-idx1-ubyte";
  write_bytes(l, read_bytes(l).substr(0, 6));  // cut inside the header
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, l.string()));
  BOOST_TEST(contains(msg, "truncated"));
}

// Found by fuzz/fuzz_idx (fuzz/regressions/idx): a damaged header announcing ~60 GB made the
// reader allocate it before reading; it must say "truncated" and allocate only what arrives.
BOOST_AUTO_TEST_CASE(a_header_announcing_gigabytes_is_truncated_not_allocated) {
  TempDir dir;
  write_set(dir.path, 10, true);
  const std::uint32_t n = 80'000'000;  // 80 M images of 28 x 28: 62.7 GB announced, 3 present
  write_idx(dir.path / "train-images-idx3-ubyte.gz", 0x803, {n, kSide, kSide}, generated_images(3), true);
  write_idx(dir.path / "train-labels-idx1-ubyte.gz", 0x801, {n}, std::vector<std::uint8_t>(3, 1), true);
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "truncated: the header announces 80,000,000 records"));
}

BOOST_AUTO_TEST_CASE(wrong_magic) {
  TempDir dir;
  write_set(dir.path, 10, true);
  std::vector<std::uint8_t> labels(10, 1);
  // a label file where the image file should be
  write_idx(dir.path / "train-images-idx3-ubyte.gz", 0x801, {10}, labels, true);
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "train-images-idx3-ubyte.gz"));
  BOOST_TEST(contains(msg, "wrong magic number 0x00000801"));
  BOOST_TEST(contains(msg, "expected 0x00000803"));

  // not an IDX file at all
  write_bytes(dir.path / "train-images-idx3-ubyte.gz", "GIF89a this is not IDX data");
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "wrong magic number"));
  BOOST_TEST(contains(msg, "not an IDX file"));
}

BOOST_AUTO_TEST_CASE(image_label_count_mismatch) {
  TempDir dir;
  write_set(dir.path, 10, true);
  write_idx(dir.path / "train-labels-idx1-ubyte.gz", 0x801, {9}, std::vector<std::uint8_t>(9, 1), true);
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "count mismatch"));
  BOOST_TEST(contains(msg, "train-images-idx3-ubyte.gz holds 10 images"));
  BOOST_TEST(contains(msg, "train-labels-idx1-ubyte.gz holds 9 labels"));
}

BOOST_AUTO_TEST_CASE(extra_bytes_bad_labels_and_corrupt_gzip) {
  TempDir dir;
  write_set(dir.path, 10, false);
  auto p = dir.path / "train-images-idx3-ubyte";
  write_bytes(p, read_bytes(p) + "xyz");
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, p.string()));
  BOOST_TEST(contains(msg, "3 unexpected bytes after the 10 records"));

  write_set(dir.path, 10, false);
  std::vector<std::uint8_t> labels(10, 3);
  labels[7] = 12;
  write_idx(dir.path / "train-labels-idx1-ubyte", 0x801, {10}, labels, false);
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "label 12 of record 7"));

  TempDir gz;
  write_set(gz.path, 10, true);
  auto g = gz.path / "train-images-idx3-ubyte.gz";
  auto bytes = read_bytes(g);
  for (std::size_t i = 30; i < bytes.size() - 20; i += 7) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
  write_bytes(g, bytes);
  msg = load_error<modlab::DataError>({{"root", str(gz.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, g.string()));
  BOOST_TEST((contains(msg, "corrupt gzip data") || contains(msg, "truncated")));
}

BOOST_AUTO_TEST_CASE(missing_data_and_bad_options) {
  TempDir dir;
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "holds no train-images-idx3-ubyte"));

  write_set(dir.path, 10, true);
  fs::remove(dir.path / "t10k-labels-idx1-ubyte.gz");
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}, {"mode", str("plain")}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "t10k-labels-idx1-ubyte.gz"));
  // the rotated task reads only the train files
  BOOST_TEST(load({{"root", str(dir.str())}}).dataset->split("train")->size() > 0);

  BOOST_TEST(contains(load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"rotations", ints({0, 45})}}),
                      "angle 45 is not one of 0, 90, 180, 270"));
  BOOST_TEST(contains(load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"variant", str("kmnist")}}),
                      "dataset.variant"));
  BOOST_TEST(contains(load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"val_fraction", Value::floating(0.1)}}),
                      "only used with mode = \"plain\""));
  BOOST_TEST(contains(load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"rotatoins", ints({0})}}),
                      "did you mean"));
  BOOST_TEST(contains(load_error<modlab::DataError>({{"root", str(dir.str())}, {"train_limit", Value::integer(11)}}),
                      "holds only 10 images"));
}

BOOST_AUTO_TEST_CASE(not_found_says_where_it_looked) {
  TempDir empty;
  const char* old_data = std::getenv("MODLAB_DATA_DIR");
  const std::string saved_data = old_data ? old_data : "";
  const char* old_home = std::getenv("HOME");
  const std::string saved_home = old_home ? old_home : "";
  ::setenv("MODLAB_DATA_DIR", empty.str().c_str(), 1);
  ::setenv("HOME", empty.str().c_str(), 1);
  const char* old_xdg = std::getenv("XDG_CACHE_HOME");
  const std::string saved_xdg = old_xdg ? old_xdg : "";
  ::unsetenv("XDG_CACHE_HOME");
  std::string msg, found;
  try {
    found = load({}).dataset->spec().info.at("root");  // a copy beside the working directory
  } catch (const modlab::DataError& e) {
    msg = e.what();
  }
  if (old_data) ::setenv("MODLAB_DATA_DIR", saved_data.c_str(), 1);
  else ::unsetenv("MODLAB_DATA_DIR");
  if (old_home) ::setenv("HOME", saved_home.c_str(), 1);
  if (old_xdg) ::setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
  if (!found.empty()) {
    BOOST_TEST_MESSAGE("MNIST was found at " << found << "; the not-found message is not checked");
    BOOST_TEST(!contains(found, empty.str()));
    BOOST_TEST(fs::exists(fs::path(found) / "train-labels-idx1-ubyte.gz"));
    return;
  }
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "MNIST not found"));
  BOOST_TEST(contains(msg, (empty.path / "mnist").string()));
  BOOST_TEST(contains(msg, (empty.path / ".cache" / "modlab" / "mnist").string()));
  BOOST_TEST(contains(msg, "train-images-idx3-ubyte.gz"));
  BOOST_TEST(contains(msg, "yann.lecun.com"));
}

// ------------------------------------------------------------------ the real files

BOOST_AUTO_TEST_CASE(real_mnist_plain, *utf::precondition(RealMnist())) {
  auto ds = load({{"mode", str("plain")}}).dataset;  // found through MODLAB_DATA_DIR
  BOOST_TEST(fs::equivalent(ds->spec().info.at("root"), real_mnist_dir()));
  auto train = ds->split("train")->all();
  auto test = ds->split("test")->all();
  BOOST_TEST(train.inputs.sizes() == (std::vector<std::int64_t>{60000, 1, 28, 28}), tt::per_element());
  BOOST_TEST(test.inputs.sizes() == (std::vector<std::int64_t>{10000, 1, 28, 28}), tt::per_element());
  // the official label counts
  auto tc = torch::bincount(train.targets).contiguous();
  auto ec = torch::bincount(test.targets).contiguous();
  std::vector<std::int64_t> got_train(tc.data_ptr<std::int64_t>(), tc.data_ptr<std::int64_t>() + 10);
  std::vector<std::int64_t> got_test(ec.data_ptr<std::int64_t>(), ec.data_ptr<std::int64_t>() + 10);
  BOOST_TEST(got_train == (std::vector<std::int64_t>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}),
             tt::per_element());
  BOOST_TEST(got_test == (std::vector<std::int64_t>{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}),
             tt::per_element());
  BOOST_TEST(test.targets[0].item<std::int64_t>() == 7);  // the first test digit is a 7
  // mean pixel of the official test images in [0,1]
  BOOST_TEST(std::abs(test.inputs.to(torch::kDouble).mean().item<double>() - 0.13251461) < 1e-6);
  BOOST_TEST(train.inputs.min().item<float>() == 0.0f);
  BOOST_TEST(train.inputs.max().item<float>() == 1.0f);

  auto v = load({{"mode", str("plain")}, {"val_fraction", Value::floating(0.1)}}).dataset;
  BOOST_TEST(v->split("train")->size() == 54000);
  BOOST_TEST(v->split("val")->size() == 6000);
  BOOST_TEST(v->split("test")->size() == 10000);
}

BOOST_AUTO_TEST_CASE(real_mnist_rotated, *utf::precondition(RealMnist())) {
  Loaded l = load({{"root", str(real_mnist_dir())}});
  auto ds = l.dataset;
  BOOST_TEST(ds->split("train")->size() == 8400);
  BOOST_TEST(ds->split("val")->size() == 2400);
  BOOST_TEST(ds->split("test")->size() == 1200);
  BOOST_TEST(!l.log.empty());
  auto b = ds->split("train")->all();
  BOOST_TEST(((b.groups >= 0) & (b.groups < 4)).all().item<bool>());
  // every rotation is present, and the inverted 0-degree copies are mostly bright
  for (std::int64_t r = 0; r < 4; ++r) {
    auto rows = (b.groups == r).nonzero().view(-1);
    BOOST_TEST(rows.numel() > 1500);
    double mean = b.inputs.index_select(0, rows).mean().item<double>();
    if (r == 0) BOOST_TEST(mean > 0.8);
    else BOOST_TEST(mean < 0.2);
  }
  // the same seeds give the same dataset
  auto again = load({{"root", str(real_mnist_dir())}}).dataset->split("val")->all();
  BOOST_TEST(torch::equal(again.inputs, ds->split("val")->all().inputs));
}

BOOST_AUTO_TEST_CASE(real_fashion_and_mix, *utf::precondition(RealFashion())) {
  auto f = load({{"variant", str("fashion")}, {"mode", str("plain")}}).dataset;
  BOOST_TEST(f->spec().class_names[9] == "Ankle boot");
  auto train = f->split("train")->all();
  BOOST_TEST(train.size() == 60000);
  BOOST_TEST((torch::bincount(train.targets) == 6000).all().item<bool>());
  BOOST_TEST(f->split("test")->size() == 10000);

  auto mix = load({{"variant", str("fashion_mnist12")}, {"mode", str("plain")}, {"root", str(real_mnist_dir())}}).dataset;
  BOOST_TEST(mix->spec().num_classes == 12);
  auto m = mix->split("train")->all();
  // 6 Fashion classes x 6000 + MNIST digits 4..9
  BOOST_TEST(m.size() == 36000 + 5842 + 5421 + 5918 + 6265 + 5851 + 5949);
  auto counts = torch::bincount(m.targets).contiguous();
  BOOST_TEST(counts.numel() == 12);
  BOOST_TEST(counts[6].item<std::int64_t>() == 5842);   // digit 4
  BOOST_TEST(counts[11].item<std::int64_t>() == 5949);  // digit 9
}

// ------------------------------------------------------------------ digit pairs (hier_modular §5.2)

namespace {

/// The §5.2 label of digit pair (d1, d2), written from the spec: f_k = bit_k(d1) xor bit_k(d2)
/// for k = b2, b1, b0; y = [f_b2 and f_b1, f_b1 and f_b0].
std::array<float, 2> pair_label(int d1, int d2) {
  const int f2 = ((d1 >> 2) ^ (d2 >> 2)) & 1, f1 = ((d1 >> 1) ^ (d2 >> 1)) & 1, f0 = (d1 ^ d2) & 1;
  return {static_cast<float>(f2 & f1), static_cast<float>(f1 & f0)};
}

std::set<std::int64_t> pair_set(const torch::Tensor& groups) {
  auto g = groups.contiguous();
  return {g.data_ptr<std::int64_t>(), g.data_ptr<std::int64_t>() + g.numel()};
}

std::set<std::int64_t> parse_pairs(const std::string& text) {
  std::set<std::int64_t> out;
  for (std::size_t i = 0; i < text.size(); i += 3) out.insert((text[i] - '0') * 8 + (text[i + 1] - '0'));
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(python_random_shuffle_matches_cpython) {
  // list(range(64)); random.Random(seed).shuffle(x); x[:12] with CPython 3.11
  const std::map<std::uint64_t, std::vector<int>> want = {
      {0, {29, 28, 24, 33, 35, 60, 23, 40, 11, 27, 61, 3}},
      {1, {22, 12, 52, 3, 19, 5, 60, 58, 2, 33, 10, 8}},
      {40, {30, 19, 62, 0, 63, 21, 24, 55, 44, 31, 50, 38}},
      {8589934597ULL, {4, 40, 44, 35, 6, 7, 50, 25, 39, 30, 1, 28}}};
  for (const auto& [seed, first] : want) {
    std::vector<int> x(64);
    std::iota(x.begin(), x.end(), 0);
    modlab::mnist::PythonRandom(seed).shuffle(x);
    BOOST_TEST(std::vector<int>(x.begin(), x.begin() + 12) == first, tt::per_element());
  }
}

BOOST_AUTO_TEST_CASE(digit_pairs_labels_splits_and_images) {
  TempDir dir;
  write_set(dir.path, 40, true);  // every digit 0..7 has 4 images in each file
  auto ds = load({{"root", str(dir.str())},
                  {"mode", str("digit_pairs")},
                  {"train_fraction", Value::floating(0.5)},
                  {"pair_seed", Value::integer(3)},
                  {"samples_per_pair", Value::integer(5)},
                  {"test_samples_per_pair", Value::integer(2)},
                  {"flatten", Value::boolean(true)}})
                .dataset;
  const auto spec = ds->spec();
  BOOST_TEST(spec.splits == (std::vector<std::string>{"train", "val", "test1", "test2"}), tt::per_element());
  BOOST_TEST((spec.task == modlab::TaskKind::MultiLabel));
  BOOST_TEST(spec.num_outputs == 2);
  BOOST_TEST(spec.input_shape == (std::vector<std::int64_t>{2, 784}), tt::per_element());
  BOOST_TEST(spec.info.at("structure") == "6,3,2,2");
  BOOST_TEST(spec.info.at("images") == "2");
  BOOST_TEST(spec.info.at("image_bits") == "3");
  // One sub-task per output, as the toy Boolean task declares them.
  BOOST_REQUIRE_EQUAL(spec.subtasks.size(), 2u);
  for (std::int64_t k = 0; k < 2; ++k) {
    const auto& s = spec.subtasks[static_cast<std::size_t>(k)];
    BOOST_TEST(s.name == "output" + std::to_string(k));
    BOOST_TEST(s.outputs == std::vector<std::int64_t>{k}, tt::per_element());
    BOOST_TEST((s.classes.empty() && s.groups.empty() && s.train_split.empty()));
  }

  // 64 pairs: 32 train, 16 val, 16 test (floor(64 s), then half of the rest), disjoint, as
  // Python's random.Random(3).shuffle orders them.
  std::vector<int> order(64);
  std::iota(order.begin(), order.end(), 0);
  modlab::mnist::PythonRandom(3).shuffle(order);
  const auto train_pairs = parse_pairs(spec.info.at("train_pairs"));
  const auto val_pairs = parse_pairs(spec.info.at("val_pairs"));
  const auto test_pairs = parse_pairs(spec.info.at("test_pairs"));
  BOOST_TEST(train_pairs == std::set<std::int64_t>(order.begin(), order.begin() + 32), tt::per_element());
  BOOST_TEST(val_pairs == std::set<std::int64_t>(order.begin() + 32, order.begin() + 48), tt::per_element());
  BOOST_TEST(test_pairs == std::set<std::int64_t>(order.begin() + 48, order.end()), tt::per_element());

  const auto train = ds->split("train")->all(), val = ds->split("val")->all();
  const auto test1 = ds->split("test1")->all(), test2 = ds->split("test2")->all();
  BOOST_TEST(train.size() == 32 * 5);
  BOOST_TEST(val.size() == 16 * 2);
  BOOST_TEST(test1.size() == 32 * 2);
  BOOST_TEST(test2.size() == 16 * 2);
  BOOST_TEST(train.inputs.sizes() == (std::vector<std::int64_t>{160, 2, 784}), tt::per_element());
  BOOST_TEST(train.targets.sizes() == (std::vector<std::int64_t>{160, 2}), tt::per_element());
  BOOST_TEST(pair_set(train.groups) == train_pairs, tt::per_element());
  BOOST_TEST(pair_set(test1.groups) == train_pairs, tt::per_element());  // test1: the train pairs
  BOOST_TEST(pair_set(val.groups) == val_pairs, tt::per_element());
  BOOST_TEST(pair_set(test2.groups) == test_pairs, tt::per_element());   // test2: unseen pairs

  for (const auto* b : {&train, &val, &test1, &test2}) {
    const auto g = b->groups.contiguous();
    const auto t = b->targets.contiguous();
    for (std::int64_t i = 0; i < b->size(); ++i) {
      const int pair = static_cast<int>(g[i].item<std::int64_t>());
      const auto want = pair_label(pair / 8, pair % 8);
      BOOST_TEST(t[i][0].item<float>() == want[0]);
      BOOST_TEST(t[i][1].item<float>() == want[1]);
      // each image is an image of its digit: generated image k has label k % 10
      for (int img = 0; img < 2; ++img) {
        const int digit = img == 0 ? pair / 8 : pair % 8;
        bool found = false;
        for (int k = digit; k < 40 && !found; k += 10) {
          bool same = true;
          for (int px = 0; px < 784 && same; px += 97)
            same = b->inputs[i][img][px].item<float>() == static_cast<float>(pixel(k, px / 28, px % 28)) / 255.0f;
          found = same;
        }
        BOOST_TEST(found, "sample " << i << " image " << img << " is not a digit " << digit);
      }
    }
  }

  // Not all labels are 0 (the check above would then prove little).
  int ones = 0;
  for (const auto* b : {&train, &val, &test2}) ones += static_cast<int>(b->targets.sum().item<float>());
  BOOST_TEST(ones > 0);

  // Unflattened: [n, 2, 1, 28, 28]; the same seeds give the same data.
  auto again = load({{"root", str(dir.str())},
                     {"mode", str("digit_pairs")},
                     {"train_fraction", Value::floating(0.5)},
                     {"pair_seed", Value::integer(3)},
                     {"samples_per_pair", Value::integer(5)},
                     {"test_samples_per_pair", Value::integer(2)}})
                   .dataset;
  auto t2 = again->split("train")->all();
  BOOST_TEST(t2.inputs.sizes() == (std::vector<std::int64_t>{160, 2, 1, 28, 28}), tt::per_element());
  BOOST_TEST(torch::equal(t2.inputs.reshape({160, 2, 784}), train.inputs));
}

BOOST_AUTO_TEST_CASE(digit_pairs_options_are_checked) {
  TempDir dir;
  write_set(dir.path, 40, false);
  const std::string root = dir.str();
  std::string msg = load_error({{"root", str(root)}, {"mode", str("digit_pairs")}, {"subsample", Value::integer(2)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "subsample"));
  msg = load_error({{"root", str(root)}, {"mode", str("plain")}, {"samples_per_pair", Value::integer(2)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "samples_per_pair"));
  BOOST_TEST(contains(msg, "digit_pairs"));
  msg = load_error({{"root", str(root)}, {"mode", str("digit_pairs")}, {"train_fraction", Value::floating(1.5)}});
  BOOST_TEST(contains(msg, "train_fraction"));
  msg = load_error({{"root", str(root)}, {"mode", str("digit_pairs")}, {"structure", ints({6, 2})}});
  BOOST_TEST(contains(msg, "structure"));
  msg = load_error({{"root", str(root)}, {"mode", str("digit_pairs")}, {"train_fraction", Value::floating(0.99)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "train_fraction"));
}

BOOST_AUTO_TEST_CASE(real_mnist_digit_pairs, *utf::precondition(RealMnist())) {
  auto ds = load({{"root", str(real_mnist_dir())},
                  {"mode", str("digit_pairs")},
                  {"train_fraction", Value::floating(0.8)},
                  {"samples_per_pair", Value::integer(3)},
                  {"test_samples_per_pair", Value::integer(2)}})
                .dataset;
  auto train = ds->split("train")->all();
  BOOST_TEST(train.size() == 51 * 3);
  BOOST_TEST(ds->split("val")->size() == 6 * 2);
  BOOST_TEST(ds->split("test2")->size() == 7 * 2);
  BOOST_TEST(train.inputs.sizes() == (std::vector<std::int64_t>{153, 2, 1, 28, 28}), tt::per_element());
  BOOST_TEST(train.inputs.max().item<float>() <= 1.0f);
  const auto g = train.groups.contiguous();
  for (std::int64_t i = 0; i < train.size(); ++i) {
    const int pair = static_cast<int>(g[i].item<std::int64_t>());
    const auto want = pair_label(pair / 8, pair % 8);
    BOOST_TEST(train.targets[i][0].item<float>() == want[0]);
    BOOST_TEST(train.targets[i][1].item<float>() == want[1]);
  }
}

// ------------------------------------------------------------------ permuted MNIST and class sub-tasks, real files

// sum_q x[perm[q]] * q over the raw bytes of the first two test images, by numpy:
//   x = np.frombuffer(gzip.open("t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
//   x = x.reshape(-1, 784).astype(np.int64); perm = np.random.RandomState(p).permutation(784)
//   (x[i][perm] * np.arange(784)).sum()   -> p = 1: 7195731, 11789879 (i = 0, 1); p = 3: 6600033
//   (the inverse permutation, x[0][np.argsort(perm)], would give 7599305 for p = 1)
BOOST_AUTO_TEST_CASE(real_mnist_permuted, *utf::precondition(RealMnist())) {
  auto weighted = [](const torch::Tensor& image) {
    auto bytes = torch::round(image.reshape({-1}) * 255).to(torch::kLong);
    return (bytes * torch::arange(784, torch::kLong)).sum().item<std::int64_t>();
  };
  auto p1 = load({{"mode", str("plain")}, {"permutation", Value::integer(1)}, {"test_limit", Value::integer(2)},
                  {"train_limit", Value::integer(100)}})
                .dataset->split("test")
                ->all()
                .inputs;
  BOOST_TEST(weighted(p1[0]) == 7195731);
  BOOST_TEST(weighted(p1[1]) == 11789879);
  auto p3 = load({{"mode", str("plain")}, {"permutation", Value::integer(3)}, {"test_limit", Value::integer(1)},
                  {"train_limit", Value::integer(100)}})
                .dataset->split("test")
                ->all()
                .inputs;
  BOOST_TEST(weighted(p3[0]) == 6600033);
}

BOOST_AUTO_TEST_CASE(real_mnist_class_subtasks, *utf::precondition(RealMnist())) {
  auto ds = load({{"mode", str("plain")}, {"class_subtasks", int_lists(kClassPairs)}}).dataset;
  BOOST_TEST(ds->split("train_classes_0_1")->size() == 5923 + 6742);
  BOOST_TEST(ds->split("train_classes_7_8")->size() == 6265 + 5851);
  std::int64_t total = 0;
  for (const auto& s : ds->spec().subtasks) {
    check_class_split(ds, s.train_split, s.classes);
    total += ds->split(s.train_split)->size();
  }
  BOOST_TEST(total == 60000);  // the five pairs cover every class once
}

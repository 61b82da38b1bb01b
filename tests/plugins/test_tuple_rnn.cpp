#define BOOST_TEST_MODULE tuple_rnn_dataset
#include <boost/test/unit_test.hpp>

#include "../unit/config_error_of.hpp"
#include "config_builders.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <torch/torch.h>

#include <unistd.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using modlab::Value;
using test_config::str;
using test_config_error::error_of;
using Ints = std::vector<std::int64_t>;

std::shared_ptr<modlab::Dataset> make(const Value::Table& table) {
  static modlab::runner::RunHost host(modlab::runner::default_registry(), modlab::runner::HostOptions{});
  return host.create_dataset("tuple_rnn", test_config::make_config(table));
}

/// A dataset with small splits (the numpy checks build the default sizes themselves).
std::shared_ptr<modlab::Dataset> small(const std::string& task, const std::string& encoding) {
  return make({{"task", str(task)},
               {"encoding", str(encoding)},
               {"train_size", Value::integer(300)},
               {"valid_size", Value::integer(200)},
               {"test_size", Value::integer(100)}});
}

std::string config_error(const Value::Table& t) {
  return error_of([&] { make(t); });
}

Ints to_ints(const torch::Tensor& t) {
  const auto c = t.to(torch::kLong).contiguous();
  return Ints(c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel());
}

/// The numbers one-hot encoded in `slots` pairs of 10-feature digit slots (LSB first) of a
/// step's features; fails the test unless every slot holds exactly one 1.
Ints decode_numbers(const torch::Tensor& step, std::int64_t numbers) {
  Ints out;
  for (std::int64_t n = 0; n < numbers; ++n) {
    std::int64_t value = 0, scale = 1;
    for (std::int64_t k = 0; k < 2; ++k, scale *= 10) {
      const auto slot = step.slice(0, (2 * n + k) * 10, (2 * n + k + 1) * 10);
      BOOST_TEST(slot.sum().item<float>() == 1.0f);
      value += slot.argmax().item<std::int64_t>() * scale;
    }
    out.push_back(value);
  }
  return out;
}

/// Operands (a0, b0, a1, b1) of tuple example `row` of `split`, read back from its ff encoding.
Ints tuple_operands(const modlab::Dataset& ds, const std::string& split, std::int64_t row) {
  const auto b = ds.split(split)->get(torch::tensor({row}, torch::kLong));
  return decode_numbers(b.inputs[0], 4);
}

/// (a, b, op) of add/mul example `row`, read back from its ff encoding.
Ints addmul_example(const modlab::Dataset& ds, const std::string& split, std::int64_t row) {
  const auto b = ds.split(split)->get(torch::tensor({row}, torch::kLong));
  auto out = decode_numbers(b.inputs[0], 2);
  const auto op = b.inputs[0].slice(0, 40, 42);
  BOOST_TEST(op.sum().item<float>() == 1.0f);
  out.push_back(op.argmax().item<std::int64_t>());
  return out;
}

Ints digits(std::int64_t v) { return {v % 10, (v / 10) % 10}; }

std::int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

}  // namespace

// Runs first, before any test has encoded (and freed) a large batch the allocator could reuse.
BOOST_AUTO_TEST_CASE(a_million_examples_stay_raw_until_a_batch_asks) {
  const auto before = resident_bytes();
  auto ds = make({});
  auto train = ds->split("train");
  const auto grown = resident_bytes() - before;
  BOOST_TEST(train->size() == 1000000);
  // 4 bytes per example (≈ 4 MB); encoded floats would be 320 MB.
  BOOST_TEST(grown < 64ll * 1024 * 1024, "building the splits grew the resident set by " << grown << " bytes");
  const auto idx = torch::randint(1000000, {128}, torch::kLong);
  const auto b = train->get(idx, true);
  BOOST_TEST((b.inputs.sizes().vec() == Ints{128, 80}));
  BOOST_TEST((b.targets.sizes().vec() == Ints{128, 4}));
  BOOST_TEST(b.targets.scalar_type() == torch::kLong);
  BOOST_TEST(torch::equal(b.indices, idx));
  BOOST_TEST(b.inputs.sum().item<float>() == 128.0f * 8);
}

// Operands from numpy, e.g. for train:
//   /usr/bin/python3 -c "import numpy as np; x = np.random.RandomState(0x12345678 + 0).randint(0, 100,
//     size=(1000000, 2, 2)); print(x[:6].reshape(6, 4).tolist(), x[500000].tolist(), x[999999].tolist())"
// and seeds 0x12345678 + 1 (test) and + 2 (valid) with size (10000, 2, 2), numpy 1.24.
BOOST_AUTO_TEST_CASE(tuple_operands_are_numpys) {
  auto ds = make({});
  const std::vector<Ints> train = {{67, 36, 0, 59},  {91, 25, 92, 86}, {74, 67, 15, 49},
                                   {26, 14, 84, 21}, {61, 32, 51, 43}, {39, 46, 28, 30}};
  const std::vector<Ints> test = {{73, 75, 58, 67}, {89, 54, 67, 37}, {86, 21, 37, 85},
                                  {6, 1, 30, 39},   {32, 46, 55, 96}, {63, 88, 13, 83}};
  const std::vector<Ints> valid = {{54, 56, 5, 30},  {26, 92, 50, 64}, {8, 5, 36, 50},
                                   {31, 46, 94, 75}, {27, 43, 71, 81}, {51, 77, 81, 17}};
  for (std::int64_t i = 0; i < 6; ++i) {
    BOOST_TEST(tuple_operands(*ds, "train", i) == train[i], "train " << i);
    BOOST_TEST(tuple_operands(*ds, "test", i) == test[i], "test " << i);
    BOOST_TEST(tuple_operands(*ds, "valid", i) == valid[i], "valid " << i);
  }
  BOOST_TEST(tuple_operands(*ds, "train", 500000) == (Ints{41, 1, 48, 40}));
  BOOST_TEST(tuple_operands(*ds, "train", 999999) == (Ints{34, 94, 13, 77}));
  BOOST_TEST(tuple_operands(*ds, "test", 9999) == (Ints{50, 59, 81, 2}));
  BOOST_TEST(tuple_operands(*ds, "valid", 9999) == (Ints{87, 9, 11, 41}));
  // Targets: (a + b) mod 100 per tuple, digits LSB first: 34 + 94 = 128 → 28; 13 + 77 = 90.
  const auto b = ds->split("train")->get(torch::tensor({999999}, torch::kLong));
  BOOST_TEST(to_ints(b.targets[0]) == (Ints{8, 2, 0, 9}));
  // Every target of a batch is the sum of its decoded operands.
  const auto v = ds->split("valid")->get(torch::arange(50, torch::kLong));
  for (std::int64_t i = 0; i < 50; ++i) {
    const auto o = decode_numbers(v.inputs[i], 4);
    Ints want = digits((o[0] + o[1]) % 100);
    const auto second = digits((o[2] + o[3]) % 100);
    want.insert(want.end(), second.begin(), second.end());
    BOOST_TEST(to_ints(v.targets[i]) == want, "valid " << i);
  }
}

BOOST_AUTO_TEST_CASE(tuple_ff_layout_is_one_hot_lsb_first) {
  auto ds = small("tuple", "ff");
  const auto spec = ds->spec();
  BOOST_TEST((spec.input_shape == Ints{80}));
  BOOST_TEST((spec.task == modlab::TaskKind::MultiClass));
  BOOST_TEST(spec.num_outputs == 4);
  BOOST_TEST(spec.num_classes == 10);
  BOOST_TEST((spec.splits == std::vector<std::string>{"train", "valid", "test"}));
  BOOST_TEST(spec.info.count("output_steps") == 0u);
  BOOST_TEST(spec.info.at("seed_base") == "0x12345678");
  BOOST_TEST(spec.info.at("train_size") == "300");
  // train row 0 = (67, 36), (0, 59): slots a0 d0 = 7, a0 d1 = 6, b0 6, 3, a1 0, 0, b1 9, 5.
  const auto b = ds->split("train")->get(torch::tensor({0}, torch::kLong));
  BOOST_TEST(to_ints(b.inputs[0].nonzero().flatten()) == (Ints{7, 16, 26, 33, 40, 50, 69, 75}));
  BOOST_TEST(b.inputs.sum().item<float>() == 8.0f);
  BOOST_TEST(to_ints(b.targets[0]) == (Ints{3, 0, 9, 5}));  // 103 mod 100 = 3, 59
  BOOST_TEST(!b.groups.defined());
  BOOST_TEST(!b.subtask_targets.defined());
  BOOST_CHECK_THROW(ds->split("train")->get(torch::tensor({300}, torch::kLong)), modlab::DataError);
}

BOOST_AUTO_TEST_CASE(tuple_rnn_encodings_repeat_or_split_the_input) {
  auto ff = small("tuple", "ff");
  auto together = small("tuple", "together");
  auto one = small("tuple", "only_one_io");
  BOOST_TEST((together->spec().input_shape == Ints{6, 80}));
  BOOST_TEST((one->spec().input_shape == Ints{6, 80}));
  BOOST_TEST(together->spec().info.at("output_steps") == "5,5,5,5");
  BOOST_TEST(one->spec().info.at("output_steps") == "2,2,5,5");
  const auto idx = torch::arange(40, torch::kLong);
  const auto x = ff->split("test")->get(idx).inputs;
  const auto t = together->split("test")->get(idx);
  const auto o = one->split("test")->get(idx);
  BOOST_TEST(torch::equal(t.targets, ff->split("test")->get(idx).targets));
  BOOST_TEST(torch::equal(o.targets, t.targets));
  const auto first = x.slice(1, 0, 40), second = x.slice(1, 40, 80);
  for (std::int64_t s = 0; s < 6; ++s) {
    BOOST_TEST(torch::equal(t.inputs.select(1, s), x), "together step " << s);
    const auto step = o.inputs.select(1, s);
    // only_one_io: steps 0-2 show tuple 0 alone, steps 3-5 tuple 1 alone.
    BOOST_TEST(torch::equal(step.slice(1, 0, 40), s < 3 ? first : torch::zeros_like(first)), "step " << s);
    BOOST_TEST(torch::equal(step.slice(1, 40, 80), s < 3 ? torch::zeros_like(second) : second), "step " << s);
  }
}

BOOST_AUTO_TEST_CASE(tuple_subtasks_blank_the_other_pair) {
  Ints block0, block1;
  for (std::int64_t i = 0; i < 40; ++i) block0.push_back(i), block1.push_back(40 + i);
  for (const std::string encoding : {"ff", "together", "only_one_io"}) {
    BOOST_TEST_CONTEXT(encoding) {
      auto ds = small("tuple", encoding);
      const auto spec = ds->spec();
      BOOST_TEST_REQUIRE(spec.subtasks.size() == 2u);
      const auto& p1 = spec.subtasks[0];
      const auto& p2 = spec.subtasks[1];
      BOOST_TEST(p1.name == "pair1");
      BOOST_TEST(p2.name == "pair2");
      BOOST_TEST((p1.outputs == Ints{0, 1}));
      BOOST_TEST((p2.outputs == Ints{2, 3}));
      BOOST_TEST((p1.groups.empty() && p1.classes.empty() && p1.train_split.empty()));
      BOOST_TEST((p2.groups.empty() && p2.classes.empty() && p2.train_split.empty()));
      // Tuple 1's (tuple 0's) 40 features at every step, as flat indices into [steps, 80].
      const std::int64_t steps = encoding == "ff" ? 1 : 6;
      Ints want1, want0;
      for (std::int64_t s = 0; s < steps; ++s)
        for (std::int64_t i = 0; i < 40; ++i) want1.push_back(s * 80 + block1[i]), want0.push_back(s * 80 + block0[i]);
      BOOST_TEST(p1.zeroed_inputs == want1);
      BOOST_TEST(p2.zeroed_inputs == want0);
      // Zeroing pair1's inputs leaves tuple 0's one-hots only: 4 ones per step that shows tuple 0.
      auto b = ds->split("valid")->get(torch::arange(10, torch::kLong));
      auto flat = b.inputs.reshape({10, -1}).clone();
      flat.index_fill_(1, torch::tensor(p1.zeroed_inputs, torch::kLong), 0.0f);
      const std::int64_t steps_with_tuple0 = encoding == "only_one_io" ? 3 : steps;
      BOOST_TEST(flat.sum().item<float>() == 10.0f * 4 * steps_with_tuple0);
    }
  }
}

// Operands and ops from numpy (assumed draw order: operands, then ops), e.g. for train:
//   /usr/bin/python3 -c "import numpy as np; r = np.random.RandomState(0x12345678 + 0);
//     a = r.randint(0, 100, size=(1000000, 2)); op = r.randint(0, 2, size=1000000);
//     print(a[:6].tolist(), op[:6].tolist(), a[-1].tolist(), op[-1], op.sum())"
// and seeds + 1 (test), + 2 (valid) with n = 10000, numpy 1.24.
BOOST_AUTO_TEST_CASE(addmul_operands_and_ops_are_numpys) {
  auto ds = make({{"task", str("addmul")}});
  const std::vector<Ints> train = {{67, 36, 1}, {0, 59, 1}, {91, 25, 1}, {92, 86, 0}, {74, 67, 0}, {15, 49, 1}};
  const std::vector<Ints> test = {{73, 75, 1}, {58, 67, 0}, {89, 54, 0}, {67, 37, 0}, {86, 21, 0}, {37, 85, 0}};
  const std::vector<Ints> valid = {{54, 56, 0}, {5, 30, 1}, {26, 92, 0}, {50, 64, 0}, {8, 5, 0}, {36, 50, 1}};
  for (std::int64_t i = 0; i < 6; ++i) {
    BOOST_TEST(addmul_example(*ds, "train", i) == train[i], "train " << i);
    BOOST_TEST(addmul_example(*ds, "test", i) == test[i], "test " << i);
    BOOST_TEST(addmul_example(*ds, "valid", i) == valid[i], "valid " << i);
  }
  BOOST_TEST(addmul_example(*ds, "train", 999999) == (Ints{13, 23, 1}));
  BOOST_TEST(addmul_example(*ds, "test", 9999) == (Ints{12, 35, 1}));
  BOOST_TEST(addmul_example(*ds, "valid", 9999) == (Ints{11, 31, 1}));
  // op.sum(): 500552 multiplications in train, 5049 in valid.
  BOOST_TEST(ds->split("train_mul")->size() == 500552);
  BOOST_TEST(ds->split("train_add")->size() == 1000000 - 500552);
  BOOST_TEST(ds->split("valid_mul")->size() == 5049);
  BOOST_TEST(ds->split("valid_add")->size() == 10000 - 5049);
  BOOST_TEST(ds->spec().info.at("valid_mul_size") == "5049");
  // train ops start 1, 1, 1, 0, 0, 1: the first additions are rows 3 and 4, the first products 0, 1, 2.
  BOOST_TEST(to_ints(ds->split("train_add")->get(torch::arange(2, torch::kLong)).indices) == (Ints{3, 4}));
  BOOST_TEST(to_ints(ds->split("train_mul")->get(torch::arange(3, torch::kLong)).indices) == (Ints{0, 1, 2}));
}

BOOST_AUTO_TEST_CASE(addmul_layout_groups_and_subtask_targets) {
  auto ds = small("addmul", "ff");
  const auto spec = ds->spec();
  BOOST_TEST((spec.input_shape == Ints{42}));
  BOOST_TEST(spec.num_outputs == 2);
  BOOST_TEST(spec.num_classes == 10);
  BOOST_TEST(spec.group_kind == "op");
  BOOST_TEST((spec.group_names == std::vector<std::string>{"add", "mul"}));
  BOOST_TEST((spec.splits ==
              std::vector<std::string>{"train", "valid", "test", "train_add", "train_mul", "valid_add", "valid_mul"}));
  // train row 0 = 67 · 36 (op 1): slots 7, 6 | 6, 3, op at 40 + 1; 2412 mod 100 = 12, sum 103 → 3.
  const auto b = ds->split("train")->get(torch::tensor({0, 3}, torch::kLong));
  BOOST_TEST(to_ints(b.inputs[0].nonzero().flatten()) == (Ints{7, 16, 26, 33, 41}));
  BOOST_TEST(to_ints(b.targets[0]) == (Ints{2, 1}));
  BOOST_TEST(to_ints(b.groups) == (Ints{1, 0}));
  BOOST_TEST((b.subtask_targets.sizes().vec() == Ints{2, 2, 2}));
  BOOST_TEST(to_ints(b.subtask_targets[0]) == (Ints{3, 0, 2, 1}));
  // row 3 = 92 + 86 (op 0) = 178 → 78; 92 · 86 = 7912 → 12.
  BOOST_TEST(to_ints(b.targets[1]) == (Ints{8, 7}));
  BOOST_TEST(to_ints(b.subtask_targets[1]) == (Ints{8, 7, 2, 1}));
  // Over a whole split: the target is the subtask target of the example's op; both are right.
  const auto all = ds->split("valid")->all();
  for (std::int64_t i = 0; i < all.size(); ++i) {
    const auto e = decode_numbers(all.inputs[i], 2);
    const auto op = all.groups[i].item<std::int64_t>();
    const auto sum = digits((e[0] + e[1]) % 100), product = digits((e[0] * e[1]) % 100);
    BOOST_TEST(all.inputs[i][40 + op].item<float>() == 1.0f);
    BOOST_TEST(to_ints(all.subtask_targets[i][0]) == sum, "valid " << i);
    BOOST_TEST(to_ints(all.subtask_targets[i][1]) == product, "valid " << i);
    BOOST_TEST(to_ints(all.targets[i]) == (op == 0 ? sum : product), "valid " << i);
  }
  auto together = small("addmul", "together");
  BOOST_TEST((together->spec().input_shape == Ints{3, 42}));
  BOOST_TEST(together->spec().info.at("output_steps") == "2,2");
  const auto t = together->split("train")->get(torch::arange(20, torch::kLong));
  const auto f = ds->split("train")->get(torch::arange(20, torch::kLong));
  for (std::int64_t s = 0; s < 3; ++s) BOOST_TEST(torch::equal(t.inputs.select(1, s), f.inputs));
  BOOST_TEST(torch::equal(t.subtask_targets, f.subtask_targets));
}

BOOST_AUTO_TEST_CASE(addmul_subtasks_and_restricted_splits) {
  auto ds = small("addmul", "ff");
  const auto spec = ds->spec();
  BOOST_TEST_REQUIRE(spec.subtasks.size() == 2u);
  BOOST_TEST(spec.subtasks[0].name == "add");
  BOOST_TEST((spec.subtasks[0].groups == Ints{0}));
  BOOST_TEST(spec.subtasks[0].train_split == "train_add");
  BOOST_TEST(spec.subtasks[1].name == "mul");
  BOOST_TEST((spec.subtasks[1].groups == Ints{1}));
  BOOST_TEST(spec.subtasks[1].train_split == "train_mul");
  for (const auto& s : spec.subtasks) BOOST_TEST((s.outputs.empty() && s.zeroed_inputs.empty() && s.classes.empty()));
  for (const std::string base : {"train", "valid"}) {
    const auto full = ds->split(base)->all();
    std::int64_t total = 0;
    for (std::int64_t op = 0; op < 2; ++op) {
      const std::string name = base + (op == 0 ? "_add" : "_mul");
      auto part = ds->split(name);
      total += part->size();
      const auto b = part->all();
      BOOST_TEST((to_ints(b.groups) == Ints(b.size(), op)), name);
      // The rows are the full split's rows with that op, in order, and read the same there.
      const auto want = torch::nonzero(full.groups == op).flatten();
      BOOST_TEST(torch::equal(b.indices, want), name);
      const auto same = full.select(want);
      BOOST_TEST(torch::equal(b.inputs, same.inputs), name);
      BOOST_TEST(torch::equal(b.targets, same.targets), name);
      BOOST_TEST(torch::equal(b.subtask_targets, same.subtask_targets), name);
    }
    BOOST_TEST(total == full.size());
  }
}

BOOST_AUTO_TEST_CASE(bad_keys_name_the_key) {
  const auto e1 = config_error({{"task", str("addmul")}, {"encoding", str("only_one_io")}});
  BOOST_TEST(e1.find("dataset.encoding") != std::string::npos, e1);
  BOOST_TEST(e1.find("tuple") != std::string::npos, e1);
  const auto e2 = config_error({{"train_size", Value::integer(0)}});
  BOOST_TEST(e2.find("dataset.train_size") != std::string::npos, e2);
  const auto e3 = config_error({{"valid_size", Value::integer(-3)}});
  BOOST_TEST(e3.find("dataset.valid_size") != std::string::npos, e3);
  const auto e4 = config_error({{"task", str("sub")}});
  BOOST_TEST(e4.find("dataset.task") != std::string::npos, e4);
  const auto e5 = config_error({{"encoding", str("lstm")}});
  BOOST_TEST(e5.find("dataset.encoding") != std::string::npos, e5);
  // One add/mul training example leaves one of train_add / train_mul empty: refused, naming the size.
  const auto e6 = config_error({{"task", str("addmul")}, {"train_size", Value::integer(1)}});
  BOOST_TEST(e6.find("dataset.train_size") != std::string::npos, e6);
  BOOST_TEST(config_error({{"task", str("tuple")}, {"train_size", Value::integer(1)}}).empty());
}

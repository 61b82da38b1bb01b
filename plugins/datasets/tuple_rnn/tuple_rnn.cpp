// The `tuple_rnn` dataset plugin: the "double addition" tuple task and the add/mul task of the
// masked-analyzer experiments (masked_analyzer §4.3 (a), (b)), for feed-forward and recurrent nets.
//
// Examples are drawn from a re-implementation of numpy's legacy RandomState with the reference's
// seeds, so the operands are the reference's; see README.md for the one assumed draw order.
#include "arithmetic_split.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace modlab::tuple_rnn {
namespace {

constexpr std::uint32_t kSeedBase = 0x12345678u;  // RandomState(0x12345678 + index of the split)

/// The `[dataset]` table.
struct Settings {
  std::string task = "tuple";
  std::string encoding = "ff";
  std::int64_t train_size = 1000000;
  std::int64_t valid_size = 10000;
  std::int64_t test_size = 10000;
};

const Options<Settings>& tuple_rnn_options() {
  using S = Settings;
  static const auto o =
      Options<S>()
          .key("task", &S::task, "tuple: two 2-digit additions mod 100; addmul: one addition or multiplication mod 100")
          .choices({"tuple", "addmul"})
          .key("encoding", &S::encoding,
               "ff: one input vector; together: it repeated at every step; "
               "only_one_io (tuple): each tuple during its 3 steps")
          .choices({"ff", "together", "only_one_io"})
          .key("train_size", &S::train_size, "examples in the training split").at_least(1)
          .key("valid_size", &S::valid_size, "examples in the validation split").at_least(1)
          .key("test_size", &S::test_size, "examples in the test split").at_least(1);
  return o;
}

Layout layout_of(const Config& c, const Settings& s) {
  Layout l;
  l.task = s.task == "tuple" ? Task::Tuple : Task::AddMul;
  if (s.encoding == "only_one_io" && l.task != Task::Tuple)
    c.fail("encoding", "only_one_io needs task = \"tuple\" (addmul has one pair of operands; use ff or together)");
  l.encoding = s.encoding == "ff"         ? Encoding::FF
               : s.encoding == "together" ? Encoding::Together
                                          : Encoding::OnlyOneIo;
  return l;
}

std::string join(const std::vector<std::int64_t>& v) {
  std::string out;
  for (auto x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

std::vector<SubTask> tuple_subtasks(const Layout& l) {
  SubTask p1, p2;
  p1.name = "pair1";
  p1.description = "tuple 0 alone: tuple 1's inputs zeroed, scored on its two result digits";
  p1.outputs = {0, 1};
  p1.zeroed_inputs = l.tuple_inputs(1);
  p2.name = "pair2";
  p2.description = "tuple 1 alone: tuple 0's inputs zeroed, scored on its two result digits";
  p2.outputs = {2, 3};
  p2.zeroed_inputs = l.tuple_inputs(0);
  return {p1, p2};
}

std::vector<SubTask> addmul_subtasks() {
  SubTask add, mul;
  add.name = "add";
  add.description = "the additions: examples with op = add, trained on train_add";
  add.groups = {0};
  add.train_split = "train_add";
  mul.name = "mul";
  mul.description = "the multiplications: examples with op = mul, trained on train_mul";
  mul.groups = {1};
  mul.train_split = "train_mul";
  return {add, mul};
}

DatasetSpec describe(const Layout& l, const Settings& s) {
  DatasetSpec spec;
  spec.name = "tuple_rnn/" + s.task;
  spec.input_shape = l.input_shape();
  spec.task = TaskKind::MultiClass;
  spec.num_outputs = l.outputs();
  spec.num_classes = kBase;
  spec.splits = {"train", "valid", "test"};
  spec.info["task"] = s.task;
  spec.info["encoding"] = s.encoding;
  spec.info["train_size"] = std::to_string(s.train_size);
  spec.info["valid_size"] = std::to_string(s.valid_size);
  spec.info["test_size"] = std::to_string(s.test_size);
  spec.info["seed_base"] = "0x12345678";
  spec.info["split_seeds"] = "train +0, test +1, valid +2";
  spec.info["n_digits"] = std::to_string(kDigits);
  spec.info["digit_order"] = "least significant first";
  if (l.encoding != Encoding::FF) {
    spec.info["steps"] = std::to_string(l.steps());
    spec.info["output_steps"] = join(l.output_steps());
  }
  if (l.task == Task::Tuple) {
    spec.info["n_tuples"] = std::to_string(kTuples);
    spec.subtasks = tuple_subtasks(l);
  } else {
    spec.info["draw_order"] = "operands randint(0, 100, (n, 2)), then ops randint(0, 2, n)";
    spec.group_kind = "op";
    spec.group_names = {"add", "mul"};
    spec.subtasks = addmul_subtasks();
    for (const char* name : {"train_add", "train_mul", "valid_add", "valid_mul"}) spec.splits.emplace_back(name);
  }
  return spec;
}

/// add/mul: `<split>_add` and `<split>_mul`, the rows of `split` with that op, in order.
void add_restricted(const Config& c, const std::string& split, const std::shared_ptr<const ArithmeticSplit>& parent,
                    std::map<std::string, std::shared_ptr<const Split>>& out, DatasetSpec& spec) {
  const char* ops[2] = {"add", "mul"};
  for (std::int64_t op = 0; op < kOps; ++op) {
    const auto rows = parent->rows_with_op(op);
    const std::string name = split + "_" + ops[op];
    if (rows.size(0) == 0)
      c.fail(split + "_size", "the " + split + " split has no " + ops[op] + " example, so " + name +
                                  " would be empty; use a larger size");
    out[name] = std::make_shared<SubsetSplit>(parent, rows);
    spec.info[name + "_size"] = std::to_string(rows.size(0));
  }
}

std::shared_ptr<Dataset> make_tuple_rnn(const Config& c, Host&) {
  const Settings s = tuple_rnn_options().parse(c);
  const Layout layout = layout_of(c, s);
  DatasetSpec spec = describe(layout, s);
  std::map<std::string, std::shared_ptr<const Split>> splits;
  // The reference seeds its sets in the order train, test, valid.
  const std::pair<std::string, std::int64_t> parts[3] = {
      {"train", s.train_size}, {"test", s.test_size}, {"valid", s.valid_size}};
  for (std::uint32_t i = 0; i < 3; ++i) {
    const auto& [name, n] = parts[i];
    auto raw = draw_examples(layout.task, n, kSeedBase + i);
    std::shared_ptr<const ArithmeticSplit> split = std::make_shared<ArithmeticSplit>(layout, std::move(raw));
    if (layout.task == Task::AddMul && name != "test") add_restricted(c, name, split, splits, spec);
    splits[name] = std::move(split);
  }
  return std::make_shared<TensorDataset>(std::move(spec), std::move(splits));
}

void register_tuple_rnn(Registrar& registrar) {
  DatasetEntry e;
  e.name = "tuple_rnn";
  e.description = "two-digit arithmetic: two independent additions (tuple) or an addition or multiplication (addmul)";
  e.keys = tuple_rnn_options().specs();
  e.factory = &make_tuple_rnn;
  registrar.add_dataset(std::move(e));
}

}  // namespace
}  // namespace modlab::tuple_rnn

MODLAB_PLUGIN("tuple_rnn", modlab::kDatasetPlugin, "1.0.0", "two-digit tuple addition and add/mul datasets",
              modlab::tuple_rnn::register_tuple_rnn)

// Sub-task restriction of batches and outputs (see subtasks.hpp).
#include "subtasks.hpp"

#include <modlab/errors.hpp>

#include <torch/torch.h>

namespace modlab::masked {
namespace {

torch::Tensor ids(const std::vector<std::int64_t>& v, const torch::Device& d) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kLong)).to(d);
}

void check_range(const std::vector<std::int64_t>& v, std::int64_t n, const std::string& what, const DatasetSpec& spec,
                 const SubTask& t) {
  for (auto i : v)
    if (i < 0 || i >= n)
      throw ConfigError("dataset '" + spec.name + "', sub-task '" + t.name + "': " + what + " " + std::to_string(i) +
                        " is outside [0, " + std::to_string(n) + ")");
}

}  // namespace

void check_subtask(const DatasetSpec& spec, const SubTask& t) {
  if (!t.outputs.empty() && spec.task != TaskKind::MultiClass && spec.task != TaskKind::MultiLabel)
    throw ConfigError("dataset '" + spec.name + "', sub-task '" + t.name + "' restricts outputs, but the task is " +
                      task_kind_name(spec.task) + " (only multi_class and multi_label tasks have several outputs)");
  check_range(t.outputs, spec.num_outputs, "output", spec, t);
  check_range(t.zeroed_inputs, spec.input_numel(), "zeroed input", spec, t);
  if (!t.classes.empty() && spec.task != TaskKind::Classification)
    throw ConfigError("dataset '" + spec.name + "', sub-task '" + t.name + "' selects classes of a " +
                      task_kind_name(spec.task) + " task");
  check_range(t.classes, spec.num_classes, "class", spec, t);
}

const SubTask& find_subtask(const DatasetSpec& spec, const std::string& name, const std::string& key) {
  std::string known;
  for (const auto& t : spec.subtasks) {
    if (t.name == name) return t;
    known += (known.empty() ? "" : ", ") + t.name;
  }
  throw ConfigError(key + ": dataset '" + spec.name + "' has no sub-task '" + name + "' (" +
                    (known.empty() ? std::string("it declares none") : "it has: " + known) + ")");
}

Batch restrict_batch(const Batch& batch, const SubTask& t, bool keep_rows) {
  Batch b = batch;
  if (!keep_rows && (!t.groups.empty() || !t.classes.empty())) {
    auto keep = torch::ones({b.size()}, torch::TensorOptions().dtype(torch::kBool).device(b.inputs.device()));
    if (!t.groups.empty()) {
      if (!b.groups.defined())
        throw DataError("sub-task '" + t.name + "' selects examples by group, but the batch has no groups");
      keep = keep & torch::isin(b.groups, ids(t.groups, b.groups.device()));
    }
    if (!t.classes.empty()) keep = keep & torch::isin(b.targets, ids(t.classes, b.targets.device()));
    b = b.select(keep.nonzero().squeeze(1));
  }
  if (!t.zeroed_inputs.empty()) {
    const auto shape = b.inputs.sizes().vec();
    b.inputs = b.inputs.reshape({b.size(), -1})
                   .index_fill(1, ids(t.zeroed_inputs, b.inputs.device()), 0)
                   .reshape(shape);
  }
  return b;
}

void restrict_outputs(const SubTask& t, Batch& batch, Output& out) {
  if (t.outputs.empty()) return;
  const auto o = ids(t.outputs, out.prediction.device());
  out.prediction = out.prediction.index_select(1, o);
  batch.targets = batch.targets.index_select(1, o.to(batch.targets.device()));
  if (batch.subtask_targets.defined())
    batch.subtask_targets = batch.subtask_targets.index_select(2, o.to(batch.subtask_targets.device()));
}

}  // namespace modlab::masked

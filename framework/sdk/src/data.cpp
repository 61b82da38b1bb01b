// Batches, splits and datasets: moving and selecting rows, the tensor-backed split and dataset.
#include <modlab/batch.hpp>
#include <modlab/dataset.hpp>
#include <modlab/errors.hpp>

#include <torch/torch.h>

namespace modlab {

Split::~Split() = default;
TensorSplit::~TensorSplit() = default;
Dataset::~Dataset() = default;
TensorDataset::~TensorDataset() = default;

std::int64_t Batch::size() const { return inputs.defined() ? inputs.size(0) : 0; }

namespace {
// Both skip the call when there is nothing to do: each LibTorch call costs about a microsecond
// of dispatch, comparable to a whole small model's training step divided by its op count.
torch::Tensor to_dev(const torch::Tensor& t, const torch::Device& d, bool nb) {
  return t.defined() && t.device() != d ? t.to(d, nb) : t;
}
torch::Tensor rows(const torch::Tensor& t, const torch::Tensor& idx) {
  if (!t.defined()) return t;
  return t.index_select(0, idx.device() == t.device() ? idx : idx.to(t.device()));
}
}  // namespace

Batch Batch::to(const torch::Device& d, bool nb) const {
  return Batch{to_dev(inputs, d, nb),  to_dev(targets, d, nb),        to_dev(groups, d, nb),
               to_dev(lengths, d, nb), to_dev(target_lengths, d, nb), to_dev(indices, d, nb),
               to_dev(subtask_targets, d, nb)};
}

Batch Batch::select(const torch::Tensor& index) const {
  return Batch{rows(inputs, index),  rows(targets, index),        rows(groups, index),
               rows(lengths, index), rows(target_lengths, index), rows(indices, index),
               rows(subtask_targets, index)};
}


const char* task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::Classification: return "classification";
    case TaskKind::MultiLabel: return "multi_label";
    case TaskKind::Regression: return "regression";
    case TaskKind::Sequence: return "sequence";
    case TaskKind::MultiClass: return "multi_class";
  }
  return "?";
}

std::int64_t DatasetSpec::input_numel() const {
  std::int64_t n = 1;
  for (auto d : input_shape) n *= d;
  return n;
}

Batch Split::all() const { return get(torch::arange(size(), torch::kLong)); }
torch::Tensor Split::lengths(const torch::Tensor&) const { return {}; }

torch::Tensor TensorSplit::lengths(const torch::Tensor& indices) const {
  if (!data_.lengths.defined()) return {};
  const auto idx = indices.to(torch::kLong).cpu();
  auto n = data_.lengths.index_select(0, idx).to(torch::kLong);
  if (data_.target_lengths.defined()) n = n + data_.target_lengths.index_select(0, idx).to(torch::kLong);
  return n;
}

TensorSplit::TensorSplit(Batch data, double train_noise_std) : data_(std::move(data)), train_noise_std_(train_noise_std) {
  if (!data_.inputs.defined() || !data_.targets.defined())
    throw DataError("TensorSplit: inputs and targets must be defined");
  if (data_.targets.size(0) != data_.inputs.size(0))
    throw DataError("TensorSplit: " + std::to_string(data_.inputs.size(0)) + " inputs but " +
                    std::to_string(data_.targets.size(0)) + " targets");
  if (!data_.indices.defined()) {
    data_.indices = torch::arange(data_.inputs.size(0), torch::kLong);
    identity_indices_ = true;
  }
}

std::int64_t TensorSplit::size() const { return data_.size(); }

Batch TensorSplit::get(const torch::Tensor& indices, bool training) const {
  // With rows numbered 0 … n − 1, a batch's own indices are the requested ones: no gather.
  Batch b = identity_indices_ ? Batch{data_.inputs,  data_.targets,        data_.groups,
                                      data_.lengths, data_.target_lengths, {},
                                      data_.subtask_targets}
                                    .select(indices)
                              : data_.select(indices);
  if (identity_indices_) b.indices = to_dev(indices, data_.indices.device(), false);
  if (training && train_noise_std_ > 0.0) b.inputs = b.inputs + torch::randn_like(b.inputs) * train_noise_std_;
  return b;
}

Batch TensorSplit::all() const { return data_; }

SubsetSplit::SubsetSplit(std::shared_ptr<const Split> parent, torch::Tensor indices)
    : parent_(std::move(parent)), indices_(indices.to(torch::kLong).contiguous()) {
  if (!parent_) throw DataError("SubsetSplit: no parent split");
  if (indices_.dim() != 1) throw DataError("SubsetSplit: indices must be one-dimensional");
  if (indices_.numel() > 0 && (indices_.min().item<std::int64_t>() < 0 ||
                               indices_.max().item<std::int64_t>() >= parent_->size()))
    throw DataError("SubsetSplit: an index is outside the parent split (size " + std::to_string(parent_->size()) + ")");
}
SubsetSplit::~SubsetSplit() = default;

std::int64_t SubsetSplit::size() const { return indices_.size(0); }

Batch SubsetSplit::get(const torch::Tensor& indices, bool training) const {
  return parent_->get(indices_.index_select(0, indices.to(torch::kLong).cpu()), training);
}

torch::Tensor SubsetSplit::lengths(const torch::Tensor& indices) const {
  return parent_->lengths(indices_.index_select(0, indices.to(torch::kLong).cpu()));
}

TensorDataset::TensorDataset(DatasetSpec spec, std::map<std::string, std::shared_ptr<const Split>> splits)
    : spec_(std::move(spec)), splits_(std::move(splits)) {
  if (spec_.splits.empty())
    for (const auto& kv : splits_) spec_.splits.push_back(kv.first);
}

std::shared_ptr<const Split> TensorDataset::split(const std::string& name) const {
  auto it = splits_.find(name);
  if (it == splits_.end()) {
    std::string known;
    for (const auto& kv : splits_) known += (known.empty() ? "" : ", ") + kv.first;
    throw DataError("dataset '" + spec_.name + "' has no split '" + name + "' (it has: " + known + ")");
  }
  return it->second;
}

}  // namespace modlab

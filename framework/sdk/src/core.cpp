// Out-of-line definitions of the SDK's torch-facing types: batches, splits, the Model defaults,
// metric sets. Virtual destructors live here so each class's type info is emitted once, in
// libmodlab_sdk.so, and is shared by the host and every plugin.
#include <modlab/batch.hpp>
#include <modlab/dataset.hpp>
#include <modlab/errors.hpp>
#include <modlab/host.hpp>
#include <modlab/model.hpp>
#include <modlab/plugin.hpp>
#include <modlab/recorder.hpp>

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace modlab {

Error::~Error() = default;
ConfigError::~ConfigError() = default;
PluginLoadError::~PluginLoadError() = default;
DataError::~DataError() = default;
OutputError::~OutputError() = default;
Split::~Split() = default;
TensorSplit::~TensorSplit() = default;
Dataset::~Dataset() = default;
TensorDataset::~TensorDataset() = default;
Recorder::~Recorder() = default;
Host::~Host() = default;
StepContext::~StepContext() = default;
Registrar::~Registrar() = default;
Model::Model() = default;
Model::~Model() = default;

// ---------------------------------------------------------------- Batch

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
  return Batch{to_dev(inputs, d, nb), to_dev(targets, d, nb),        to_dev(groups, d, nb),
               to_dev(lengths, d, nb), to_dev(target_lengths, d, nb), to_dev(indices, d, nb)};
}

Batch Batch::select(const torch::Tensor& index) const {
  return Batch{rows(inputs, index),  rows(targets, index),        rows(groups, index),
               rows(lengths, index), rows(target_lengths, index), rows(indices, index)};
}

// ---------------------------------------------------------------- Dataset

const char* task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::Classification: return "classification";
    case TaskKind::MultiLabel: return "multi_label";
    case TaskKind::Regression: return "regression";
    case TaskKind::Sequence: return "sequence";
  }
  return "?";
}

std::int64_t DatasetSpec::input_numel() const {
  std::int64_t n = 1;
  for (auto d : input_shape) n *= d;
  return n;
}

Batch Split::all() const { return get(torch::arange(size(), torch::kLong)); }

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
  Batch b = identity_indices_ ? Batch{data_.inputs, data_.targets, data_.groups, data_.lengths, data_.target_lengths, {}}
                                    .select(indices)
                              : data_.select(indices);
  if (identity_indices_) b.indices = to_dev(indices, data_.indices.device(), false);
  if (training && train_noise_std_ > 0.0) b.inputs = b.inputs + torch::randn_like(b.inputs) * train_noise_std_;
  return b;
}

Batch TensorSplit::all() const { return data_; }

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

// ---------------------------------------------------------------- Metrics

void MetricSet::add(const std::string& name, double value, double weight) {
  auto& a = acc_[name];
  a.sum += value * weight;
  a.weight += weight;
}

void MetricSet::set(const std::string& name, double value) { acc_[name] = Acc{value, 1.0}; }

double MetricSet::get(const std::string& name) const {
  auto it = acc_.find(name);
  if (it == acc_.end() || it->second.weight == 0.0) return std::numeric_limits<double>::quiet_NaN();
  return it->second.sum / it->second.weight;
}

bool MetricSet::has(const std::string& name) const { return acc_.count(name) > 0; }

std::map<std::string, double> MetricSet::values() const {
  std::map<std::string, double> out;
  for (const auto& kv : acc_) out[kv.first] = get(kv.first);
  return out;
}

void MetricSet::clear() { acc_.clear(); }

// ---------------------------------------------------------------- Model defaults

torch::Tensor total(const Losses& losses) {
  torch::Tensor sum;
  for (const auto& t : losses) sum = sum.defined() ? sum + t.value : t.value;
  return sum.defined() ? sum : torch::zeros({});
}

Losses Model::loss(const Batch& batch, const Output& out) {
  namespace F = torch::nn::functional;
  const auto& p = out.prediction;
  torch::Tensor l;
  if (batch.targets.scalar_type() == torch::kLong) {
    switch (out.kind) {
      case Output::Kind::Logits: l = F::cross_entropy(p, batch.targets); break;
      case Output::Kind::LogProbabilities: l = F::nll_loss(p, batch.targets); break;
      case Output::Kind::Probabilities: l = F::nll_loss(torch::log(p + 1e-15), batch.targets); break;
    }
  } else {
    auto t = batch.targets.to(p.scalar_type());
    switch (out.kind) {
      case Output::Kind::Logits: l = F::binary_cross_entropy_with_logits(p, t); break;
      case Output::Kind::Probabilities: l = F::binary_cross_entropy(p, t); break;
      case Output::Kind::LogProbabilities: l = F::binary_cross_entropy(torch::exp(p), t); break;
    }
  }
  return {{"task", l}};
}

Losses Model::train_step(const Batch& batch, StepContext& ctx) {
  Output out = forward(batch);
  Losses l = loss(batch, out);
  ctx.optimize(l);
  return l;
}

std::vector<Phase> Model::phases() const { return {Phase{}}; }
void Model::begin_phase(const Phase&) {}

std::vector<ParamGroup> Model::param_groups(const std::string&) {
  ParamGroup g;
  g.name = "all";
  for (auto& p : parameters())
    if (p.requires_grad()) g.params.push_back(p);
  return {g};
}

void Model::begin_epoch(const EpochContext&) {}
void Model::eval_begin(const std::string&) {}
void Model::eval_batch(const std::string&, const Batch&, const Output&, MetricSet&) {}
void Model::eval_end(const std::string&, MetricSet&, Recorder&) {}
void Model::record(Recorder&) {}

torch::Tensor Model::correct(const Batch& batch, const Output& out) {
  const auto& p = out.prediction;
  if (batch.targets.scalar_type() == torch::kLong) return (p.argmax(-1) == batch.targets).to(torch::kFloat);
  torch::Tensor bits;
  switch (out.kind) {
    case Output::Kind::Logits: bits = p > 0; break;
    case Output::Kind::Probabilities: bits = p > 0.5; break;
    case Output::Kind::LogProbabilities: bits = p > std::log(0.5); break;
  }
  return (bits == (batch.targets > 0.5)).to(torch::kFloat);
}

}  // namespace modlab

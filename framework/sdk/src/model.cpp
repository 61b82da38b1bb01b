// The defaults of `Model`, so that a plain classifier implements only `forward`: the loss by task
// and output kind, the one-phase training step, one parameter group, accuracy.
#include <modlab/config.hpp>
#include <modlab/errors.hpp>
#include <modlab/model.hpp>
#include <modlab/population.hpp>

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <cmath>
#include <iomanip>
#include <sstream>

#include <unistd.h>

namespace modlab {

Model::Model() = default;
Model::~Model() = default;
StepContext::~StepContext() = default;

torch::Tensor total(const Losses& losses) {
  torch::Tensor sum;
  for (const auto& t : losses) sum = sum.defined() ? sum + t.value : t.value;
  return sum.defined() ? sum : torch::zeros({});
}

namespace {
thread_local std::int64_t g_members = 1;
/// The model options the members of the population on this thread differ in, P values each.
thread_local std::map<std::string, std::vector<double>> g_member_options;

/// The default task loss per example ([rows] or [rows, outputs]), before `member_mean`.
torch::Tensor per_example_loss(const Batch& batch, const Output& out) {
  namespace F = torch::nn::functional;
  auto p = out.prediction;
  auto targets = batch.targets;
  if (targets.scalar_type() == torch::kLong && targets.dim() == 2 && p.dim() == 3) {
    // MultiClass: every output is one classification; the mean over outputs and examples.
    p = p.reshape({-1, p.size(-1)});
    targets = targets.reshape({-1});
  }
  const auto none = torch::kNone;
  if (targets.scalar_type() == torch::kLong) {
    switch (out.kind) {
      case Output::Kind::Logits: return F::cross_entropy(p, targets, F::CrossEntropyFuncOptions().reduction(none));
      case Output::Kind::LogProbabilities: return F::nll_loss(p, targets, F::NLLLossFuncOptions().reduction(none));
      case Output::Kind::Probabilities:
        return F::nll_loss(torch::log(p + 1e-15), targets, F::NLLLossFuncOptions().reduction(none));
    }
  }
  auto t = targets.to(p.scalar_type());
  switch (out.kind) {
    case Output::Kind::Logits:
      return F::binary_cross_entropy_with_logits(p, t, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(none));
    case Output::Kind::Probabilities: return F::binary_cross_entropy(p, t, F::BinaryCrossEntropyFuncOptions().reduction(none));
    case Output::Kind::LogProbabilities:
      return F::binary_cross_entropy(torch::exp(p), t, F::BinaryCrossEntropyFuncOptions().reduction(none));
  }
  throw ArgumentError("unknown output kind");
}
}  // namespace

std::int64_t population_members() { return g_members; }

PopulationScope::PopulationScope(std::int64_t members, std::map<std::string, std::vector<double>> options)
    : outer_(g_members) {
  if (members < 1) throw ArgumentError("a population needs at least one member");
  for (const auto& [key, values] : options)
    if (static_cast<std::int64_t>(values.size()) != members)
      throw ArgumentError("population option '" + key + "': " + std::to_string(values.size()) + " values for " +
                          std::to_string(members) + " members");
  outer_options_ = std::move(g_member_options);
  g_members = members;
  g_member_options = std::move(options);
}
PopulationScope::~PopulationScope() {
  g_members = outer_;
  g_member_options = std::move(outer_options_);
}

torch::Tensor member_option(const std::string& key, double own, const torch::Tensor& like, std::int64_t axis) {
  const auto it = g_member_options.find(key);
  if (g_members == 1 || it == g_member_options.end()) return torch::scalar_tensor(own, torch::kDouble);
  const std::int64_t d = axis < 0 ? axis + like.dim() : axis;
  const std::int64_t n = d >= 0 && d < like.dim() ? like.size(d) : 0;
  if (n == 0 || n % g_members != 0)
    throw ArgumentError("member_option '" + key + "': axis " + std::to_string(axis) + " of a tensor of " +
                        std::to_string(like.dim()) + " dims holds " + std::to_string(n) +
                        " entries, neither the population's " + std::to_string(g_members) + " members nor their rows");
  auto values = torch::tensor(it->second, torch::kDouble).to(like.options());
  if (n != g_members) values = values.repeat_interleave(n / g_members);
  std::vector<std::int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
  shape[static_cast<std::size_t>(d)] = n;
  return values.view(shape);
}

torch::Tensor member_mean(const torch::Tensor& per_example) {
  if (g_members == 1) return per_example.mean();
  if (per_example.dim() == 0 || per_example.size(0) % g_members != 0)
    throw ArgumentError("member_mean: " + std::to_string(per_example.dim() == 0 ? 0 : per_example.size(0)) +
                        " rows do not split into the population's " + std::to_string(g_members) + " members");
  return per_example.reshape({g_members, -1}).mean(1);
}

Losses Model::loss(const Batch& batch, const Output& out) { return {{"task", member_mean(per_example_loss(batch, out))}}; }

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
void Model::end_epoch(const EpochContext&, Recorder&) {}
void Model::eval_begin(const std::string&) {}
void Model::eval_batch(const std::string&, const Batch&, const Output&, MetricSet&) {}
void Model::eval_end(const std::string&, MetricSet&, Recorder&) {}
void Model::record(Recorder&) {}

torch::Tensor Model::correct(const Batch& batch, const Output& out) {
  const auto& p = out.prediction;
  if (batch.targets.scalar_type() == torch::kLong) {
    auto hit = p.argmax(-1) == batch.targets;
    // MultiClass ([B, outputs] targets): an example is correct when all its outputs are.
    if (hit.dim() == 2) hit = hit.all(1);
    return hit.to(torch::kFloat);
  }
  torch::Tensor bits;
  switch (out.kind) {
    case Output::Kind::Logits: bits = p > 0; break;
    case Output::Kind::Probabilities: bits = p > 0.5; break;
    case Output::Kind::LogProbabilities: bits = p > std::log(0.5); break;
  }
  return (bits == (batch.targets > 0.5)).to(torch::kFloat);
}

void check_model_size(const Config& config, const std::string& key, double parameters) {
  const double bytes = 16.0 * parameters;
  const double memory = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  if (memory <= 0 || bytes <= memory) return;
  auto gb = [](double b) {
    std::ostringstream os;
    os << std::setprecision(3) << b / 1e9 << " GB";
    return os.str();
  };
  std::ostringstream n;
  n << std::setprecision(3) << parameters;
  config.fail(key, "makes a model of about " + n.str() + " parameters, " + gb(bytes) +
                       " to train (16 bytes each: weights, gradients, Adam moments); this machine has " + gb(memory));
}

}  // namespace modlab

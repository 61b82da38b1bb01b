// Gate statistics: entropies, mutual information, importance CV and allocation counts.
#include <modlab/mixture/gate_metrics.hpp>

#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace modlab::mixture {

namespace {
/// Entropy in bits of a non-negative vector after normalising it to sum 1 (0 for an all-zero vector).
double entropy_of_counts(const torch::Tensor& counts) {
  auto c = counts.to(torch::kDouble).flatten();
  const double total = c.sum().item<double>();
  if (total <= 0.0) return 0.0;
  return modlab::nn::entropy_bits(c / total).item<double>();
}
}  // namespace

double sample_entropy_bits(const torch::Tensor& gate) {
  return modlab::nn::entropy_bits(gate.to(torch::kDouble), -1).mean().item<double>();
}

double usage_entropy_bits(const torch::Tensor& gate) {
  return modlab::nn::entropy_bits(gate.to(torch::kDouble).mean(0), -1).item<double>();
}

double mutual_information_bits(const torch::Tensor& counts) {
  if (counts.dim() != 2) throw modlab::ArgumentError("mutual_information_bits needs a 2-D count matrix");
  const auto c = counts.to(torch::kDouble);
  // Clamped: rounding can leave −1e-16 for independent counts.
  return std::max(0.0, entropy_of_counts(c.sum(1)) + entropy_of_counts(c.sum(0)) - entropy_of_counts(c));
}

double importance_cv(const torch::Tensor& importance) {
  const auto imp = importance.to(torch::kDouble).flatten();
  if (imp.numel() < 2) return 0.0;
  return (imp.std(/*unbiased=*/true) / imp.mean()).item<double>();
}

torch::Tensor selection_counts(const torch::Tensor& gate, const torch::Tensor& experts) {
  const auto n = gate.size(0), e = gate.size(1), c = experts.size(2);
  const auto chosen = gate.argmax(1);                                                       // [N]
  const auto out = experts.gather(1, chosen.view({n, 1, 1}).expand({n, 1, c})).squeeze(1);  // [N, C]
  const auto predicted = out.argmax(1);
  auto flat = (predicted * e + chosen).to(torch::kCPU);
  return torch::bincount(flat, {}, c * e).view({c, e}).to(torch::kLong);
}

torch::Tensor allocation_counts(const torch::Tensor& gate, const torch::Tensor& labels, std::int64_t classes) {
  const auto e = gate.size(1);
  const auto chosen = gate.argmax(1).to(torch::kCPU);
  const auto flat = chosen * classes + labels.to(torch::kCPU, torch::kLong);
  return torch::bincount(flat, {}, e * classes).view({e, classes}).to(torch::kLong);
}

GateStats::GateStats(std::int64_t experts, std::int64_t classes)
    : experts_(experts),
      classes_(classes),
      importance_(torch::zeros({experts}, torch::kDouble)),
      allocation_(torch::zeros({experts, classes}, torch::kLong)),
      selection_(torch::zeros({classes, experts}, torch::kLong)) {}

void GateStats::add(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& labels) {
  const auto g = gate.detach().to(torch::kCPU, torch::kDouble);
  const auto f = experts.detach().to(torch::kCPU);
  if (g.dim() != 2 || g.size(1) != experts_ || f.dim() != 3 || f.size(2) != classes_)
    throw modlab::ArgumentError("GateStats::add: expected gate [B, " + std::to_string(experts_) + "] and experts [B, " +
                                std::to_string(experts_) + ", " + std::to_string(classes_) + "]");
  examples_ += g.size(0);
  entropy_sum_ += modlab::nn::entropy_bits(g, -1).sum().item<double>();
  importance_ += g.sum(0);
  allocation_ += allocation_counts(g, labels, classes_);
  selection_ += selection_counts(g, f);
}

GateSummary GateStats::summary() const {
  GateSummary s;
  s.examples = examples_;
  s.importance = importance_.clone();
  s.allocation = allocation_.clone();
  s.selection = selection_.clone();
  s.expert_counts = allocation_.sum(1);
  const double n = examples_ > 0 ? static_cast<double>(examples_) : 1.0;
  s.gate_mean = (importance_ / n).to(torch::kFloat);
  if (examples_ == 0) return s;
  s.sample_entropy = entropy_sum_ / n;
  s.usage_entropy = modlab::nn::entropy_bits(importance_ / n, -1).item<double>();
  s.mutual_information = mutual_information_bits(selection_);
  s.importance_cv = importance_cv(importance_);
  return s;
}

}  // namespace modlab::mixture

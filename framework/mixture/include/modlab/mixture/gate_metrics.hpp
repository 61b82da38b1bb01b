#pragma once
/// @file gate_metrics.hpp
/// How a gate divides work among experts (moe §1.4), as plain functions of gate and expert
/// outputs, plus an accumulator over the batches of one evaluated split. All entropies in bits.
/// Shared by every gated model (moe, mode, ...).

#include <torch/types.h>

#include <cstdint>

namespace modlab::mixture {

/// H_s: mean over rows of H(g(x)) for gate probabilities [N, E].
double sample_entropy_bits(const torch::Tensor& gate);

/// H_u: H(mean over rows of g(x)) for gate probabilities [N, E] (at most log2 E).
double usage_entropy_bits(const torch::Tensor& gate);

/// I(A;B) = H(A) + H(B) − H(A,B) of the joint distribution given by a count matrix [A, B]
/// (any non-negative numbers; 0 when the matrix is all zero).
double mutual_information_bits(const torch::Tensor& counts);

/// Coefficient of variation std/mean of an importance vector [E] (unbiased std, as torch.std);
/// 0 for a single expert.
double importance_cv(const torch::Tensor& importance);

/// Count matrix [C, E] of (class predicted by the selected expert, selected expert), where the
/// selected expert is argmax_e g_e(x) and its prediction argmax_c f_e(x)_c: the matrix behind
/// the mutual information I(E;Y) of the reference. `gate` [N, E], `experts` [N, E, C].
torch::Tensor selection_counts(const torch::Tensor& gate, const torch::Tensor& experts);

/// Allocation matrix [E, C] (int64): how many examples of true class c the gate sends to expert e
/// (argmax gate). `gate` [N, E], `labels` [N] int64 in [0, C).
torch::Tensor allocation_counts(const torch::Tensor& gate, const torch::Tensor& labels, std::int64_t classes);

/// Everything §1.4 reports for one evaluated split.
struct GateSummary {
  std::int64_t examples = 0;
  double sample_entropy = 0.0;      ///< H_s, bits
  double usage_entropy = 0.0;       ///< H_u, bits
  double mutual_information = 0.0;  ///< I(E;Y) from `selection`, bits
  double importance_cv = 0.0;       ///< std/mean of importance
  torch::Tensor importance;         ///< [E] double: Σ_i g_e(x_i)
  torch::Tensor gate_mean;          ///< [E] float: importance / examples
  torch::Tensor expert_counts;      ///< [E] int64: examples whose argmax gate is e
  torch::Tensor allocation;         ///< [E, C] int64: argmax-gate expert × true class
  torch::Tensor selection;          ///< [C, E] int64: selected expert's predicted class × expert
};

/// Accumulates gate statistics over the batches of one split (on the CPU, in double precision).
class GateStats {
 public:
  GateStats(std::int64_t experts, std::int64_t classes);
  /// Adds a batch: `gate` [B, E], `experts` [B, E, C], `labels` [B] int64.
  void add(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& labels);
  /// The statistics of everything added so far.
  GateSummary summary() const;
  std::int64_t examples() const { return examples_; }

 private:
  std::int64_t experts_, classes_, examples_ = 0;
  double entropy_sum_ = 0.0;
  torch::Tensor importance_, allocation_, selection_;
};

}  // namespace modlab::mixture

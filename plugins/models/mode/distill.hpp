#pragma once
/// @file distill.hpp
/// The parts of MoDE (mixture of distilled experts) that are plain tensor math: the mutual
/// distillation loss L_KD over all expert pairs at once, the combination of expert logits by the
/// gate (dense or sparse top-k, in the reference's form or renormalised), and the expert probing
/// accumulator (each expert's accuracy on the examples routed to it and on all examples).

#include <torch/types.h>

#include <cstdint>
#include <string>

namespace modlab::mode {

/// How a pair (i, j) is weighted in L_KD. `Product`: ḡ_i·ḡ_j (the reference code);
/// `Student`: ḡ_i only, i = the expert being taught (the reference README).
enum class PairWeight { Product, Student };

/// Which divergence L_KD uses between softened expert outputs.
enum class KdForm {
  Mse,  ///< mean squared error of the softened probabilities; both sides carry gradient
  Kl    ///< KL(p_j ‖ p_i), target p_j detached, batch mean
};

/// The settings of L_KD.
struct DistillOptions {
  KdForm form = KdForm::Kl;
  PairWeight weight = PairWeight::Product;
  double temperature = 1.0;  ///< T of the softened outputs softmax(z/T)
  bool t_squared = false;    ///< multiply L_KD by T² (the README variant)
  /// Whether L_KD's pair weights pass gradient to the gate through ḡ (the reference: yes). With
  /// false, ḡ is a constant in L_KD, so the gate cannot lower L_KD by concentrating on one expert.
  bool gate_gradient = true;
};

/// The reference's choice of divergence: MSE for 2 experts, KL for 3 or more.
KdForm auto_form(std::int64_t experts);

/// D[i][j] = KL(softmax(z_j/T) ‖ softmax(z_i/T)) with the target (j) detached, batch mean
/// (`F.kl_div(log p_i, p_j, reduction="batchmean")`), for every pair at once: [E, E], diagonal 0.
/// `logits` [B, E, C].
torch::Tensor pairwise_kl(const torch::Tensor& logits, double temperature);

/// D[i][j] = mean over batch and classes of (p_i − p_j)², p = softmax(z/T), both sides with
/// gradient: [E, E], symmetric, diagonal 0. `logits` [B, E, C].
torch::Tensor pairwise_mse(const torch::Tensor& logits, double temperature);

/// W[i][j] for i ≠ j (diagonal 0) from the batch-mean gate ḡ [E]: ḡ_i ḡ_j or ḡ_i.
torch::Tensor pair_weights(const torch::Tensor& gate_mean, PairWeight weight);

/// L_KD = (T² if set) · 1/(E(E−1)) · Σ_{i≠j} W[i][j] · D[i][j], with ḡ = mean over the batch of
/// `gate` [B, E] (carrying gradient to the gate unless `gate_gradient` is false) and D from `pairwise_kl` / `pairwise_mse`.
/// For E = 2 with the MSE form and product weights this is MSE(p_1, p_2)·ḡ_1·ḡ_2 as in the
/// reference. Zero (a constant) for E = 1.
torch::Tensor distillation_loss(const torch::Tensor& logits, const torch::Tensor& gate, const DistillOptions& opt);

/// How the top-k gate weights combine the experts.
enum class SparseForm {
  Reference,    ///< the reference: top-k selects the experts, but the unnormalised g_e is used
  Renormalized  ///< corrected: g_e / Σ_{selected} g over the selected experts
};

/// Per-example weights [B, E] that multiply the expert logits: `gate` itself when top_k is 0 or
/// ≥ E; otherwise zero outside each row's k largest gates and g_e (Reference) or the renormalised
/// g_e (Renormalized) inside.
torch::Tensor combine_weights(const torch::Tensor& gate, std::int64_t top_k, SparseForm form);

/// z = Σ_e w_e z_e: `weights` [B, E], `logits` [B, E, C] → [B, C], as one bmm.
torch::Tensor combine(const torch::Tensor& weights, const torch::Tensor& logits);

/// Expert probing over the batches of one evaluated split: for every expert e, its accuracy
/// (argmax of its own logits) on the examples whose argmax gate is e, and on all examples.
class ExpertProbe {
 public:
  explicit ExpertProbe(std::int64_t experts);
  /// Adds a batch: `gate` [B, E], `expert_logits` [B, E, C], `targets` [B] int64 (any device).
  void add(const torch::Tensor& gate, const torch::Tensor& expert_logits, const torch::Tensor& targets);
  std::int64_t examples() const { return examples_; }
  /// [E] int64: examples routed to each expert (argmax gate).
  const torch::Tensor& routed_count() const { return routed_count_; }
  /// [E] double: accuracy of expert e on the examples routed to it (NaN when none).
  torch::Tensor routed_accuracy() const;
  /// [E] double: accuracy of expert e on every example.
  torch::Tensor accuracy() const;
  /// Accuracy of predicting with the argmax-gate expert alone (hard routing).
  double hard_routing_accuracy() const;

 private:
  std::int64_t experts_, examples_ = 0;
  torch::Tensor routed_count_, routed_correct_, all_correct_;  // [E] int64
};

}  // namespace modlab::mode

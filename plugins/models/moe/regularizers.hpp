#pragma once
/// @file regularizers.hpp
/// The loss terms of the gated-modular reference (moe §1.3) as plain differentiable functions of
/// gate probabilities g [B, E] and expert probabilities f [B, E, C], so every training method and
/// other gated models share them and tests can check them against hand-computed values.
///
/// Inside a population (modlab/population.hpp: P members, P·B rows, member m rows m·B …) every
/// batch-level term (importance, ortho, ideal gate, sample similarity) is each member's own over
/// its own B rows, one value per member ([P]); its solo run computes the same term on its batch.

#include <torch/types.h>

#include <string>

namespace modlab::moe {

/// (std(v)/mean(v))² with the unbiased std (torch.std); 0 when v has a single element.
torch::Tensor cv_squared(const torch::Tensor& v);

/// Shazeer's importance term: cv_squared(Σ_i g(x_i)) over the batch.
torch::Tensor importance_loss(const torch::Tensor& gate);

/// The "ortho" term. `form = "master"`: cv_squared of Σ_i Σ_e g_e(x_i) f_e(x_i) (the batch sum of
/// the mixture, one entry per class); `form = "xai"`: cv_squared of Σ_i Σ_e f_e(x_i) (the gate
/// does not enter). Throws modlab::ArgumentError for another form.
torch::Tensor ortho_loss(const torch::Tensor& gate, const torch::Tensor& experts, const std::string& form);

/// Ideal-gate term: MSE(g, onehot(argmin_e CE(f_e(x), y))) averaged over all B·E entries.
/// `targets` [B] int64.
torch::Tensor ideal_gate_loss(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& targets);

/// Sample-similarity term L_s (AISTATS). D_ab = ‖x_a − x_b‖₂ / max D over the batch (`inputs`
/// [B, d] flattened), same = Σ_e g_eᵀ D g_e / E, diff = Σ_{e≠e'} g_eᵀ D g_e' / (E² − E) (0 for
/// E = 1). `form = "normalized"`: (β_s·same − β_d·diff)/B²; `form = "reference"`: the
/// reference code's β_s·same − β_d·diff/B² (operator precedence). D carries no gradient.
torch::Tensor sample_similarity_loss(const torch::Tensor& inputs, const torch::Tensor& gate, double beta_same,
                                     double beta_diff, const std::string& form);

/// Jacobs (1991) stochastic-MoE loss: mean_i −log(Σ_e g_e · exp(−½·CE_e) + 1e-15) with
/// CE_e = −log(f_e(x_i)[y_i] + eps).
torch::Tensor jacobs_loss(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& targets,
                          double eps);

/// EM M-step loss: −mean_i[ log(f_{a_i}(x_i)[y_i] + eps) · g_{a_i}(x_i) ] for assignments a [B].
torch::Tensor em_loss(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& targets,
                      const torch::Tensor& assignment, double eps);

/// EM M-step loss as the negative complete-data log-likelihood of the assignment:
/// −mean_i[ log(f_{a_i}(x_i)[y_i] + eps) + log(g_{a_i}(x_i) + eps) ]. Unlike `em_loss` it rewards the
/// gate for *raising* g_{a_i} (the reference product form is minimised by g_{a_i} → 0).
torch::Tensor em_complete_data_loss(const torch::Tensor& gate, const torch::Tensor& experts,
                                    const torch::Tensor& targets, const torch::Tensor& assignment, double eps);

/// Expert-loss gate term: Σ_e mean_i | g_e(x_i) − log(f_e(x_i)[y_i] + eps) | with f detached.
torch::Tensor expert_loss_gate_loss(const torch::Tensor& gate, const torch::Tensor& experts,
                                    const torch::Tensor& targets, double eps);

/// Probability each expert gives the true class: f_e(x_i)[y_i] as [B, E].
torch::Tensor true_class_probs(const torch::Tensor& experts, const torch::Tensor& targets);

/// The row of `experts` [B, E, C] chosen by `index` [B] → [B, C].
torch::Tensor select_expert(const torch::Tensor& experts, const torch::Tensor& index);

}  // namespace modlab::moe

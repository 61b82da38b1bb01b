#pragma once
// The weights an analysis masks and the masks themselves (masked_analyzer §4.1): which parameters
// of the wrapped model get a mask, the hard Gumbel-sigmoid samples with a straight-through
// gradient, and the overrides that put W ⊙ m into the wrapped model, K samples folded into the batch.
#include <modlab/model.hpp>

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace modlab::masked {

/// Which parameters get a mask. Never embeddings (their names contain "embedding"); biases unless
/// `mask_biases`; normalisation layers' parameters unless `mask_norms`.
struct MaskFilter {
  bool mask_biases = false;
  bool mask_norms = true;
};

/// One masked parameter of the wrapped model.
struct MaskedParam {
  std::string name;       ///< full name in the wrapped model ("layers.0.weight")
  std::string layer;      ///< its module's name ("layers.0"): the unit of the half-mask test
  torch::Tensor weight;   ///< the (frozen) parameter itself
  std::int64_t members = 0;  ///< of a stacked layer (experts, modules): members along axis 0; 0 otherwise
};

/// The wrapped model's parameters that get masks, in `named_parameters()` order. Throws
/// ConfigError naming the model when none is left.
std::vector<MaskedParam> select_masked(Model& model, const MaskFilter& filter, const std::string& model_name);

/// K samples of the masked weight W ⊙ m, [K, …shape], m a hard Gumbel-sigmoid sample of `logits`:
/// 1[σ((l + ν)/τ) > 0.5] with logistic noise ν (the reference's −log(log U₁ / log U₀)), so
/// P(m = 1) = σ(l). Backward: the straight-through gradient W · σ'((l + ν)/τ)/τ to the logits, and
/// Σ_k m_k to W when W requires grad (the sequential protocol trains both). One fused pass.
torch::Tensor sample_masked_weights(const torch::Tensor& logits, const torch::Tensor& weight, std::int64_t K,
                                    double temperature);

/// The deterministic mask of evaluation: 1[l ≥ 0] as a bool tensor.
torch::Tensor hard_mask(const torch::Tensor& logits);

/// Overrides W ⊙ m for every masked parameter; m is [K, …shape] (K folded samples) or the
/// parameter's own shape (one mask for every row), W detached: the evaluation masks.
std::map<std::string, torch::Tensor> masked_overrides(const std::vector<MaskedParam>& params,
                                                      const std::vector<torch::Tensor>& masks);

/// Per-parameter 0/1 masks of several mask configurations stacked into [C, …shape] overrides, so
/// that C configurations are evaluated in one folded forward over C copies of a batch.
std::map<std::string, torch::Tensor> stacked_overrides(const std::vector<MaskedParam>& params,
                                                       const std::vector<std::vector<torch::Tensor>>& configs);

}  // namespace modlab::masked

// SDK-internal helpers shared by the nn translation units; not installed.
#pragma once
#include <torch/types.h>

namespace modlab::nn {

/// x Wᵀ + b on the last axis of x [rows, …, in] for a weight [out, in] or K-batched [K, out, in]
/// (bias [out] / [K, out] or undefined), with K folded into the rows; counts the MACs. `layer`
/// names the caller in errors.
torch::Tensor folded_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, const char* layer);

}  // namespace modlab::nn

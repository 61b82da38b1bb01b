#pragma once
/// @file nn/functional.hpp
/// Stochastic relaxations and estimators shared by modular models.

#include <modlab/export.hpp>

#include <torch/types.h>

#include <cstdint>

namespace modlab::nn {

/// Standard Gumbel noise −log(−log U) of the given shape (uses the global generator).
MODLAB_API torch::Tensor sample_gumbel(at::IntArrayRef shape, const torch::TensorOptions& options);

/// `hard` in the forward pass, the gradient of `soft` in the backward pass: hard − sg(soft) + soft.
MODLAB_API torch::Tensor straight_through(const torch::Tensor& hard, const torch::Tensor& soft);

/// Gumbel-softmax over `dim`: softmax((logits + G)/tau). With `hard`, the one-hot of the argmax with
/// straight-through gradients. With `noise` false, no Gumbel noise is added.
MODLAB_API torch::Tensor gumbel_softmax(const torch::Tensor& logits, double tau, bool hard, std::int64_t dim = -1,
                                        bool noise = true);

/// Gumbel-sigmoid (binary concrete): sigmoid((logits + G1 − G2)/tau); with `hard`, the 0/1 threshold
/// at 0.5 with straight-through gradients.
MODLAB_API torch::Tensor gumbel_sigmoid(const torch::Tensor& logits, double tau, bool hard, bool noise = true);

/// Straight-through top-k selectors: for scores [..., I], k one-hot vectors [k, ..., I] that pick
/// the k largest entries in descending order; gradients flow to `scores` through each one-hot.
MODLAB_API torch::Tensor topk_selectors(const torch::Tensor& scores, std::int64_t k);

/// softmax(x, dim), computed in the memory layout `x` already has: for a permuted view of a dense
/// tensor (a transposed layer output, say) the softmax runs on the dense tensor and the result is
/// the same permuted view, with no copy. LibTorch's CPU softmax over the innermost dimension has a
/// fixed cost per row, however short the row; over an outer dimension it runs across the inner one,
/// several times faster for short rows (E experts, C classes; bench/README.md). Same values as
/// torch::softmax up to rounding.
MODLAB_API torch::Tensor softmax_in_layout(const torch::Tensor& x, std::int64_t dim = -1);

/// torch::max_pool2d(x, 2): 2×2 windows, stride 2, floor mode, over the last two dimensions of
/// `x` [..., H, W] → [..., H/2, W/2]. Bit-identical values, and each window's gradient goes to the
/// element max_pool2d picks (the first maximum in row-major order; at a NaN the values agree but
/// the gradient may go to another element of its window). LibTorch 1.13's CPU kernel works
/// element by element; this takes two elementwise maxima over strided views, several times
/// faster (bench/README.md), and keeps the two comparison masks (bool) for the backward instead of
/// int64 indices.
MODLAB_API torch::Tensor max_pool2x2(const torch::Tensor& x);

/// Entropy in bits of probability vectors along `dim` (0·log 0 = 0).
MODLAB_API torch::Tensor entropy_bits(const torch::Tensor& probs, std::int64_t dim = -1);

}  // namespace modlab::nn

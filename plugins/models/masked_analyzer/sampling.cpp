// K masked weight samples W ⊙ m (see masks.hpp: sample_masked_weights).
//
// A hard Gumbel-sigmoid sample is m = 1[σ((l + ν)/τ) > 0.5] = 1[l + ν > 0] with logistic noise
// ν = log(u/(1−u)), u uniform: m = 1[u > σ(−l)], whatever τ. Its straight-through gradient is that
// of s = σ((l + ν)/τ) = 1 / (1 + ((1−u)/u · e^{−l})^{1/τ}); for τ = 1, s = u / (u + (1−u)·e^{−l}).
// The uniforms come from a counter-based hash of (seed, element), seeded from LibTorch's global
// generator: the forward pass needs one hash and one comparison per sample, and the backward pass
// hashes again instead of keeping K copies of anything. Both loops are plain 32-bit arithmetic over
// contiguous memory, which the compiler vectorises. The composed version (two Gumbel draws, logs,
// sigmoid, threshold, straight-through arithmetic, the product with W: a dozen passes over K
// copies of every weight) cost ten times the training step of the tuple FNN 800×4 (bench/README.md).
#include "masks.hpp"

#include <modlab/errors.hpp>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace modlab::masked {
namespace {

/// A 32-bit integer hash (lowbias32, C. Wellons): good avalanche, only shifts, xors and 32-bit
/// multiplies, so it vectorises.
inline std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/// The uniform in (0, 1) of sample element `i` under `key`: 24 hashed bits.
inline float uniform(std::uint32_t key, std::uint32_t i) {
  return (static_cast<float>(static_cast<std::int32_t>(hash32(hash32(i) ^ key) >> 8)) + 0.5f) * (1.0f / 16777216.0f);
}

constexpr std::int64_t kGrain = 1 << 14;

torch::Tensor cpu_float(const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat).contiguous(); }

// The inner loops take restrict pointers and plain indices so that they vectorise; each is built for
// AVX2 and for the baseline, picked at load time (GCC function multiversioning).
#define MODLAB_VECTOR_LOOP __attribute__((target_clones("avx2", "default")))

MODLAB_VECTOR_LOOP void draw_row(const float* __restrict__ p0, const float* __restrict__ w, float* __restrict__ out, std::uint32_t key,
              std::uint32_t base, std::int64_t lo, std::int64_t hi) {
  for (std::int64_t j = lo; j < hi; ++j)
    out[j] = w[j] * static_cast<float>(uniform(key, base + static_cast<std::uint32_t>(j)) > p0[j]);
}

MODLAB_VECTOR_LOOP void slope_row(const float* __restrict__ q, const float* __restrict__ w, const float* __restrict__ g,
               float* __restrict__ dl, std::uint32_t key, std::uint32_t base, std::int64_t lo, std::int64_t hi) {
  for (std::int64_t j = lo; j < hi; ++j) {
    const float u = uniform(key, base + static_cast<std::uint32_t>(j));
    const float s = u / (u + (1.0f - u) * q[j]);
    dl[j] += g[j] * w[j] * s * (1.0f - s);
  }
}

MODLAB_VECTOR_LOOP void slope_row_tau(const float* __restrict__ q, const float* __restrict__ w, const float* __restrict__ g,
                   float* __restrict__ dl, float inv_tau, std::uint32_t key, std::uint32_t base, std::int64_t lo,
                   std::int64_t hi) {
  for (std::int64_t j = lo; j < hi; ++j) {
    const float u = uniform(key, base + static_cast<std::uint32_t>(j));
    const float s = 1.0f / (1.0f + std::pow((1.0f - u) / u * q[j], inv_tau));
    dl[j] += g[j] * w[j] * s * (1.0f - s) * inv_tau;
  }
}

MODLAB_VECTOR_LOOP void mask_sum_row(const float* __restrict__ p0, const float* __restrict__ g, float* __restrict__ dw, std::uint32_t key,
                  std::uint32_t base, std::int64_t lo, std::int64_t hi) {
  for (std::int64_t j = lo; j < hi; ++j)
    dw[j] += g[j] * static_cast<float>(uniform(key, base + static_cast<std::uint32_t>(j)) > p0[j]);
}

/// W ⊙ m for K samples: m = 1[u > σ(−l)].
torch::Tensor draw(const torch::Tensor& l, const torch::Tensor& w, std::int64_t K, std::uint32_t key) {
  const std::int64_t n = l.numel();
  const auto p0 = torch::sigmoid(-l);  // keep when u > σ(−l): P = σ(l)
  std::vector<std::int64_t> shape{K};
  shape.insert(shape.end(), l.sizes().begin(), l.sizes().end());
  auto out = torch::empty(shape, torch::kFloat);
  const float* pp = p0.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t k = 0; k < K; ++k) draw_row(pp, wp, op + k * n, key, static_cast<std::uint32_t>(k * n), lo, hi);
  });
  return out;
}

/// Σ_k g_k · W · σ'(z_k)/τ (to the logits) and Σ_k g_k · m_k (to W, when `dw` is defined).
void gradients(const torch::Tensor& l, const torch::Tensor& w, const torch::Tensor& g, std::int64_t K, double tau,
               std::uint32_t key, torch::Tensor& dl, torch::Tensor& dw) {
  const std::int64_t n = l.numel();
  const auto q = torch::exp(-l);
  const auto p0 = torch::sigmoid(-l);
  dl = torch::zeros_like(l);
  const float* qp = q.data_ptr<float>();
  const float* pp = p0.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* dlp = dl.data_ptr<float>();
  float* dwp = dw.defined() ? dw.data_ptr<float>() : nullptr;
  const float inv_tau = static_cast<float>(1.0 / tau);
  at::parallel_for(0, n, kGrain, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t k = 0; k < K; ++k) {
      const auto base = static_cast<std::uint32_t>(k * n);
      if (tau == 1.0) slope_row(qp, wp, gp + k * n, dlp, key, base, lo, hi);
      else slope_row_tau(qp, wp, gp + k * n, dlp, inv_tau, key, base, lo, hi);
      if (dwp) mask_sum_row(pp, gp + k * n, dwp, key, base, lo, hi);
    }
  });
}

class MaskedSample : public torch::autograd::Function<MaskedSample> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& weight, std::int64_t K, double tau) {
    const auto key = static_cast<std::uint32_t>(torch::randint(std::numeric_limits<std::int32_t>::max(), {1}, torch::kLong)
                                                    .item<std::int64_t>());
    const auto l = cpu_float(logits), w = cpu_float(weight);
    ctx->saved_data["K"] = K;
    ctx->saved_data["tau"] = tau;
    ctx->saved_data["key"] = static_cast<std::int64_t>(key);
    ctx->saved_data["train_weight"] = weight.requires_grad();
    ctx->save_for_backward({l, w});
    return draw(l, w, K, key).to(weight.device(), weight.scalar_type());
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& l = saved[0];
    const auto& w = saved[1];
    const std::int64_t K = ctx->saved_data["K"].toInt();
    const double tau = ctx->saved_data["tau"].toDouble();
    const auto key = static_cast<std::uint32_t>(ctx->saved_data["key"].toInt());
    const auto dev = grads[0].device();
    const auto dtype = grads[0].scalar_type();
    torch::Tensor dl, dw;
    if (ctx->saved_data["train_weight"].toBool()) dw = torch::zeros_like(w);
    gradients(l, w, cpu_float(grads[0]), K, tau, key, dl, dw);
    return {dl.to(dev, dtype), dw.defined() ? dw.to(dev, dtype) : torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sample_masked_weights(const torch::Tensor& logits, const torch::Tensor& weight, std::int64_t K,
                                    double temperature) {
  if (logits.numel() * K >= (std::int64_t{1} << 32))
    throw ArgumentError("sample_masked_weights: " + std::to_string(logits.numel() * K) +
                        " mask samples in one tensor; at most 2^32 - 1 are supported");
  return MaskedSample::apply(logits, weight, K, temperature);
}

}  // namespace modlab::masked

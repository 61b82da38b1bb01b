#pragma once
/// @file nn/layers.hpp
/// Layers every model may use and an analyzer can mask: each parameter can be replaced by an
/// override tensor, optionally batched over K samples (a leading K axis), so K masked copies of a
/// network run in one forward with bmm / grouped convolution instead of a loop. Layers also add
/// their multiply-accumulates to an active `MacCounter`.

#include <modlab/export.hpp>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>

namespace modlab::nn {

/// Counts multiply-accumulates of modlab::nn layers run on this thread while it lives (nested
/// counters each see the whole count of their scope). Counts are per batch; divide by the batch size
/// for per-sample MACs.
class MODLAB_API MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  std::int64_t total() const;
  /// Adds `macs` to every active counter on this thread (called by layers).
  static void add(std::int64_t macs);

 private:
  std::int64_t start_;
};

/// Mixin for layers whose parameters can be overridden.
class MODLAB_API Overridable {
 public:
  virtual ~Overridable();
  /// Replaces parameter `name` ("weight", "bias") in the forward pass by `value`, whose shape is the
  /// parameter's shape or [K, ...shape] for K samples at once.
  void set_override(const std::string& name, torch::Tensor value);
  void clear_overrides();
  bool has_overrides() const { return !overrides_.empty(); }

 protected:
  /// The override of `name`, or `param` itself.
  torch::Tensor effective(const std::string& name, const torch::Tensor& param) const;

 private:
  std::map<std::string, torch::Tensor> overrides_;
};

/// Sets overrides on every Overridable submodule of `root` from full parameter names
/// ("experts.0.fc1.weight" → module "experts.0.fc1", parameter "weight"). Throws std::invalid_argument
/// naming the first key that matches no overridable parameter.
MODLAB_API void set_overrides(torch::nn::Module& root, const std::map<std::string, torch::Tensor>& by_name);
/// Clears every override below `root`.
MODLAB_API void clear_overrides(torch::nn::Module& root);

/// y = x Wᵀ + b. Input [B, in] or [K, B, in]. With a K-batched weight override [K, out, in] the
/// output is [K, B, out] (a 2-D input is shared by all K).
///
/// `forward_t` is the same layer on transposed activations, [in, B] → [out, B] (W xᵀ + b). A
/// network run that way keeps the batch as the innermost dimension of every activation, so a
/// softmax over a few features runs LibTorch's kernel across the batch, several times faster than
/// its per-row kernel for short rows (see `softmax_in_layout`).
class MODLAB_API LinearImpl : public torch::nn::Module, public Overridable {
 public:
  LinearImpl(std::int64_t in, std::int64_t out, bool bias = true);
  ~LinearImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// `forward(xt.t()).t()`, computed without transposing activations: [in, B] → [out, B].
  torch::Tensor forward_t(const torch::Tensor& xt);
  void reset_parameters();
  std::int64_t in_features, out_features;
  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

/// 2-D convolution, [B, C, H, W] → [B, O, H', W']. With a K-batched weight override [K, O, C, kh, kw]
/// the input is [K, B, C, H, W] (or shared [B, C, H, W]) and the output [K, B, O, H', W'], computed as
/// one grouped convolution.
class MODLAB_API Conv2dImpl : public torch::nn::Module, public Overridable {
 public:
  Conv2dImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1, std::int64_t padding = 0,
             bool bias = true);
  ~Conv2dImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  void reset_parameters();
  std::int64_t in_channels, out_channels, kernel_size, stride, padding;
  torch::Tensor weight, bias;
};
TORCH_MODULE(Conv2d);

/// E independent linear layers evaluated as one batched matmul (experts, modules).
/// Weight [E, in, out], bias [E, out]. Input [B, in] (shared by all E) or [E, B, in]; output [E, B, out].
/// (One baddbmm over the expanded input: measured faster on CPU than a single [B, in]·[in, E·out]
/// product, whose weight re-layout costs more than the larger GEMM saves.)
/// Each member is initialised like torch::nn::Linear(in, out).
///
/// `forward_t` is the same layer on transposed activations: [in, B] (shared) or [E, in, B] →
/// [E, out, B] (see LinearImpl::forward_t).
class MODLAB_API StackedLinearImpl : public torch::nn::Module, public Overridable {
 public:
  StackedLinearImpl(std::int64_t members, std::int64_t in, std::int64_t out, bool bias = true);
  ~StackedLinearImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// `forward(x).transpose(1, 2)` for x = xt transposed, computed as Wᵀxt + b: [in, B] or
  /// [E, in, B] → [E, out, B].
  torch::Tensor forward_t(const torch::Tensor& xt);
  void reset_parameters();
  std::int64_t members, in_features, out_features;
  torch::Tensor weight, bias;
};
TORCH_MODULE(StackedLinear);

}  // namespace modlab::nn

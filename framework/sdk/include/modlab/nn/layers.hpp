#pragma once
/// @file nn/layers.hpp
/// Layers every model is built from, so that an analyzer can mask any model and a population can
/// stack any model. Every parameter of every layer here can be replaced by an override tensor, and
/// every layer adds its multiply-accumulates to an active `MacCounter`.
///
/// **One batching rule: K is folded into the batch.** An override of shape [K, …shape] (K mask
/// samples over frozen weights, say) means the layer's input holds K·B rows, rows k·B … k·B + B − 1
/// belonging to sample k, and its output keeps that layout. Model code, reshapes and `loss()` never
/// see K. Each layer computes all K samples at once (one bmm, one grouped convolution), never in a
/// loop over K. An override of the parameter's own shape replaces it for every row.
///
/// "Rows" are a layer's batch axis: dimension 0 for Linear, Conv2d, Embedding, LayerNorm, BatchNorm,
/// the recurrent and attention layers; dimension 1 of the [E, B, …] member-major input of
/// StackedLinear; the last dimension of the transposed activations of `forward_t`.

#include <modlab/export.hpp>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace modlab::nn {

/// Counts multiply-accumulates of modlab::nn layers run on this thread while it lives (nested
/// counters each see the whole count of their scope). Counts are per batch (all K·B rows of a
/// folded batch); divide by the number of rows for per-sample MACs.
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
  /// Replaces parameter `name` in the forward pass by `value`, whose shape is the parameter's
  /// shape or [K, …shape] (K samples folded into the batch). Throws modlab::ArgumentError naming the
  /// parameter when `name` is not a parameter of this layer or the shape fits neither form.
  void set_override(const std::string& name, torch::Tensor value);
  void clear_overrides();
  bool has_overrides() const { return !overrides_.empty(); }

 protected:
  /// The override of `name`, or `param` itself.
  torch::Tensor effective(const std::string& name, const torch::Tensor& param) const;

 private:
  std::map<std::string, torch::Tensor> overrides_;
};

/// Full names ("experts.layer0.weight") of every parameter below `root` that an override can
/// replace, in `named_parameters()` order.
MODLAB_API std::vector<std::string> maskable_parameters(torch::nn::Module& root);

/// Sets overrides on the Overridable submodules of `root` by full parameter name. Throws
/// modlab::ArgumentError naming the first key that matches no overridable parameter or whose shape does
/// not fit.
MODLAB_API void set_overrides(torch::nn::Module& root, const std::map<std::string, torch::Tensor>& by_name);
/// Clears every override below `root`.
MODLAB_API void clear_overrides(torch::nn::Module& root);

/// Sets overrides by full parameter name for its lifetime and clears them when it ends (also when
/// an exception leaves the scope). All K-batched overrides of one scope must agree on K; while the
/// scope lives, `folded_samples()` on this thread returns that K, so that layers without
/// overrides that compute batch statistics (BatchNorm in training mode) and models that cut their
/// batch into slices keep the K blocks apart.
class MODLAB_API OverrideScope {
 public:
  OverrideScope(torch::nn::Module& root, const std::map<std::string, torch::Tensor>& by_name);
  ~OverrideScope();
  OverrideScope(const OverrideScope&) = delete;
  OverrideScope& operator=(const OverrideScope&) = delete;
  /// K of this scope (1 when no override is K-batched).
  std::int64_t samples() const { return samples_; }

 private:
  torch::nn::Module& root_;
  std::int64_t samples_ = 1;
  std::int64_t outer_ = 1;
};

/// K of the innermost live OverrideScope on this thread, 1 outside any.
MODLAB_API std::int64_t folded_samples();

/// y = x Wᵀ + b on the last axis: [rows, …, in] → [rows, …, out]. Weight [out, in], bias [out].
///
/// `forward_t` is the same layer on transposed activations, [in, rows] → [out, rows] (W xᵀ + b).
/// A network run that way keeps the batch as the innermost dimension of every activation, so a
/// softmax over a few features runs LibTorch's kernel across the batch, several times faster than
/// its per-row kernel for short rows (see `softmax_in_layout`).
class MODLAB_API LinearImpl : public torch::nn::Module, public Overridable {
 public:
  LinearImpl(std::int64_t in, std::int64_t out, bool bias = true);
  ~LinearImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// `forward(xt.t()).t()`, computed without transposing activations: [in, rows] → [out, rows].
  torch::Tensor forward_t(const torch::Tensor& xt);
  /// Uniform(±1/√in) for weight and bias, as torch::nn::Linear.
  void reset_parameters();
  std::int64_t in_features, out_features;
  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

/// 2-D convolution (square kernel), [rows, C, H, W] → [rows, O, H', W']. Weight [O, C/groups, k, k],
/// bias [O]. K-batched weights run as one grouped convolution with K·groups groups.
class MODLAB_API Conv2dImpl : public torch::nn::Module, public Overridable {
 public:
  Conv2dImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1, std::int64_t padding = 0,
             bool bias = true, std::int64_t groups = 1);
  ~Conv2dImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// Uniform(±1/√fan_in), fan_in = C/groups·k², as torch::nn::Conv2d.
  void reset_parameters();
  std::int64_t in_channels, out_channels, kernel_size, stride, padding, groups;
  torch::Tensor weight, bias;
};
TORCH_MODULE(Conv2d);

/// E independent linear layers evaluated as one batched matmul (experts, modules, tree nodes).
/// Weight [E, in, out], bias [E, out]. Input [rows, in] (shared by all E) or [E, rows, in];
/// output [E, rows, out]. Each member is initialised like torch::nn::Linear(in, out).
/// (One baddbmm over the expanded input: faster on CPU than a single [B, in]·[in, E·out] product,
/// whose weight re-layout costs more than the larger GEMM saves; bench/README.md.)
///
/// `forward_t` is the same layer on transposed activations: [in, rows] (shared) or [E, in, rows]
/// → [E, out, rows] (see LinearImpl::forward_t).
class MODLAB_API StackedLinearImpl : public torch::nn::Module, public Overridable {
 public:
  StackedLinearImpl(std::int64_t members, std::int64_t in, std::int64_t out, bool bias = true);
  ~StackedLinearImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// `forward(x).transpose(1, 2)` for x = xt transposed, computed as Wᵀxt + b.
  torch::Tensor forward_t(const torch::Tensor& xt);
  /// Routed rows (each row goes through one member only, as in a tree of modules): x [rows, in]
  /// whose rows are grouped, `counts[g]` rows in group g, groups laid end to end → [rows, out].
  /// Group g runs member g % E; with K override samples folded into the batch, counts has K·E
  /// entries and group g belongs to sample g / E. A group without rows costs nothing; MACs are
  /// counted per row of the member it ran.
  torch::Tensor forward_routed(const torch::Tensor& x, const std::vector<std::int64_t>& counts);
  void reset_parameters();
  std::int64_t members, in_features, out_features;
  torch::Tensor weight, bias;
};
TORCH_MODULE(StackedLinear);

/// E independent 2-D convolutions (experts, or the 2^d nodes of one tree depth) as one
/// convolution. Weight [E, O, C, k, k], bias [E, O]. Input [rows, C, H, W] (shared: every member
/// reads it, one ordinary convolution C → E·O) or [rows, E·C, H, W] (member e reads channels
/// e·C … e·C + C − 1: a grouped convolution with E groups); output [rows, E·O, H', W'], member e
/// owning channels e·O … e·O + O − 1. Each member is initialised like torch::nn::Conv2d(C, O, k),
/// so a stack equals E separate convolutions drawn one after another.
class MODLAB_API StackedConv2dImpl : public torch::nn::Module, public Overridable {
 public:
  StackedConv2dImpl(std::int64_t members, std::int64_t in, std::int64_t out, std::int64_t kernel,
                    std::int64_t stride = 1, std::int64_t padding = 0, bool bias = true);
  ~StackedConv2dImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  /// Routed rows: x [rows, C, H, W] grouped as for StackedLinearImpl::forward_routed, each group
  /// convolved by its own member only → [rows, O, H', W'].
  torch::Tensor forward_routed(const torch::Tensor& x, const std::vector<std::int64_t>& counts);
  void reset_parameters();
  std::int64_t members, in_channels, out_channels, kernel_size, stride, padding;
  torch::Tensor weight, bias;
};
TORCH_MODULE(StackedConv2d);

/// Lookup table: integer indices [rows, …] → [rows, …, dim]. Weight [num, dim] ~ N(0, 1) as
/// torch::nn::Embedding.
class MODLAB_API EmbeddingImpl : public torch::nn::Module, public Overridable {
 public:
  EmbeddingImpl(std::int64_t num, std::int64_t dim);
  ~EmbeddingImpl() override;
  torch::Tensor forward(const torch::Tensor& indices);
  void reset_parameters();
  std::int64_t num_embeddings, embedding_dim;
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

/// Layer normalisation over the last axis, with an elementwise affine weight [dim] (ones) and bias
/// [dim] (zeros) when `affine`.
class MODLAB_API LayerNormImpl : public torch::nn::Module, public Overridable {
 public:
  explicit LayerNormImpl(std::int64_t dim, double eps = 1e-5, bool affine = true);
  ~LayerNormImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  std::int64_t dim;
  double eps;
  torch::Tensor weight, bias;
};
TORCH_MODULE(LayerNorm);

/// Batch normalisation over channel axis 1 of [rows, C, …] (BatchNorm1d and BatchNorm2d alike),
/// with the same parameters, buffers and updates as torch::nn::BatchNorm2d: affine weight [C]
/// (ones) and bias [C] (zeros), running_mean, running_var, num_batches_tracked, momentum 0.1.
/// With K samples folded into the batch (K-batched affine overrides, or `folded_samples()` > 1)
/// each block of rows is normalised with its own batch statistics in training mode; the running
/// statistics are then left unchanged (a folded pass analyses a model, it does not train its
/// statistics).
class MODLAB_API BatchNormImpl : public torch::nn::Module, public Overridable {
 public:
  explicit BatchNormImpl(std::int64_t channels, double eps = 1e-5, double momentum = 0.1);
  ~BatchNormImpl() override;
  torch::Tensor forward(const torch::Tensor& x);
  std::int64_t channels;
  double eps, momentum;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};
TORCH_MODULE(BatchNorm);

}  // namespace modlab::nn

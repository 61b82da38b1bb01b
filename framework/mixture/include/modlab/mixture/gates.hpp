#pragma once
/// @file gates.hpp
/// Gate networks a(x) ∈ R^E and the gate probabilities g(x) = softmax(a(x)/T), optionally restricted
/// to the top k experts. `Gate` is the interface; `MlpGate` covers linear and MLP gates on flat
/// inputs. Attentive and convolutional gates derive from the same interface.

#include <modlab/mixture/experts.hpp>

#include <modlab/nn/layers.hpp>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace modlab::mixture {

/// What a gate network returns for a batch of B examples.
struct GateOutput {
  torch::Tensor logits;  ///< [B, E] gate scores a(x), before temperature and softmax
  torch::Tensor hidden;  ///< [B, H] last hidden layer before its activation; undefined without hidden layers
  /// The same as dense [E, B] / [H, B] tensors when the gate computes batch-innermost (then
  /// `logits` and `hidden` are transposed views of them); undefined otherwise.
  torch::Tensor logits_t, hidden_t;
  /// Makes `logits` and `hidden` the [B, …] views of the dense tensors where they are undefined.
  void add_views();
};

/// A gate network over E experts.
class Gate : public torch::nn::Module {
 public:
  ~Gate() override;
  /// `x`: [B, in]. Every field: `forward_dense` and its views.
  GateOutput forward(const torch::Tensor& x);
  /// The outputs as the gate computes them: a batch-innermost gate fills `logits_t` and `hidden_t`
  /// only, any other gate every field.
  virtual GateOutput forward_dense(const torch::Tensor& x) = 0;
  /// Number of experts E the gate chooses among.
  virtual std::int64_t experts() const = 0;
};

/// A gate that is an MLP on flat inputs: in → hidden[0] → … → E with ReLU between layers (a linear
/// gate when `hidden` is empty). Layer i is a modlab::nn::Linear named "layer<i>".
class MlpGate : public Gate {
 public:
  MlpGate(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t experts);
  ~MlpGate() override;
  GateOutput forward_dense(const torch::Tensor& x) override;
  std::int64_t experts() const override { return experts_; }
  const std::vector<modlab::nn::Linear>& layers() const { return layers_; }

 private:
  std::int64_t experts_;
  std::vector<modlab::nn::Linear> layers_;
};

/// A convolutional gate on images: Conv(Cin → k, 3×3) [→ BatchNorm] → ReLU → MaxPool 2 → flatten →
/// MLP (`hidden`, ReLU between) → E. The last hidden layer (pre-ReLU) is `GateOutput::hidden`.
class ConvGate : public Gate {
 public:
  ConvGate(std::vector<std::int64_t> input_shape, std::int64_t channels, bool batch_norm,
           const std::vector<std::int64_t>& hidden, std::int64_t experts);
  ~ConvGate() override;
  GateOutput forward_dense(const torch::Tensor& x) override;
  std::int64_t experts() const override { return mlp_->experts(); }

 private:
  modlab::nn::Conv2d conv_{nullptr};
  modlab::nn::BatchNorm bn_{nullptr};
  std::shared_ptr<MlpGate> mlp_;
};

/// A deep convolutional gate (CIFAR-100, moe §1.6: 64/128/256/512 channels, BatchNorm on blocks 2
/// and 4, → 1024 → 256 → E): a one-member `ConvStack` ("convs"), then an MLP ("mlp"); the last
/// hidden layer (pre-ReLU) is `GateOutput::hidden`.
class ConvStackGate : public Gate {
 public:
  ConvStackGate(std::vector<std::int64_t> input_shape, const std::vector<std::int64_t>& channels,
                const std::vector<bool>& batch_norm, const std::vector<std::int64_t>& hidden, std::int64_t experts);
  ~ConvStackGate() override;
  GateOutput forward_dense(const torch::Tensor& x) override;
  std::int64_t experts() const override { return mlp_->experts(); }

 private:
  std::shared_ptr<ConvStack> convs_;
  std::shared_ptr<MlpGate> mlp_;
};

/// Attentive gating (AISTATS): query Q = W_q h_g from the gate's last hidden layer, keys
/// K_e = W_k h_e from each expert's last hidden layer, both bias-free modlab::nn::Linear layers
/// ("query", "key"); the scores a_e = Q·K_e / √dim are the gate logits.
class Attention : public torch::nn::Module {
 public:
  Attention(std::int64_t query_in, std::int64_t key_in, std::int64_t dim);
  ~Attention() override;
  /// `query_hidden` [B, Hq], `key_hidden` [B, E, Hk] → scores [B, E].
  torch::Tensor forward(const torch::Tensor& query_hidden, const torch::Tensor& key_hidden);
  modlab::nn::Linear query{nullptr}, key{nullptr};  ///< weights [dim, Hq], [dim, Hk]
  std::int64_t dim;
};

/// Boolean mask [B, E] of the `k` largest logits of each row (all true when k ≤ 0 or k ≥ E).
torch::Tensor top_k_mask(const torch::Tensor& logits, std::int64_t k);

/// g = softmax(a/T) over the last axis; with 1 ≤ k < E the logits outside each row's top k are set
/// to −∞ first, so those experts get exactly zero probability.
torch::Tensor gate_probabilities(const torch::Tensor& logits, double temperature, std::int64_t top_k = 0);

}  // namespace modlab::mixture

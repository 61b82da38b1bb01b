#pragma once
/// @file experts.hpp
/// Banks of E experts evaluated as one batched operation (stacked weights, bmm), never a loop over
/// experts. `ExpertBank` is the interface a mixture uses; `MlpExpertBank` covers the linear and MLP
/// experts of flat inputs. Convolutional experts (MNIST) derive from the same interface.

#include <modlab/dataset.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab::mixture {

/// What a bank of experts returns for a batch of B examples.
struct ExpertOutput {
  torch::Tensor logits;  ///< [B, E, C] pre-softmax scores of every expert
  torch::Tensor probs;   ///< [B, E, C] softmax of `logits` (each expert ends in a softmax)
  torch::Tensor hidden;  ///< [B, E, H] last hidden layer before its activation; undefined without hidden layers
  /// The same as dense [E, C, B] / [E, H, B] tensors when the bank computes batch-innermost (then
  /// `logits`, `probs` and `hidden` are permuted views of them); undefined otherwise.
  torch::Tensor logits_t, probs_t, hidden_t;
  /// Makes `logits`, `probs` and `hidden` the [B, …] views of the dense tensors where they are
  /// undefined (a view costs an autograd node: `ExpertBank::forward_dense` leaves them out).
  void add_views();
};

/// E experts mapping the same input to C classes. Submodules register their parameters with a
/// leading expert axis so one forward evaluates all experts.
class ExpertBank : public torch::nn::Module {
 public:
  ~ExpertBank() override;
  /// `x`: [B, in] (shared by all experts). Every field: `forward_dense` and its views.
  ExpertOutput forward(const torch::Tensor& x);
  /// The outputs as the bank computes them: a batch-innermost bank fills the dense `…_t` tensors
  /// only (what a mixture on dense tensors reads), any other bank every field.
  virtual ExpertOutput forward_dense(const torch::Tensor& x) = 0;
  /// Number of experts E.
  virtual std::int64_t members() const = 0;
  /// Number of outputs C of each expert.
  virtual std::int64_t outputs() const = 0;
};

/// Experts that are MLPs on flat inputs: in → hidden[0] → … → C with ReLU between layers; with no
/// hidden layers each expert is Linear(in → C). Layer i is a modlab::nn::StackedLinear named
/// "layer<i>" with weight [E, fan_in, fan_out] and bias [E, fan_out]. With `dropout` > 0 each
/// hidden activation is followed by Dropout(p) in training mode, with an independent mask per expert
/// (as E separate `nn.Dropout` modules would draw).
class MlpExpertBank : public ExpertBank {
 public:
  MlpExpertBank(std::int64_t members, std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out,
                double dropout = 0.0);
  ~MlpExpertBank() override;
  ExpertOutput forward_dense(const torch::Tensor& x) override;
  std::int64_t members() const override { return members_; }
  std::int64_t outputs() const override { return outputs_; }
  /// The stacked layers, input side first.
  const std::vector<modlab::nn::StackedLinear>& layers() const { return layers_; }

 private:
  std::int64_t members_, outputs_;
  double dropout_;
  std::vector<modlab::nn::StackedLinear> layers_;
};

/// Convolutional experts on images [B, Cin, H, W] (the MNIST / Fashion-MNIST experts of the AISTATS
/// paper): Conv(Cin → k, 3×3, no padding) → ReLU → MaxPool 2 → flatten → StackedLinear MLP
/// (`hidden` widths, ReLU between) → C. The input is shared, so all E convolutions run as ONE
/// ordinary convolution Cin → E·k (a modlab::nn::StackedConv2d "conv", weight [E, k, Cin, 3, 3]),
/// the MLPs as batched matmuls ("mlp").
class ConvExpertBank : public ExpertBank {
 public:
  ConvExpertBank(std::int64_t members, std::vector<std::int64_t> input_shape, std::int64_t channels,
                 const std::vector<std::int64_t>& hidden, std::int64_t out);
  ~ConvExpertBank() override;
  ExpertOutput forward_dense(const torch::Tensor& x) override;
  std::int64_t members() const override { return members_; }
  std::int64_t outputs() const override { return mlp_->outputs(); }
  /// The convolutions of all experts: expert e owns output channels e·k … e·k + k − 1.
  const modlab::nn::StackedConv2d& conv() const { return conv_; }
  std::shared_ptr<MlpExpertBank> mlp() const { return mlp_; }
  /// The conv stage alone: [B, Cin, H, W] → [E, B, k·H'·W'] (what the MLP stage reads).
  torch::Tensor features(const torch::Tensor& x);

 private:
  std::int64_t members_;
  modlab::nn::StackedConv2d conv_{nullptr};
  std::shared_ptr<MlpExpertBank> mlp_;
};

/// A stack of L blocks Conv(3×3, padding 1) [→ BatchNorm] → ReLU → MaxPool 2 for `members` networks
/// at once, all reading the same input [B, Cin, H, W] (the CIFAR-100 experts and gate of moe §1.6).
/// Every block is a modlab::nn::StackedConv2d "conv<i>" (weight [members, c_i, c_{i−1}, 3, 3]):
/// block 0 reads the shared input (one ordinary convolution Cin → members·c₀), block i > 0 only
/// each member's own channels (a grouped convolution). BatchNorm ("bn<i>", a modlab::nn::BatchNorm)
/// over members·c channels normalises every channel separately, i.e. per member. With members = 1
/// it is an ordinary CNN. Output [B, members·c_last, H/2^L, W/2^L].
class ConvStack : public torch::nn::Module {
 public:
  ConvStack(std::int64_t members, std::int64_t in_channels, const std::vector<std::int64_t>& channels,
            const std::vector<bool>& batch_norm);
  ~ConvStack() override;
  torch::Tensor forward(const torch::Tensor& x);
  std::int64_t members() const { return members_; }
  const std::vector<std::int64_t>& channels() const { return channels_; }
  const std::vector<modlab::nn::StackedConv2d>& convs() const { return convs_; }
  /// One entry per block; null where the block has no BatchNorm.
  const std::vector<modlab::nn::BatchNorm>& norms() const { return norms_; }

 private:
  std::int64_t members_;
  std::vector<std::int64_t> channels_;
  std::vector<modlab::nn::StackedConv2d> convs_;
  std::vector<modlab::nn::BatchNorm> norms_;
};

/// Deep convolutional experts (CIFAR-100, moe §1.6: 16/32/64/128 channels, BatchNorm on blocks 2
/// and 4, 512 → 1024 → 256 → C): a `ConvStack` over all E experts ("convs"), flattened per expert,
/// then a StackedLinear MLP ("mlp").
class ConvStackExpertBank : public ExpertBank {
 public:
  ConvStackExpertBank(std::int64_t members, std::vector<std::int64_t> input_shape,
                      const std::vector<std::int64_t>& channels, const std::vector<bool>& batch_norm,
                      const std::vector<std::int64_t>& hidden, std::int64_t out);
  ~ConvStackExpertBank() override;
  ExpertOutput forward_dense(const torch::Tensor& x) override;
  std::int64_t members() const override { return members_; }
  std::int64_t outputs() const override { return mlp_->outputs(); }
  std::shared_ptr<ConvStack> convs() const { return convs_; }
  std::shared_ptr<MlpExpertBank> mlp() const { return mlp_; }
  /// The conv stage alone: [B, Cin, H, W] → [E, B, c_last·H'·W'] (what the MLP stage reads).
  torch::Tensor features(const torch::Tensor& x);

 private:
  std::int64_t members_;
  std::shared_ptr<ConvStack> convs_;
  std::shared_ptr<MlpExpertBank> mlp_;
};

/// Number of pixels per side after `blocks` ConvStack blocks (3×3 padding 1, then 2×2 max pool);
/// throws std::invalid_argument when `side` is too small.
std::int64_t conv_stack_side(std::int64_t side, std::size_t blocks);

/// Throws a ConfigError unless `spec` is a classification dataset with ≥ 2 classes and ≥ 1 input
/// feature, naming `model` (what every mixture built from these banks needs).
void require_classification(const std::string& model, const DatasetSpec& spec);

/// A batch's inputs as float rows [B, features] (the inputs themselves when they already are).
torch::Tensor flat_inputs(const torch::Tensor& inputs);

/// The expectation mixture ŷ = Σ_e g_e f_e: `gate` [B, E], `probs` [B, E, C] → [B, C], as one bmm.
torch::Tensor mix(const torch::Tensor& gate, const torch::Tensor& probs);

}  // namespace modlab::mixture

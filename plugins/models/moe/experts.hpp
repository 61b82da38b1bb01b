#pragma once
/// @file experts.hpp
/// Banks of E experts evaluated as one batched operation (stacked weights, bmm), never a loop over
/// experts. `ExpertBank` is the interface a mixture uses; `MlpExpertBank` covers the linear and MLP
/// experts of flat inputs. Convolutional experts (MNIST) derive from the same interface.

#include <modlab/nn/layers.hpp>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace modlab::moe {

/// What a bank of experts returns for a batch of B examples.
struct ExpertOutput {
  torch::Tensor logits;  ///< [B, E, C] pre-softmax scores of every expert
  torch::Tensor probs;   ///< [B, E, C] softmax of `logits` (each expert ends in a softmax)
  torch::Tensor hidden;  ///< [B, E, H] last hidden layer before its activation; undefined without hidden layers
};

/// E experts mapping the same input to C classes. Submodules register their parameters with a
/// leading expert axis so one forward evaluates all experts.
class ExpertBank : public torch::nn::Module {
 public:
  ~ExpertBank() override;
  /// `x`: [B, in] (shared by all experts).
  virtual ExpertOutput forward(const torch::Tensor& x) = 0;
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
  ExpertOutput forward(const torch::Tensor& x) override;
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
/// ordinary convolution Cin → E·k, the MLPs as batched matmuls.
class ConvExpertBank : public ExpertBank {
 public:
  ConvExpertBank(std::int64_t members, std::vector<std::int64_t> input_shape, std::int64_t channels,
                 const std::vector<std::int64_t>& hidden, std::int64_t out);
  ~ConvExpertBank() override;
  ExpertOutput forward(const torch::Tensor& x) override;
  std::int64_t members() const override { return members_; }
  std::int64_t outputs() const override { return mlp_->outputs(); }
  torch::Tensor conv_weight;  ///< [E·k, Cin, 3, 3]: expert e owns output channels e·k … e·k + k − 1
  torch::Tensor conv_bias;    ///< [E·k]
  std::shared_ptr<MlpExpertBank> mlp() const { return mlp_; }
  /// The conv stage alone: [B, Cin, H, W] → [E, B, k·H'·W'] (what the MLP stage reads).
  torch::Tensor features(const torch::Tensor& x) const;

 private:
  std::int64_t members_, in_channels_, channels_;
  std::shared_ptr<MlpExpertBank> mlp_;
};

/// The expectation mixture ŷ = Σ_e g_e f_e: `gate` [B, E], `probs` [B, E, C] → [B, C], as one bmm.
torch::Tensor mix(const torch::Tensor& gate, const torch::Tensor& probs);

}  // namespace modlab::moe

// Expert banks and gate networks of the gated mixtures.
#include <modlab/mixture/experts.hpp>
#include <modlab/mixture/gates.hpp>

#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace modlab::mixture {

namespace {
std::vector<std::int64_t> layer_sizes(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out) {
  std::vector<std::int64_t> sizes{in};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(out);
  for (auto s : sizes)
    if (s <= 0) throw ArgumentError("layer sizes must be positive, got " + std::to_string(s));
  return sizes;
}
}  // namespace

// ---------------------------------------------------------------- experts

ExpertBank::~ExpertBank() = default;
MlpExpertBank::~MlpExpertBank() = default;

MlpExpertBank::MlpExpertBank(std::int64_t members, std::int64_t in, const std::vector<std::int64_t>& hidden,
                             std::int64_t out, double dropout)
    : members_(members), outputs_(out), dropout_(dropout) {
  if (members <= 0) throw ArgumentError("an expert bank needs at least one expert");
  if (!(dropout >= 0.0 && dropout < 1.0)) throw ArgumentError("expert dropout must be in [0, 1)");
  const auto sizes = layer_sizes(in, hidden, out);
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i)
    layers_.push_back(
        register_module("layer" + std::to_string(i), modlab::nn::StackedLinear(members, sizes[i], sizes[i + 1])));
}

void ExpertOutput::add_views() {
  if (!logits.defined() && logits_t.defined()) logits = logits_t.permute({2, 0, 1});
  if (!probs.defined() && probs_t.defined()) probs = probs_t.permute({2, 0, 1});
  if (!hidden.defined() && hidden_t.defined()) hidden = hidden_t.permute({2, 0, 1});
}

ExpertOutput ExpertBank::forward(const torch::Tensor& x) {
  ExpertOutput out = forward_dense(x);
  out.add_views();
  return out;
}

ExpertOutput MlpExpertBank::forward_dense(const torch::Tensor& x) {
  // Activations run transposed, [E, width, B] (batch innermost): the softmax over the C classes
  // then runs across the batch (see modlab::nn::softmax_in_layout).
  ExpertOutput out;
  torch::Tensor h = x.dim() == 2 ? x.t() : x.transpose(1, 2);  // [in, B] shared, or [E, in, B]
  torch::Tensor hidden;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward_t(h);
    if (i + 1 < layers_.size()) {
      hidden = h;
      h = torch::relu(h);
      if (dropout_ > 0.0 && is_training()) h = torch::dropout(h, dropout_, true);
    }
  }
  out.logits_t = h;
  out.probs_t = torch::softmax(h, 1);
  out.hidden_t = hidden;
  return out;
}

void require_classification(const std::string& model, const DatasetSpec& spec) {
  if (spec.task != TaskKind::Classification)
    throw ConfigError("model '" + model + "' needs a classification dataset, but '" + spec.name + "' is " +
                      task_kind_name(spec.task));
  if (spec.num_classes < 2 || spec.input_numel() < 1)
    throw ConfigError("model '" + model + "': dataset '" + spec.name + "' has " + std::to_string(spec.num_classes) +
                      " classes and " + std::to_string(spec.input_numel()) + " input features; need >= 2 and >= 1");
}

torch::Tensor flat_inputs(const torch::Tensor& inputs) {
  if (inputs.dim() == 2 && inputs.scalar_type() == torch::kFloat) return inputs;
  return inputs.reshape({inputs.size(0), -1}).to(torch::kFloat);
}

torch::Tensor mix(const torch::Tensor& gate, const torch::Tensor& probs) {
  return torch::bmm(gate.unsqueeze(1), probs).squeeze(1);
}

// ---------------------------------------------------------------- gates

Gate::~Gate() = default;
MlpGate::~MlpGate() = default;

MlpGate::MlpGate(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t experts) : experts_(experts) {
  const auto sizes = layer_sizes(in, hidden, experts);
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i)
    layers_.push_back(register_module("layer" + std::to_string(i), modlab::nn::Linear(sizes[i], sizes[i + 1])));
}

void GateOutput::add_views() {
  if (!logits.defined() && logits_t.defined()) logits = logits_t.t();
  if (!hidden.defined() && hidden_t.defined()) hidden = hidden_t.t();
}

GateOutput Gate::forward(const torch::Tensor& x) {
  GateOutput out = forward_dense(x);
  out.add_views();
  return out;
}

GateOutput MlpGate::forward_dense(const torch::Tensor& x) {
  // Transposed activations, [width, B], as in MlpExpertBank::forward_dense.
  GateOutput out;
  torch::Tensor h = x.t();
  torch::Tensor hidden;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward_t(h);
    if (i + 1 < layers_.size()) {
      hidden = h;
      h = torch::relu(h);
    }
  }
  out.logits_t = h;
  out.hidden_t = hidden;
  return out;
}

torch::Tensor top_k_mask(const torch::Tensor& logits, std::int64_t k) {
  const auto e = logits.size(-1);
  if (k <= 0 || k >= e) return torch::ones_like(logits, torch::kBool);
  const auto idx = std::get<1>(logits.topk(k, -1));
  return torch::zeros_like(logits, torch::kBool).scatter(-1, idx, true);
}

torch::Tensor gate_probabilities(const torch::Tensor& logits, double temperature, std::int64_t top_k) {
  if (!(temperature > 0.0)) throw ArgumentError("gate temperature must be > 0");
  auto z = temperature == 1.0 ? logits : logits / temperature;
  if (top_k > 0 && top_k < logits.size(-1))
    z = z.masked_fill(top_k_mask(logits, top_k).logical_not(), -std::numeric_limits<double>::infinity());
  return modlab::nn::softmax_in_layout(z, -1);
}


namespace {
std::int64_t pooled(std::int64_t side) { return (side - 2) / 2; }  // 3×3 valid conv, then 2×2 max pool
void check_image(const std::vector<std::int64_t>& shape) {
  if (shape.size() != 3 || shape[1] < 4 || shape[2] < 4)
    throw ArgumentError("convolutional experts and gates need image inputs [C, H, W] with H, W >= 4");
}
}  // namespace

ConvExpertBank::~ConvExpertBank() = default;

ConvExpertBank::ConvExpertBank(std::int64_t members, std::vector<std::int64_t> input_shape, std::int64_t channels,
                               const std::vector<std::int64_t>& hidden, std::int64_t out)
    : members_(members) {
  check_image(input_shape);
  // Each expert's conv is initialised like torch::nn::Conv2d(Cin, k, 3).
  conv_ = register_module("conv", modlab::nn::StackedConv2d(members, input_shape[0], channels, 3));
  const auto flat = channels * pooled(input_shape[1]) * pooled(input_shape[2]);
  mlp_ = register_module("mlp", std::make_shared<MlpExpertBank>(members, flat, hidden, out));
}

torch::Tensor ConvExpertBank::features(const torch::Tensor& x) {
  const auto b = x.size(0);
  // Every expert reads the same input, so the E convolutions Cin → k are one ordinary convolution
  // Cin → E·k (output channels e·k … e·k + k − 1 are expert e's): no repeated input, no grouped
  // convolution (which LibTorch's CPU build runs on a much slower path).
  // ReLU and max pooling commute (ReLU is monotonic), and the pooled gradient reaches the same
  // element either way; pooling first runs the ReLU on a quarter of the values.
  auto stage = [this](const torch::Tensor& xs) {
    return torch::relu(modlab::nn::max_pool2x2(conv_->forward(xs)));  // [b, E·k, H', W']
  };
  // The full-resolution conv output of many experts outgrows the CPU caches (E = 20, batch 512:
  // 28 MB), and the pool then streams it back from memory; in slices of about 4 MiB of conv
  // output the conv → pool → ReLU chain stays in cache (bench/README.md). A batch with K samples
  // folded into it is not cut: its K blocks of rows must reach the convolution whole.
  const std::int64_t per_example = members_ * conv_->out_channels * (x.size(2) - 2) * (x.size(3) - 2) * 4;
  const std::int64_t rows = std::max<std::int64_t>(1, (std::int64_t{4} << 20) / per_example);
  torch::Tensor h;
  if (b <= rows || modlab::nn::folded_samples() > 1) {
    h = stage(x);
  } else {
    std::vector<torch::Tensor> parts;
    for (std::int64_t lo = 0; lo < b; lo += rows) parts.push_back(stage(x.slice(0, lo, std::min(lo + rows, b))));
    h = torch::cat(parts, 0);
  }
  return h.reshape({b, members_, -1}).permute({1, 0, 2}).contiguous();  // [E, B, k·H'·W']
}

ExpertOutput ConvExpertBank::forward_dense(const torch::Tensor& x) { return mlp_->forward_dense(features(x)); }

// ---------------------------------------------------------------- deep CNNs (CIFAR-100)

std::int64_t conv_stack_side(std::int64_t side, std::size_t blocks) {
  for (std::size_t i = 0; i < blocks; ++i) {
    if (side < 2) throw ArgumentError("the input image is too small for " + std::to_string(blocks) +
                                              " conv blocks with 2x2 max pooling");
    side /= 2;
  }
  return side;
}

ConvStack::~ConvStack() = default;

ConvStack::ConvStack(std::int64_t members, std::int64_t in_channels, const std::vector<std::int64_t>& channels,
                     const std::vector<bool>& batch_norm)
    : members_(members), channels_(channels) {
  if (members <= 0) throw ArgumentError("a conv stack needs at least one member");
  if (channels.empty() || batch_norm.size() != channels.size())
    throw ArgumentError("a conv stack needs one BatchNorm flag per conv block");
  std::int64_t in = in_channels;
  for (std::size_t i = 0; i < channels.size(); ++i) {
    if (channels[i] <= 0) throw ArgumentError("conv channels must be positive");
    // Block 0 reads the shared input, later blocks only their own member's channels.
    convs_.push_back(register_module("conv" + std::to_string(i),
                                     modlab::nn::StackedConv2d(members, in, channels[i], 3, /*stride=*/1, /*padding=*/1)));
    norms_.push_back(batch_norm[i] ? register_module("bn" + std::to_string(i), modlab::nn::BatchNorm(members * channels[i]))
                                   : modlab::nn::BatchNorm(nullptr));
    in = channels[i];
  }
}

torch::Tensor ConvStack::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (std::size_t i = 0; i < convs_.size(); ++i) {
    h = convs_[i]->forward(h);
    if (norms_[i]) h = norms_[i]->forward(h);
    h = torch::relu(modlab::nn::max_pool2x2(h));  // = max_pool(relu(h)), see ConvExpertBank::features
  }
  return h;
}

ConvStackExpertBank::~ConvStackExpertBank() = default;

ConvStackExpertBank::ConvStackExpertBank(std::int64_t members, std::vector<std::int64_t> input_shape,
                                         const std::vector<std::int64_t>& channels, const std::vector<bool>& batch_norm,
                                         const std::vector<std::int64_t>& hidden, std::int64_t out)
    : members_(members) {
  if (input_shape.size() != 3) throw ArgumentError("convolutional experts need image inputs [C, H, W]");
  const auto flat = channels.back() * conv_stack_side(input_shape[1], channels.size()) *
                    conv_stack_side(input_shape[2], channels.size());
  convs_ = register_module("convs", std::make_shared<ConvStack>(members, input_shape[0], channels, batch_norm));
  mlp_ = register_module("mlp", std::make_shared<MlpExpertBank>(members, flat, hidden, out));
}

torch::Tensor ConvStackExpertBank::features(const torch::Tensor& x) {
  const auto h = convs_->forward(x);                                       // [B, E·c, H', W']
  return h.reshape({x.size(0), members_, -1}).permute({1, 0, 2}).contiguous();  // [E, B, c·H'·W']
}

ExpertOutput ConvStackExpertBank::forward_dense(const torch::Tensor& x) {
  return mlp_->forward_dense(features(x));
}

ConvStackGate::~ConvStackGate() = default;

ConvStackGate::ConvStackGate(std::vector<std::int64_t> input_shape, const std::vector<std::int64_t>& channels,
                             const std::vector<bool>& batch_norm, const std::vector<std::int64_t>& hidden,
                             std::int64_t experts) {
  if (input_shape.size() != 3) throw ArgumentError("convolutional gates need image inputs [C, H, W]");
  const auto flat = channels.back() * conv_stack_side(input_shape[1], channels.size()) *
                    conv_stack_side(input_shape[2], channels.size());
  convs_ = register_module("convs", std::make_shared<ConvStack>(1, input_shape[0], channels, batch_norm));
  mlp_ = register_module("mlp", std::make_shared<MlpGate>(flat, hidden, experts));
}

GateOutput ConvStackGate::forward_dense(const torch::Tensor& x) {
  const auto h = convs_->forward(x);
  return mlp_->forward_dense(h.reshape({x.size(0), -1}));
}

ConvGate::~ConvGate() = default;

ConvGate::ConvGate(std::vector<std::int64_t> input_shape, std::int64_t channels, bool batch_norm,
                   const std::vector<std::int64_t>& hidden, std::int64_t experts) {
  check_image(input_shape);
  conv_ = register_module("conv", modlab::nn::Conv2d(input_shape[0], channels, 3));
  if (batch_norm) bn_ = register_module("bn", modlab::nn::BatchNorm(channels));
  const auto flat = channels * pooled(input_shape[1]) * pooled(input_shape[2]);
  mlp_ = register_module("mlp", std::make_shared<MlpGate>(flat, hidden, experts));
}

GateOutput ConvGate::forward_dense(const torch::Tensor& x) {
  auto h = conv_->forward(x);
  if (bn_) h = bn_->forward(h);
  h = torch::relu(modlab::nn::max_pool2x2(h));  // = max_pool(relu(h)), see ConvExpertBank::features
  return mlp_->forward_dense(h.reshape({x.size(0), -1}));
}

Attention::~Attention() = default;

Attention::Attention(std::int64_t query_in, std::int64_t key_in, std::int64_t d) : dim(d) {
  query = register_module("query", modlab::nn::Linear(query_in, d, /*bias=*/false));
  key = register_module("key", modlab::nn::Linear(key_in, d, /*bias=*/false));
}

torch::Tensor Attention::forward(const torch::Tensor& query_hidden, const torch::Tensor& key_hidden) {
  const auto q = query->forward(query_hidden);                                            // [B, d]
  const auto k = key->forward(key_hidden);                                                // [B, E, d]
  return torch::bmm(k, q.unsqueeze(2)).squeeze(2) / std::sqrt(static_cast<double>(dim));  // [B, E]
}

}  // namespace modlab::mixture

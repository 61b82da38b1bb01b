// Expert banks and gate networks of the gated mixtures.
#include "experts.hpp"
#include "gates.hpp"

#include <torch/torch.h>

#include <limits>
#include <stdexcept>
#include <string>

namespace modlab::moe {

namespace {
std::vector<std::int64_t> layer_sizes(std::int64_t in, const std::vector<std::int64_t>& hidden, std::int64_t out) {
  std::vector<std::int64_t> sizes{in};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(out);
  for (auto s : sizes)
    if (s <= 0) throw std::invalid_argument("layer sizes must be positive, got " + std::to_string(s));
  return sizes;
}
}  // namespace

// ---------------------------------------------------------------- experts

ExpertBank::~ExpertBank() = default;
MlpExpertBank::~MlpExpertBank() = default;

MlpExpertBank::MlpExpertBank(std::int64_t members, std::int64_t in, const std::vector<std::int64_t>& hidden,
                             std::int64_t out)
    : members_(members), outputs_(out) {
  if (members <= 0) throw std::invalid_argument("an expert bank needs at least one expert");
  const auto sizes = layer_sizes(in, hidden, out);
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i)
    layers_.push_back(
        register_module("layer" + std::to_string(i), modlab::nn::StackedLinear(members, sizes[i], sizes[i + 1])));
}

ExpertOutput MlpExpertBank::forward(const torch::Tensor& x) {
  ExpertOutput out;
  torch::Tensor h = x;  // [B, in] shared by all experts, then [E, B, width]
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (i + 1 < layers_.size()) {
      out.hidden = h;
      h = torch::relu(h);
    }
  }
  out.logits = h.permute({1, 0, 2});
  out.probs = torch::softmax(out.logits, -1);
  if (out.hidden.defined()) out.hidden = out.hidden.permute({1, 0, 2});
  return out;
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

GateOutput MlpGate::forward(const torch::Tensor& x) {
  GateOutput out;
  torch::Tensor h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    h = layers_[i]->forward(h);
    if (i + 1 < layers_.size()) {
      out.hidden = h;
      h = torch::relu(h);
    }
  }
  out.logits = h;
  return out;
}

torch::Tensor top_k_mask(const torch::Tensor& logits, std::int64_t k) {
  const auto e = logits.size(-1);
  if (k <= 0 || k >= e) return torch::ones_like(logits, torch::kBool);
  const auto idx = std::get<1>(logits.topk(k, -1));
  return torch::zeros_like(logits, torch::kBool).scatter(-1, idx, true);
}

torch::Tensor gate_probabilities(const torch::Tensor& logits, double temperature, std::int64_t top_k) {
  if (!(temperature > 0.0)) throw std::invalid_argument("gate temperature must be > 0");
  auto z = logits / temperature;
  if (top_k > 0 && top_k < logits.size(-1))
    z = z.masked_fill(top_k_mask(logits, top_k).logical_not(), -std::numeric_limits<double>::infinity());
  return torch::softmax(z, -1);
}

}  // namespace modlab::moe

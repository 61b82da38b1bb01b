// MoDE's distillation loss, sparse combination and expert probing (distill.hpp).
#include "distill.hpp"

#include <modlab/mixture/gates.hpp>

#include <modlab/errors.hpp>

#include <torch/torch.h>

#include <limits>

namespace modlab::mode {

namespace {
/// 1 off the diagonal, 0 on it: [E, E] like `like`.
torch::Tensor off_diagonal(std::int64_t e, const torch::Tensor& like) {
  return 1.0 - torch::eye(e, like.options());
}

void check_logits(const torch::Tensor& logits, double temperature) {
  if (logits.dim() != 3) throw modlab::ArgumentError("expert logits must be [B, E, C]");
  if (!(temperature > 0.0)) throw modlab::ArgumentError("distillation temperature must be > 0");
}
}  // namespace

KdForm auto_form(std::int64_t experts) { return experts == 2 ? KdForm::Mse : KdForm::Kl; }

torch::Tensor pairwise_kl(const torch::Tensor& logits, double temperature) {
  check_logits(logits, temperature);
  const auto b = logits.size(0), e = logits.size(1);
  const auto z = logits / temperature;
  const auto logp = torch::log_softmax(z, -1).permute({1, 0, 2}).reshape({e, -1});     // [E, B·C] students
  const auto target = torch::softmax(z, -1).detach().permute({1, 0, 2}).reshape({e, -1});  // [E, B·C] teachers
  // KL(p_j ‖ p_i) = Σ p_j log p_j − Σ p_j log p_i: the first part per teacher, the second one matmul.
  const auto neg_entropy = torch::xlogy(target, target).sum(1);  // [E] (0·log 0 = 0, as F.kl_div)
  const auto cross = torch::matmul(logp, target.t());           // [E_i, E_j]
  return (neg_entropy.unsqueeze(0) - cross) * off_diagonal(e, logits) / static_cast<double>(b);
}

torch::Tensor pairwise_mse(const torch::Tensor& logits, double temperature) {
  check_logits(logits, temperature);
  const auto p = torch::softmax(logits / temperature, -1);  // [B, E, C]
  return (p.unsqueeze(2) - p.unsqueeze(1)).pow(2).mean(at::IntArrayRef{0, 3});  // [E, E], diagonal exactly 0
}

torch::Tensor pair_weights(const torch::Tensor& gate_mean, PairWeight weight) {
  const auto e = gate_mean.size(0);
  const auto w = weight == PairWeight::Product ? torch::outer(gate_mean, gate_mean)
                                               : gate_mean.unsqueeze(1).expand({e, e});
  return w * off_diagonal(e, gate_mean);
}

torch::Tensor distillation_loss(const torch::Tensor& logits, const torch::Tensor& gate, const DistillOptions& opt) {
  check_logits(logits, opt.temperature);
  const auto e = logits.size(1);
  if (gate.dim() != 2 || gate.size(1) != e) throw modlab::ArgumentError("gate must be [B, E] with the experts' E");
  if (e < 2) return torch::zeros({}, logits.options());
  const auto d = opt.form == KdForm::Kl ? pairwise_kl(logits, opt.temperature) : pairwise_mse(logits, opt.temperature);
  const auto gate_mean = opt.gate_gradient ? gate.mean(0) : gate.mean(0).detach();
  auto loss = (pair_weights(gate_mean, opt.weight) * d).sum() / static_cast<double>(e * (e - 1));
  if (opt.t_squared) loss = loss * (opt.temperature * opt.temperature);
  return loss;
}

torch::Tensor combine_weights(const torch::Tensor& gate, std::int64_t top_k, SparseForm form) {
  if (top_k <= 0 || top_k >= gate.size(-1)) return gate;
  const auto kept = gate * mixture::top_k_mask(gate, top_k).to(gate.scalar_type());
  if (form == SparseForm::Reference) return kept;
  return kept / kept.sum(-1, true);
}

torch::Tensor combine(const torch::Tensor& weights, const torch::Tensor& logits) {
  return torch::bmm(weights.unsqueeze(1), logits).squeeze(1);
}

// ---------------------------------------------------------------- probing

ExpertProbe::ExpertProbe(std::int64_t experts)
    : experts_(experts),
      routed_count_(torch::zeros({experts}, torch::kLong)),
      routed_correct_(torch::zeros({experts}, torch::kLong)),
      all_correct_(torch::zeros({experts}, torch::kLong)) {}

void ExpertProbe::add(const torch::Tensor& gate, const torch::Tensor& expert_logits, const torch::Tensor& targets) {
  const auto route = gate.detach().argmax(1).to(torch::kCPU);                        // [B]
  const auto pred = expert_logits.detach().argmax(2).to(torch::kCPU);                // [B, E]
  const auto correct = pred.eq(targets.to(torch::kCPU).unsqueeze(1)).to(torch::kLong);  // [B, E]
  const auto routed = torch::one_hot(route, experts_);                                // [B, E] int64
  routed_count_ += routed.sum(0);
  routed_correct_ += (routed * correct).sum(0);
  all_correct_ += correct.sum(0);
  examples_ += route.size(0);
}

torch::Tensor ExpertProbe::routed_accuracy() const {
  const auto n = routed_count_.to(torch::kDouble);
  const auto acc = routed_correct_.to(torch::kDouble) / n.clamp_min(1.0);
  return torch::where(n > 0, acc, torch::full_like(acc, std::numeric_limits<double>::quiet_NaN()));
}

torch::Tensor ExpertProbe::accuracy() const {
  return all_correct_.to(torch::kDouble) / static_cast<double>(std::max<std::int64_t>(examples_, 1));
}

double ExpertProbe::hard_routing_accuracy() const {
  return static_cast<double>(routed_correct_.sum().item<std::int64_t>()) /
         static_cast<double>(std::max<std::int64_t>(examples_, 1));
}

}  // namespace modlab::mode

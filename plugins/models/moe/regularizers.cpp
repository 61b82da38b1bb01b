// Loss terms of the gated mixtures (moe §1.3).
#include "regularizers.hpp"

#include <modlab/mixture/experts.hpp>

#include <modlab/errors.hpp>
#include <modlab/population.hpp>

#include <torch/torch.h>


namespace modlab::moe {

namespace {

/// `t` ([P·B, …]) as [P, B, …]: its rows split among the P members of the population being
/// trained (population.hpp), each member's own B rows.
torch::Tensor per_member(const torch::Tensor& t, std::int64_t p) {
  if (t.size(0) % p != 0)
    throw modlab::ArgumentError("moe: " + std::to_string(t.size(0)) + " rows do not split among " + std::to_string(p) +
                                " population members");
  auto shape = t.sizes().vec();
  shape[0] = t.size(0) / p;
  shape.insert(shape.begin(), p);
  return t.reshape(shape);
}

/// cv_squared of every row of `v` [P, n] → [P].
torch::Tensor cv_squared_rows(const torch::Tensor& v) {
  if (v.size(1) <= 1) return torch::zeros({v.size(0)}, v.options());
  return v.var(1, /*unbiased=*/true) / v.mean(1).pow(2);
}

/// cv_squared of the batch sum of `per_row` [B, n]: a scalar, or in a population each member's
/// own over its own rows, [P].
torch::Tensor batch_sum_cv_squared(const torch::Tensor& per_row) {
  const auto p = modlab::population_members();
  if (p == 1) return cv_squared(per_row.sum(0));
  return cv_squared_rows(per_member(per_row, p).sum(1));
}

/// L_s (sample_similarity_loss) of one batch: `x` [B, d], `gate` [B, E].
torch::Tensor similarity_of_batch(const torch::Tensor& x, const torch::Tensor& gate, double beta_same, double beta_diff,
                                  const std::string& form) {
  const auto b = static_cast<double>(gate.size(0));
  const auto e = gate.size(1);
  torch::Tensor d;
  {
    torch::NoGradGuard ng;
    // ‖a−b‖² = ‖a‖² + ‖b‖² − 2a·b, clamped against rounding below zero.
    const auto sq = x.pow(2).sum(1);
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x.matmul(x.t())).clamp_min(0).sqrt();
    d.fill_diagonal_(0);
    const auto mx = d.max();
    if (mx.item<double>() > 0) d = d / mx;
  }
  const auto m = gate.t().matmul(d).matmul(gate);  // [E, E]: g_eᵀ D g_e'
  const auto same = m.diagonal().sum() / static_cast<double>(e);
  const auto diff = e > 1 ? (m.sum() - m.diagonal().sum()) / static_cast<double>(e * e - e) : torch::zeros_like(same);
  if (form == "normalized") return (beta_same * same - beta_diff * diff) / (b * b);
  return beta_same * same - beta_diff * diff / (b * b);
}

}  // namespace

torch::Tensor cv_squared(const torch::Tensor& v) {
  if (v.numel() <= 1) return torch::zeros({}, v.options());
  return v.var(/*unbiased=*/true) / v.mean().pow(2);
}

torch::Tensor importance_loss(const torch::Tensor& gate) { return batch_sum_cv_squared(gate); }

torch::Tensor ortho_loss(const torch::Tensor& gate, const torch::Tensor& experts, const std::string& form) {
  if (form == "master") return batch_sum_cv_squared(mixture::mix(gate, experts));
  if (form == "xai") return batch_sum_cv_squared(experts.sum(1));
  throw modlab::ArgumentError("ortho form must be \"master\" or \"xai\", got \"" + form + "\"");
}

torch::Tensor true_class_probs(const torch::Tensor& experts, const torch::Tensor& targets) {
  const auto b = experts.size(0), e = experts.size(1);
  return experts.gather(2, targets.view({b, 1, 1}).expand({b, e, 1})).squeeze(2);
}

torch::Tensor select_expert(const torch::Tensor& experts, const torch::Tensor& index) {
  const auto b = experts.size(0), c = experts.size(2);
  return experts.gather(1, index.view({b, 1, 1}).expand({b, 1, c})).squeeze(1);
}

torch::Tensor ideal_gate_loss(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& targets) {
  // argmin_e CE(f_e, y) = argmax_e f_e[y].
  const auto best = true_class_probs(experts.detach(), targets).argmax(1);
  const auto onehot = torch::one_hot(best, gate.size(1)).to(gate.dtype());
  const auto sq = (gate - onehot).pow(2);
  return modlab::population_members() == 1 ? sq.mean() : modlab::member_mean(sq);
}

torch::Tensor sample_similarity_loss(const torch::Tensor& inputs, const torch::Tensor& gate, double beta_same,
                                     double beta_diff, const std::string& form) {
  if (form != "normalized" && form != "reference")
    throw modlab::ArgumentError("sample_similarity form must be \"normalized\" or \"reference\", got \"" + form + "\"");
  const auto x = inputs.reshape({inputs.size(0), -1}).to(gate.dtype());
  const auto p = modlab::population_members();
  if (p == 1) return similarity_of_batch(x, gate, beta_same, beta_diff, form);
  // In a population each member's own term over its own rows, as its solo run computes it (the
  // term is O(B²) per member, so one member at a time costs what a folded form would).
  const auto xs = per_member(x, p), gs = per_member(gate, p);
  std::vector<torch::Tensor> terms;
  for (std::int64_t m = 0; m < p; ++m) terms.push_back(similarity_of_batch(xs[m], gs[m], beta_same, beta_diff, form));
  return torch::stack(terms);
}

torch::Tensor jacobs_loss(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& targets,
                          double eps) {
  const auto ce = -torch::log(true_class_probs(experts, targets) + eps);  // [B, E]
  return -torch::log((gate * torch::exp(-0.5 * ce)).sum(1) + 1e-15).mean();
}

torch::Tensor em_loss(const torch::Tensor& gate, const torch::Tensor& experts, const torch::Tensor& targets,
                      const torch::Tensor& assignment, double eps) {
  const auto a = assignment.view({-1, 1});
  const auto f = true_class_probs(experts, targets).gather(1, a).squeeze(1);
  const auto g = gate.gather(1, a).squeeze(1);
  return -(torch::log(f + eps) * g).mean();
}

torch::Tensor em_complete_data_loss(const torch::Tensor& gate, const torch::Tensor& experts,
                                    const torch::Tensor& targets, const torch::Tensor& assignment, double eps) {
  const auto a = assignment.view({-1, 1});
  const auto f = true_class_probs(experts, targets).gather(1, a).squeeze(1);
  const auto g = gate.gather(1, a).squeeze(1);
  return -(torch::log(f + eps) + torch::log(g + eps)).mean();
}

torch::Tensor expert_loss_gate_loss(const torch::Tensor& gate, const torch::Tensor& experts,
                                    const torch::Tensor& targets, double eps) {
  const auto lf = torch::log(true_class_probs(experts.detach(), targets) + eps);
  return (gate - lf).abs().mean(0).sum();
}

}  // namespace modlab::moe

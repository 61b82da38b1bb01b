// Stochastic relaxations, estimators and the pooling of modlab::nn (nn/functional.hpp).
#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/init.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace modlab::nn {

// ---------------------------------------------------------------- functional

torch::Tensor sample_gumbel(at::IntArrayRef shape, const torch::TensorOptions& options) {
  // −log(Exp(1)) is Gumbel(0, 1); exponential_ avoids log(0)
  return -torch::empty(shape, options).exponential_().log();
}

torch::Tensor straight_through(const torch::Tensor& hard, const torch::Tensor& soft) {
  return hard - soft.detach() + soft;
}

torch::Tensor gumbel_softmax(const torch::Tensor& logits, double tau, bool hard, std::int64_t dim, bool noise) {
  auto z = noise ? logits + sample_gumbel(logits.sizes(), logits.options()) : logits;
  auto soft = torch::softmax(z / tau, dim);
  if (!hard) return soft;
  auto idx = soft.argmax(dim, /*keepdim=*/true);
  auto onehot = torch::zeros_like(soft).scatter_(dim, idx, 1.0);
  return straight_through(onehot, soft);
}

torch::Tensor gumbel_sigmoid(const torch::Tensor& logits, double tau, bool hard, bool noise) {
  auto z = logits;
  if (noise) z = z + sample_gumbel(logits.sizes(), logits.options()) - sample_gumbel(logits.sizes(), logits.options());
  auto soft = torch::sigmoid(z / tau);
  if (!hard) return soft;
  return straight_through((soft > 0.5).to(soft.scalar_type()), soft);
}

torch::Tensor topk_selectors(const torch::Tensor& scores, std::int64_t k) {
  auto idx = std::get<1>(scores.topk(k, -1, /*largest=*/true, /*sorted=*/true));  // [..., k]
  std::vector<torch::Tensor> sels;
  sels.reserve(k);
  for (std::int64_t j = 0; j < k; ++j) {
    auto one = torch::zeros_like(scores).scatter_(-1, idx.narrow(-1, j, 1), 1.0);
    sels.push_back(straight_through(one, scores));
  }
  return torch::stack(sels, 0);
}

torch::Tensor softmax_in_layout(const torch::Tensor& x, std::int64_t dim) {
  const auto n = x.dim();
  if (n < 2 || x.is_contiguous()) return torch::softmax(x, dim);
  if (dim < 0) dim += n;
  // The dimensions in memory order (decreasing stride); the permuted view is contiguous for any
  // tensor that is a permutation of a dense one.
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return x.stride(a) > x.stride(b); });
  const auto dense = x.permute(order);
  if (!dense.is_contiguous()) return torch::softmax(x, dim);
  std::vector<std::int64_t> back(static_cast<std::size_t>(n));
  std::int64_t at = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    back[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = i;
    if (order[static_cast<std::size_t>(i)] == dim) at = i;
  }
  return torch::softmax(dense, at).permute(back);
}

namespace {

/// Window maxima of `x` [..., 2H, 2W]: first over each pair of columns, then over each pair of
/// rows. With `pick_col` / `pick_row`, also whether the second of each pair won.
torch::Tensor pairwise_max(const torch::Tensor& x, torch::Tensor* pick_col, torch::Tensor* pick_row) {
  const auto w = x.size(-1) / 2, h2 = x.size(-2);
  const auto c0 = x.slice(-1, 0, 2 * w, 2), c1 = x.slice(-1, 1, 2 * w, 2);  // [..., 2H, W]
  const auto cols = torch::maximum(c0, c1);
  const auto r0 = cols.slice(-2, 0, h2, 2), r1 = cols.slice(-2, 1, h2, 2);  // [..., H, W]
  if (pick_col) *pick_col = torch::gt(c1, c0);  // ties pick the first, as max_pool2d
  if (pick_row) *pick_row = torch::gt(r1, r0);
  return torch::maximum(r0, r1);
}

/// Spreads `g` [..., H, W] back over pairs along `dim` (−2: rows, −1: columns): the second
/// element of a pair gets g where `pick` is set, the first where it is not; [..., 2H, W] or
/// [..., H, 2W]. Written into one tensor, no stack.
torch::Tensor unpool_pairs(const torch::Tensor& g, const torch::Tensor& pick, std::int64_t dim) {
  auto sizes = g.sizes().vec();
  const auto n = static_cast<std::int64_t>(sizes.size());
  const auto d = dim < 0 ? dim + n : dim;
  sizes.insert(sizes.begin() + d + 1, 2);                  // [..., H, 2, W] or [..., H, W, 2]
  auto out = torch::empty(sizes, g.options());
  auto second = out.select(d + 1, 1), first = out.select(d + 1, 0);
  at::mul_out(second, g, pick);
  at::sub_out(first, g, second);  // exact: g − g = 0, g − 0 = g
  return out.flatten(d, d + 1);
}

/// 2×2 max pooling of an input with even H and W (max_pool2x2 cuts odd ones first, so that the
/// last row / column gets its zero gradient from the cut's own backward).
struct MaxPool2x2 : torch::autograd::Function<MaxPool2x2> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    torch::Tensor pick_col, pick_row;
    auto out = pairwise_max(x, &pick_col, &pick_row);
    ctx->save_for_backward({pick_col, pick_row});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {unpool_pairs(unpool_pairs(grads[0].contiguous(), saved[1], -2), saved[0], -1)};  // [..., 2H, 2W]
  }
};

}  // namespace

torch::Tensor max_pool2x2(const torch::Tensor& x) {
  if (x.dim() < 2 || x.size(-2) < 2 || x.size(-1) < 2)
    throw ArgumentError("max_pool2x2: needs [..., H, W] with H, W >= 2");
  const auto h = x.size(-2), w = x.size(-1);
  // Odd sizes: the last row / column belongs to no window (floor mode).
  const auto even = h % 2 == 0 && w % 2 == 0 ? x : x.narrow(-2, 0, h / 2 * 2).narrow(-1, 0, w / 2 * 2);
  if (torch::GradMode::is_enabled() && x.requires_grad()) return MaxPool2x2::apply(even);
  return pairwise_max(even, nullptr, nullptr);
}

torch::Tensor entropy_bits(const torch::Tensor& probs, std::int64_t dim) {
  auto logp = torch::log2(probs.clamp_min(1e-30));
  return -(probs * logp).where(probs > 0, torch::zeros_like(probs)).sum(dim);
}

}  // namespace modlab::nn

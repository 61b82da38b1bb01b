#include <modlab/nn/functional.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/init.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>
#include <stdexcept>

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
    throw std::invalid_argument("max_pool2x2: needs [..., H, W] with H, W >= 2");
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

// ---------------------------------------------------------------- MAC counting

namespace {
thread_local std::int64_t g_macs = 0;
thread_local int g_counters = 0;
}  // namespace

MacCounter::MacCounter() : start_(g_macs) { ++g_counters; }
MacCounter::~MacCounter() { --g_counters; }
std::int64_t MacCounter::total() const { return g_macs - start_; }
void MacCounter::add(std::int64_t macs) {
  if (g_counters > 0) g_macs += macs;
}

// ---------------------------------------------------------------- overrides

Overridable::~Overridable() = default;

void Overridable::set_override(const std::string& name, torch::Tensor value) { overrides_[name] = std::move(value); }
void Overridable::clear_overrides() { overrides_.clear(); }

torch::Tensor Overridable::effective(const std::string& name, const torch::Tensor& param) const {
  auto it = overrides_.find(name);
  return it == overrides_.end() ? param : it->second;
}

// The root is handled by reference, not through named_modules(include_self = true), which throws
// for a root module that is not owned by a shared_ptr (a model on the stack, a plain member).
void set_overrides(torch::nn::Module& root, const std::map<std::string, torch::Tensor>& by_name) {
  auto modules = root.named_modules("", /*include_self=*/false);
  for (const auto& [full, value] : by_name) {
    auto dot = full.rfind('.');
    std::string mod = dot == std::string::npos ? "" : full.substr(0, dot);
    std::string param = dot == std::string::npos ? full : full.substr(dot + 1);
    torch::nn::Module* m = &root;
    if (!mod.empty()) {
      auto* found = modules.find(mod);
      m = found ? found->get() : nullptr;
    }
    auto* o = dynamic_cast<Overridable*>(m);
    if (!o || !m->named_parameters(false).contains(param))
      throw std::invalid_argument("no overridable parameter '" + full + "'");
    o->set_override(param, value);
  }
}

void clear_overrides(torch::nn::Module& root) {
  if (auto* o = dynamic_cast<Overridable*>(&root)) o->clear_overrides();
  for (auto& m : root.modules(/*include_self=*/false))
    if (auto* o = dynamic_cast<Overridable*>(m.get())) o->clear_overrides();
}

// ---------------------------------------------------------------- Linear

namespace {
void kaiming_like_linear(torch::Tensor& w, torch::Tensor& b, std::int64_t fan_in) {
  torch::NoGradGuard g;
  double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  w.uniform_(-bound, bound);  // = kaiming_uniform(a = sqrt(5)) as in torch::nn::Linear
  if (b.defined()) b.uniform_(-bound, bound);
}
}  // namespace

LinearImpl::LinearImpl(std::int64_t in, std::int64_t out, bool with_bias) : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  reset_parameters();
}
LinearImpl::~LinearImpl() = default;
void LinearImpl::reset_parameters() { kaiming_like_linear(weight, bias, in_features); }

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  std::int64_t rows = x.numel() / in_features;
  if (w.dim() == 2) {
    MacCounter::add(rows * in_features * out_features);
    return torch::nn::functional::linear(x, w, b);
  }
  // K-batched weights [K, out, in]
  auto K = w.size(0);
  auto xk = x.dim() == 2 ? x.unsqueeze(0).expand({K, x.size(0), x.size(1)}) : x;
  MacCounter::add(xk.numel() / in_features * in_features * out_features);
  auto y = torch::bmm(xk, w.transpose(1, 2));
  if (b.defined()) y = y + (b.dim() == 1 ? b.view({1, 1, -1}) : b.unsqueeze(1));
  return y;
}

torch::Tensor LinearImpl::forward_t(const torch::Tensor& xt) {
  auto w = effective("weight", weight);
  if (w.dim() != 2 || xt.dim() != 2) return forward(xt.transpose(-1, -2)).transpose(-1, -2);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  MacCounter::add(xt.size(1) * in_features * out_features);
  return b.defined() ? torch::addmm(b.unsqueeze(1), w, xt) : torch::mm(w, xt);
}

// ---------------------------------------------------------------- Conv2d

Conv2dImpl::Conv2dImpl(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t s, std::int64_t p, bool with_bias)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p) {
  weight = register_parameter("weight", torch::empty({out, in, k, k}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  reset_parameters();
}
Conv2dImpl::~Conv2dImpl() = default;
void Conv2dImpl::reset_parameters() { kaiming_like_linear(weight, bias, in_channels * kernel_size * kernel_size); }

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  auto count = [&](const torch::Tensor& y) {
    MacCounter::add(y.numel() * in_channels * kernel_size * kernel_size);
    return y;
  };
  if (w.dim() == 4) return count(torch::conv2d(x, w, b, stride, padding));
  // K-batched weights [K, O, C, k, k] as one grouped convolution over K·C channels
  auto K = w.size(0);
  auto xk = x.dim() == 4 ? x.unsqueeze(0).expand({K, x.size(0), x.size(1), x.size(2), x.size(3)}) : x;
  auto B = xk.size(1);
  auto xin = xk.permute({1, 0, 2, 3, 4}).reshape({B, K * in_channels, xk.size(3), xk.size(4)});
  auto wg = w.reshape({K * out_channels, in_channels, kernel_size, kernel_size});
  torch::Tensor bg;
  if (b.defined()) bg = b.dim() == 1 ? b.repeat({K}) : b.reshape({K * out_channels});
  auto y = torch::conv2d(xin, wg, bg, stride, padding, /*dilation=*/1, /*groups=*/K);
  count(y);
  return y.view({B, K, out_channels, y.size(2), y.size(3)}).permute({1, 0, 2, 3, 4});
}

// ---------------------------------------------------------------- StackedLinear

StackedLinearImpl::StackedLinearImpl(std::int64_t e, std::int64_t in, std::int64_t out, bool with_bias)
    : members(e), in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({e, in, out}));
  if (with_bias) bias = register_parameter("bias", torch::empty({e, out}));
  reset_parameters();
}
StackedLinearImpl::~StackedLinearImpl() = default;
void StackedLinearImpl::reset_parameters() { kaiming_like_linear(weight, bias, in_features); }

torch::Tensor StackedLinearImpl::forward(const torch::Tensor& x) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  auto xe = x.dim() == 2 ? x.expand({members, x.size(0), x.size(1)}) : x;
  MacCounter::add(xe.size(0) * xe.size(1) * in_features * out_features);
  if (b.defined()) return torch::baddbmm(b.unsqueeze(1), xe, w);
  return torch::bmm(xe, w);
}

torch::Tensor StackedLinearImpl::forward_t(const torch::Tensor& xt) {
  auto w = effective("weight", weight);
  if (w.dim() != 3) return forward(xt.transpose(-1, -2)).transpose(-1, -2);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  auto xe = xt.dim() == 2 ? xt.expand({members, xt.size(0), xt.size(1)}) : xt;
  MacCounter::add(xe.size(0) * xe.size(2) * in_features * out_features);
  const auto wt = w.transpose(1, 2);
  return b.defined() ? torch::baddbmm(b.unsqueeze(2), wt, xe) : torch::bmm(wt, xe);
}

}  // namespace modlab::nn

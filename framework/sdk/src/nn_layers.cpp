// The maskable layers of modlab::nn (nn/layers.hpp): overrides, the folded-K rule, MAC counting.
#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>

#include "nn_internal.hpp"

#include <torch/nn/init.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

namespace modlab::nn {

// ---------------------------------------------------------------- MAC counting

namespace {
thread_local std::int64_t g_macs = 0;
thread_local int g_counters = 0;
thread_local std::int64_t g_folded = 1;
}  // namespace

MacCounter::MacCounter() : start_(g_macs) { ++g_counters; }
MacCounter::~MacCounter() { --g_counters; }
std::int64_t MacCounter::total() const { return g_macs - start_; }
void MacCounter::add(std::int64_t macs) {
  if (g_counters > 0) g_macs += macs;
}

std::int64_t folded_samples() { return g_folded; }

// ---------------------------------------------------------------- overrides

namespace {
std::string shape_text(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

/// K of an override of a parameter with `param_dim` dimensions: its leading axis when it has one
/// more, else 1.
std::int64_t samples_in(const torch::Tensor& t, std::int64_t param_dim) {
  return t.defined() && t.dim() == param_dim + 1 ? t.size(0) : 1;
}

/// The one K of a layer whose tensors have `ks` samples each (1 = not batched).
std::int64_t common_samples(std::initializer_list<std::int64_t> ks) {
  std::int64_t k = 1;
  for (auto s : ks) {
    if (s == 1) continue;
    if (k != 1 && s != k) throw ArgumentError("overrides of one layer disagree on the number of samples K");
    k = s;
  }
  return k;
}

/// Throws unless `rows` splits into K blocks.
void check_rows(std::int64_t rows, std::int64_t k, const char* layer) {
  if (k > 1 && rows % k != 0)
    throw ArgumentError(std::string(layer) + ": input has " + std::to_string(rows) + " rows, not a multiple of the K = " +
                std::to_string(k) + " override samples folded into the batch");
}

/// Splits a full parameter name into (module path, parameter).
std::pair<std::string, std::string> split_name(const std::string& full) {
  const auto dot = full.rfind('.');
  if (dot == std::string::npos) return {"", full};
  return {full.substr(0, dot), full.substr(dot + 1)};
}

/// The modules below a root by dotted path, listed once per call of the functions below (not
/// once per parameter: a mask-training step sets hundreds of overrides). The root is handled by
/// reference: named_modules(include_self) throws for a root not owned by a shared_ptr.
class ModuleIndex {
 public:
  explicit ModuleIndex(torch::nn::Module& root) : root_(root), modules_(root.named_modules("", /*include_self=*/false)) {}
  /// The module at `path` (the root for ""), or nullptr.
  torch::nn::Module* at(const std::string& path) const {
    if (path.empty()) return &root_;
    const auto* found = modules_.find(path);
    return found ? found->get() : nullptr;
  }

 private:
  torch::nn::Module& root_;
  torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>> modules_;
};
}  // namespace

Overridable::~Overridable() = default;

void Overridable::set_override(const std::string& name, torch::Tensor value) {
  const auto* self = dynamic_cast<const torch::nn::Module*>(this);
  const auto params = self ? self->named_parameters(/*recurse=*/false) : torch::OrderedDict<std::string, torch::Tensor>{};
  const auto* param = params.find(name);
  if (!param) throw ArgumentError("no parameter '" + name + "' to override in " + (self ? self->name() : "this layer"));
  const auto want = param->sizes(), got = value.sizes();
  const bool plain = got == want;
  const bool batched = got.size() == want.size() + 1 && got.slice(1) == want;
  if (!plain && !batched)
    throw ArgumentError("override of '" + name + "' has shape " + shape_text(got) + "; expected " + shape_text(want) +
                " or [K, " + shape_text(want).substr(1));
  overrides_[name] = std::move(value);
}

void Overridable::clear_overrides() { overrides_.clear(); }

torch::Tensor Overridable::effective(const std::string& name, const torch::Tensor& param) const {
  if (overrides_.empty()) return param;
  auto it = overrides_.find(name);
  if (it == overrides_.end()) return param;
  // K = 1 samples ([1, …shape]) are the parameter's own shape: every layer then takes its plain path.
  const auto& v = it->second;
  return v.dim() == param.dim() + 1 && v.size(0) == 1 ? v.squeeze(0) : v;
}

std::vector<std::string> maskable_parameters(torch::nn::Module& root) {
  std::vector<std::string> out;
  const ModuleIndex index(root);
  for (const auto& p : root.named_parameters(/*recurse=*/true)) {
    const auto [path, name] = split_name(p.key());
    if (dynamic_cast<Overridable*>(index.at(path))) out.push_back(p.key());
  }
  return out;
}

void set_overrides(torch::nn::Module& root, const std::map<std::string, torch::Tensor>& by_name) {
  const ModuleIndex index(root);
  for (const auto& [full, value] : by_name) {
    const auto [path, name] = split_name(full);
    torch::nn::Module* m = index.at(path);
    auto* o = dynamic_cast<Overridable*>(m);
    if (!o || !m->named_parameters(false).contains(name))
      throw ArgumentError("no overridable parameter '" + full + "'");
    try {
      o->set_override(name, value);
    } catch (const Error& e) {
      throw ArgumentError(full + ": " + e.what());
    }
  }
}

void clear_overrides(torch::nn::Module& root) {
  if (auto* o = dynamic_cast<Overridable*>(&root)) o->clear_overrides();
  for (auto& m : root.modules(/*include_self=*/false))
    if (auto* o = dynamic_cast<Overridable*>(m.get())) o->clear_overrides();
}

OverrideScope::OverrideScope(torch::nn::Module& root, const std::map<std::string, torch::Tensor>& by_name)
    : root_(root), outer_(g_folded) {
  auto params = root.named_parameters(/*recurse=*/true);
  for (const auto& [full, value] : by_name) {
    const auto* p = params.find(full);
    const std::int64_t k = p ? samples_in(value, p->dim()) : 1;
    if (k > 1 && samples_ > 1 && k != samples_)
      throw ArgumentError("override '" + full + "' has K = " + std::to_string(k) + " samples, others " +
                  std::to_string(samples_));
    samples_ = std::max(samples_, k);
  }
  try {
    set_overrides(root, by_name);
  } catch (...) {
    clear_overrides(root);
    throw;
  }
  if (samples_ > 1) g_folded = samples_;
}

OverrideScope::~OverrideScope() {
  clear_overrides(root_);
  g_folded = outer_;
}

// ---------------------------------------------------------------- Linear

namespace {
void uniform_fan_in(torch::Tensor& w, torch::Tensor& b, std::int64_t fan_in) {
  torch::NoGradGuard g;
  double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  w.uniform_(-bound, bound);  // = kaiming_uniform(a = sqrt(5)) as in torch::nn::Linear / Conv2d
  if (b.defined()) b.uniform_(-bound, bound);
}

/// x [K, N, in] with weight [out, in] or [K, out, in] and bias [out] / [K, out] → [K, N, out].
torch::Tensor linear_k(const torch::Tensor& xk, const torch::Tensor& w, const torch::Tensor& b) {
  const auto wt = w.dim() == 3 ? w.transpose(1, 2) : w.t().unsqueeze(0).expand({xk.size(0), w.size(1), w.size(0)});
  if (!b.defined()) return torch::bmm(xk, wt);
  return torch::baddbmm(b.dim() == 2 ? b.unsqueeze(1) : b.view({1, 1, -1}), xk, wt);
}
}  // namespace

torch::Tensor folded_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                            const char* layer) {
  const auto k = common_samples({samples_in(w, 2), samples_in(b, 1)});
  const auto in = x.size(-1), out = w.size(-2);
  MacCounter::add(x.numel() / in * in * out);
  if (k == 1) return torch::nn::functional::linear(x, w, b);
  check_rows(x.size(0), k, layer);
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  return linear_k(x.reshape({k, -1, in}), w, b).reshape(sizes);
}

LinearImpl::LinearImpl(std::int64_t in, std::int64_t out, bool with_bias) : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  reset_parameters();
}
LinearImpl::~LinearImpl() = default;
void LinearImpl::reset_parameters() { uniform_fan_in(weight, bias, in_features); }

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  return folded_linear(x, effective("weight", weight), bias.defined() ? effective("bias", bias) : bias, "Linear");
}

torch::Tensor LinearImpl::forward_t(const torch::Tensor& xt) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  if (w.dim() != 2 || (b.defined() && b.dim() != 1) || xt.dim() != 2) return forward(xt.t()).t();
  MacCounter::add(xt.size(1) * in_features * out_features);
  return b.defined() ? torch::addmm(b.unsqueeze(1), w, xt) : torch::mm(w, xt);
}

// ---------------------------------------------------------------- Conv2d

namespace {
/// Convolution of x [K·B, C, H, W] with weight [O, C/g, k, k] or [K, O, C/g, k, k] (and bias [O] /
/// [K, O]) as one convolution with K·g groups: → [K·B, O, H', W'].
torch::Tensor conv_k(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, std::int64_t k,
                     std::int64_t stride, std::int64_t padding, std::int64_t groups) {
  const auto rows = x.size(0) / k, c = x.size(1), o = w.size(-4);
  const auto xin = x.reshape({k, rows, c, x.size(2), x.size(3)}).transpose(0, 1).reshape({rows, k * c, x.size(2), x.size(3)});
  const auto wk = (w.dim() == 5 ? w : w.unsqueeze(0).expand({k, o, w.size(1), w.size(2), w.size(3)}))
                      .reshape({k * o, w.size(-3), w.size(-2), w.size(-1)});
  torch::Tensor bk;
  if (b.defined()) bk = b.dim() == 2 ? b.reshape({k * o}) : b.repeat({k});
  const auto y = torch::conv2d(xin, wk, bk, stride, padding, /*dilation=*/1, k * groups);
  return y.view({rows, k, o, y.size(2), y.size(3)}).transpose(0, 1).reshape({k * rows, o, y.size(2), y.size(3)});
}

/// The convolution of `x` with `w` / `b` (a plain parameter or K-batched), counting its MACs.
torch::Tensor any_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, std::int64_t stride,
                       std::int64_t padding, std::int64_t groups, const char* layer) {
  const auto k = common_samples({samples_in(w, 4), samples_in(b, 1)});
  torch::Tensor y;
  if (k == 1) {
    y = torch::conv2d(x, w, b, stride, padding, /*dilation=*/1, groups);
  } else {
    check_rows(x.size(0), k, layer);
    y = conv_k(x, w, b, k, stride, padding, groups);
  }
  MacCounter::add(y.numel() * w.size(-3) * w.size(-2) * w.size(-1));
  return y;
}
}  // namespace

Conv2dImpl::Conv2dImpl(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t s, std::int64_t p,
                       bool with_bias, std::int64_t g)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p), groups(g) {
  if (g < 1 || in % g != 0 || out % g != 0)
    throw ArgumentError("Conv2d: " + std::to_string(in) + " → " + std::to_string(out) + " channels do not split into " +
                std::to_string(g) + " groups");
  weight = register_parameter("weight", torch::empty({out, in / g, k, k}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  reset_parameters();
}
Conv2dImpl::~Conv2dImpl() = default;
void Conv2dImpl::reset_parameters() { uniform_fan_in(weight, bias, in_channels / groups * kernel_size * kernel_size); }

torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) {
  return any_conv(x, effective("weight", weight), bias.defined() ? effective("bias", bias) : bias, stride, padding,
                  groups, "Conv2d");
}

// ---------------------------------------------------------------- StackedLinear

StackedLinearImpl::StackedLinearImpl(std::int64_t e, std::int64_t in, std::int64_t out, bool with_bias)
    : members(e), in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({e, in, out}));
  if (with_bias) bias = register_parameter("bias", torch::empty({e, out}));
  reset_parameters();
}
StackedLinearImpl::~StackedLinearImpl() = default;
void StackedLinearImpl::reset_parameters() { uniform_fan_in(weight, bias, in_features); }

namespace {
/// StackedLinear with K samples: x [K·B, in] (shared) or [E, K·B, in], weight [(K,) E, in, out],
/// bias [(K,) E, out] → [E, K·B, out], as one bmm over K·E.
torch::Tensor stacked_k(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, std::int64_t k) {
  const auto e = w.size(-3), in = w.size(-2), out = w.size(-1);
  const auto rows = x.size(x.dim() == 2 ? 0 : 1) / k;
  const auto xk = x.dim() == 2 ? x.reshape({k, 1, rows, in}).expand({k, e, rows, in})
                               : x.reshape({e, k, rows, in}).transpose(0, 1);
  const auto wk = (w.dim() == 4 ? w : w.unsqueeze(0).expand({k, e, in, out})).reshape({k * e, in, out});
  auto y = torch::bmm(xk.reshape({k * e, rows, in}), wk);
  if (b.defined()) y = y + (b.dim() == 3 ? b : b.unsqueeze(0).expand({k, e, out})).reshape({k * e, 1, out});
  return y.view({k, e, rows, out}).transpose(0, 1).reshape({e, k * rows, out});
}
}  // namespace

torch::Tensor StackedLinearImpl::forward(const torch::Tensor& x) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  const auto rows = x.size(x.dim() == 2 ? 0 : 1);
  MacCounter::add(members * rows * in_features * out_features);
  const auto k = common_samples({samples_in(w, 3), samples_in(b, 2)});
  if (k > 1) {
    check_rows(rows, k, "StackedLinear");
    return stacked_k(x, w, b, k);
  }
  auto xe = x.dim() == 2 ? x.expand({members, x.size(0), x.size(1)}) : x;
  if (b.defined()) return torch::baddbmm(b.unsqueeze(1), xe, w);
  return torch::bmm(xe, w);
}

torch::Tensor StackedLinearImpl::forward_t(const torch::Tensor& xt) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  if (w.dim() != 3 || (b.defined() && b.dim() != 2)) return forward(xt.transpose(-1, -2)).transpose(-1, -2);
  auto xe = xt.dim() == 2 ? xt.expand({members, xt.size(0), xt.size(1)}) : xt;
  MacCounter::add(xe.size(0) * xe.size(2) * in_features * out_features);
  const auto wt = w.transpose(1, 2);
  return b.defined() ? torch::baddbmm(b.unsqueeze(2), wt, xe) : torch::bmm(wt, xe);
}

// ---------------------------------------------------------------- StackedConv2d

StackedConv2dImpl::StackedConv2dImpl(std::int64_t e, std::int64_t in, std::int64_t out, std::int64_t k,
                                     std::int64_t s, std::int64_t p, bool with_bias)
    : members(e), in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p) {
  if (e < 1 || in < 1 || out < 1 || k < 1) throw ArgumentError("StackedConv2d: members, channels and kernel must be >= 1");
  weight = register_parameter("weight", torch::empty({e, out, in, k, k}));
  if (with_bias) bias = register_parameter("bias", torch::empty({e, out}));
  reset_parameters();
}
StackedConv2dImpl::~StackedConv2dImpl() = default;
void StackedConv2dImpl::reset_parameters() { uniform_fan_in(weight, bias, in_channels * kernel_size * kernel_size); }

torch::Tensor StackedConv2dImpl::forward(const torch::Tensor& x) {
  auto w = effective("weight", weight);
  auto b = bias.defined() ? effective("bias", bias) : bias;
  const auto c = x.size(1);
  if (c != in_channels && c != members * in_channels)
    throw ArgumentError("StackedConv2d: input has " + std::to_string(c) + " channels; expected " +
                std::to_string(in_channels) + " (shared) or " + std::to_string(members * in_channels) + " (per member)");
  // Members as the output channel blocks of one convolution: [(K,) E, O, C, k, k] → [(K,) E·O, C, k, k].
  const bool batched = w.dim() == 6;
  const auto eo = members * out_channels;
  const auto wf = batched ? w.reshape({w.size(0), eo, in_channels, kernel_size, kernel_size})
                          : w.reshape({eo, in_channels, kernel_size, kernel_size});
  torch::Tensor bf;
  if (b.defined()) bf = b.dim() == 3 ? b.reshape({b.size(0), eo}) : b.reshape({eo});
  const std::int64_t groups = c == in_channels ? 1 : members;
  return any_conv(x, wf, bf, stride, padding, groups, "StackedConv2d");
}

// ---------------------------------------------------------------- routed rows

namespace {
/// The K of routed `counts` over E members, checked against the override's K (`param_k`).
std::int64_t routed_samples(const std::vector<std::int64_t>& counts, std::int64_t rows, std::int64_t members,
                            std::int64_t param_k, const char* layer) {
  const auto groups = static_cast<std::int64_t>(counts.size());
  if (groups == 0 || groups % members != 0)
    throw ArgumentError(std::string(layer) + "::forward_routed: " + std::to_string(groups) +
                        " row counts for " + std::to_string(members) + " members; expected a multiple of " +
                        std::to_string(members));
  const auto k = groups / members;
  if (param_k > 1 && param_k != k)
    throw ArgumentError(std::string(layer) + "::forward_routed: the overrides hold K = " + std::to_string(param_k) +
                        " samples but the counts describe " + std::to_string(k));
  std::int64_t sum = 0;
  for (auto c : counts) {
    if (c < 0) throw ArgumentError(std::string(layer) + "::forward_routed: negative row count");
    sum += c;
  }
  if (sum != rows)
    throw ArgumentError(std::string(layer) + "::forward_routed: counts add up to " + std::to_string(sum) +
                        " rows; the input has " + std::to_string(rows));
  return k;
}

/// Member `e` of sample `k` of a stacked parameter [E, …] or [K, E, …] (undefined stays undefined).
torch::Tensor member_of(const torch::Tensor& p, std::int64_t param_dim, std::int64_t k, std::int64_t e) {
  if (!p.defined()) return p;
  return p.dim() == param_dim + 1 ? p[k][e] : p[e];
}

/// Runs `op(rows of group g, g)` on every non-empty group and concatenates the results.
template <class Op>
torch::Tensor over_groups(const torch::Tensor& x, const std::vector<std::int64_t>& counts, Op op) {
  std::vector<torch::Tensor> parts;
  std::int64_t offset = 0;
  for (std::size_t g = 0; g < counts.size(); ++g) {
    if (counts[g] == 0) continue;
    parts.push_back(op(x.narrow(0, offset, counts[g]), static_cast<std::int64_t>(g)));
    offset += counts[g];
  }
  return parts.size() == 1 ? parts.front() : torch::cat(parts);
}
}  // namespace

torch::Tensor StackedLinearImpl::forward_routed(const torch::Tensor& x, const std::vector<std::int64_t>& counts) {
  const auto w = effective("weight", weight);
  const auto b = bias.defined() ? effective("bias", bias) : bias;
  const auto pk = common_samples({samples_in(w, 3), samples_in(b, 2)});
  routed_samples(counts, x.size(0), members, pk, "StackedLinear");
  if (x.size(0) == 0) return x.new_empty({0, out_features});
  MacCounter::add(x.size(0) * in_features * out_features);
  return over_groups(x, counts, [&](const torch::Tensor& rows, std::int64_t g) {
    const auto wg = member_of(w, 3, g / members, g % members);
    const auto bg = member_of(b, 2, g / members, g % members);
    return bg.defined() ? torch::addmm(bg, rows, wg) : torch::mm(rows, wg);
  });
}

torch::Tensor StackedConv2dImpl::forward_routed(const torch::Tensor& x, const std::vector<std::int64_t>& counts) {
  const auto w = effective("weight", weight);
  const auto b = bias.defined() ? effective("bias", bias) : bias;
  const auto pk = common_samples({samples_in(w, 5), samples_in(b, 2)});
  routed_samples(counts, x.size(0), members, pk, "StackedConv2d");
  if (x.size(1) != in_channels)
    throw ArgumentError("StackedConv2d::forward_routed: input has " + std::to_string(x.size(1)) +
                        " channels; expected " + std::to_string(in_channels));
  if (x.size(0) == 0) {
    const auto side = [&](std::int64_t s) { return (s + 2 * padding - kernel_size) / stride + 1; };
    return x.new_empty({0, out_channels, side(x.size(2)), side(x.size(3))});
  }
  auto y = over_groups(x, counts, [&](const torch::Tensor& rows, std::int64_t g) {
    return torch::conv2d(rows, member_of(w, 5, g / members, g % members), member_of(b, 2, g / members, g % members),
                         stride, padding);
  });
  MacCounter::add(y.numel() * in_channels * kernel_size * kernel_size);
  return y;
}

// ---------------------------------------------------------------- Embedding

EmbeddingImpl::EmbeddingImpl(std::int64_t num, std::int64_t dim) : num_embeddings(num), embedding_dim(dim) {
  weight = register_parameter("weight", torch::empty({num, dim}));
  reset_parameters();
}
EmbeddingImpl::~EmbeddingImpl() = default;
void EmbeddingImpl::reset_parameters() {
  torch::NoGradGuard g;
  weight.normal_(0.0, 1.0);
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& indices) {
  const auto w = effective("weight", weight);
  const auto k = samples_in(w, 2);
  if (k == 1) return torch::embedding(w, indices);
  check_rows(indices.size(0), k, "Embedding");
  // Sample k's rows index table k of the K tables laid end to end.
  const auto offsets = torch::arange(k, indices.options()).mul_(num_embeddings).view({k, 1});
  auto sizes = indices.sizes().vec();
  sizes.push_back(embedding_dim);
  return torch::embedding(w.reshape({k * num_embeddings, embedding_dim}), indices.reshape({k, -1}) + offsets)
      .reshape(sizes);
}

// ---------------------------------------------------------------- LayerNorm

LayerNormImpl::LayerNormImpl(std::int64_t d, double e, bool affine) : dim(d), eps(e) {
  if (affine) {
    weight = register_parameter("weight", torch::ones({d}));
    bias = register_parameter("bias", torch::zeros({d}));
  }
}
LayerNormImpl::~LayerNormImpl() = default;

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  if (!weight.defined()) return torch::layer_norm(x, {dim}, {}, {}, eps);
  const auto w = effective("weight", weight), b = effective("bias", bias);
  MacCounter::add(x.numel());
  const auto k = common_samples({samples_in(w, 1), samples_in(b, 1)});
  if (k == 1) return torch::layer_norm(x, {dim}, w, b, eps);
  check_rows(x.size(0), k, "LayerNorm");
  const auto y = torch::layer_norm(x, {dim}, {}, {}, eps).reshape({k, -1, dim});
  const auto wk = w.dim() == 2 ? w.unsqueeze(1) : w, bk = b.dim() == 2 ? b.unsqueeze(1) : b;
  return torch::addcmul(bk, y, wk).reshape(x.sizes());
}

// ---------------------------------------------------------------- BatchNorm

BatchNormImpl::BatchNormImpl(std::int64_t c, double e, double m) : channels(c), eps(e), momentum(m) {
  weight = register_parameter("weight", torch::ones({c}));
  bias = register_parameter("bias", torch::zeros({c}));
  running_mean = register_buffer("running_mean", torch::zeros({c}));
  running_var = register_buffer("running_var", torch::ones({c}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}
BatchNormImpl::~BatchNormImpl() = default;

torch::Tensor BatchNormImpl::forward(const torch::Tensor& x) {
  const auto w = effective("weight", weight), b = effective("bias", bias);
  MacCounter::add(x.numel());
  const auto k = std::max(common_samples({samples_in(w, 1), samples_in(b, 1)}), folded_samples());
  if (k == 1) {
    if (is_training()) {
      torch::NoGradGuard g;
      num_batches_tracked.add_(1);
    }
    return torch::batch_norm(x, w, b, running_mean, running_var, is_training(), momentum, eps, /*cudnn=*/true);
  }
  // K blocks as K·C channels of one batch: [K·B, C, …] → [B, K·C, …]; running statistics are copies.
  check_rows(x.size(0), k, "BatchNorm");
  auto sizes = x.sizes().vec();
  std::vector<std::int64_t> blocks{k, sizes[0] / k};
  blocks.insert(blocks.end(), sizes.begin() + 1, sizes.end());
  std::vector<std::int64_t> merged(blocks.begin() + 1, blocks.end());
  merged[1] = k * channels;
  const auto xk = x.reshape(blocks).transpose(0, 1).reshape(merged);
  const auto flat = [k](const torch::Tensor& t) { return t.dim() == 2 ? t.reshape({-1}) : t.repeat({k}); };
  const auto y = torch::batch_norm(xk, flat(w), flat(b), running_mean.repeat({k}), running_var.repeat({k}),
                                   is_training(), momentum, eps, /*cudnn=*/true);
  std::vector<std::int64_t> split(merged);
  split[1] = channels;
  split.insert(split.begin() + 1, k);
  return y.reshape(split).transpose(0, 1).reshape(sizes);
}

}  // namespace modlab::nn

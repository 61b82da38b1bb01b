// Adam and RMSprop steps as LibTorch 1.13's, with the constants as cached 0-dim tensors and each
// parameter group updated as one flat block where possible (optimizers.hpp).
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <iterator>
#include <sstream>
#include <modlab/runner/optimizers.hpp>
#include <string>
#include <unordered_set>

namespace modlab::runner {

namespace optim = torch::optim;
using StateMap = OptimizerStateMap;

namespace {
// As LibTorch 1.x makes the key (c10::guts::to_string streams the pointer); 2.x keys by address.
template <class Key>
Key key_for(const c10::TensorImpl* impl) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << impl;
    return s.str();
  } else {
    return const_cast<c10::TensorImpl*>(impl);
  }
}
}  // namespace

OptimizerStateMap::key_type state_key(const torch::Tensor& p) {
  return key_for<OptimizerStateMap::key_type>(p.unsafeGetTensorImpl());
}

const torch::Tensor& ScalarCache::get(double value, const torch::Tensor& like) {
  const auto key = std::make_tuple(value, static_cast<int>(like.scalar_type()), static_cast<int>(like.device().type()),
                                   static_cast<int>(like.device().index()));
  auto it = cache_.find(key);
  if (it == cache_.end()) it = cache_.emplace(key, torch::scalar_tensor(value, like.options())).first;
  return it->second;
}

namespace {

const char* at_offset(const torch::Tensor& flat, std::int64_t offset) {
  return static_cast<const char*>(flat.data_ptr()) + offset * static_cast<std::int64_t>(flat.element_size());
}

/// Elements offset … offset + like.numel() of `flat`, shaped like `like` (contiguous). An alias of
/// the storage rather than an autograd view: LibTorch's zero_grad detaches gradients in place,
/// which it refuses for views.
torch::Tensor slice_of(const torch::Tensor& flat, std::int64_t offset, const torch::Tensor& like) {
  return torch::empty({0}, flat.options()).set_(flat.storage(), flat.storage_offset() + offset, like.sizes());
}

/// Whether `params` can share flat buffers: dense, contiguous, non-empty, one dtype and device,
/// no parameter twice, each with a dense gradient of its own shape, dtype and device.
bool flattenable(const std::vector<torch::Tensor>& params) {
  if (params.empty()) return false;
  std::unordered_set<const void*> seen;
  const auto& first = params.front();
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (p.layout() != torch::kStrided || !p.is_contiguous() || p.numel() == 0 || p.is_complex() ||
        p.scalar_type() != first.scalar_type() || p.device() != first.device() || !g.defined() ||
        g.layout() != torch::kStrided || g.sizes() != p.sizes() || g.scalar_type() != p.scalar_type() ||
        g.device() != p.device() || !seen.insert(p.unsafeGetTensorImpl()).second)
      return false;
  }
  return true;
}

}  // namespace

FlatGroups::Block* FlatGroups::block(std::size_t first, std::size_t groups, const std::vector<torch::Tensor>& params,
                                     const std::vector<bool>& slot_mask, StateMap& state, const StateAccess& access) {
  // Every parameter needs a gradient this step (LibTorch skips those without one).
  for (const auto& p : params)
    if (!p.grad().defined()) return nullptr;
  auto it = blocks_.find(first);
  if (it != blocks_.end()) {
    Block& b = it->second;
    bool holds = b.groups == groups && b.params.size() == params.size() && b.slot_mask == slot_mask;
    for (std::size_t i = 0; holds && i < params.size(); ++i)
      holds = params[i].unsafeGetTensorImpl() == b.params[i].unsafeGetTensorImpl() &&
              params[i].data_ptr() == at_offset(b.value, b.offsets[i]) && params[i].is_contiguous();
    if (holds) {
      const auto step = access.step(*b.states.front());
      for (std::size_t i = 0; i < params.size(); ++i) {
        if (access.step(*b.states[i]) != step) return nullptr;  // some parameter missed steps
        const auto& g = params[i].grad();
        if (g.data_ptr() != at_offset(b.grad, b.offsets[i])) {
          // A gradient assigned rather than accumulated: back into its slice.
          if (g.sizes() != params[i].sizes() || g.scalar_type() != b.grad.scalar_type() ||
              g.layout() != torch::kStrided || g.device() != b.grad.device())
            return nullptr;
          auto slice = slice_of(b.grad, b.offsets[i], params[i]);
          slice.copy_(g);
          params[i].mutable_grad() = slice;
        }
      }
      return &b;
    }
    blocks_.erase(it);
  }

  // (Re)build from the current values, gradients and state.
  if (!flattenable(params)) return nullptr;
  std::vector<optim::OptimizerParamState*> states;
  std::int64_t step = -1;
  for (const auto& p : params) {
    auto s = state.find(state_key(p));
    const std::int64_t this_step = s == state.end() ? 0 : access.step(*s->second);
    if (step >= 0 && this_step != step) return nullptr;
    step = this_step;
    if (s != state.end())
      for (std::size_t k = 0; k < slot_mask.size(); ++k) {
        const auto& t = access.slot(*s->second, k);
        if (slot_mask[k] && (!t.defined() || t.sizes() != p.sizes() || t.scalar_type() != p.scalar_type()))
          return nullptr;
      }
  }
  Block b;
  b.groups = groups;
  b.params = params;
  b.slot_mask = slot_mask;
  std::int64_t total = 0;
  for (const auto& p : params) {
    b.offsets.push_back(total);
    total += p.numel();
  }
  const auto options = params.front().options().requires_grad(false);
  b.value = torch::empty({total}, options);
  b.grad = torch::empty({total}, options);
  b.slots.resize(slot_mask.size());
  for (std::size_t k = 0; k < slot_mask.size(); ++k)
    if (slot_mask[k]) b.slots[k] = torch::zeros({total}, options);
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto p = params[i];
    const auto off = b.offsets[i];
    auto value = slice_of(b.value, off, p);
    value.copy_(p.detach());
    auto grad = slice_of(b.grad, off, p);
    grad.copy_(p.grad());
    p.set_data(value);
    p.mutable_grad() = grad;
    auto& st = state[state_key(p)];
    if (!st) st = access.create();
    for (std::size_t k = 0; k < slot_mask.size(); ++k) {
      auto& slot = access.slot(*st, k);
      if (!slot_mask[k]) continue;
      auto view = slice_of(b.slots[k], off, p);
      if (slot.defined()) view.copy_(slot);
      slot = view;
    }
    b.states.push_back(st.get());
  }
  // A block now covering other groups' blocks replaces them.
  for (auto o = blocks_.begin(); o != blocks_.end();)
    o = o->first >= first && o->first < first + groups ? blocks_.erase(o) : std::next(o);
  return &(blocks_[first] = std::move(b));
}

void FlatGroups::zero_grad(std::vector<optim::OptimizerParamGroup>& groups) {
  for (std::size_t gi = 0; gi < groups.size();) {
    auto it = blocks_.find(gi);
    if (it != blocks_.end() && gi + it->second.groups <= groups.size()) {
      // The block's gradient slices still the gradients of its groups' parameters, in order?
      const Block& b = it->second;
      std::size_t i = 0;
      bool in_place = true;
      for (std::size_t g = gi; in_place && g < gi + b.groups; ++g)
        for (const auto& p : groups[g].params()) {
          in_place = i < b.params.size() && p.unsafeGetTensorImpl() == b.params[i].unsafeGetTensorImpl() &&
                     p.grad().defined() && p.grad().data_ptr() == at_offset(b.grad, b.offsets[i]);
          ++i;
          if (!in_place) break;
        }
      if (in_place && i == b.params.size()) {
        it->second.grad.zero_();
        gi += b.groups;
        continue;
      }
    }
    for (const auto& p : groups[gi].params())  // as Optimizer::zero_grad
      if (p.mutable_grad().defined()) {
        p.mutable_grad().detach_();
        p.mutable_grad().zero_();
      }
    ++gi;
  }
}

void zero_grad(optim::Optimizer& opt) {
  if (auto* adam = dynamic_cast<FastAdam*>(&opt)) return adam->zero_grad();
  if (auto* rms = dynamic_cast<FastRMSprop*>(&opt)) return rms->zero_grad();
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2 sets gradients to none by default, so a parameter without a gradient in a step
  // would skip its update (momentum, weight decay) there and not on LibTorch 1: zeroing in place
  // on every version keeps a run's numbers independent of the LibTorch it was built against.
  opt.zero_grad(/*set_to_none=*/false);
#else
  opt.zero_grad();
#endif
}

namespace {

/// The closure's loss (with grad mode on), as LibTorch's steps begin.
torch::Tensor closure_loss(const optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

/// Adam's update of `p` (one parameter or a flat block) at step `step` (already counted).
void adam_update(torch::Tensor& p, torch::Tensor grad, const optim::AdamOptions& options, std::int64_t step,
                 torch::Tensor& exp_avg, torch::Tensor& exp_avg_sq, torch::Tensor& max_exp_avg_sq,
                 ScalarCache& scalars) {
  const auto beta1 = std::get<0>(options.betas());
  const auto beta2 = std::get<1>(options.betas());
  const auto bias_correction1 = 1 - std::pow(beta1, step);
  const auto bias_correction2 = 1 - std::pow(beta2, step);
  if (options.weight_decay() != 0) grad = grad.add(p, options.weight_decay());
  exp_avg.mul_(scalars.get(beta1, p)).add_(grad, 1 - beta1);
  exp_avg_sq.mul_(scalars.get(beta2, p)).addcmul_(grad, grad, 1 - beta2);
  const auto& source = options.amsgrad() ? max_exp_avg_sq : exp_avg_sq;
  if (options.amsgrad()) torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
  const auto denom = source.sqrt()
                         .div_(torch::scalar_tensor(std::sqrt(bias_correction2), p.options()))
                         .add_(scalars.get(options.eps(), p));
  const auto step_size = options.lr() / bias_correction1;
  p.addcdiv_(exp_avg, denom, -step_size);
}

/// RMSprop's update of `p` (one parameter or a flat block).
void rmsprop_update(torch::Tensor& p, torch::Tensor grad, const optim::RMSpropOptions& options,
                    torch::Tensor& square_avg, torch::Tensor& momentum_buffer, torch::Tensor& grad_avg,
                    ScalarCache& scalars) {
  const auto alpha = options.alpha();
  if (options.weight_decay() != 0) grad = grad.add(p, options.weight_decay());
  square_avg.mul_(scalars.get(alpha, p)).addcmul_(grad, grad, 1 - alpha);
  torch::Tensor avg;
  if (options.centered()) {
    grad_avg.mul_(scalars.get(alpha, p)).add_(grad, 1 - alpha);
    avg = square_avg.addcmul(grad_avg, grad_avg, -1).sqrt_().add_(scalars.get(options.eps(), p));
  } else {
    avg = square_avg.sqrt().add_(scalars.get(options.eps(), p));
  }
  if (options.momentum() > 0) {
    momentum_buffer.mul_(scalars.get(options.momentum(), p)).addcdiv_(grad, avg);
    p.add_(momentum_buffer, -options.lr());
  } else {
    p.addcdiv_(grad, avg, -options.lr());
  }
}

/// FlatGroups' access to the per-parameter state type `State`; `slot(state, k)` is slot k.
template <class State, class Slot>
const FlatGroups::StateAccess& access_for(Slot slot) {
  static const FlatGroups::StateAccess access{
      [slot](optim::OptimizerParamState& s, std::size_t k) -> torch::Tensor& { return slot(static_cast<State&>(s), k); },
      [] { return std::make_unique<State>(); },
      [](optim::OptimizerParamState& s) -> std::int64_t& { return static_cast<State&>(s).step(); }};
  return access;
}

const FlatGroups::StateAccess& adam_access() {
  return access_for<optim::AdamParamState>([](optim::AdamParamState& a, std::size_t k) -> torch::Tensor& {
    return k == 0 ? a.exp_avg() : k == 1 ? a.exp_avg_sq() : a.max_exp_avg_sq();
  });
}

const FlatGroups::StateAccess& rmsprop_access() {
  return access_for<optim::RMSpropParamState>([](optim::RMSpropParamState& r, std::size_t k) -> torch::Tensor& {
    return k == 0 ? r.square_avg() : k == 1 ? r.momentum_buffer() : r.grad_avg();
  });
}

/// Creates parameter `p`'s state on its first update, as LibTorch does: step 0, the slots in
/// `mask` zero-filled like `p`.
optim::OptimizerParamState& state_of(StateMap& state, const torch::Tensor& p, const std::vector<bool>& mask,
                                     const FlatGroups::StateAccess& access) {
  auto& st = state[state_key(p)];
  if (!st) {
    st = access.create();
    for (std::size_t k = 0; k < mask.size(); ++k)
      if (mask[k]) access.slot(*st, k) = torch::zeros_like(p, torch::MemoryFormat::Preserve);
  }
  return *st;
}

/// One step over every group: each run of consecutive groups with equal options as one flat
/// block, else each parameter with a gradient; `update(param, grad, options, step, slot(0),
/// slot(1), slot(2))`.
template <class Options, class Update>
void each_group(std::vector<optim::OptimizerParamGroup>& groups, FlatGroups& flat, StateMap& state,
                const FlatGroups::StateAccess& access, const char* name,
                std::vector<bool> (*mask_of)(const Options&), Update update) {
  std::vector<torch::Tensor> params;
  for (std::size_t gi = 0; gi < groups.size();) {
    // The run of groups gi … gj − 1 with the options of group gi.
    auto& options = static_cast<Options&>(groups[gi].options());
    std::size_t gj = gi + 1;
    while (gj < groups.size() && static_cast<Options&>(groups[gj].options()) == options) ++gj;
    params.clear();
    for (std::size_t g = gi; g < gj; ++g)
      for (const auto& p : groups[g].params()) {
        TORCH_CHECK(!p.grad().defined() || !p.grad().is_sparse(), name, " does not support sparse gradients");
        params.push_back(p);
      }
    const auto mask = mask_of(options);
    if (auto* b = flat.block(gi, gj - gi, params, mask, state, access)) {
      std::int64_t step = 0;
      for (auto* s : b->states) step = ++access.step(*s);
      update(b->value, b->grad, options, step, b->slots[0], b->slots[1], b->slots[2]);
    } else {
      for (auto& p : params) {
        if (!p.grad().defined()) continue;
        auto& st = state_of(state, p, mask, access);
        const auto step = ++access.step(st);
        update(p, p.grad(), options, step, access.slot(st, 0), access.slot(st, 1), access.slot(st, 2));
      }
    }
    gi = gj;
  }
}

std::vector<bool> adam_slots(const optim::AdamOptions& o) { return {true, true, o.amsgrad()}; }
std::vector<bool> rmsprop_slots(const optim::RMSpropOptions& o) { return {true, o.momentum() > 0, o.centered()}; }

}  // namespace

template <>
torch::Tensor FastAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = closure_loss(closure);
  each_group<optim::AdamOptions>(
      param_groups_, flat_, state_, adam_access(), "Adam", adam_slots,
      [this](torch::Tensor& p, const torch::Tensor& grad, const optim::AdamOptions& o, std::int64_t step,
             torch::Tensor& m, torch::Tensor& v, torch::Tensor& vmax) { adam_update(p, grad, o, step, m, v, vmax, scalars_); });
  return loss;
}

template <>
torch::Tensor FastRMSprop::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = closure_loss(closure);
  each_group<optim::RMSpropOptions>(
      param_groups_, flat_, state_, rmsprop_access(), "RMSprop", rmsprop_slots,
      [this](torch::Tensor& p, const torch::Tensor& grad, const optim::RMSpropOptions& o, std::int64_t,
             torch::Tensor& sq, torch::Tensor& buf, torch::Tensor& avg) { rmsprop_update(p, grad, o, sq, buf, avg, scalars_); });
  return loss;
}

}  // namespace modlab::runner

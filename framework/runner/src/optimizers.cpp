// Adam and RMSprop steps as LibTorch 1.13's, with the constants as cached 0-dim tensors (optimizers.hpp).
#include <torch/torch.h>

#include <cmath>
#include <modlab/runner/optimizers.hpp>
#include <string>

namespace modlab::runner {

const torch::Tensor& ScalarCache::get(double value, const torch::Tensor& like) {
  const auto key = std::make_tuple(value, static_cast<int>(like.scalar_type()), static_cast<int>(like.device().type()),
                                   static_cast<int>(like.device().index()));
  auto it = cache_.find(key);
  if (it == cache_.end()) it = cache_.emplace(key, torch::scalar_tensor(value, like.options())).first;
  return it->second;
}

namespace {
std::string key_of(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

/// The optimizer step's frame, as LibTorch's: the closure's loss (with grad mode on), then
/// `update(param, dense grad, group options, state key)` for every parameter that has a gradient.
template <class Update>
torch::Tensor each_parameter(std::vector<torch::optim::OptimizerParamGroup>& groups,
                             const torch::optim::Optimizer::LossClosure& closure, const char* name, Update update) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = {};
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : groups)
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), name, " does not support sparse gradients");
      update(p, p.grad(), group.options(), key_of(p));
    }
  return loss;
}
}  // namespace

torch::Tensor FastAdam::step(LossClosure closure) {
  return each_parameter(param_groups_, closure, "Adam",
                        [this](torch::Tensor& p, torch::Tensor grad, torch::optim::OptimizerOptions& options,
                               const std::string& key) { update(p, std::move(grad), options, key); });
}

void FastAdam::update(torch::Tensor& p, torch::Tensor grad, torch::optim::OptimizerOptions& group_options,
                      const std::string& key) {
  auto& options = static_cast<torch::optim::AdamOptions&>(group_options);
  if (state_.find(key) == state_.end()) {
    auto state = std::make_unique<torch::optim::AdamParamState>();
    state->step(0);
    state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    if (options.amsgrad()) state->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state_[key] = std::move(state);
  }
  auto& state = static_cast<torch::optim::AdamParamState&>(*state_[key]);
  auto& exp_avg = state.exp_avg();
  auto& exp_avg_sq = state.exp_avg_sq();
  auto& max_exp_avg_sq = state.max_exp_avg_sq();
  state.step(state.step() + 1);
  const auto beta1 = std::get<0>(options.betas());
  const auto beta2 = std::get<1>(options.betas());
  const auto bias_correction1 = 1 - std::pow(beta1, state.step());
  const auto bias_correction2 = 1 - std::pow(beta2, state.step());
  if (options.weight_decay() != 0) grad = grad.add(p, options.weight_decay());
  exp_avg.mul_(scalars_.get(beta1, p)).add_(grad, 1 - beta1);
  exp_avg_sq.mul_(scalars_.get(beta2, p)).addcmul_(grad, grad, 1 - beta2);
  const auto& source = options.amsgrad() ? max_exp_avg_sq : exp_avg_sq;
  if (options.amsgrad()) torch::max_out(max_exp_avg_sq, exp_avg_sq, max_exp_avg_sq);
  const auto denom = source.sqrt()
                         .div_(torch::scalar_tensor(std::sqrt(bias_correction2), p.options()))
                         .add_(scalars_.get(options.eps(), p));
  const auto step_size = options.lr() / bias_correction1;
  p.addcdiv_(exp_avg, denom, -step_size);
}

torch::Tensor FastRMSprop::step(LossClosure closure) {
  return each_parameter(param_groups_, closure, "RMSprop",
                        [this](torch::Tensor& p, torch::Tensor grad, torch::optim::OptimizerOptions& options,
                               const std::string& key) { update(p, std::move(grad), options, key); });
}

void FastRMSprop::update(torch::Tensor& p, torch::Tensor grad, torch::optim::OptimizerOptions& group_options,
                         const std::string& key) {
  auto& options = static_cast<torch::optim::RMSpropOptions&>(group_options);
  if (state_.find(key) == state_.end()) {
    auto state = std::make_unique<torch::optim::RMSpropParamState>();
    state->step(0);
    state->square_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    if (options.momentum() > 0) state->momentum_buffer(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    if (options.centered()) state->grad_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    state_[key] = std::move(state);
  }
  auto& state = static_cast<torch::optim::RMSpropParamState&>(*state_[key]);
  auto& square_avg = state.square_avg();
  const auto alpha = options.alpha();
  state.step(state.step() + 1);
  if (options.weight_decay() != 0) grad = grad.add(p, options.weight_decay());
  square_avg.mul_(scalars_.get(alpha, p)).addcmul_(grad, grad, 1 - alpha);
  torch::Tensor avg;
  if (options.centered()) {
    auto& grad_avg = state.grad_avg();
    grad_avg.mul_(scalars_.get(alpha, p)).add_(grad, 1 - alpha);
    avg = square_avg.addcmul(grad_avg, grad_avg, -1).sqrt_().add_(scalars_.get(options.eps(), p));
  } else {
    avg = square_avg.sqrt().add_(scalars_.get(options.eps(), p));
  }
  if (options.momentum() > 0) {
    auto& buf = state.momentum_buffer();
    buf.mul_(scalars_.get(options.momentum(), p)).addcdiv_(grad, avg);
    p.add_(buf, -options.lr());
  } else {
    p.addcdiv_(grad, avg, -options.lr());
  }
}

}  // namespace modlab::runner

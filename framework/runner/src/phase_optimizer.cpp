#include "phase_optimizer.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/optimizers.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace modlab::runner {

namespace {

double lr_factor(const TrainOptions& o, std::int64_t epoch) {
  if (o.schedule == "step")
    return std::pow(o.gamma, static_cast<double>(epoch / std::max<std::int64_t>(1, o.step_size)));
  if (o.schedule == "exponential") return std::pow(o.gamma, static_cast<double>(epoch));
  return 1.0;  // cosine is handled per group (needs eta_min)
}

double scheduled_lr(const TrainOptions& o, double base, std::int64_t epoch) {
  if (o.schedule == "cosine") {
    double T = static_cast<double>(std::max<std::int64_t>(1, o.epochs));
    return o.eta_min + (base - o.eta_min) * (1.0 + std::cos(M_PI * static_cast<double>(epoch) / T)) / 2.0;
  }
  return base * lr_factor(o, epoch);
}

std::unique_ptr<torch::optim::OptimizerOptions> make_options(const TrainOptions& o, double lr, double wd) {
  namespace optim = torch::optim;
  if (o.optimizer == "adam")
    return std::make_unique<optim::AdamOptions>(
        optim::AdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd).amsgrad(o.amsgrad));
  if (o.optimizer == "adamw")
    return std::make_unique<optim::AdamWOptions>(
        optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd).amsgrad(o.amsgrad));
  if (o.optimizer == "sgd")
    return std::make_unique<optim::SGDOptions>(
        optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(wd));
  return std::make_unique<optim::RMSpropOptions>(
      optim::RMSpropOptions(lr).alpha(o.alpha).eps(o.eps).momentum(o.momentum).weight_decay(wd));
}

}  // namespace

PhaseOptimizer build_optimizer(const TrainOptions& o, const std::vector<ParamGroup>& groups) {
  PhaseOptimizer b;
  std::vector<torch::optim::OptimizerParamGroup> pgs;
  for (const auto& g : groups) {
    if (g.params.empty()) continue;
    double lr = o.lr;
    if (g.lr) lr = *g.lr;
    auto it = o.lr_groups.find(g.name);
    if (it != o.lr_groups.end()) lr = it->second;
    double wd = g.weight_decay ? *g.weight_decay : o.weight_decay;
    pgs.emplace_back(g.params, make_options(o, lr, wd));
    b.base_lr.push_back(lr);
    b.weight_decay.push_back(wd);
    b.params.insert(b.params.end(), g.params.begin(), g.params.end());
  }
  for (const auto& entry : o.lr_groups) {
    const std::string& name = entry.first;  // a structured binding cannot be captured before C++20
    bool known = std::any_of(groups.begin(), groups.end(), [&](const ParamGroup& g) { return g.name == name; });
    if (!known) {
      std::string names;
      for (const auto& g : groups) names += (names.empty() ? "" : ", ") + g.name;
      throw ConfigError("train.lr_groups." + name + ": the model has no parameter group '" + name +
                        "' (it has: " + names + ")");
    }
  }
  b.warmup = o.warmup_steps;
  if (pgs.empty()) return b;
  auto defaults = make_options(o, o.lr, o.weight_decay);
  namespace optim = torch::optim;
  if (o.optimizer == "adam")
    b.opt = std::make_unique<FastAdam>(pgs, static_cast<optim::AdamOptions&>(*defaults));
  else if (o.optimizer == "adamw")
    b.opt = std::make_unique<optim::AdamW>(pgs, static_cast<optim::AdamWOptions&>(*defaults));
  else if (o.optimizer == "sgd")
    b.opt = std::make_unique<optim::SGD>(pgs, static_cast<optim::SGDOptions&>(*defaults));
  else
    b.opt = std::make_unique<FastRMSprop>(pgs, static_cast<optim::RMSpropOptions&>(*defaults));
  return b;
}

void PhaseOptimizer::schedule(const TrainOptions& o, std::int64_t epoch) {
  if (!opt) return;
  auto& groups = opt->param_groups();
  epoch_lr.resize(groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) {
    epoch_lr[g] = scheduled_lr(o, base_lr[g], epoch);
    groups[g].options().set_lr(epoch_lr[g]);
  }
}

void PhaseOptimizer::warm_up(std::int64_t step) {
  if (!opt || warmup <= 0 || epoch_lr.empty()) return;
  const double f = std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(warmup));
  auto& groups = opt->param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(epoch_lr[g] * f);
}

double PhaseOptimizer::lr() const { return opt->param_groups()[0].options().get_lr(); }

void StepCtx::zero_grad() {
  if (o_.opt) modlab::runner::zero_grad(*o_.opt);
}

void StepCtx::apply() {
  if (!o_.opt) return;
  if (clip_ > 0) torch::nn::utils::clip_grad_norm_(o_.params, clip_);
  o_.warm_up(step_);
  o_.opt->step();
  ++step_;
}

void StepCtx::optimize(const Losses& losses) {
  zero_grad();
  auto t = total(losses);
  if (t.requires_grad()) t.backward();
  apply();
}

}  // namespace modlab::runner

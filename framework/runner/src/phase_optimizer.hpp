#pragma once
// The optimizer of one training phase, built from the model's parameter groups and the phase's
// trainer options, its learning-rate schedule, and the StepContext a model's train_step drives.
#include <modlab/model.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace modlab::runner {

struct PhaseOptimizer {
  std::unique_ptr<torch::optim::Optimizer> opt;  ///< null when no group has parameters
  std::vector<double> base_lr;                   ///< per optimizer group
  std::vector<double> weight_decay;              ///< per optimizer group
  std::vector<double> epoch_lr;                  ///< per group, the schedule's value this epoch
  std::int64_t warmup = 0;                       ///< warm-up steps (0 = none)
  std::vector<torch::Tensor> params;             ///< every optimized parameter (for clipping)

  /// Sets each group's learning rate for `epoch` of the schedule.
  void schedule(const TrainOptions& options, std::int64_t epoch);
  /// Scales the epoch's rates by min(1, (step + 1) / warmup) before optimizer step `step` of the run.
  void warm_up(std::int64_t step);
  /// Learning rate of the first group now.
  double lr() const;
};

/// Adam and RMSprop are the trainer's FastAdam / FastRMSprop. ConfigError when `train.lr_groups`
/// names a group the model does not have.
PhaseOptimizer build_optimizer(const TrainOptions& options, const std::vector<ParamGroup>& groups);

/// What a model's train_step sees: zero_grad / apply / optimize on the phase's optimizer, with
/// gradient clipping, counting optimizer steps in `step`.
class StepCtx : public StepContext {
 public:
  StepCtx(PhaseOptimizer& o, double clip, std::int64_t& step, std::int64_t epoch)
      : o_(o), clip_(clip), step_(step), epoch_(epoch) {}
  void zero_grad() override;
  void apply() override;
  void optimize(const Losses& losses) override;
  std::int64_t step() const override { return step_; }
  std::int64_t epoch() const override { return epoch_; }

 private:
  PhaseOptimizer& o_;
  double clip_;
  std::int64_t& step_;
  std::int64_t epoch_;
};

}  // namespace modlab::runner

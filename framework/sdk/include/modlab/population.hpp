#pragma once
/// @file population.hpp
/// Population training: P runs that differ only in their seed (or learning rate) trained as one
/// model whose every parameter is stacked over the members, [P, …shape], on a batch of P·B rows,
/// member m owning rows m·B … m·B + B − 1. The stacked parameters reach the model's layers as
/// [P, …] overrides (nn/layers.hpp: the folded-batch rule), so forward code sees nothing new.
///
/// What a model does to support populations: every loss term it returns is a mean over the batch
/// taken with `member_mean`, which gives one value per member ([P]) under a population and the
/// plain scalar mean otherwise, so each member's gradient is exactly its solo gradient. A term that
/// comes back as a scalar under a population (a loss over the whole folded batch: a batch-level
/// regulariser, say) makes the host run that sweep's members one by one instead; so does a
/// forward that draws random numbers, a trained parameter that no override reaches (one outside
/// the modlab::nn layers and other Overridable modules), or a buffer that differs between members
/// or that the step changes (BatchNorm statistics). `Model::loss`'s default uses `member_mean`.

#include <modlab/export.hpp>

#include <torch/types.h>

#include <cstdint>

namespace modlab {

/// P of the population being trained on this thread, 1 outside any.
MODLAB_API std::int64_t population_members();

/// The mean of `per_example` ([P·B, …], any number of trailing axes) per member: [P] inside a
/// PopulationScope, the scalar mean over everything otherwise. Throws modlab::ArgumentError when
/// the rows do not split into P blocks.
MODLAB_API torch::Tensor member_mean(const torch::Tensor& per_example);

/// Marks this thread as training a population of `members` for its lifetime (the host sets it
/// around a population's training step).
class MODLAB_API PopulationScope {
 public:
  explicit PopulationScope(std::int64_t members);
  ~PopulationScope();
  PopulationScope(const PopulationScope&) = delete;
  PopulationScope& operator=(const PopulationScope&) = delete;

 private:
  std::int64_t outer_;
};

}  // namespace modlab

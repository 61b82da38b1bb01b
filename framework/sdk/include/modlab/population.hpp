#pragma once
/// @file population.hpp
/// Population training: P runs that differ only in their seed (or learning rate, weight decay, or
/// an option declared per member: Options::per_member) trained as one
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
///
/// A model option declared per member that the forward or the loss reads (a temperature, a loss
/// weight) is read there through `member_option`, which gives each member its own value.

#include <modlab/export.hpp>

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace modlab {

/// P of the population being trained on this thread, 1 outside any.
MODLAB_API std::int64_t population_members();

/// The mean of `per_example` ([P·B, …], any number of trailing axes) per member: [P] inside a
/// PopulationScope, the scalar mean over everything otherwise. Throws modlab::ArgumentError when
/// the rows do not split into P blocks.
MODLAB_API torch::Tensor member_mean(const torch::Tensor& per_example);

/// Model option `key` as the forward or the loss of a population's step must use it: `own` (the
/// model's value) as a 0-dim double tensor outside a population and where the members agree on
/// it; inside one where they differ (an option declared per member), each member's value in
/// `like`'s dtype, shaped to broadcast against `like` along `axis`, which holds either the P
/// members (a loss term [P], a stacked parameter [P, …]) or the P·B rows (member m's value
/// repeated over its B rows). Throws modlab::ArgumentError when that axis holds neither.
///
///   logits / modlab::member_option("temperature", temperature_, logits)   // [P·B, E]
MODLAB_API torch::Tensor member_option(const std::string& key, double own, const torch::Tensor& like,
                                       std::int64_t axis = 0);

/// Marks this thread as training a population of `members` for its lifetime (the host sets it
/// around a population's training step), with the members' values of the model options they
/// differ in (`member_option`).
class MODLAB_API PopulationScope {
 public:
  explicit PopulationScope(std::int64_t members, std::map<std::string, std::vector<double>> options = {});
  ~PopulationScope();
  PopulationScope(const PopulationScope&) = delete;
  PopulationScope& operator=(const PopulationScope&) = delete;

 private:
  std::int64_t outer_;
  std::map<std::string, std::vector<double>> outer_options_;
};

}  // namespace modlab

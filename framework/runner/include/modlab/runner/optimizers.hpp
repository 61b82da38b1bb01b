#pragma once
/// @file optimizers.hpp
/// Adam and RMSprop with the exact arithmetic, state and serialization of torch::optim::Adam /
/// RMSprop, minus a cost that dominates small models: LibTorch's step wraps every constant
/// (β₁, β₂, α, momentum, ε, √(1 − β₂ᵗ)) as a double tensor and converts it to the parameter's type
/// before each in-place update, several extra tensor copies per parameter and step. These steps
/// use 0-dim tensors of the parameter's type, made once per value, which give bit-identical
/// results (the converted constant is the same float).

#include <torch/optim/adam.h>
#include <torch/optim/rmsprop.h>

#include <map>
#include <string>
#include <tuple>

namespace modlab::runner {

/// 0-dim tensors holding constants, by (value, dtype, device type, device index).
class ScalarCache {
 public:
  const torch::Tensor& get(double value, const torch::Tensor& like);

 private:
  std::map<std::tuple<double, int, int, int>, torch::Tensor> cache_;
};

class FastAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  /// One parameter's update (state created on first use, as LibTorch does).
  void update(torch::Tensor& p, torch::Tensor grad, torch::optim::OptimizerOptions& group_options,
              const std::string& key);
  ScalarCache scalars_;
};

class FastRMSprop : public torch::optim::RMSprop {
 public:
  using torch::optim::RMSprop::RMSprop;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  /// One parameter's update (state created on first use, as LibTorch does).
  void update(torch::Tensor& p, torch::Tensor grad, torch::optim::OptimizerOptions& group_options,
              const std::string& key);
  ScalarCache scalars_;
};

}  // namespace modlab::runner

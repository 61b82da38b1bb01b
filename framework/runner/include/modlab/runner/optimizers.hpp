#pragma once
/// @file optimizers.hpp
/// Adam and RMSprop with the exact arithmetic, state and serialization of torch::optim::Adam /
/// RMSprop, minus two costs that dominate small models, where a tensor op's framework overhead
/// far outweighs its arithmetic (figures: bench/README.md, "moe training epoch"):
///  - LibTorch's step wraps every constant (β₁, β₂, α, momentum, ε, √(1 − β₂ᵗ)) as a double tensor
///    and converts it to the parameter's type before each in-place update. These steps use 0-dim
///    tensors of the parameter's type, made once per value: the converted constant is the same
///    float, so results are bit-identical.
///  - LibTorch updates parameter by parameter, 6–8 ops each. These steps keep each parameter
///    group's values, gradients and state as slices of flat buffers (`FlatGroups`) and update a
///    whole group with the same 6–8 elementwise ops. Elementwise arithmetic does not depend on how
///    the elements are grouped, so results are again bit-identical.

#include <torch/optim/adam.h>
#include <torch/optim/rmsprop.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace modlab::runner {

/// An optimizer's per-parameter state map: keyed by the parameter's TensorImpl address as a string
/// in LibTorch 1.x, by the address itself in 2.x.
using OptimizerStateMap = std::remove_reference_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;

/// The key of parameter `p` in an OptimizerStateMap, for either LibTorch.
OptimizerStateMap::key_type state_key(const torch::Tensor& p);

/// 0-dim tensors holding constants, by (value, dtype, device type, device index).
class ScalarCache {
 public:
  const torch::Tensor& get(double value, const torch::Tensor& like);

 private:
  std::map<std::tuple<double, int, int, int>, torch::Tensor> cache_;
};

/// Parameter groups stored as flat buffers. A run of consecutive groups with equal options (say
/// "gate" and "experts" at the same learning rate) whose parameters are dense, contiguous, of one
/// dtype and device, and all have gradients, becomes one block: `block` moves every parameter's
/// values (with `set_data`), gradient and optimizer state slots into slices of one flat tensor
/// each. The model's parameters stay the same tensors (same identity, same values), now aliasing
/// the flat storage. Each later step checks, by pointer comparison only, that the slices still
/// hold: a gradient replaced by assignment is copied back into its slice; parameters given new
/// storage (a checkpoint loaded into the model) or groups changed rebuild the block from the
/// current values and state. Groups that cannot be flattened, or a step where a parameter has no
/// gradient, are updated parameter by parameter on the same state, exactly as LibTorch would.
class FlatGroups {
 public:
  struct Block {
    std::size_t groups = 0;  ///< number of consecutive groups, from the block's first
    std::vector<torch::Tensor> params;
    std::vector<torch::optim::OptimizerParamState*> states;  ///< owned by the optimizer's state map
    std::vector<std::int64_t> offsets;                      ///< element offset of each parameter
    std::vector<bool> slot_mask;                            ///< which state slots the options use
    torch::Tensor value, grad;
    std::vector<torch::Tensor> slots;  ///< flat state slots (undefined where unused)
  };
  /// Access to one optimizer's per-parameter state: `slot(state, i)` is state slot i;
  /// `create()` makes a fresh state at step 0 (slots undefined).
  struct StateAccess {
    std::function<torch::Tensor&(torch::optim::OptimizerParamState&, std::size_t)> slot;
    std::function<std::unique_ptr<torch::optim::OptimizerParamState>()> create;
    std::function<std::int64_t&(torch::optim::OptimizerParamState&)> step;
  };

  /// The flat block of groups `first` … `first + groups − 1` holding `params` (theirs, in order),
  /// (re)built if needed; nullptr when they are to be updated parameter by parameter this step.
  Block* block(std::size_t first, std::size_t groups, const std::vector<torch::Tensor>& params,
               const std::vector<bool>& slot_mask, OptimizerStateMap& state, const StateAccess& access);
  /// Forgets every block (the optimizer's state was replaced).
  void clear() { blocks_.clear(); }
  /// Optimizer::zero_grad, with one zero_ per flat block whose gradient slices are in place.
  void zero_grad(std::vector<torch::optim::OptimizerParamGroup>& groups);

 private:
  std::map<std::size_t, Block> blocks_;
};

/// LibTorch's `Base` optimizer (Adam or RMSprop): the same arithmetic, state and serialization,
/// with cached constants and flat groups (see the file comment). `step` is defined for each base
/// in optimizers.cpp.
template <class Base>
class FlatOptimizer : public Base {
 public:
  using Base::Base;
  torch::Tensor step(typename Base::LossClosure closure = nullptr) override;
  void load(torch::serialize::InputArchive& archive) override {
    Base::load(archive);
    flat_.clear();  // the state the blocks aliased was replaced
  }
  /// Optimizer::zero_grad (not virtual there) in one op per flat group.
  void zero_grad() { flat_.zero_grad(this->param_groups_); }

 private:
  ScalarCache scalars_;
  FlatGroups flat_;
};

template <>
torch::Tensor FlatOptimizer<torch::optim::Adam>::step(LossClosure closure);
template <>
torch::Tensor FlatOptimizer<torch::optim::RMSprop>::step(LossClosure closure);

using FastAdam = FlatOptimizer<torch::optim::Adam>;
using FastRMSprop = FlatOptimizer<torch::optim::RMSprop>;

/// `opt.zero_grad()`, through FastAdam / FastRMSprop's flat version where `opt` is one; gradients
/// are zeroed in place, never set to none, on LibTorch 1 and 2 alike.
void zero_grad(torch::optim::Optimizer& opt);

}  // namespace modlab::runner

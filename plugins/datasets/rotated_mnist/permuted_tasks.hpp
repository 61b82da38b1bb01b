#pragma once
// Permuted-MNIST tasks as views (masked_analyzer §4.3 (d)): task t shows every image of a split
// with its pixels permuted by its own order, without storing another copy of the images.
#include <modlab/dataset.hpp>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace modlab::mnist {

/// The rows of `parent` under each of T pixel orders: item i is parent row i mod n (n = parent's
/// size) in task i / n, its pixels permuted (output pixel q = input pixel order[q]), its group the
/// task's id. With one order it is one permuted task; with several, a test set of all of them.
class PermutedTasksSplit : public Split {
 public:
  PermutedTasksSplit(std::shared_ptr<const Split> parent, std::vector<torch::Tensor> orders,
                     std::vector<std::int64_t> group_ids)
      : parent_(std::move(parent)), orders_(torch::stack(orders)), groups_(torch::tensor(group_ids, torch::kLong)) {}

  std::int64_t size() const override { return parent_->size() * orders_.size(0); }

  Batch get(const torch::Tensor& indices, bool training = false) const override {
    const auto idx = indices.to(torch::kLong).cpu();
    const std::int64_t n = parent_->size();
    const auto task = torch::div(idx, n, "floor");
    Batch b = parent_->get(idx.remainder(n), training);
    const auto shape = b.inputs.sizes().vec();
    const auto flat = b.inputs.reshape({b.size(), -1});
    b.inputs = flat.gather(1, orders_.index_select(0, task).to(flat.device())).reshape(shape);
    b.groups = groups_.index_select(0, task).to(b.targets.device());
    b.indices = indices;
    return b;
  }

 private:
  std::shared_ptr<const Split> parent_;
  torch::Tensor orders_;  ///< [T, pixels]
  torch::Tensor groups_;  ///< [T]
};

}  // namespace modlab::mnist

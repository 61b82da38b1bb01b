#pragma once
/// @file batch.hpp
/// A batch of examples as whole tensors. Datasets slice batches out of contiguous tensors
/// (index_select), never collate example by example.

#include <modlab/export.hpp>
#include <torch/types.h>

#include <cstdint>

namespace modlab {

/// A batch. Only `inputs` and `targets` are always defined; the rest are undefined tensors when
/// the dataset has no such thing.
struct MODLAB_API Batch {
  torch::Tensor inputs;          ///< [B, ...input_shape] (float), or [B, L] token ids (int64) for sequences
  torch::Tensor targets;         ///< [B] class ids (int64), [B, outputs] (float) for multi-label/regression, [B, Lt] tokens
  torch::Tensor groups;          ///< [B] int64 group / sub-task / rotation id (metadata), or undefined
  torch::Tensor lengths;         ///< [B] int64 valid input length for sequences, or undefined
  torch::Tensor target_lengths;  ///< [B] int64 valid target length for sequences, or undefined
  torch::Tensor indices;         ///< [B] int64 index of each example in its split
  /// [B, S, ...targets] the target each example would have as an example of sub-task s (add/mul:
  /// the sum and the product of its operands), for the dataset's S sub-tasks; or undefined.
  torch::Tensor subtask_targets;

  /// Number of examples (first dimension of `inputs`).
  std::int64_t size() const;
  /// Copy of this batch with every defined tensor moved to `device`.
  Batch to(const torch::Device& device, bool non_blocking = false) const;
  /// Rows `index` (int64, [k]) of every defined tensor.
  Batch select(const torch::Tensor& index) const;
};

}  // namespace modlab

#pragma once
/// @file dataset.hpp
/// What a dataset plugin implements: a description (`DatasetSpec`) and named splits that hand
/// out batches by index.

#include <modlab/export.hpp>
#include <modlab/batch.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab {

/// What the targets are and so which default loss / accuracy applies.
enum class TaskKind {
  Classification,  ///< targets [B] int64 in [0, num_classes)
  MultiLabel,      ///< targets [B, num_outputs] float in {0,1} (independent bits, BCE)
  Regression,      ///< targets [B, num_outputs] float
  Sequence,        ///< inputs [B, L] token ids with lengths; targets [B, Lt] token ids with target_lengths
  MultiClass       ///< targets [B, num_outputs] int64, each in [0, num_classes) (the digits of a result);
                   ///< prediction [B, num_outputs, num_classes]; an example is correct when every output is
};

MODLAB_API const char* task_kind_name(TaskKind k);

/// A part of the task that can be trained and evaluated on its own (one tuple of a tuple sum, the
/// additions of an add/mul task, a pair of classes). An analysis trains on it and measures it by
/// restricting the full task: the examples it keeps, the outputs it scores and the inputs it blanks.
struct MODLAB_API SubTask {
  std::string name;         ///< what configs name it by, e.g. "pair1", "add"
  std::string description;  ///< one line
  /// Examples of the sub-task: those whose `Batch::groups` is one of these (empty: every example).
  std::vector<std::int64_t> groups;
  /// Examples of the sub-task: those whose class target is one of these (Classification; empty: every example).
  std::vector<std::int64_t> classes;
  /// Outputs the sub-task is scored on (MultiClass / MultiLabel output indices; empty: all).
  std::vector<std::int64_t> outputs;
  /// Input elements belonging to the *other* sub-tasks, zeroed while this one is trained or
  /// evaluated: flat indices into one example's input (row-major over input_shape).
  std::vector<std::int64_t> zeroed_inputs;
  /// A split holding only this sub-task's training examples, so that batches keep their size
  /// ("" = filter the training split's batches by `groups` / `classes`).
  std::string train_split;
};

/// Everything a model needs to know to shape itself for a dataset.
struct MODLAB_API DatasetSpec {
  std::string name;                       ///< plugin name and variant, e.g. "toy/multi_class"
  std::vector<std::int64_t> input_shape;  ///< per example, e.g. {2} or {1, 28, 28}; {max_len} for sequences
  TaskKind task = TaskKind::Classification;
  std::int64_t num_classes = 0;           ///< Classification
  std::int64_t num_outputs = 0;           ///< MultiLabel / Regression
  std::vector<std::string> class_names;   ///< optional, one per class
  std::string group_kind;                 ///< what `Batch::groups` means ("rotation", "task", "attribute_group"), "" if none
  std::vector<std::string> group_names;   ///< name of each group id
  std::vector<std::string> vocabulary;    ///< Sequence: token id → string; empty otherwise
  std::int64_t pad_token = 0;             ///< Sequence: id used for padding
  std::vector<std::string> splits;        ///< split names; the first is the training split
  std::map<std::string, std::string> info;  ///< free-form facts worth recording (source files, sizes)
  std::vector<SubTask> subtasks;          ///< the task's separable parts, if it has any (see SubTask)

  /// Number of input features per example (product of input_shape).
  std::int64_t input_numel() const;
};

/// One split (train / val / test ...) as random-access batches.
class MODLAB_API Split {
 public:
  virtual ~Split();
  /// Number of examples.
  virtual std::int64_t size() const = 0;
  /// The examples at `indices` (int64 [B], values in [0, size())). `training` is true when the
  /// batch feeds an optimizer step, so a split may apply training-only augmentation or noise.
  virtual Batch get(const torch::Tensor& indices, bool training = false) const = 0;
  /// Every example in order (`get(arange(size()))`).
  virtual Batch all() const;
  /// The length in tokens of the examples at `indices` (int64 [B]; a sequence pair counts both
  /// sides), read without building the batch. Training with `bucket` sorts by it. The default
  /// returns an undefined tensor: the split has no lengths.
  virtual torch::Tensor lengths(const torch::Tensor& indices) const;
};

/// A split backed by whole tensors: `get` is index_select on each defined tensor of `data`.
/// Optional additive Gaussian noise on training inputs (for datasets that train on noisy inputs).
class MODLAB_API TensorSplit : public Split {
 public:
  explicit TensorSplit(Batch data, double train_noise_std = 0.0);
  ~TensorSplit() override;
  std::int64_t size() const override;
  Batch get(const torch::Tensor& indices, bool training = false) const override;
  Batch all() const override;
  /// `lengths` (plus `target_lengths`) of `data`, when it has them.
  torch::Tensor lengths(const torch::Tensor& indices) const override;
  const Batch& data() const { return data_; }

 private:
  Batch data_;
  double train_noise_std_;
  bool identity_indices_ = false;  ///< data_.indices is 0 … n − 1: a batch's indices are the requested ones
};

/// A dataset: a spec plus named splits. Built once per run by a factory, then read-only.
class MODLAB_API Dataset {
 public:
  virtual ~Dataset();
  virtual DatasetSpec spec() const = 0;
  /// The split called `name`; throws DataError naming the known splits when there is none.
  virtual std::shared_ptr<const Split> split(const std::string& name) const = 0;
};

/// The rows `indices` of another split, renumbered 0 … n − 1 (a class-restricted training set
/// without copying the images). `Batch::indices` are the parent's.
class MODLAB_API SubsetSplit : public Split {
 public:
  SubsetSplit(std::shared_ptr<const Split> parent, torch::Tensor indices);
  ~SubsetSplit() override;
  std::int64_t size() const override;
  Batch get(const torch::Tensor& indices, bool training = false) const override;
  torch::Tensor lengths(const torch::Tensor& indices) const override;

 private:
  std::shared_ptr<const Split> parent_;
  torch::Tensor indices_;
};

/// A Dataset that holds a fixed map of TensorSplits; enough for most plugins.
class MODLAB_API TensorDataset : public Dataset {
 public:
  TensorDataset(DatasetSpec spec, std::map<std::string, std::shared_ptr<const Split>> splits);
  ~TensorDataset() override;
  DatasetSpec spec() const override { return spec_; }
  std::shared_ptr<const Split> split(const std::string& name) const override;

 private:
  DatasetSpec spec_;
  std::map<std::string, std::shared_ptr<const Split>> splits_;
};

}  // namespace modlab

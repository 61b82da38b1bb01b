#pragma once
/// @file arithmetic_split.hpp
/// The examples of the tuple-addition and add/mul tasks, kept as raw operands (a few bytes per
/// example) and one-hot encoded only for the rows a batch asks for, so that a million training
/// examples cost megabytes rather than the hundreds of megabytes their encoded floats would.

#include <modlab/dataset.hpp>

#include <cstdint>
#include <vector>

namespace modlab::tuple_rnn {

enum class Task { Tuple, AddMul };
enum class Encoding { FF, Together, OnlyOneIo };

constexpr std::int64_t kDigits = 2;         // digits per number (results are mod 10^kDigits)
constexpr std::int64_t kTuples = 2;         // tuple task: independent additions per example
constexpr std::int64_t kStepsPerTuple = 3;  // RNN encodings: time steps per tuple (add/mul: per example)
constexpr std::int64_t kBase = 10;
constexpr std::int64_t kModulus = 100;      // 10^kDigits: operands in [0, 100), results mod 100
constexpr std::int64_t kOps = 2;            // add/mul: 0 = add, 1 = mul

/// What one encoded example looks like for a task and an encoding.
struct Layout {
  Task task = Task::Tuple;
  Encoding encoding = Encoding::FF;

  /// Features of one step: 8 one-hot digits (80) for tuple, 4 digits + op (42) for add/mul.
  std::int64_t features() const;
  /// Time steps of the RNN encodings (0 for ff).
  std::int64_t steps() const;
  /// MultiClass outputs (result digits): 4 for tuple, 2 for add/mul.
  std::int64_t outputs() const;
  /// {features} for ff, {steps, features} otherwise.
  std::vector<std::int64_t> input_shape() const;
  std::int64_t input_numel() const;
  /// Raw bytes per example: a0 b0 a1 b1 (tuple) or a b op (add/mul).
  std::int64_t width() const;
  /// Flat input indices (row-major over input_shape) of tuple t's features, at every step.
  std::vector<std::int64_t> tuple_inputs(std::int64_t t) const;
  /// The step at which each output is read (RNN encodings; empty for ff).
  std::vector<std::int64_t> output_steps() const;
};

/// The raw operands of `n` examples, drawn from numpy's RandomState(seed) as the reference does:
/// tuple: randint(0, 100, (n, 2, 2)); add/mul: randint(0, 100, (n, 2)), then randint(0, 2, n).
std::vector<std::uint8_t> draw_examples(Task task, std::int64_t n, std::uint32_t seed);

/// A split of raw examples, encoded per batch. Batches carry `indices` = the requested rows; for
/// add/mul also `groups` = op and `subtask_targets` [B, 2, 2] = the digits of (a + b, a·b) mod 100.
class ArithmeticSplit : public Split {
 public:
  ArithmeticSplit(Layout layout, std::vector<std::uint8_t> raw);
  std::int64_t size() const override;
  Batch get(const torch::Tensor& indices, bool training = false) const override;
  /// add/mul: the rows whose op is `op`, in order (int64).
  torch::Tensor rows_with_op(std::int64_t op) const;

 private:
  void encode(std::int64_t row, float* x, std::int64_t* y) const;
  void encode_tuple(const std::uint8_t* e, float* x, std::int64_t* y) const;
  void encode_addmul(const std::uint8_t* e, float* x, std::int64_t* y) const;

  Layout layout_;
  std::vector<std::uint8_t> raw_;  // [size, width] row-major
};

}  // namespace modlab::tuple_rnn

// Raw examples of the tuple and add/mul tasks and their one-hot encodings (see README.md).
#include "arithmetic_split.hpp"

#include "../toy/numpy_random.hpp"

#include <modlab/errors.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <utility>

namespace modlab::tuple_rnn {
namespace {

/// Digit k of n, least significant first.
std::int64_t digit(std::int64_t n, std::int64_t k) {
  for (; k > 0; --k) n /= kBase;
  return n % kBase;
}

/// One-hot digits of `value` into the slots `slot`, `slot` + 1 (10 features each), LSB first.
void one_hot_number(std::int64_t value, std::int64_t slot, float* out) {
  for (std::int64_t k = 0; k < kDigits; ++k) out[(slot + k) * kBase + digit(value, k)] = 1.0f;
}

void result_digits(std::int64_t value, std::int64_t* out) {
  for (std::int64_t k = 0; k < kDigits; ++k) out[k] = digit(value, k);
}

std::int64_t apply_op(std::int64_t a, std::int64_t b, std::int64_t op) { return (op == 0 ? a + b : a * b) % kModulus; }

constexpr std::int64_t kTupleFeatures = kTuples * 2 * kDigits * kBase;  // 80: 2 operands of 2 digits per tuple
constexpr std::int64_t kPerTuple = kTupleFeatures / kTuples;            // 40
constexpr std::int64_t kAddMulFeatures = 2 * kDigits * kBase + kOps;    // 42

}  // namespace

// ----------------------------------------------------------------------------------- Layout

std::int64_t Layout::features() const { return task == Task::Tuple ? kTupleFeatures : kAddMulFeatures; }

std::int64_t Layout::steps() const {
  if (encoding == Encoding::FF) return 0;
  return task == Task::Tuple ? kStepsPerTuple * kTuples : kStepsPerTuple;
}

std::int64_t Layout::outputs() const { return task == Task::Tuple ? kTuples * kDigits : kDigits; }

std::vector<std::int64_t> Layout::input_shape() const {
  if (encoding == Encoding::FF) return {features()};
  return {steps(), features()};
}

std::int64_t Layout::input_numel() const { return std::max<std::int64_t>(steps(), 1) * features(); }

std::int64_t Layout::width() const { return task == Task::Tuple ? kTuples * 2 : 3; }

std::vector<std::int64_t> Layout::tuple_inputs(std::int64_t t) const {
  std::vector<std::int64_t> out;
  for (std::int64_t s = 0; s < std::max<std::int64_t>(steps(), 1); ++s)
    for (std::int64_t f = t * kPerTuple; f < (t + 1) * kPerTuple; ++f) out.push_back(s * features() + f);
  return out;
}

std::vector<std::int64_t> Layout::output_steps() const {
  std::vector<std::int64_t> out;
  if (encoding == Encoding::FF) return out;
  for (std::int64_t o = 0; o < outputs(); ++o) {
    // only_one_io: tuple t's result is read at the last of its own steps, 3(t+1) − 1.
    const std::int64_t t = o / kDigits;
    out.push_back(encoding == Encoding::OnlyOneIo ? kStepsPerTuple * (t + 1) - 1 : steps() - 1);
  }
  return out;
}

// ---------------------------------------------------------------------------------- drawing

std::vector<std::uint8_t> draw_examples(Task task, std::int64_t n, std::uint32_t seed) {
  toy::NumpyRandomState rs(seed);
  if (task == Task::Tuple) {
    // randint(0, 100, (n, 2, 2)) in C order: a0 b0 a1 b1 per example, which is also the raw layout.
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(n * kTuples * 2));
    for (auto& v : raw) v = static_cast<std::uint8_t>(rs.randint(kModulus));
    return raw;
  }
  // randint(0, 100, (n, 2)) for every example first, then randint(0, 2, n) for the ops.
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(n * 3));
  for (std::int64_t i = 0; i < n; ++i) {
    raw[3 * i] = static_cast<std::uint8_t>(rs.randint(kModulus));
    raw[3 * i + 1] = static_cast<std::uint8_t>(rs.randint(kModulus));
  }
  for (std::int64_t i = 0; i < n; ++i) raw[3 * i + 2] = static_cast<std::uint8_t>(rs.randint(kOps));
  return raw;
}

// ------------------------------------------------------------------------------------ split

ArithmeticSplit::ArithmeticSplit(Layout layout, std::vector<std::uint8_t> raw)
    : layout_(layout), raw_(std::move(raw)) {}

std::int64_t ArithmeticSplit::size() const { return static_cast<std::int64_t>(raw_.size()) / layout_.width(); }

torch::Tensor ArithmeticSplit::rows_with_op(std::int64_t op) const {
  std::vector<std::int64_t> rows;
  for (std::int64_t i = 0; i < size(); ++i)
    if (raw_[static_cast<std::size_t>(i * 3 + 2)] == op) rows.push_back(i);
  return torch::tensor(rows, torch::kLong);
}

Batch ArithmeticSplit::get(const torch::Tensor& indices, bool) const {
  if (indices.dim() != 1) throw DataError("tuple_rnn: batch indices must be one-dimensional");
  const auto idx = indices.to(torch::kLong).cpu().contiguous().clone();
  const std::int64_t n = idx.size(0), numel = layout_.input_numel(), outputs = layout_.outputs();
  std::vector<std::int64_t> shape{n};
  for (auto d : layout_.input_shape()) shape.push_back(d);
  Batch b;
  b.inputs = torch::zeros(shape, torch::kFloat);
  b.targets = torch::empty({n, outputs}, torch::kLong);
  b.indices = idx;
  const auto* rows = idx.data_ptr<std::int64_t>();
  for (std::int64_t k = 0; k < n; ++k) {
    if (rows[k] < 0 || rows[k] >= size())
      throw DataError("tuple_rnn: index " + std::to_string(rows[k]) + " outside the split (size " +
                      std::to_string(size()) + ")");
    encode(rows[k], b.inputs.data_ptr<float>() + k * numel, b.targets.data_ptr<std::int64_t>() + k * outputs);
  }
  if (layout_.task == Task::AddMul) {
    b.groups = torch::empty({n}, torch::kLong);
    b.subtask_targets = torch::empty({n, kOps, kDigits}, torch::kLong);
    auto* g = b.groups.data_ptr<std::int64_t>();
    auto* st = b.subtask_targets.data_ptr<std::int64_t>();
    for (std::int64_t k = 0; k < n; ++k) {
      const std::uint8_t* e = raw_.data() + rows[k] * 3;
      g[k] = e[2];
      for (std::int64_t op = 0; op < kOps; ++op)
        result_digits(apply_op(e[0], e[1], op), st + (k * kOps + op) * kDigits);
    }
  }
  return b;
}

void ArithmeticSplit::encode(std::int64_t row, float* x, std::int64_t* y) const {
  const std::uint8_t* e = raw_.data() + row * layout_.width();
  if (layout_.task == Task::Tuple) encode_tuple(e, x, y);
  else encode_addmul(e, x, y);
}

void ArithmeticSplit::encode_tuple(const std::uint8_t* e, float* x, std::int64_t* y) const {
  const std::int64_t steps = std::max<std::int64_t>(layout_.steps(), 1), f = layout_.features();
  for (std::int64_t s = 0; s < steps; ++s)
    for (std::int64_t t = 0; t < kTuples; ++t) {
      // only_one_io shows tuple t during its own steps only; the other encodings show both always.
      if (layout_.encoding == Encoding::OnlyOneIo && s / kStepsPerTuple != t) continue;
      one_hot_number(e[2 * t], 2 * kDigits * t, x + s * f);
      one_hot_number(e[2 * t + 1], 2 * kDigits * t + kDigits, x + s * f);
    }
  for (std::int64_t t = 0; t < kTuples; ++t) result_digits(apply_op(e[2 * t], e[2 * t + 1], 0), y + t * kDigits);
}

void ArithmeticSplit::encode_addmul(const std::uint8_t* e, float* x, std::int64_t* y) const {
  const std::int64_t steps = std::max<std::int64_t>(layout_.steps(), 1), f = layout_.features();
  for (std::int64_t s = 0; s < steps; ++s) {
    one_hot_number(e[0], 0, x + s * f);
    one_hot_number(e[1], kDigits, x + s * f);
    x[s * f + 2 * kDigits * kBase + e[2]] = 1.0f;
  }
  result_digits(apply_op(e[0], e[1], e[2]), y);
}

}  // namespace modlab::tuple_rnn

#pragma once
/// @file boolean_table.hpp
/// Truth tables of the hierarchically modular Boolean tasks (hier_modular §5.1). Header-only and
/// free of LibTorch so tests can check the functions row by row.
///
/// Rows are the 64 inputs x ∈ {0,1}⁶ in itertools.product order: x0 is the most significant bit
/// of the row index. Layer 1 computes three XOR modules f1 = x0⊕x1, f2 = x2⊕x3, f3 = x4⊕x5.
///   [6,2,2]      y = [f1, f2]
///   [6,3,2,2]    y = [f1∧f2, f2∧f3]
///   [6,3,3,2,2]  g1 = f1∧f2, g2 = f2∧f3, g3 = f1∧f3;  y = [g1∨g3, g2∨g3]
/// Multi-task variants (task t > 0) reuse the same layer-1 modules with rotated routing: task t
/// feeds (f_{1+t}, f_{2+t}, f_{3+t}) (indices mod 3) to the upper layers in place of (f1, f2, f3).

#include <modlab/errors.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace modlab::toy {

/// Number of rows of every Boolean truth table.
inline constexpr int kBooleanRows = 64;
/// Number of input bits and output bits.
inline constexpr int kBooleanInputs = 6;
inline constexpr int kBooleanOutputs = 2;
/// How many tasks the multi-task variant defines (rotations of the three layer-1 modules).
inline constexpr int kBooleanMaxTasks = 3;

/// The structures a Boolean task can have.
inline const std::vector<std::vector<std::int64_t>>& boolean_structures() {
  static const std::vector<std::vector<std::int64_t>> s = {{6, 2, 2}, {6, 3, 2, 2}, {6, 3, 3, 2, 2}};
  return s;
}

/// "6,3,2,2" for {6, 3, 2, 2}.
inline std::string structure_text(const std::vector<std::int64_t>& structure) {
  std::string out;
  for (std::size_t i = 0; i < structure.size(); ++i) out += (i ? "," : "") + std::to_string(structure[i]);
  return out;
}

/// "[6,2,2], [6,3,2,2], [6,3,3,2,2]": for error messages.
inline std::string supported_structures_text() {
  std::string out;
  for (const auto& s : boolean_structures()) out += (out.empty() ? "[" : ", [") + structure_text(s) + "]";
  return out;
}

/// Bit i (0..5) of input row `row`; x0 is the most significant bit.
inline int boolean_input_bit(int row, int i) { return (row >> (kBooleanInputs - 1 - i)) & 1; }

/// The two output bits of `row` for `structure` and multi-task variant `task` (0 = the reference
/// task). Throws modlab::ArgumentError for an unsupported structure or task.
inline std::array<int, kBooleanOutputs> boolean_outputs(const std::vector<std::int64_t>& structure, int row,
                                                        int task = 0) {
  if (row < 0 || row >= kBooleanRows) throw modlab::ArgumentError("boolean row out of range");
  if (task < 0 || task >= kBooleanMaxTasks) throw modlab::ArgumentError("boolean task id out of range");
  const auto x = [row](int i) { return boolean_input_bit(row, i); };
  const std::array<int, 3> layer1 = {x(0) ^ x(1), x(2) ^ x(3), x(4) ^ x(5)};
  const int f1 = layer1[(0 + task) % 3], f2 = layer1[(1 + task) % 3], f3 = layer1[(2 + task) % 3];
  const auto& all = boolean_structures();
  if (structure == all[0]) return {f1, f2};
  if (structure == all[1]) return {f1 & f2, f2 & f3};
  if (structure == all[2]) {
    const int g1 = f1 & f2, g2 = f2 & f3, g3 = f1 & f3;
    return {g1 | g3, g2 | g3};
  }
  throw modlab::ArgumentError("unsupported boolean structure [" + structure_text(structure) +
                              "] (supported: " + supported_structures_text() + ")");
}

/// A whole truth table: inputs[row] and outputs[row] for the 64 rows in order.
struct BooleanTable {
  std::vector<std::array<int, kBooleanInputs>> inputs;
  std::vector<std::array<int, kBooleanOutputs>> outputs;
};

/// The truth table of `structure` for multi-task variant `task`.
inline BooleanTable boolean_truth_table(const std::vector<std::int64_t>& structure, int task = 0) {
  BooleanTable t;
  t.inputs.resize(kBooleanRows);
  t.outputs.resize(kBooleanRows);
  for (int r = 0; r < kBooleanRows; ++r) {
    for (int i = 0; i < kBooleanInputs; ++i) t.inputs[r][i] = boolean_input_bit(r, i);
    t.outputs[r] = boolean_outputs(structure, r, task);
  }
  return t;
}

}  // namespace modlab::toy

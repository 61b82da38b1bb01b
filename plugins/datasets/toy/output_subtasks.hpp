#pragma once
/// @file output_subtasks.hpp
/// The sub-tasks of a multi-label task whose outputs are separate functions of the input (the
/// hierarchically modular Boolean tasks): one per output, every example kept, only that output
/// scored. Shared by the toy plugin's `boolean` task and rotated_mnist's `digit_pairs` mode.

#include <modlab/dataset.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace modlab::toy {

/// "output0", "output1", ...: sub-task k is scored on output k alone.
inline std::vector<SubTask> output_subtasks(std::int64_t num_outputs, const std::string& what) {
  std::vector<SubTask> out;
  for (std::int64_t k = 0; k < num_outputs; ++k) {
    SubTask s;
    s.name = "output" + std::to_string(k);
    s.description =
        "output y" + std::to_string(k) + " of " + what + " alone (every example, the other outputs unscored)";
    s.outputs = {k};
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace modlab::toy

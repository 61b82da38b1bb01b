#pragma once
// Checkpoints of a run in progress: model, optimizer, the global RNG state, the position in the
// run, and the run's metric history (so the run file can be rebuilt on resume). Written to a temp
// name and renamed, so a killed run leaves the previous checkpoint intact.
#include <modlab/model.hpp>
#include <modlab/runner/h5.hpp>

#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>

#include <cstdint>
#include <string>

namespace modlab::runner {

/// Where a run stands.
struct Position {
  std::int64_t phase = 0;         ///< phase index
  std::int64_t epoch = 0;         ///< next epoch to run within that phase
  std::int64_t step = 0;          ///< optimizer steps so far
  std::int64_t global_epoch = 0;  ///< metric rows written
};

/// `opt` may be null (at a phase's end the next phase builds its own optimizer).
void save_checkpoint(const std::string& path, Model& model, torch::optim::Optimizer* opt, const Position& pos,
                     const RunHistory& history);

/// Restores model weights, the global RNG, `pos` and `history`; the optimizer state, if saved, goes
/// to `opt_state` (`has_opt` says whether). Throws on an unreadable or inconsistent file.
bool load_checkpoint(const std::string& path, Model& model, Position& pos, RunHistory& history,
                     torch::serialize::InputArchive& opt_state, bool& has_opt);

}  // namespace modlab::runner

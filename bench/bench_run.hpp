// A run request for benchmarks that train through modlab's real trainer (execute_run) in process.
#pragma once

#include <modlab/config.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>
#include <modlab/runner/remove_tree.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace bench {

/// A request for the run `cfg` (seed 0, `threads` intra-op threads) writing into a fresh
/// temporary folder named `name` (removed first; `req.out_dir`, remove it when done).
inline modlab::runner::RunRequest run_request(const modlab::Value& cfg, const std::string& name, int threads) {
  namespace fs = std::filesystem;
  const fs::path out = fs::temp_directory_path() / name;
  modlab::runner::remove_tree(out);
  modlab::runner::RunRequest req;
  req.config = std::make_shared<const modlab::Value>(cfg);
  req.run_id = modlab::runner::run_id_of(cfg);
  req.seed = 0;
  req.sweep_name = "bench";
  req.sweep_dir = out.string();
  req.out_dir = out.string();
  req.threads = threads;
  return req;
}

}  // namespace bench

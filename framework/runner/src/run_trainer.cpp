// The training loop. One run = one dataset + one model + the phases the model asks for. Every
// epoch trains on batches in an order fixed by (seed, phase, epoch), ends with evaluation, a
// metrics row in the run file, and a checkpoint written to a temp name and renamed, so a killed
// run resumes where it stopped instead of starting over.
#include "run_trainer.hpp"

#include <modlab/errors.hpp>
#include <modlab/model.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <cmath>
#include <filesystem>

namespace fs = std::filesystem;

namespace modlab::runner {


namespace {
void collect_leaves(const Value& v, const std::string& prefix, std::vector<std::string>& out) {
  if (v.type() != ValueType::Table) {
    out.push_back(prefix);
    return;
  }
  for (const auto& [k, child] : v.as_table()) collect_leaves(child, prefix.empty() ? k : prefix + "." + k, out);
}

}  // namespace

std::vector<std::string> unread_keys(const Config& table, const AccessLog& log) {
  std::vector<std::string> leaves, out;
  collect_leaves(table.value(), table.prefix(), leaves);
  for (const auto& k : leaves)
    if (k != table.dotted("plugin") && !log.was_read(k)) out.push_back(k);
  return out;
}

/// Keeps freed tensor memory in the process. A training step of a CNN model allocates and frees
/// tensors of several MiB; by default glibc hands such blocks back to the kernel (munmap, heap
/// trimming) after every step and the next step page-faults them back in, zeroed: profiled, more
/// than half of an MNIST mixture step (E = 5, batch 512) went to page faults. A fixed mmap threshold
/// (the largest glibc accepts, 32 MiB) and a 1 GiB trim threshold make the steady state fault-free;
/// the process keeps at most its peak heap. Once per process, for every model. (modlab's executables
/// link tcmalloc where it is installed, which keeps freed memory anyway; its mallopt does nothing.)
void keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    return true;
  }();
  (void)done;
#endif
}




// The host of the run. Seeds LibTorch's global generator first: the dataset and the model are
// built from it.
HostOptions seeded_host_options(const RunRequest& req, const RunPaths& paths) {
  torch::manual_seed(req.seed);
  HostOptions h;
  h.device = req.device;
  h.seed = static_cast<std::uint64_t>(req.seed);
  h.threads = req.threads;
  h.run_dir = fs::path(paths.h5).parent_path().string();
  h.sweep_dir = req.sweep_dir;
  h.results_dir = req.out_dir;
  h.config = req.config;
  h.logger = req.logger;
  return h;
}

// c10 errors carry a long backtrace after the first line; a run's recorded error is one line.
/// A run's `error`: one line. LibTorch's messages go on with a backtrace ("Exception raised
/// from ..."), some plugins' with detail: those stay in the run log.
std::string first_line_of(const std::exception& e) {
  const std::string msg = e.what();
  const auto nl = msg.find('\n');
  return nl == std::string::npos ? msg : msg.substr(0, nl) + " (the whole message is in the run log)";
}



RunOutcome execute_run(const Registry& registry, const RunRequest& req) {
  keep_freed_memory();
  fs::create_directories(fs::path(RunPaths::of(req.out_dir, req.run_id).h5).parent_path());
  return RunTrainer(registry, req).run();
}

}  // namespace modlab::runner

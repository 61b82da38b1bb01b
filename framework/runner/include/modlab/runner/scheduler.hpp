#pragma once
// Runs a sweep: every pending run in its own worker process (`modlab _worker`), N at a time.

#include <modlab/runner/registry.hpp>
#include <modlab/runner/sweep.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace modlab::runner {

struct SweepOptions {
  int jobs = 1;                  ///< runs at once
  int threads = 0;               ///< LibTorch threads in all (0 = default_threads()), divided among jobs
  std::string device = "cpu";    ///< cpu | cuda | cuda:N
  std::string out_dir;           ///< default results/<sweep name>
  std::vector<std::string> plugin_path;  ///< extra plugin folders (passed on to workers)
  int shard_index = 0, shard_count = 1;  ///< run only runs with index % count == index
  /// Whether the run at sweep position `run_index` belongs to this shard.
  bool in_shard(std::int64_t run_index) const { return run_index % shard_count == shard_index; }
  bool verbose = false;
  std::string exe;               ///< path of the modlab executable for workers (default /proc/self/exe)
};

/// The most runs a `population = "auto"` group holds; the worker then trains as many at once as
/// its measurement allows (docs/population.md).
constexpr std::int64_t kAutoPopulationLimit = 256;
/// `[run] population` of a run: 1 when unset, kAutoPopulationLimit for "auto".
std::int64_t population_of(const RunSpec& run);
/// Whether the members of a population may differ in `key`, a varied key of `run`: run.seed,
/// train.lr, train.weight_decay, train.lr_groups, and the keys of the run's model and dataset
/// plugins that they declare per member (KeySpec::per_member).
bool member_key(const RunSpec& run, const std::string& key, const Registry& registry);
/// The runs to do cut into populations, in sweep order: runs whose varied keys other than those
/// (member_key) take the same values, at most `[run] population` per group; a run whose population
/// is 1, or that differs from the others in any other key, is a group of its own.
std::vector<std::vector<const RunSpec*>> population_groups(const std::vector<const RunSpec*>& todo, const Registry& registry);

/// Checks everything that can be checked before a run starts (runs validate, output folder usable).
/// Throws ConfigError / OutputError naming every problem of the runs' configs at once (at most 20,
/// each once); writes nothing.
void preflight(const Sweep& sweep, const Registry& registry, const SweepOptions& options);
/// What needs the data or the model to be known (preflight.cpp): builds each distinct dataset of
/// the sweep once and checks split names, bucketing and the model against it: by the model's
/// dataset check (ModelEntry::check) or, for a model without one (or with phase tables or lr
/// groups to check), by building the model once per distinct model and dataset; then the phase
/// and parameter-group names. ConfigError on the first run that fails; datasets whose files are
/// missing are skipped (their runs report it).
void check_model_datasets(const Sweep& sweep, const Registry& registry, const SweepOptions& options);

/// Runs the sweep. Returns the process exit status (exit_codes.hpp): Ok when every run completed,
/// RunsFailed when some failed, Interrupted after SIGINT/SIGTERM.
int run_sweep(const Sweep& sweep, const Registry& registry, const SweepOptions& options);

/// Rewrites `<out>/sweep.h5` from the run files that exist.
void write_index(const Sweep& sweep, const std::string& out_dir);

/// Body of `modlab _worker`: runs the runs the scheduler hands it, one at a time (the protocol is in
/// worker_protocol.hpp). Returns the worker's exit status (protocol::WorkerCode).
int worker_main(const std::vector<std::string>& args);

/// Cores for torch threads by default (`--threads 0`): the CPUs of the process's affinity mask, at
/// most its cgroup v2 CPU quota.
int default_threads();
/// CPUs allowed by a cgroup v2 `cpu.max` file ("<quota> <period>", rounded up); 0 when it sets no
/// limit ("max") or cannot be read.
int cgroup_cpu_limit(const std::string& cpu_max);

}  // namespace modlab::runner

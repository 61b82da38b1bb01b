#pragma once
// Runs one run: builds dataset and model through the registry, trains every phase, evaluates,
// checkpoints, and writes the run file.

#include <modlab/config.hpp>
#include <modlab/dataset.hpp>
#include <modlab/options.hpp>
#include <modlab/runner/registry.hpp>

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab::runner {

class ConfigErrors;

/// Trainer settings of one phase: `[train]`, overridden by `[train.phases.<name>]`.
struct TrainOptions {
  std::int64_t epochs = 10;
  std::int64_t batch_size = 32;
  std::int64_t eval_batch_size = 4096;
  std::int64_t steps_per_epoch = 0;  ///< 0: one pass over the training split; >0: that many random batches
  bool shuffle = true;
  bool drop_last = false;
  std::int64_t bucket = 0;           ///< 0: off; N: each window of N batches sorted by example length
  std::string optimizer = "adam";    ///< adam | adamw | sgd | rmsprop
  double lr = 1e-3;
  double momentum = 0.0;
  bool nesterov = false;
  bool amsgrad = false;
  std::int64_t warmup_steps = 0;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double alpha = 0.99;               ///< RMSprop smoothing
  std::string schedule = "constant"; ///< constant | step | exponential | cosine
  std::int64_t step_size = 30;
  double gamma = 0.1;
  double eta_min = 0.0;
  double grad_clip = 0.0;            ///< max global grad norm; 0 = off
  std::int64_t eval_every = 1;       ///< evaluate every N epochs (and after the last)
  std::vector<std::string> eval_splits;  ///< default: every split of the dataset
  std::string train_split;           ///< default: the dataset's first split
  std::map<std::string, double> lr_groups;  ///< parameter group name → lr
  std::int64_t checkpoint_every = 1; ///< epochs between checkpoints; 0 = never
};

/// The `[run]` table (the sweep reads it directly; declared for validation and `modlab plugins`).
struct RunSettings {
  std::string name;         ///< sweep name; "" = the file's stem
  std::int64_t seed = 0;    ///< set per run by [sweep] seeds
  std::string description;
  /// Runs differing only in seed / train.lr trained together, up to this many; 0 is "auto"
  /// (`population = "auto"` in a sweep file), the size measured in the population's first steps.
  std::int64_t population = 1;
};

/// The declared `[train]` keys (each `[train.phases.<name>]` takes the same ones).
const Options<TrainOptions>& train_options();
/// Keys of the `[train]` table: train_options() and `phases`, for validation and `modlab plugins`.
const std::vector<KeySpec>& train_keys();
/// The declared `[run]` keys.
const Options<RunSettings>& run_options();
/// Keys of the `[run]` table.
const std::vector<KeySpec>& run_keys();
/// Parses `[train]`, merged with a phase's `defaults` (TOML text of trainer keys, see
/// Phase::defaults), merged with `[train.phases.<phase>]` (phase "" = base only).
TrainOptions parse_train_options(const Config& train, const std::string& phase = "", const std::string& defaults = "");

/// One epoch's training batches (int64 index tensors into `split`), drawn from `seed`:
/// `steps_per_epoch` random batches, or one pass over the split (shuffled unless `shuffle` is off,
/// `drop_last` honoured). With `bucket = N`, each window of N batches is sorted by `split.lengths`
/// (ties in draw order) and the batches are then shuffled, so a batch holds examples of similar
/// length and every example is still drawn as often. DataError when the split has no lengths.
std::vector<torch::Tensor> epoch_batches(const Split& split, const TrainOptions& opt, std::uint64_t seed);

/// Validates a resolved run config against the registry before anything runs: top-level tables,
/// `[run]` and `[train]` keys, plugins exist, each plugin's keys and types. Every problem goes to
/// `errors` when given; otherwise one ConfigError names them all ("N problems in <what>:").
void validate_run_config(const Value& config, const Registry& registry, const std::string& what,
                         ConfigErrors* errors = nullptr);

/// Progress of a running run, reported after every epoch.
struct Progress {
  std::string phase;
  std::int64_t epoch = 0;   ///< epochs done in this phase
  std::int64_t epochs = 0;
  std::int64_t phase_index = 0, phases = 1;
  double loss = 0.0;
  std::int64_t step = 0;
};

struct RunRequest {
  std::string run_id;
  std::int64_t index = 0;
  std::int64_t seed = 0;
  std::shared_ptr<const Value> config;  ///< resolved run config
  std::string sweep_name;
  std::string sweep_dir;   ///< folder of the sweep file
  std::string out_dir;     ///< sweep output folder (run files go to <out_dir>/runs)
  torch::Device device = torch::kCPU;
  int threads = 1;
  std::function<void(const Progress&)> on_progress;
  std::function<void(const std::string&)> logger;
  const std::atomic<bool>* stop = nullptr;  ///< set → checkpoint and return Interrupted at the next step
};

enum class RunStatus { Completed, Failed, Interrupted };

struct RunOutcome {
  RunStatus status = RunStatus::Failed;
  std::string error;
};

/// Paths of a run's files.
struct RunPaths {
  std::string h5, checkpoint, weights, log, spec;
  static RunPaths of(const std::string& out_dir, const std::string& run_id);
};

/// Trains one run to the end (resuming from its checkpoint if one exists). Never throws for a
/// failure inside the run: that is recorded in the run file and returned as Failed.
RunOutcome execute_run(const Registry& registry, const RunRequest& request);

/// Trains runs that differ only in seed (or learning rate, weight decay, or keys declared per
/// member: scheduler.hpp, member_key) as one population: one model with every
/// parameter stacked over the members (modlab/population.hpp). Each member writes exactly the run
/// file its solo run writes (with a note `population` = P) and fails, checkpoints and resumes on
/// its own. When the model cannot be trained that way (a parameter outside modlab::nn layers, a
/// buffer, a loss term over the whole folded batch, randomness in the training forward) or a member
/// already has files, each run log says why and, with `alone_if_not_batchable`, each member runs
/// alone through execute_run; without it nothing runs and the result is empty (a worker hands the
/// runs back to the scheduler, which spreads them over its workers).
std::vector<RunOutcome> execute_population(const Registry& registry, const std::vector<RunRequest>& requests,
                                           bool alone_if_not_batchable = true);

/// "completed" if `<out>/runs/<id>.h5` says so, "failed" if it says failed, "partial" if only a
/// .partial or checkpoint exists, "" if nothing.
std::string run_state(const std::string& out_dir, const std::string& run_id);

}  // namespace modlab::runner

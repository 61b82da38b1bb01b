#pragma once
/// @file host.hpp
/// What the host offers a plugin while a run is being built and trained.

#include <modlab/export.hpp>
#include <modlab/config.hpp>
#include <modlab/dataset.hpp>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab {

class Model;

/// A file that several runs of one results folder compute identically, made by one of them and
/// read by the others (a router trained once per seed and reused at every width). From
/// Host::share. While a run holds one that is not `ready()`, it is the file's maker: it holds a
/// lock (flock, so runs on other workers or Slurm nodes sharing the folder wait for it), writes
/// the file at `path()` and calls `publish()`. A maker that ends without publishing (a failed or
/// killed run) releases the lock and the next run that asks makes the file itself.
class MODLAB_API SharedFile {
 public:
  virtual ~SharedFile();
  /// True when the file exists (made by this run or another): read it at `path()`.
  virtual bool ready() const = 0;
  /// Where to read the file (ready) or write it (maker).
  virtual std::string path() const = 0;
  /// Maker only: the file at `path()` is complete; makes it visible to every run (an atomic
  /// rename), releases the lock, and `ready()` becomes true.
  virtual void publish() = 0;
};

/// Services of the running host. Passed to factories; valid for the whole run.
class MODLAB_API Host {
 public:
  virtual ~Host();
  /// Builds another registered model (e.g. an analyzer wrapping a model): `plugin` is a model name.
  virtual std::shared_ptr<Model> create_model(const std::string& plugin, const Config& config,
                                              const DatasetSpec& spec) = 0;
  /// Builds another registered dataset.
  virtual std::shared_ptr<Dataset> create_dataset(const std::string& plugin, const Config& config) = 0;
  /// Device the run trains on.
  virtual torch::Device device() const = 0;
  /// The run's seed; the host has already seeded LibTorch's global generator with it.
  virtual std::uint64_t seed() const = 0;
  /// Number of intra-op threads this run may use.
  virtual int num_threads() const = 0;
  /// Folder for the run's side files (checkpoints, caches); exists.
  virtual std::string run_dir() const = 0;
  /// Resolves a path written in a sweep file: absolute stays, relative is taken from the sweep
  /// file's folder.
  virtual std::string resolve_path(const std::string& path) const = 0;
  /// Path of the final model weights of an earlier run, referenced as "<results dir>/<run_id>"
  /// (relative to the sweep file), "<run_id>" (same output folder), or "<results dir>/same-seed"
  /// (the one completed run there whose seed is this run's). Throws ConfigError when the run did not
  /// complete, or when "same-seed" finds none or several.
  virtual std::string model_weights_of(const std::string& run_ref) const = 0;
  /// Loads an earlier run's final weights into `module`: `run_ref` as for model_weights_of; `part`
  /// a dotted prefix of the saved model's parameter and buffer names ("" = the whole model,
  /// "experts" = only the names under "experts.", loaded with that prefix stripped). The names and
  /// shapes must match `module`'s exactly; otherwise ConfigError naming the run, the missing and
  /// unexpected names and the shape mismatches, and `module` is left unchanged.
  virtual void load_weights(torch::nn::Module& module, const std::string& run_ref, const std::string& part) const = 0;
  /// One log line (goes to the run's log, and the terminal at verbose level).
  virtual void log(const std::string& message) = 0;
  /// The shared file called `name` for this run: its identity is `name`, the run's seed, the
  /// values of `config_keys` in the run's resolved config (dotted keys or whole tables, such as
  /// "dataset" or "train"; an absent key counts as absent) and `extra` (options of the plugin's
  /// that shape the file). Runs of the same results folder with the same identity get the same
  /// file, under `<results>/shared/`. Blocks while another run is making it. See SharedFile.
  virtual std::unique_ptr<SharedFile> share(const std::string& name, const std::vector<std::string>& config_keys,
                                            const std::string& extra) = 0;
};

}  // namespace modlab

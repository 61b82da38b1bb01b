#pragma once
/// @file model.hpp
/// What a model plugin implements. A Model is a torch::nn::Module with a batch-level forward,
/// named loss terms, optional evaluation metrics, optional training phases and parameter groups.

#include <modlab/export.hpp>
#include <modlab/batch.hpp>
#include <modlab/dataset.hpp>
#include <modlab/recorder.hpp>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace modlab {

/// What `Model::forward` returns.
struct MODLAB_API Output {
  /// How to read `prediction` for the default accuracy.
  enum class Kind { Logits, Probabilities, LogProbabilities };
  torch::Tensor prediction;  ///< [B, C] (classification), [B, outputs] (multi-label), [B, L, V] (sequence)
  Kind kind = Kind::Logits;
  std::map<std::string, torch::Tensor> aux;  ///< anything else the loss or metrics need (gate probs ...)
};

/// One named term of the loss, already weighted. The trainer sums all terms and logs each.
struct MODLAB_API LossTerm {
  std::string name;
  torch::Tensor value;  ///< scalar
};
using Losses = std::vector<LossTerm>;

/// Sum of all terms (a scalar tensor, zero if empty).
MODLAB_API torch::Tensor total(const Losses& losses);

/// A stage of training with its own epochs and optimizer (a VQ-VAE router before the modules;
/// masks after weights). Trainer settings of a phase come from `[train]`, overridden by the
/// phase's `defaults`, overridden by `[train.phases.<settings>]`.
struct MODLAB_API Phase {
  Phase() = default;
  Phase(std::string name_, std::int64_t epochs_ = -1, std::string settings_ = "", std::string train_split_ = "")
      : name(std::move(name_)), epochs(epochs_), settings(std::move(settings_)), train_split(std::move(train_split_)) {}
  std::string name = "train";
  std::int64_t epochs = -1;  ///< -1: take `epochs` from the trainer config; 0: nothing to train (a reused router)
  /// Trainer keys the phase needs unless the user sets them, as TOML text
  /// (`"batch_size = 128\nlr = 3e-4\nsteps_per_epoch = 1000"`): they replace the `[train]` values and
  /// `[train.phases.<settings>]` replaces them in turn. Checked like any trainer key.
  std::string defaults;
  /// The `[train.phases.<settings>]` table the phase reads ("" = its own name), so that several
  /// phases of one kind (one per mask stage) share one table.
  std::string settings;
  /// The split the phase trains on ("" = `train_split` of the phase's settings, else the dataset's first).
  std::string train_split;
};

/// A named set of parameters with its own learning rate / weight decay. The trainer uses, in
/// order: `train.lr_groups.<name>`, then `lr` here, then `train.lr`.
struct MODLAB_API ParamGroup {
  std::string name;
  std::vector<torch::Tensor> params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};

/// Facts about the current epoch, passed to `Model::begin_epoch`.
struct MODLAB_API EpochContext {
  std::string phase;
  std::int64_t epoch = 0;         ///< 0-based, within the phase
  std::int64_t epochs = 0;        ///< total epochs of the phase
  std::int64_t global_epoch = 0;  ///< 0-based over all phases (= metrics row)
  const Split* train = nullptr;   ///< the training split
};

/// What a custom training step can ask of the trainer (optimizer, clipping, schedule).
class MODLAB_API StepContext {
 public:
  virtual ~StepContext();
  virtual void zero_grad() = 0;
  /// Clips gradients as configured and takes one optimizer step.
  virtual void apply() = 0;
  /// zero_grad(); backward of the sum of `losses`; apply().
  virtual void optimize(const Losses& losses) = 0;
  virtual std::int64_t step() const = 0;   ///< optimizer steps so far in this run
  virtual std::int64_t epoch() const = 0;  ///< 0-based epoch within the phase
};

/// Base class of every model plugin.
class MODLAB_API Model : public torch::nn::Module {
 public:
  Model();
  ~Model() override;

  /// Forward pass on a batch (already on the run's device).
  virtual Output forward(const Batch& batch) = 0;
  /// Named loss terms for `output` of `batch`. The default is cross-entropy on logits /
  /// NLL on (log-)probabilities for classification and BCE for multi-label, named "task".
  virtual Losses loss(const Batch& batch, const Output& output);

  /// One training step. The default: forward, loss, `ctx.optimize(loss)`, return the losses.
  /// Override for methods with several forwards or partial updates.
  virtual Losses train_step(const Batch& batch, StepContext& ctx);

  /// Training stages, in order. Default: one phase "train".
  virtual std::vector<Phase> phases() const;
  /// Called before each phase (freeze weights, fit a router, ...).
  virtual void begin_phase(const Phase& phase);
  /// Parameters the optimizer of `phase` updates, grouped. Default: one group "all" with every
  /// parameter that requires grad.
  virtual std::vector<ParamGroup> param_groups(const std::string& phase);

  /// Called at the start of every training epoch (temperature schedules, E-steps ...).
  virtual void begin_epoch(const EpochContext& ctx);
  /// Called after the training steps of every epoch, before its evaluation: metrics of the
  /// training itself (statistics accumulated over the epoch's training batches), written as named
  /// (`recorder.scalar("fit_error", e)` → `metrics/fit_error`, unprefixed) in the epoch's row.
  virtual void end_epoch(const EpochContext& ctx, Recorder& recorder);

  /// Evaluation hooks. For each evaluated split the trainer calls `eval_begin`, then `eval_batch`
  /// for every batch (in eval mode, without grad), then `eval_end`. Metrics put in `metrics` are
  /// recorded as `<split>_<name>`. The trainer itself adds `<split>_loss` and `<split>_accuracy`.
  virtual void eval_begin(const std::string& split);
  virtual void eval_batch(const std::string& split, const Batch& batch, const Output& output,
                          MetricSet& metrics);
  virtual void eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder);

  /// Called once after training: record final tensors (gates, masks, routing tables).
  virtual void record(Recorder& recorder);

  /// Per-example correctness used for `<split>_accuracy`: [B] (classification) or [B, outputs]
  /// (multi-label) of 0/1 floats. Default: argmax for classification, threshold for multi-label.
  virtual torch::Tensor correct(const Batch& batch, const Output& output);

  /// Parameters that an analyzer must not mask, by full name, each with the reason (routing logits
  /// that select inputs rather than weigh them, say). Every other parameter must be maskable:
  /// built from modlab::nn layers, so `modlab::nn::maskable_parameters(model)` lists it and an
  /// analyzer can mask it with K samples folded into the batch (the plugin contract test checks
  /// both). A declared parameter may still be overridable (held by a modlab::nn::Overridable
  /// module that reads it through `effective`), which lets a population stack it over its
  /// members; it must then fold K samples like any layer. Default: none.
  virtual std::map<std::string, std::string> unmaskable_parameters() const { return {}; }
};

class Config;

/// Refuses a model too large to train on this machine, before it is built: `parameters` (an
/// estimate the plugin computes from its options) at 16 bytes each — weights, gradients and two
/// Adam moments in float32 — must fit in the machine's physical memory. Throws ConfigError through
/// `config.fail(key, ...)`, naming the key that sets the size.
MODLAB_API void check_model_size(const Config& config, const std::string& key, double parameters);

}  // namespace modlab

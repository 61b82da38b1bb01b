#pragma once
// The masked_analyzer model (masked_analyzer §4.1–§4.2): wraps any model, trains it in its own
// phases (or loads an earlier run's weights), freezes it, then trains one set of mask logits per
// stage, the full task first and then each sub-task the dataset declares, and reports what the masks
// keep and what removing them costs.
#include "analysis.hpp"
#include "masks.hpp"

#include <modlab/config.hpp>
#include <modlab/host.hpp>
#include <modlab/model.hpp>
#include <modlab/options.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace modlab::masked {

struct AnalyzerOptions {
  Config table;                          ///< the analyzer's own table (errors are located in it); not a key
  Config inner;                          ///< the analysed model's table ([model.inner])
  std::string inner_weights;             ///< earlier run whose weights the inner model takes; "" = train it here
  std::string inner_weights_part;        ///< dotted prefix of those weights ("inner" for an earlier analyzer run)
  std::int64_t samples = 4;              ///< K mask samples per batch, folded into the batch
  double mask_init = 2.0;                ///< initial logit of every mask entry
  double temperature = 1.0;              ///< τ of the Gumbel-sigmoid
  double mask_loss_weight = 1e-4;        ///< α of the regulariser (α/B)·Σ logits
  bool bias_no_mask = true;              ///< leave biases unmasked
  bool norm_no_mask = false;             ///< leave LayerNorm / BatchNorm parameters unmasked
  bool control_stage = true;             ///< stage 0 = the full task (verify / control mask)
  std::vector<std::string> stages;       ///< sub-tasks to mask, in order; [] = every sub-task of the dataset
  std::string inverse_exclude_io = "none";  ///< "fullmask": inverse masks keep the control mask on the input/output layers
  bool save_logits = false;              ///< also write the mask logits to the run file
  /// analysis: frozen weights, one mask per stage (§4.1). sequential: the permuted-MNIST protocol
  /// (§4.3 (d)): per stage, weights and mask train together; weights in earlier masks stay frozen.
  std::string protocol = "analysis";
};

const Options<AnalyzerOptions>& analyzer_options();

/// One mask stage: the full task (task == nullptr) or a sub-task of the dataset.
struct Stage {
  std::string name;
  const SubTask* task = nullptr;
};

/// The stages `o` asks for on `spec`, in order (pointers into `spec`); ConfigError naming the key
/// for an unknown or repeated sub-task, or nothing to analyse.
std::vector<Stage> stage_list(const AnalyzerOptions& o, const DatasetSpec& spec);
/// ModelEntry::check of masked_analyzer: the stages, and the inner model's needs where it is one of
/// this plugin's networks with a check of its own.
void check_analyzer(const Config& c, const DatasetSpec& spec);

class Analyzer : public Model {
 public:
  Analyzer(const AnalyzerOptions& o, const DatasetSpec& spec, Host& host);

  Output forward(const Batch& batch) override;
  Losses loss(const Batch& batch, const Output& output) override;
  Losses train_step(const Batch& batch, StepContext& ctx) override;
  std::vector<Phase> phases() const override;
  void begin_phase(const Phase& phase) override;
  std::vector<ParamGroup> param_groups(const std::string& phase) override;
  void begin_epoch(const EpochContext& ctx) override;
  void end_epoch(const EpochContext& ctx, Recorder& recorder) override;
  void eval_begin(const std::string& split) override;
  void eval_batch(const std::string& split, const Batch& batch, const Output& output, MetricSet& metrics) override;
  void eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) override;
  void record(Recorder& recorder) override;
  torch::Tensor correct(const Batch& batch, const Output& output) override;
  std::map<std::string, std::string> unmaskable_parameters() const override;
  void train(bool on = true) override;

  const std::vector<Stage>& stages() const { return stages_; }
  const std::vector<MaskedParam>& masked() const { return params_; }
  /// The logits of stage `s`, one per masked parameter.
  const std::vector<torch::Tensor>& logits(std::size_t s) const { return logits_[s]; }
  /// The evaluation masks (logits ≥ 0) of every stage.
  StageMasks stage_masks() const;

 private:
  int stage_of_phase(const std::string& phase) const;
  Output masked_forward(const Batch& batch, const std::vector<torch::Tensor>& masks);
  std::vector<torch::Tensor> eval_masks(std::size_t stage) const;
  Losses mask_step(const Batch& batch, StepContext& ctx);
  void stage_accuracy(const Batch& batch, MetricSet& metrics);
  bool sequential() const { return opt_.protocol == "sequential"; }
  void begin_sequential_stage(std::size_t stage);
  void redraw_free_weights(std::size_t stage);

  AnalyzerOptions opt_;
  DatasetSpec spec_;
  Host* host_ = nullptr;  ///< valid for the whole run (sequential stages draw fresh weights from it)
  std::shared_ptr<Model> inner_;
  std::vector<torch::Tensor> frozen_;  ///< sequential: 1 where an earlier stage's mask keeps the weight
  std::string inner_name_;
  bool train_inner_ = true;
  std::vector<MaskedParam> params_;
  std::vector<Stage> stages_;
  std::vector<std::vector<torch::Tensor>> logits_;  ///< [stage][param]
  int active_ = -1;                                 ///< stage being trained / shown, -1 = none (inner phases)
  bool final_eval_ = false;
  std::string last_phase_;
  std::map<std::string, AccuracyTally> tallies_;
};

}  // namespace modlab::masked

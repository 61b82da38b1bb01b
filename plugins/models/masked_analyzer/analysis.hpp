#pragma once
// The analyses of masked_analyzer §4.2: mask configurations (each stage's mask, its inverse, the
// half-mask test), their accuracy on every sub-task evaluated C configurations at a time in one
// folded forward, the predicted-which-result confusion, and the data-free statistics between
// masks (kept fraction, IoU, IoMin, shared fraction per layer).
#include "masks.hpp"

#include <modlab/dataset.hpp>
#include <modlab/model.hpp>
#include <modlab/recorder.hpp>

#include <string>
#include <vector>

namespace modlab::masked {

/// A named set of 0/1 masks, one per masked parameter (bool, the parameter's shape).
struct MaskConfig {
  std::string label;
  std::vector<torch::Tensor> masks;
};

/// Inputs of the mask configurations: each stage's evaluation mask, in stage order.
struct StageMasks {
  std::vector<std::string> names;                ///< stage names ("full", "pair1", ...)
  std::vector<std::vector<torch::Tensor>> masks;  ///< [stage][param], bool
  int control = -1;                               ///< index of the full-task stage, -1 if none
};

/// The configurations the accuracy table has as rows: "trained" (no mask), "mask <s>" and
/// "inverse <s>" per stage, and with a control stage "half first" / "half second" (the control
/// mask on the first ⌈L/2⌉ layers only, then on the others). With `inverse_keeps_io`, the inverse
/// masks take the control mask on the first and last masked weight (reference: fullmask).
std::vector<MaskConfig> analysis_configs(const std::vector<MaskedParam>& params, const StageMasks& stages,
                                         bool inverse_keeps_io);

/// One evaluation column: the full task (task == nullptr) or a sub-task.
struct Column {
  std::string label;
  const SubTask* task = nullptr;
};

/// Counts of one split's evaluation, accumulated over batches.
class AccuracyTally {
 public:
  AccuracyTally(std::vector<MaskConfig> configs, std::vector<Column> columns, std::size_t subtasks);
  /// Adds one batch: every column's restriction of `batch`, all configurations folded together.
  void add(Model& inner, const std::vector<MaskedParam>& params, const Batch& batch);
  /// `<split>/accuracy` [configs, columns] and, when the batches carried subtask_targets,
  /// `<split>/confusion` [configs × sub-tasks, "= <s>" … "neither"].
  void record(const std::string& split, const std::vector<std::string>& subtask_names, Recorder& recorder) const;
  double accuracy(std::size_t config, std::size_t column) const;

 private:
  void add_column(Model& inner, const std::vector<MaskedParam>& params, const Batch& b, std::size_t col);
  std::vector<MaskConfig> configs_;
  std::vector<Column> columns_;
  std::size_t subtasks_;
  std::vector<double> correct_, seen_;     ///< [config][column], [column]
  std::vector<double> confusion_;          ///< [config][column][subtask + 1]
  bool has_confusion_ = false;
};

/// The data-free statistics, written as tables: `kept` (fraction of each parameter's weights each
/// stage keeps), `iou` and `iomin` (per parameter, each pair of stages), `shared` (per parameter,
/// |m_i ∧ ∨_{j≠i} m_j| / |m_i| over the sub-task stages) and `control_kept` (the fraction of the
/// control mask's weights each sub-task mask keeps). Every table has a last row "total".
void record_mask_statistics(const std::vector<MaskedParam>& params, const StageMasks& stages, Recorder& recorder);

/// The sequential protocol's sharing: `sequential_shared`, per parameter and for each stage t ≥ 1,
/// the fraction of stage t's mask that lies in the union of the earlier stages' masks (weights
/// reused from earlier tasks).
void record_sequential_sharing(const std::vector<MaskedParam>& params, const StageMasks& stages, Recorder& recorder);

}  // namespace modlab::masked

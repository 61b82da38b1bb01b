#pragma once
/// @file recorder.hpp
/// Where a model puts what is worth keeping. The host writes it to the run's HDF5 file:
/// scalars go to `metrics/<name>` (one row per epoch), tensors to `tensors/<name>`.

#include <modlab/export.hpp>
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace modlab {

/// Accumulates scalar metrics over the batches of one evaluation: `add` keeps a weighted mean,
/// `set` a final value. Names are plain ("usage_entropy"); the trainer prefixes the split.
class MODLAB_API MetricSet {
 public:
  /// Adds `value` with `weight` to the running weighted mean of `name`.
  void add(const std::string& name, double value, double weight = 1.0);
  /// Sets `name` to `value`, replacing any running mean.
  void set(const std::string& name, double value);
  /// Current value of `name` (weighted mean or set value); NaN if absent.
  double get(const std::string& name) const;
  bool has(const std::string& name) const;
  /// All (name, value) pairs, sorted by name.
  std::map<std::string, double> values() const;
  void clear();

 private:
  struct Acc {
    double sum = 0.0;
    double weight = 0.0;
  };
  std::map<std::string, Acc> acc_;
};

/// Sink for a run's outputs. Implemented by the host; a model only calls it.
class MODLAB_API Recorder {
 public:
  virtual ~Recorder();
  /// A scalar at the current row (the current epoch): `metrics/<name>`.
  virtual void scalar(const std::string& name, double value) = 0;
  /// A tensor written once (a later call with the same name replaces it): `tensors/<name>`.
  /// `dims` optionally names each axis (stored as the `dims` attribute, for xarray-style readers).
  virtual void tensor(const std::string& name, const torch::Tensor& value,
                      const std::vector<std::string>& dims = {}) = 0;
  /// A tensor appended along a new leading `epoch` axis: `tensors/<name>` grows to [n, ...].
  /// Every call for one name must pass the same shape.
  virtual void append(const std::string& name, const torch::Tensor& value,
                      const std::vector<std::string>& dims = {}) = 0;
  /// A string attribute on the run (`/` attributes under `note.<name>`), e.g. class names.
  virtual void note(const std::string& name, const std::string& value) = 0;
  /// A labelled table written once (an accuracy per mask and sub-task, say): `tensors/tables/<name>`,
  /// float64 [rows, columns], dims ("row", "column"), with the labels as string-list attributes
  /// `rows` and `columns`. `modlab show DIR --tables` prints every table of every run.
  virtual void table(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& rows,
                     const std::vector<std::string>& columns) = 0;
};

}  // namespace modlab

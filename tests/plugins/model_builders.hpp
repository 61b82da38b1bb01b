// Shared pieces of model-plugin tests: a host over the build's plugins, a dataset description
// without a dataset, model construction from a config table, batches, and a recorder that keeps
// what a model records.
#pragma once

#include "config_builders.hpp"

#include <modlab/batch.hpp>
#include <modlab/dataset.hpp>
#include <modlab/model.hpp>
#include <modlab/recorder.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace test_model {

using modlab::Value;

/// One host over the default registry (MODLAB_PLUGIN_PATH) for the whole test binary.
inline modlab::runner::RunHost& host() {
  static modlab::runner::RunHost h(modlab::runner::default_registry(), modlab::runner::HostOptions{});
  return h;
}

/// A classification dataset of flat inputs [inputs] with `classes` classes, splits train/test.
inline modlab::DatasetSpec flat_spec(std::int64_t inputs, std::int64_t classes) {
  modlab::DatasetSpec s;
  s.name = "fixed";
  s.input_shape = {inputs};
  s.task = modlab::TaskKind::Classification;
  s.num_classes = classes;
  s.splits = {"train", "test"};
  return s;
}

/// Model `name` built by its plugin from `table` (the run's [model] table) for `spec`.
inline std::shared_ptr<modlab::Model> make_model(const std::string& name, const Value::Table& table,
                                                 const modlab::DatasetSpec& spec) {
  return host().create_model(name, test_config::make_config(table, "model"), spec);
}

/// Parameters by full name.
inline std::map<std::string, torch::Tensor> params(modlab::Model& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : m.named_parameters()) out[kv.key()] = kv.value();
  return out;
}

inline modlab::Batch batch_of(torch::Tensor x, torch::Tensor y) {
  modlab::Batch b;
  b.inputs = std::move(x);
  b.targets = std::move(y);
  return b;
}

/// Keeps copies of everything a model records.
struct CaptureRecorder : modlab::Recorder {
  std::map<std::string, double> scalars;
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::vector<torch::Tensor>> appended;
  std::map<std::string, std::vector<std::string>> dims;
  std::map<std::string, std::string> notes;
  void scalar(const std::string& n, double v) override { scalars[n] = v; }
  void tensor(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
    tensors[n] = v.clone();
    dims[n] = d;
  }
  void append(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
    appended[n].push_back(v.clone());
    dims[n] = d;
  }
  void note(const std::string& n, const std::string& v) override { notes[n] = v; }
  /// A recorded table with its labels; `at(row, column)` reads one cell (NaN when there is none).
  struct Table {
    torch::Tensor values;
    std::vector<std::string> rows, columns;
    double at(const std::string& r, const std::string& c) const {
      for (std::size_t i = 0; i < rows.size(); ++i)
        for (std::size_t j = 0; j < columns.size(); ++j)
          if (rows[i] == r && columns[j] == c)
            return values[static_cast<std::int64_t>(i)][static_cast<std::int64_t>(j)].item<double>();
      return std::nan("");
    }
  };
  std::map<std::string, Table> tables;
  void table(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& r,
             const std::vector<std::string>& c) override {
    tables[n] = Table{v.clone(), r, c};
  }
};

}  // namespace test_model

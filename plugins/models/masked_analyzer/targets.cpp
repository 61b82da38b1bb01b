// mask_fnn and mask_lstm (see targets.hpp).
#include "targets.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/nn/sequence.hpp>

#include <torch/torch.h>

#include <set>
#include <sstream>

namespace modlab::masked {
namespace {

/// Logits per example: classes (Classification), outputs × classes (MultiClass), outputs (MultiLabel).
std::int64_t head_width(const DatasetSpec& spec, const std::string& model) {
  switch (spec.task) {
    case TaskKind::Classification: return spec.num_classes;
    case TaskKind::MultiClass: return spec.num_outputs * spec.num_classes;
    case TaskKind::MultiLabel: return spec.num_outputs;
    default: break;
  }
  throw ConfigError("model '" + model + "' needs a classification, multi_class or multi_label dataset; '" + spec.name +
                    "' is " + task_kind_name(spec.task));
}

/// run_per_subtask: the run (a sub-task with outputs, numbered in order) each output comes from;
/// every output needs one. ConfigError for a dataset without several outputs or sub-tasks.
std::vector<std::int64_t> output_owners(const DatasetSpec& spec) {
  if (spec.task != TaskKind::MultiClass && spec.task != TaskKind::MultiLabel)
    throw ConfigError("mask_fnn: run_per_subtask needs a dataset with several outputs (multi_class or multi_label)");
  std::vector<std::int64_t> owner(static_cast<std::size_t>(spec.num_outputs), -1);
  std::int64_t run = 0;
  for (const auto& t : spec.subtasks) {
    if (t.outputs.empty()) continue;
    for (auto o : t.outputs)
      if (o >= 0 && o < spec.num_outputs) owner[static_cast<std::size_t>(o)] = run;
    ++run;
  }
  for (std::size_t o = 0; o < owner.size(); ++o)
    if (owner[o] < 0)
      throw ConfigError("mask_fnn: run_per_subtask: output " + std::to_string(o) + " of dataset '" + spec.name +
                        "' belongs to no sub-task");
  return owner;
}

/// [rows, width] logits shaped as the task's prediction.
torch::Tensor shape_prediction(const torch::Tensor& y, const DatasetSpec& spec) {
  if (spec.task == TaskKind::MultiClass) return y.reshape({y.size(0), spec.num_outputs, spec.num_classes});
  return y;
}

class Fnn : public Model {
 public:
  Fnn(const FnnOptions& o, const DatasetSpec& spec) : spec_(spec) {
    std::int64_t in = spec.input_numel();
    std::vector<std::int64_t> sizes = o.layer_sizes;
    sizes.push_back(head_width(spec, "mask_fnn"));
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      layers_.push_back(register_module("layers" + std::to_string(i), modlab::nn::Linear(in, sizes[i])));
      in = sizes[i];
      if (o.init == "xavier_normal") {
        torch::NoGradGuard ng;
        torch::nn::init::xavier_normal_(layers_.back()->weight);
        layers_.back()->bias.zero_();
      }
    }
    if (o.run_per_subtask) plan_runs(spec);
  }

  Output forward(const Batch& batch) override {
    auto x = batch.inputs.reshape({batch.size(), -1}).to(torch::kFloat);
    Output out;
    out.prediction = runs_.empty() ? shape_prediction(mlp(x), spec_) : per_subtask(x);
    return out;
  }

 private:
  torch::Tensor mlp(torch::Tensor x) {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      x = layers_[i](x);
      if (i + 1 < layers_.size()) x = torch::relu(x);
    }
    return x;
  }

  // Output o comes from the run of the sub-task that scores it (output_owners).
  void plan_runs(const DatasetSpec& spec) {
    owner_ = output_owners(spec);
    for (const auto& t : spec.subtasks)
      if (!t.outputs.empty()) runs_.push_back(torch::tensor(t.zeroed_inputs, torch::kLong));
  }

  // The tuple FNN: one run per sub-task on the rows with the other sub-tasks' inputs zeroed, laid out
  // [K, runs, B/K] so that K folded mask samples stay in their blocks; output o from its run.
  torch::Tensor per_subtask(const torch::Tensor& x) {
    const std::int64_t K = modlab::nn::folded_samples(), rows = x.size(0) / K, R = static_cast<std::int64_t>(runs_.size());
    auto xs = x.reshape({K, rows, -1});
    std::vector<torch::Tensor> parts;
    for (const auto& z : runs_) parts.push_back(z.numel() ? xs.index_fill(2, z.to(x.device()), 0) : xs);
    auto y = mlp(torch::stack(parts, 1).reshape({K * R * rows, -1}));
    const std::int64_t O = spec_.num_outputs;
    y = y.reshape({K, R, rows, O, -1});
    std::vector<torch::Tensor> outs;
    for (std::int64_t o = 0; o < O; ++o) outs.push_back(y.select(1, owner_[static_cast<std::size_t>(o)]).select(2, o));
    auto pred = torch::stack(outs, 2).reshape({K * rows, O, -1});  // [rows, O, C or 1]
    return spec_.task == TaskKind::MultiClass ? pred : pred.squeeze(2);
  }

  DatasetSpec spec_;
  std::vector<modlab::nn::Linear> layers_;
  std::vector<torch::Tensor> runs_;  ///< zeroed input indices per run
  std::vector<std::int64_t> owner_;  ///< run of each output
};

/// Step at which each output is read: the dataset's info "output_steps" (one per output, comma
/// separated), else the last step for all.
std::vector<std::int64_t> read_steps(const DatasetSpec& spec, std::int64_t steps, std::int64_t outputs) {
  std::vector<std::int64_t> out;
  auto it = spec.info.find("output_steps");
  if (it == spec.info.end()) return std::vector<std::int64_t>(static_cast<std::size_t>(outputs), steps - 1);
  std::stringstream ss(it->second);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
  if (static_cast<std::int64_t>(out.size()) != outputs)
    throw ConfigError("mask_lstm: dataset '" + spec.name + "' gives " + std::to_string(out.size()) +
                      " output_steps for " + std::to_string(outputs) + " outputs");
  for (auto s : out)
    if (s < 0 || s >= steps)
      throw ConfigError("mask_lstm: dataset '" + spec.name + "': output step " + std::to_string(s) + " is outside [0, " +
                        std::to_string(steps) + ")");
  return out;
}

/// Outputs the LSTM reads (several for MultiClass, else one); ConfigError for a dataset it cannot read.
std::int64_t lstm_outputs(const DatasetSpec& spec) {
  if (spec.input_shape.size() != 2)
    throw ConfigError("mask_lstm needs inputs [steps, features] per example; dataset '" + spec.name + "' has rank " +
                      std::to_string(spec.input_shape.size()));
  head_width(spec, "mask_lstm");
  return spec.task == TaskKind::MultiClass ? spec.num_outputs : 1;
}

class LstmNet : public Model {
 public:
  LstmNet(const LstmOptions& o, const DatasetSpec& spec) : spec_(spec) {
    outputs_ = lstm_outputs(spec);
    const std::int64_t width = head_width(spec, "mask_lstm");
    steps_ = read_steps(spec, spec.input_shape[0], outputs_);
    lstm_ = register_module("lstm", modlab::nn::Lstm(spec.input_shape[1], o.state_size, o.n_layers));
    out_ = register_module("output", modlab::nn::Linear(o.state_size, width));
  }

  Output forward(const Batch& batch) override {
    const auto h = lstm_(batch.inputs.to(torch::kFloat));  // [rows, T, H]
    Output out;
    if (spec_.task != TaskKind::MultiClass) {
      out.prediction = out_(h.select(1, steps_.front()));
      return out;
    }
    std::map<std::int64_t, torch::Tensor> at;  // read-out per distinct step
    std::vector<torch::Tensor> cols;
    for (std::int64_t o = 0; o < outputs_; ++o) {
      const auto s = steps_[static_cast<std::size_t>(o)];
      if (!at.count(s)) at[s] = shape_prediction(out_(h.select(1, s)), spec_);
      cols.push_back(at[s].select(1, o));
    }
    out.prediction = torch::stack(cols, 1);
    return out;
  }

 private:
  DatasetSpec spec_;
  std::int64_t outputs_ = 1;
  std::vector<std::int64_t> steps_;
  modlab::nn::Lstm lstm_{nullptr};
  modlab::nn::Linear out_{nullptr};
};

}  // namespace

const Options<FnnOptions>& fnn_options() {
  static const auto o = Options<FnnOptions>()
                            .key("layer_sizes", &FnnOptions::layer_sizes, "hidden layer widths (ReLU between layers)")
                            .at_least(1)
                            .key("init", &FnnOptions::init, "weight initialisation (xavier_normal: biases zero)")
                            .choices({"torch", "xavier_normal"})
                            .key("run_per_subtask", &FnnOptions::run_per_subtask,
                                 "run once per sub-task with the other sub-tasks' inputs zeroed; each output from "
                                 "its sub-task's run (the tuple FNN)");
  return o;
}

void check_fnn(const Config& c, const DatasetSpec& spec) {
  head_width(spec, "mask_fnn");
  if (fnn_options().parse(c).run_per_subtask) output_owners(spec);
}

std::shared_ptr<Model> make_fnn(const Config& c, const DatasetSpec& spec, Host&) {
  return std::make_shared<Fnn>(fnn_options().parse(c), spec);
}

const Options<LstmOptions>& lstm_options() {
  static const auto o = Options<LstmOptions>()
                            .key("state_size", &LstmOptions::state_size, "hidden units per layer").at_least(1)
                            .key("n_layers", &LstmOptions::n_layers, "stacked LSTM layers").at_least(1);
  return o;
}

void check_lstm(const Config&, const DatasetSpec& spec) {
  const std::int64_t outputs = lstm_outputs(spec);
  read_steps(spec, spec.input_shape[0], outputs);
}

std::shared_ptr<Model> make_lstm(const Config& c, const DatasetSpec& spec, Host&) {
  return std::make_shared<LstmNet>(lstm_options().parse(c), spec);
}

}  // namespace modlab::masked

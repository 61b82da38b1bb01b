// The `moe` model plugin: the expectation mixture of experts of Krishnamurthy & Watkins (moe §1.2),
// ŷ(x) = Σ_e g_e(x) f_e(x) with a softmax gate and softmax experts, trained end to end on
// NLL(log(ŷ + ε)), with the gate statistics of §1.4 recorded for every evaluated split.
//
// Routing (gate → probabilities) and combination are separate steps of forward(), so other training
// methods of the reference (stochastic, pre-softmax, EM, dual temperature, ...) can replace one step
// while reusing the expert banks, gates and metrics of moe_parts.
#include "experts.hpp"
#include "gate_metrics.hpp"
#include "gates.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab::moe {
namespace {

/// The resolved `[model]` table.
struct MoeOptions {
  std::int64_t num_experts = 4;
  std::string expert = "linear";
  std::vector<std::int64_t> expert_hidden = {4};
  std::string gate = "linear";
  std::vector<std::int64_t> gate_hidden;
  double temperature = 1.0;
  std::int64_t top_k = 0;
  bool top1_softmax_quirk = false;
  double eps = 1e-15;
};

void check_sizes(const Config& c, const std::string& key, const std::vector<std::int64_t>& sizes) {
  for (auto s : sizes)
    if (s <= 0) c.fail(key, "layer sizes must be positive, got " + std::to_string(s));
}

MoeOptions read_options(const Config& c) {
  MoeOptions o;
  o.num_experts = c.get_or<std::int64_t>("num_experts", o.num_experts);
  o.expert = c.get_or<std::string>("expert", o.expert);
  o.expert_hidden = c.get_or<std::vector<std::int64_t>>("expert_hidden", o.expert_hidden);
  o.gate = c.get_or<std::string>("gate", o.gate);
  o.gate_hidden = c.get_or<std::vector<std::int64_t>>("gate_hidden", o.gate_hidden);
  o.temperature = c.get_or<double>("temperature", o.temperature);
  o.top_k = c.get_or<std::int64_t>("top_k", o.top_k);
  o.top1_softmax_quirk = c.get_or<bool>("top1_softmax_quirk", o.top1_softmax_quirk);
  o.eps = c.get_or<double>("eps", o.eps);

  if (o.num_experts < 1) c.fail("num_experts", "expected at least 1 expert, got " + std::to_string(o.num_experts));
  if (o.expert != "linear" && o.expert != "mlp")
    c.fail("expert", "expected \"linear\" or \"mlp\", got \"" + o.expert + "\"");
  if (o.gate != "linear" && o.gate != "mlp") c.fail("gate", "expected \"linear\" or \"mlp\", got \"" + o.gate + "\"");
  if (o.expert == "mlp" && o.expert_hidden.empty())
    c.fail("expert_hidden", "expert = \"mlp\" needs at least one hidden layer");
  if (o.gate == "mlp" && o.gate_hidden.empty()) c.fail("gate_hidden", "gate = \"mlp\" needs at least one hidden layer");
  check_sizes(c, "expert_hidden", o.expert_hidden);
  check_sizes(c, "gate_hidden", o.gate_hidden);
  if (!(o.temperature > 0.0)) c.fail("temperature", "expected a temperature > 0");
  if (o.top_k < 0 || o.top_k > o.num_experts)
    c.fail("top_k", "expected 0 (all experts) to num_experts = " + std::to_string(o.num_experts) + ", got " +
                        std::to_string(o.top_k));
  if (!(o.eps >= 0.0)) c.fail("eps", "expected eps >= 0");
  // A linear expert / gate has no hidden layers, whatever *_hidden says (so a sweep may vary
  // `expert` alone).
  if (o.expert == "linear") o.expert_hidden.clear();
  if (o.gate == "linear") o.gate_hidden.clear();
  return o;
}

/// The expectation MoE.
class MoeModel : public Model {
 public:
  MoeModel(MoeOptions opt, const DatasetSpec& spec)
      : opt_(std::move(opt)), inputs_(spec.input_numel()), classes_(spec.num_classes) {
    experts_ = register_module(
        "experts", std::make_shared<MlpExpertBank>(opt_.num_experts, inputs_, opt_.expert_hidden, classes_));
    gate_ = register_module("gate", std::make_shared<MlpGate>(inputs_, opt_.gate_hidden, opt_.num_experts));
  }

  Output forward(const Batch& batch) override {
    const auto x = batch.inputs.reshape({batch.inputs.size(0), -1}).to(torch::kFloat);
    const GateOutput a = gate_->forward(x);
    const auto g = gate_probabilities(a.logits, opt_.temperature, opt_.top_k);  // [B, E]
    const ExpertOutput f = experts_->forward(x);                                // [B, E, C]
    auto y = mix(g, f.probs);
    // Reference quirk (§1.3.4): with k = 1 the top-k model applies a softmax to Σ g_e f_e.
    if (opt_.top_k == 1 && opt_.top1_softmax_quirk) y = torch::softmax(y, -1);
    Output out;
    out.prediction = y;
    out.kind = Output::Kind::Probabilities;
    out.aux["gate"] = g;
    out.aux["gate_logits"] = a.logits;
    out.aux["experts"] = f.probs;
    return out;
  }

  Losses loss(const Batch& batch, const Output& out) override {
    namespace F = torch::nn::functional;
    return {{"task", F::nll_loss(torch::log(out.prediction + opt_.eps), batch.targets)}};
  }

  void eval_begin(const std::string& split) override {
    stats_.erase(split);
    stats_.emplace(split, GateStats(opt_.num_experts, classes_));
  }

  void eval_batch(const std::string& split, const Batch& batch, const Output& out, MetricSet&) override {
    auto it = stats_.find(split);
    if (it == stats_.end()) it = stats_.emplace(split, GateStats(opt_.num_experts, classes_)).first;
    it->second.add(out.aux.at("gate"), out.aux.at("experts"), batch.targets);
  }

  void eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) override {
    auto it = stats_.find(split);
    if (it == stats_.end() || it->second.examples() == 0) return;
    const GateSummary s = it->second.summary();
    metrics.set("gate_sample_entropy", s.sample_entropy);
    metrics.set("gate_usage_entropy", s.usage_entropy);
    metrics.set("gate_mutual_information", s.mutual_information);
    metrics.set("gate_importance_cv", s.importance_cv);
    recorder.append(split + "/allocation", s.allocation, {"expert", "class"});
    recorder.append(split + "/gate_mean", s.gate_mean, {"expert"});
    recorder.append(split + "/expert_counts", s.expert_counts, {"expert"});
    if (split == "test" || !final_is_test_) {
      final_allocation_ = s.allocation;
      final_is_test_ = split == "test";
    }
  }

  void record(Recorder& recorder) override {
    if (final_allocation_.defined()) recorder.tensor("allocation", final_allocation_, {"expert", "class"});
  }

 private:
  MoeOptions opt_;
  std::int64_t inputs_, classes_;
  std::shared_ptr<ExpertBank> experts_;
  std::shared_ptr<Gate> gate_;
  std::map<std::string, GateStats> stats_;
  torch::Tensor final_allocation_;  // of the last evaluated "test" split (else the last evaluated one)
  bool final_is_test_ = false;
};

std::shared_ptr<Model> make_moe(const Config& config, const DatasetSpec& spec, Host&) {
  MoeOptions opt = read_options(config);
  if (spec.task != TaskKind::Classification)
    throw ConfigError("model 'moe' needs a classification dataset, but '" + spec.name + "' is " +
                      task_kind_name(spec.task));
  if (spec.num_classes < 2 || spec.input_numel() < 1)
    throw ConfigError("model 'moe': dataset '" + spec.name + "' has " + std::to_string(spec.num_classes) +
                      " classes and " + std::to_string(spec.input_numel()) + " input features; need >= 2 and >= 1");
  return std::make_shared<MoeModel>(std::move(opt), spec);
}

KeySpec key(std::string name, ValueType type, std::string def, std::string doc, ValueType element = ValueType::Null) {
  KeySpec k;
  k.name = std::move(name);
  k.type = type;
  k.element = element;
  k.default_value = std::move(def);
  k.doc = std::move(doc);
  return k;
}

void register_moe(Registrar& registrar) {
  ModelEntry e;
  e.name = "moe";
  e.description = "expectation mixture of experts: y = sum_e g_e(x) f_e(x), softmax gate and experts";
  e.keys = {
      key("num_experts", ValueType::Int, "4", "number of experts E"),
      key("expert", ValueType::String, "\"linear\"", "expert network: linear | mlp"),
      key("expert_hidden", ValueType::Array, "[4]", "mlp experts: hidden layer widths ([4] shallow, [32, 16, 4] deep)",
          ValueType::Int),
      key("gate", ValueType::String, "\"linear\"", "gate network: linear | mlp"),
      key("gate_hidden", ValueType::Array, "[]", "mlp gate: hidden layer widths", ValueType::Int),
      key("temperature", ValueType::Float, "1.0", "gate temperature T: g = softmax(a(x)/T)"),
      key("top_k", ValueType::Int, "0", "route through the k largest gate logits only (0 = all experts)"),
      key("top1_softmax_quirk", ValueType::Bool, "false", "top_k = 1: output softmax(sum_e g_e f_e) as the reference"),
      key("eps", ValueType::Float, "1e-15", "epsilon in the loss NLL(log(y + eps))"),
  };
  e.factory = &make_moe;
  registrar.add_model(std::move(e));
}

}  // namespace
}  // namespace modlab::moe

MODLAB_PLUGIN("moe", modlab::kModelPlugin, "1.0.0", "gated mixtures of experts", modlab::moe::register_moe)

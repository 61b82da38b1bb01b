// The `mode` model plugin: MoDE, a mixture of distilled experts (spec mode.md). E experts map the
// input to logits z_e(x), a softmax gate gives g(x), the prediction is the gated sum of logits
// z(x) = Σ_e g_e(x) z_e(x), and training minimises
//
//     L = CE(z, y) + α · L_KD
//
// where L_KD is the mutual distillation among the experts, weighted by the batch-mean gates
// (distill.hpp). Experts and gates are the batched banks of the mixture library (one forward for all
// experts); for every evaluated split the experts are probed: each expert's accuracy on the
// examples the gate routes to it and on all examples.
#include "distill.hpp"

#include <modlab/mixture/gate_metrics.hpp>
#include <modlab/mixture/networks.hpp>

#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>
#include <modlab/plugin.hpp>

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab::mode {
namespace {

/// The resolved `[model]` table.
struct ModeOptions {
  std::int64_t num_experts = 8;
  std::string expert = "mlp";
  std::vector<std::int64_t> expert_hidden = {128, 128};
  double dropout = 0.2;
  std::string gate = "mlp";
  std::vector<std::int64_t> gate_hidden = {64};
  double alpha = 0.01;
  double temperature = 0.02;
  std::string kd_form = "auto";
  std::string kd_outputs = "shared";
  std::string kd_pair_weight = "product";
  bool kd_t_squared = false;
  bool kd_gate_gradient = true;
  std::string ce_weight = "one";
  std::int64_t top_k = 0;
  std::string sparse_form = "renormalized";
  std::int64_t heatmap_samples = 100;
  DistillOptions distill;  // resolved from the kd_* keys
};

const std::vector<std::string> kNetworks = {"linear", "mlp", "mnist_cnn", "fmnist_cnn"};


const Options<ModeOptions>& mode_options() {
  using O = ModeOptions;
  static const auto o =
      Options<O>()
          .key("num_experts", &O::num_experts, "number of experts E").at_least(1)
          .key("expert", &O::expert, "expert network").choices(kNetworks)
          .key("expert_hidden", &O::expert_hidden, "mlp experts: hidden widths (in -> H -> H -> C)").at_least(1)
          .key("dropout", &O::dropout, "mlp experts: Dropout after each hidden ReLU (per expert)").at_least(0).less_than(1)
          .key("gate", &O::gate, "gate network").choices(kNetworks)
          .key("gate_hidden", &O::gate_hidden, "mlp gate: hidden widths (in -> 64 -> E)").at_least(1)
          .key("alpha", &O::alpha, "weight alpha of the distillation loss L_KD (0 = plain MoE)").at_least(0).finite()
          .key("temperature", &O::temperature, "distillation temperature T of softmax(z/T)").greater_than(0).finite()
          .key("kd_form", &O::kd_form, "auto (mse for E = 2, kl for E >= 3) | mse | kl").choices({"auto", "mse", "kl"})
          .key("kd_outputs", &O::kd_outputs,
               "expert logits for L_KD: shared (the prediction's forward) | separate (a new forward, as the reference)")
          .choices({"shared", "separate"})
          .key("kd_pair_weight", &O::kd_pair_weight, "pair weight: product (g_i*g_j, code) | student (g_i, README)")
          .choices({"product", "student"})
          .key("kd_t_squared", &O::kd_t_squared, "multiply L_KD by T^2 (README)")
          .key("kd_gate_gradient", &O::kd_gate_gradient,
               "L_KD's pair weights pass gradient to the gate (reference); false keeps large alpha from collapsing the gate")
          .key("ce_weight", &O::ce_weight, "CE weight: one (code) | one_minus_alpha (README)")
          .choices({"one", "one_minus_alpha"})
          .key("top_k", &O::top_k, "sparse gate: combine only the k largest gates (0 = all experts; <= num_experts)")
          .at_least(0)
          .key("sparse_form", &O::sparse_form,
               "top_k weights: renormalized (g_e / sum of kept) | reference (unnormalised g_e)")
          .choices({"reference", "renormalized"})
          .key("heatmap_samples", &O::heatmap_samples, "gate heatmap: first N examples of each evaluated split")
          .at_least(0);
  return o;
}

/// The `[model]` table: declared keys, the checks that involve several keys, derived settings.
ModeOptions read_options(const Config& c) {
  ModeOptions o = mode_options().parse(c);
  if (o.expert == "mlp" && o.expert_hidden.empty())
    c.fail("expert_hidden", "expert = \"mlp\" needs at least one hidden layer");
  if (o.gate == "mlp" && o.gate_hidden.empty()) c.fail("gate_hidden", "gate = \"mlp\" needs at least one hidden layer");
  if (o.ce_weight == "one_minus_alpha" && o.alpha > 1.0)
    c.fail("alpha", "ce_weight = \"one_minus_alpha\" needs alpha <= 1");
  if (o.top_k > o.num_experts)
    c.fail("top_k", "expected 0 (all experts) to num_experts = " + std::to_string(o.num_experts) + ", got " +
                        std::to_string(o.top_k));

  if (o.expert == "linear") o.expert_hidden.clear();
  if (o.gate == "linear") o.gate_hidden.clear();
  // The CNN presets of the moe plugin (moe README): conv 3×3 → pool → MLP.
  if (o.expert == "mnist_cnn") o.expert_hidden = {5, 32};
  if (o.expert == "fmnist_cnn") o.expert_hidden = {64, 32};
  if (o.gate == "mnist_cnn") o.gate_hidden = {128, 32};
  if (o.gate == "fmnist_cnn") o.gate_hidden = {512, 32};

  o.distill.form = o.kd_form == "mse"   ? KdForm::Mse
                   : o.kd_form == "kl"  ? KdForm::Kl
                                        : auto_form(o.num_experts);
  o.distill.weight = o.kd_pair_weight == "student" ? PairWeight::Student : PairWeight::Product;
  o.distill.temperature = o.temperature;
  o.distill.t_squared = o.kd_t_squared;
  o.distill.gate_gradient = o.kd_gate_gradient;
  return o;
}

/// MoDE: gated sum of expert logits, cross-entropy plus α·L_KD (README).
class ModeModel : public Model {
 public:
  ModeModel(ModeOptions opt, const DatasetSpec& spec)
      : opt_(std::move(opt)), input_shape_(mixture::image_shape(spec)), inputs_(spec.input_numel()),
        classes_(spec.num_classes) {
    experts_ = register_module("experts", mixture::make_experts("mode", opt_.expert, opt_.num_experts,
                                                                opt_.expert_hidden, spec, opt_.dropout));
    gate_ = register_module("gate", mixture::make_gate("mode", opt_.gate, opt_.gate_hidden, opt_.num_experts, spec));
    form_ = opt_.sparse_form == "reference" ? SparseForm::Reference : SparseForm::Renormalized;
  }

  Output forward(const Batch& batch) override {
    const auto expert_in = expert_input(batch);
    const auto gate_in = opt_.gate == opt_.expert ? expert_in : mixture::network_input(opt_.gate, batch.inputs, input_shape_);
    const auto z = experts_->forward(expert_in).logits;                                        // [B, E, C]
    const auto g = modlab::nn::softmax_in_layout(gate_->forward(gate_in).logits, -1);  // [B, E]
    const auto w = combine_weights(g, opt_.top_k, form_);
    Output out;
    out.kind = Output::Kind::Logits;
    out.prediction = combine(w, z);
    out.aux["gate"] = g;
    out.aux["weights"] = w;
    out.aux["expert_logits"] = z;
    return out;
  }

  Losses loss(const Batch& batch, const Output& out) override {
    namespace F = torch::nn::functional;
    const auto ce = F::cross_entropy(out.prediction, batch.targets);
    // Evaluation reports the plain cross-entropy, so validation losses compare across α and variants.
    if (!is_training()) return {{"ce", ce}};
    const double ce_w = opt_.ce_weight == "one_minus_alpha" ? 1.0 - opt_.alpha : 1.0;
    Losses losses{{"ce", ce_w == 1.0 ? ce : ce_w * ce}};
    if (opt_.alpha == 0.0 || opt_.num_experts < 2) {
      losses.push_back({"distill", torch::zeros({}, ce.options())});
      return losses;
    }
    // The reference evaluates every expert again for L_KD (new dropout masks, all experts on all
    // examples); by default the logits of the prediction's forward are reused.
    const auto z = opt_.kd_outputs == "separate" ? experts_->forward(expert_input(batch)).logits
                                                 : out.aux.at("expert_logits");
    losses.push_back({"distill", opt_.alpha * distillation_loss(z, out.aux.at("gate"), opt_.distill)});
    return losses;
  }

  std::vector<ParamGroup> param_groups(const std::string&) override {
    return {ParamGroup{"gate", params_of(*gate_), std::nullopt, std::nullopt},
            ParamGroup{"experts", params_of(*experts_), std::nullopt, std::nullopt}};
  }

  void eval_begin(const std::string& split) override {
    stats_.erase(split);
    stats_.emplace(split, SplitStats(opt_.num_experts, classes_));
  }

  void eval_batch(const std::string& split, const Batch& batch, const Output& out, MetricSet&) override {
    auto it = stats_.find(split);
    if (it == stats_.end()) it = stats_.emplace(split, SplitStats(opt_.num_experts, classes_)).first;
    auto& s = it->second;
    const auto g = out.aux.at("gate").detach();
    const auto z = out.aux.at("expert_logits").detach();
    s.probe.add(g, z, batch.targets);
    s.gate.add(g.to(torch::kCPU, torch::kDouble), modlab::nn::softmax_in_layout(z, -1).to(torch::kCPU, torch::kDouble),
               batch.targets.to(torch::kCPU));
    if (s.heatmap_rows < opt_.heatmap_samples) {
      const auto take = std::min<std::int64_t>(opt_.heatmap_samples - s.heatmap_rows, g.size(0));
      s.heatmap.push_back(g.slice(0, 0, take).to(torch::kCPU, torch::kFloat));
      s.heatmap_targets.push_back(batch.targets.slice(0, 0, take).to(torch::kCPU, torch::kLong));
      s.heatmap_rows += take;
    }
  }

  void eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) override {
    auto it = stats_.find(split);
    if (it == stats_.end() || it->second.probe.examples() == 0) return;
    const auto& s = it->second;
    const auto routed = s.probe.routed_accuracy();
    const auto all = s.probe.accuracy();
    const auto count = s.probe.routed_count();
    const auto used = count > 0;
    metrics.set("probe_hard_accuracy", s.probe.hard_routing_accuracy());
    metrics.set("probe_routed_accuracy_mean", routed.masked_select(used).mean().item<double>());
    metrics.set("probe_accuracy_mean", all.mean().item<double>());
    for (std::int64_t e = 0; e < opt_.num_experts; ++e) {
      const std::string p = "expert" + std::to_string(e);
      metrics.set(p + "_routed_accuracy", routed[e].item<double>());
      metrics.set(p + "_accuracy", all[e].item<double>());
      metrics.set(p + "_count", static_cast<double>(count[e].item<std::int64_t>()));
    }
    const mixture::GateSummary gs = s.gate.summary();
    metrics.set("gate_sample_entropy", gs.sample_entropy);
    metrics.set("gate_usage_entropy", gs.usage_entropy);
    recorder.append(split + "/probe_routed_accuracy", routed.to(torch::kFloat), {"expert"});
    recorder.append(split + "/probe_accuracy", all.to(torch::kFloat), {"expert"});
    recorder.append(split + "/probe_count", count, {"expert"});
    recorder.append(split + "/gate_mean", gs.gate_mean, {"expert"});
    Final f;
    f.routed = routed.to(torch::kFloat);
    f.all = all.to(torch::kFloat);
    f.count = count.clone();
    if (!s.heatmap.empty()) {
      f.heatmap = torch::cat(s.heatmap, 0);
      f.heatmap_targets = torch::cat(s.heatmap_targets, 0);
      recorder.append(split + "/gate_heatmap", f.heatmap, {"sample", "expert"});
    }
    if (split == "test" || !final_is_test_) {
      final_ = f;
      final_is_test_ = split == "test";
    }
  }

  void record(Recorder& recorder) override {
    if (!final_.routed.defined()) return;
    recorder.tensor("probe_routed_accuracy", final_.routed, {"expert"});
    recorder.tensor("probe_accuracy", final_.all, {"expert"});
    recorder.tensor("probe_count", final_.count, {"expert"});
    if (final_.heatmap.defined()) {
      recorder.tensor("gate_heatmap", final_.heatmap, {"sample", "expert"});
      recorder.tensor("gate_heatmap_targets", final_.heatmap_targets, {"sample"});
    }
  }

 private:
  struct SplitStats {
    SplitStats(std::int64_t experts, std::int64_t classes) : probe(experts), gate(experts, classes) {}
    ExpertProbe probe;
    mixture::GateStats gate;
    std::vector<torch::Tensor> heatmap, heatmap_targets;  // the first `heatmap_samples` examples
    std::int64_t heatmap_rows = 0;
  };
  struct Final {
    torch::Tensor routed, all, count, heatmap, heatmap_targets;
  };

  torch::Tensor expert_input(const Batch& batch) const {
    return mixture::network_input(opt_.expert, batch.inputs, input_shape_);
  }

  static std::vector<torch::Tensor> params_of(const torch::nn::Module& m) {
    std::vector<torch::Tensor> out;
    for (const auto& p : m.parameters())
      if (p.requires_grad()) out.push_back(p);
    return out;
  }

  ModeOptions opt_;
  std::vector<std::int64_t> input_shape_;
  std::int64_t inputs_, classes_;
  std::shared_ptr<mixture::ExpertBank> experts_;
  std::shared_ptr<mixture::Gate> gate_;
  SparseForm form_ = SparseForm::Renormalized;
  std::map<std::string, SplitStats> stats_;
  Final final_;  // of the last evaluated "test" split (else the last evaluated one)
  bool final_is_test_ = false;
};

std::shared_ptr<Model> make_mode(const Config& config, const DatasetSpec& spec, Host&) {
  ModeOptions opt = read_options(config);
  mixture::require_classification("mode", spec);
  return std::make_shared<ModeModel>(std::move(opt), spec);
}

/// Before any run starts: the dataset is a classification one, and the model fits the machine.
void check_mode(const Config& config, const DatasetSpec& spec) {
  const ModeOptions opt = read_options(config);
  mixture::require_classification("mode", spec);
  check_model_size(config, "num_experts",
                   mixture::mixture_parameters("mode", opt.expert, opt.expert_hidden, opt.gate, opt.gate_hidden,
                                               opt.num_experts, spec));
}

void register_mode(Registrar& registrar) {
  ModelEntry e;
  e.name = "mode";
  e.description = "MoDE: mixture of experts with mutual distillation among the experts, plus expert probing";
  e.variants = {
      "expert = \"linear\"\ngate = \"linear\"",
      "expert = \"mnist_cnn\"\ngate = \"mnist_cnn\"",
      "expert = \"fmnist_cnn\"\ngate = \"fmnist_cnn\"",
  };
  e.keys = mode_options().specs();
  e.factory = &make_mode;
  e.check = &check_mode;
  registrar.add_model(std::move(e));
}

}  // namespace
}  // namespace modlab::mode

MODLAB_PLUGIN("mode", modlab::kModelPlugin, "1.0.0", "mixture of distilled experts", modlab::mode::register_mode)

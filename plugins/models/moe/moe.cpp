// The `moe` model plugin: the expectation mixture of experts of Krishnamurthy & Watkins (moe §1.2),
// ŷ(x) = Σ_e g_e(x) f_e(x) with a softmax gate and softmax experts, trained end to end on
// NLL(log(ŷ + ε)), with the gate statistics of §1.4 recorded for every evaluated split.
//
// Routing (gate → probabilities) and combination are separate steps of forward(), so other training
// methods of the reference (stochastic, pre-softmax, EM, dual temperature, ...) can replace one step
// while reusing the expert banks, gates and metrics of the mixture library.
#include "regularizers.hpp"

#include <modlab/mixture/gate_metrics.hpp>
#include <modlab/mixture/networks.hpp>

#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>
#include <modlab/plugin.hpp>
#include <modlab/population.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace modlab::moe {
using namespace modlab::mixture;
namespace {

/// The resolved `[model]` table.
struct MoeOptions {
  std::string method = "expectation";
  std::int64_t num_experts = 4;
  std::string expert = "linear";
  std::vector<std::int64_t> expert_hidden = {4};
  std::string gate = "linear";
  std::vector<std::int64_t> gate_hidden;
  std::string gating = "softmax";
  std::int64_t attention_dim = 32;
  double temperature = 1.0;
  std::vector<double> temperature_schedule;
  double temperature_decay = 0.0;
  std::int64_t temperature_decay_start = 0;
  std::int64_t top_k = 0;
  bool top1_softmax_quirk = false;
  bool fit_gate_metrics = false;
  double eps = 1e-15;
  double w_importance = 0.0;
  double w_ortho = 0.0;
  std::string ortho_form = "master";
  double w_ideal_gate = 0.0;
  double beta_same = 0.0;
  double beta_diff = 0.0;
  std::string sample_similarity_form = "normalized";
  std::int64_t em_estep_samples = 128;
  std::string em_loss_form = "reference";
  std::vector<double> expert_lr_scale;
  std::vector<std::vector<std::int64_t>> expert_classes;  // per expert: the classes it may output
  std::string expert_objective = "mixture";
  std::string train_parts = "all";
  std::string init_experts_from, init_gate_from;  // run references (Host::model_weights_of)
  std::int64_t expert_init_seed = -1;
  std::string selection = "self_information";
  std::string selection_output = "argmax";
  std::int64_t gate_epochs = -1;
  std::int64_t decision_grid = 100;
};

const std::vector<std::string> kMethods = {"expectation", "stochastic", "pre_softmax",  "em",
                                           "dual_temperature", "no_gate", "expert_loss"};
const std::vector<std::string>& kNetworks = network_kinds();


const Options<MoeOptions>& moe_options() {
  using O = MoeOptions;
  static const auto o =
      Options<O>()
          .key("method", &O::method, "training method (README)").choices(kMethods)
          .key("num_experts", &O::num_experts, "number of experts E").at_least(1)
          .key("expert", &O::expert, "expert network").choices(kNetworks)
          .key("expert_hidden", &O::expert_hidden,
               "hidden widths of mlp experts ([4] shallow, [32, 16, 4] deep), or of a CNN expert's MLP when given")
          .at_least(1)
          .key("gate", &O::gate, "gate network").choices(kNetworks)
          .key("gate_hidden", &O::gate_hidden, "hidden widths of an mlp gate, or of a CNN gate's MLP when given")
          .at_least(1)
          .key("gating", &O::gating, "softmax (gate logits) | attentive (query-key attention)")
          .choices({"softmax", "attentive"})
          .key("attention_dim", &O::attention_dim, "attentive gating: width of W_q and W_k").at_least(1)
          .key("temperature", &O::temperature, "gate temperature T: g = softmax(a(x)/T)").greater_than(0).finite()
          .per_member()
          .key("temperature_schedule", &O::temperature_schedule,
               "dual_temperature: T per epoch (last entry repeated; empty = temperature)")
          .greater_than(0).finite()
          .key("temperature_decay", &O::temperature_decay, "dual_temperature: T <- T/(1 + decay*(epoch - start))")
          .at_least(0).finite()
          .key("temperature_decay_start", &O::temperature_decay_start, "dual_temperature: first decayed epoch")
          .at_least(0)
          .key("top_k", &O::top_k, "route through the k largest gate logits only (0 = all experts; <= num_experts)")
          .at_least(0)
          .key("top1_softmax_quirk", &O::top1_softmax_quirk, "top_k = 1: output softmax(sum_e g_e f_e) as the reference")
          .key("fit_gate_metrics", &O::fit_gate_metrics,
               "also accumulate H_s, H_u, I(E;Y), the expert x class table and the error over each epoch's training "
               "batches, as the reference logs them (fit_* metrics; the training forward then builds the gate and "
               "expert tensors)")
          .key("eps", &O::eps, "epsilon in the loss NLL(log(y + eps))").at_least(0).finite()
          .key("w_importance", &O::w_importance, "weight of the importance CV^2 term").at_least(0).finite()
          .key("w_ortho", &O::w_ortho, "weight of the ortho CV^2 term").at_least(0).finite()
          .key("ortho_form", &O::ortho_form, "ortho on sum g_e f_e (master) | sum f_e (xai)").choices({"master", "xai"})
          .key("w_ideal_gate", &O::w_ideal_gate, "weight of the ideal-gate MSE term").at_least(0).finite()
          .key("beta_same", &O::beta_same, "sample similarity: weight beta_s of the same-expert term").at_least(0).finite()
          .key("beta_diff", &O::beta_diff, "sample similarity: weight beta_d of the different-expert term")
          .at_least(0).finite()
          .key("sample_similarity_form", &O::sample_similarity_form,
               "(b_s*same - b_d*diff)/B^2 (normalized) | b_s*same - b_d*diff/B^2 (reference)")
          .choices({"normalized", "reference"})
          .key("em_estep_samples", &O::em_estep_samples, "em: training examples re-assigned per epoch").at_least(1)
          .key("em_loss_form", &O::em_loss_form,
               "em M-step: -log(f_a[y])*g_a (reference) | -log(f_a[y]) - log(g_a) (complete_data)")
          .choices({"reference", "complete_data"})
          .key("expert_lr_scale", &O::expert_lr_scale,
               "per-expert learning-rate factors (one per expert; scales each expert's optimizer step)")
          .at_least(0).finite()
          .key("expert_classes", &O::expert_classes,
               "per expert, the classes it may output (softmax over them, 0 elsewhere); [] = all")
          .at_least(0)
          .key("expert_objective", &O::expert_objective,
               "mixture (train the mixture) | own_classes (each expert alone on the examples of its expert_classes)")
          .choices({"mixture", "own_classes"})
          .key("train_parts", &O::train_parts, "parameters that train").choices({"all", "experts", "gate"})
          .key("init_experts_from", &O::init_experts_from,
               "initialise the experts from an earlier run: \"<results dir>/<run_id>\" or \"<results dir>/same-seed\"")
          .key("init_gate_from", &O::init_gate_from,
               "initialise the gate (and attention) from an earlier run, same forms as init_experts_from")
          .key("expert_init_seed", &O::expert_init_seed,
               "seed of the experts' initial weights (-1 = the run's generator); equal values = same initial experts")
          .at_least(-1)
          .key("selection", &O::selection, "no_gate: expert selection").choices({"self_information", "entropy"})
          .key("selection_output", &O::selection_output, "no_gate: prediction")
          .choices({"argmax", "sample", "expectation"})
          .key("gate_epochs", &O::gate_epochs, "no_gate: epochs of the gate phase (-1 = train.epochs, 0 = none)")
          .at_least(-1)
          .key("decision_grid", &O::decision_grid, "2-D inputs: side of the recorded decision-map grid (0 = off)")
          .at_least(0);
  return o;
}

/// The `[model]` table: declared keys, then the checks that involve several keys, then the
/// defaults that depend on other keys (the CNNs' MLP widths).
MoeOptions read_options(const Config& c) {
  MoeOptions o = moe_options().parse(c);
  if (!o.expert_classes.empty() && static_cast<std::int64_t>(o.expert_classes.size()) != o.num_experts)
    c.fail("expert_classes", "expected one class list per expert (num_experts = " + std::to_string(o.num_experts) +
                                 "), got " + std::to_string(o.expert_classes.size()));
  for (const auto& cl : o.expert_classes)
    if (cl.empty()) c.fail("expert_classes", "every expert needs at least one class");
  if (o.expert_objective == "own_classes" && o.expert_classes.empty())
    c.fail("expert_objective", "\"own_classes\" trains each expert on its classes: set expert_classes");
  if (o.method == "no_gate" && o.train_parts != "all")
    c.fail("train_parts", "no_gate trains experts and gate in its own phases; leave train_parts = \"all\"");
  if (!o.expert_lr_scale.empty() && static_cast<std::int64_t>(o.expert_lr_scale.size()) != o.num_experts)
    c.fail("expert_lr_scale", "expected one factor per expert (num_experts = " + std::to_string(o.num_experts) +
                                  "), got " + std::to_string(o.expert_lr_scale.size()));
  if (o.expert == "mlp" && o.expert_hidden.empty())
    c.fail("expert_hidden", "expert = \"mlp\" needs at least one hidden layer");
  if (o.gate == "mlp" && o.gate_hidden.empty()) c.fail("gate_hidden", "gate = \"mlp\" needs at least one hidden layer");
  if (o.top_k > o.num_experts)
    c.fail("top_k", "expected 0 (all experts) to num_experts = " + std::to_string(o.num_experts) + ", got " +
                        std::to_string(o.top_k));
  if (o.expert == "linear") o.expert_hidden.clear();
  if (o.gate == "linear") o.gate_hidden.clear();
  // The CNNs' MLP widths of §1.6 unless given (the XAI MNIST expert is 169 → 5 → 10, its gate 169 → 128 → 64).
  const bool expert_hidden_set = c.has("expert_hidden"), gate_hidden_set = c.has("gate_hidden");
  if (o.expert == "mnist_cnn" && !expert_hidden_set) o.expert_hidden = {5, 32};
  if (o.expert == "fmnist_cnn" && !expert_hidden_set) o.expert_hidden = {64, 32};
  if (o.gate == "mnist_cnn" && !gate_hidden_set) o.gate_hidden = {128, 32};
  if (o.gate == "fmnist_cnn" && !gate_hidden_set) o.gate_hidden = {512, 32};
  if (o.expert == "cifar_cnn" && !expert_hidden_set) o.expert_hidden = {1024, 256};
  if (o.gate == "cifar_cnn" && !gate_hidden_set) o.gate_hidden = {1024, 256};
  if (o.gating == "attentive") {
    if (o.expert_hidden.empty()) c.fail("gating", "attentive gating needs experts with a hidden layer (the keys)");
    if (o.gate_hidden.empty()) c.fail("gating", "attentive gating needs a gate with a hidden layer (the query)");
  }
  return o;
}

class MoeModel;

/// What a method's prediction combines: the experts' outputs, the gate probabilities as a dense
/// [E, B] tensor when the gate computed them batch-innermost, and the gate temperature.
struct Mixture {
  const ExpertOutput& f;
  const torch::Tensor& g_t;  ///< [E, B] or undefined
  bool dense;                ///< both dense tensors exist: mix on them (fewer ops and views)
  double t;
};

/// One training method of the reference (the `method` key): how gate and experts predict
/// together, the loss that trains them, and what a step, an epoch and the phases do. One class per
/// method (after MoeModel below), so the model never branches on the method's name.
class Method {
 public:
  virtual ~Method() = default;
  /// Whether the task loss reads the gate and expert tensors of `Output::aux`.
  virtual bool reads_aux() const { return true; }
  /// Gate temperature of a forward now.
  virtual double temperature(const MoeModel& m) const;
  /// The prediction [B, C] from the gate probabilities `g` [B, E] (undefined when only `mx.g_t`
  /// was built); a method that selects experts by its own rule puts its selection into `g`.
  virtual torch::Tensor predict(MoeModel& m, const Batch& batch, const Mixture& mx, torch::Tensor& g) const = 0;
  /// A loss that replaces every other term in the current phase (no-gate's gate phase), if any.
  virtual std::optional<Losses> phase_loss(MoeModel& m, const Batch& batch, const Output& out) const { return {}; }
  /// The task terms; the default is the NLL of the prediction.
  virtual Losses task_loss(MoeModel& m, const Batch& batch, const Output& out) const;
  /// Whether the regularizer terms (importance, ortho, ideal gate, sample similarity) apply.
  virtual bool regularized() const { return true; }
  virtual std::vector<Phase> phases() const { return {Phase{"train", -1}}; }
  virtual std::vector<ParamGroup> param_groups(MoeModel& m, const std::string& phase) const;
  virtual void begin_epoch(MoeModel& m, const EpochContext& ctx) const {}
  /// One training step; the default: the lean forward, the loss, `ctx.optimize`.
  virtual Losses step(MoeModel& m, const Batch& batch, StepContext& ctx) const;
};

std::unique_ptr<Method> make_method(const MoeOptions& o);

/// One model for every training method of the reference; `method` picks the Method that decides
/// how the gate and the experts combine, train and predict (README).
class MoeModel : public Model {
 public:
  MoeModel(MoeOptions opt, const DatasetSpec& spec)
      : opt_(std::move(opt)), spec_(spec), input_shape_(image_shape(spec)), inputs_(spec.input_numel()),
        classes_(spec.num_classes) {
    build_experts_with_seed();
    build_gate();
    if (!opt_.expert_classes.empty()) {
      auto mask = torch::zeros({opt_.num_experts, classes_}, torch::kBool);
      for (std::int64_t e = 0; e < opt_.num_experts; ++e)
        for (auto k : opt_.expert_classes[static_cast<std::size_t>(e)]) mask[e][k] = true;
      expert_mask_ = register_buffer("expert_mask", mask);
    }
    temperature_ = opt_.temperature;
    method_ = make_method(opt_);
    check_expert_lr_scale();
    lean_step_ = !attention_ && !expert_mask_.defined() && !loss_reads_aux() && !opt_.fit_gate_metrics;
  }

  /// The experts, built under `expert_init_seed` when set (so runs with the same value start from
  /// the same expert weights whatever their run seed; the global generator is restored after).
  void build_experts_with_seed() {
    if (opt_.expert_init_seed < 0) return build_experts();
    auto gen = at::detail::getDefaultCPUGenerator();
    torch::Tensor state;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      state = gen.get_state();
    }
    torch::manual_seed(static_cast<std::uint64_t>(opt_.expert_init_seed));
    build_experts();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }

  /// Starts the experts from an earlier run's final experts (a run reference, see
  /// Host::model_weights_of); the weights must come from the same expert architecture and num_experts.
  void init_experts_from(const Host& host, const std::string& run_ref) {
    host.load_weights(*experts_, run_ref, "experts");
  }

  /// Starts the gate, and the attention of attentive gating, from an earlier run's.
  void init_gate_from(const Host& host, const std::string& run_ref) {
    host.load_weights(*gate_, run_ref, "gate");
    if (attention_) host.load_weights(*attention_, run_ref, "attention");
  }

  void build_experts() {
    experts_ = register_module("experts", make_experts("moe", opt_.expert, opt_.num_experts, opt_.expert_hidden, spec_));
  }

  void build_gate() {
    gate_ = register_module("gate", make_gate("moe", opt_.gate, opt_.gate_hidden, opt_.num_experts, spec_));
    if (opt_.gating == "attentive")
      attention_ = register_module(
          "attention", std::make_shared<Attention>(opt_.gate_hidden.back(), opt_.expert_hidden.back(), opt_.attention_dim));
  }

  void check_expert_lr_scale() {
    if (!opt_.expert_lr_scale.empty()) {
      // Every expert parameter must be stacked with a leading axis of E blocks (expert e owns block
      // e): [E, …] for StackedLinear, [E·k, …] for the convolutions and their BatchNorms.
      for (const auto& p : group_params("experts"))
        if (p.dim() == 0 || p.size(0) % opt_.num_experts != 0)
          throw ConfigError("model 'moe': expert_lr_scale: expert parameter of shape " + shape_text(p) +
                            " has no leading axis of " + std::to_string(opt_.num_experts) + " expert blocks");
      expert_lr_scale_ = torch::tensor(opt_.expert_lr_scale, torch::kDouble);
    }
  }

  Output forward(const Batch& batch) override { return forward_at(batch, current_temperature()); }

  /// The gate temperature of a forward now (dual temperature: T while training, 1 in evaluation).
  double current_temperature() const { return method_->temperature(*this); }

  /// `scores` over the gate temperature `t`, `axis` holding the rows. In a population whose members
  /// differ in `temperature` (declared per member), member m's own: t·T_m/T, which is T_m where t
  /// is the option and T_m/(1 + decay·…) under dual_temperature's decay (a schedule of its own
  /// does not depend on T).
  torch::Tensor tempered(const torch::Tensor& scores, double t, std::int64_t axis) const {
    if (is_training() && opt_.temperature_schedule.empty()) {
      const auto own = modlab::member_option("temperature", opt_.temperature, scores, axis);
      if (own.dim() > 0) return scores / (own * (t / opt_.temperature));
    }
    return t == 1.0 ? scores : scores / t;
  }

  /// Whether `loss` reads the [B, …] gate and expert tensors of `Output::aux` (methods and terms
  /// other than the NLL of the expectation mixture do).
  bool loss_reads_aux() const {
    return method_->reads_aux() || opt_.expert_objective == "own_classes" || opt_.w_importance > 0 ||
           opt_.w_ortho > 0 || opt_.w_ideal_gate > 0 || opt_.beta_same != 0 || opt_.beta_diff != 0;
  }

  /// The forward pass with gate temperature `t`. With `for_loss` (the model's own training step)
  /// and a loss that reads only the prediction (`lean_step_`), the [B, …] views of the dense
  /// batch-innermost tensors and the aux entries are not built: each view is an autograd node
  /// nothing would read.
  Output forward_at(const Batch& batch, double t, bool for_loss = false) {
    const bool lean = for_loss && lean_step_;
    const auto expert_in = network_input(opt_.expert, batch.inputs, input_shape_);
    ExpertOutput f = lean ? experts_->forward_dense(expert_in) : experts_->forward(expert_in);  // [B, E, C]
    if (expert_mask_.defined()) {
      // Expert e outputs only its classes (softmax over them, exactly 0 elsewhere). A large finite
      // value instead of −∞ keeps pre-softmax mixing free of 0·∞.
      f.logits = f.logits.masked_fill(expert_mask_.logical_not().unsqueeze(0), -1e9);
      f.probs = modlab::nn::softmax_in_layout(f.logits, -1);
      f.probs_t = torch::Tensor();
    }
    const auto gate_in = opt_.gate == opt_.expert ? expert_in : network_input(opt_.gate, batch.inputs, input_shape_);
    GateOutput a = lean ? gate_->forward_dense(gate_in) : gate_->forward(gate_in);
    // With a batch-innermost gate and no top-k, the softmax over the experts runs on the dense
    // [E, B] scores; g is its transposed view.
    torch::Tensor g_t;
    if (!attention_ && a.logits_t.defined() && !(opt_.top_k > 0 && opt_.top_k < opt_.num_experts))
      g_t = torch::softmax(tempered(a.logits_t, t, 1), 0);
    // Σ_e g_e f_e on the dense tensors when both exist (fewer ops and views).
    const bool dense_mix = g_t.defined() && f.probs_t.defined();
    const bool views = !(lean && dense_mix);
    if (views) {
      f.add_views();
      a.add_views();
    }
    const torch::Tensor logits = attention_ ? attention_->forward(a.hidden, f.hidden) : a.logits;
    torch::Tensor g;  // [B, E]
    if (!g_t.defined())
      g = gate_probabilities(tempered(logits, t, 0), 1.0, opt_.top_k);
    else if (views)
      g = g_t.t();
    Output out;
    out.kind = Output::Kind::Probabilities;
    out.prediction = method_->predict(*this, batch, Mixture{f, g_t, dense_mix, t}, g);
    if (lean) return out;
    out.aux["gate"] = g;
    out.aux["gate_logits"] = logits;
    out.aux["experts"] = f.probs;
    out.aux["expert_logits"] = f.logits;
    out.aux["inputs"] = flat_inputs(batch.inputs);
    if (for_loss && opt_.fit_gate_metrics && t == current_temperature()) add_fit(batch, out);
    return out;
  }

  /// The training-time statistics of `fit_gate_metrics`: the gate and experts of a training
  /// forward (before its optimizer step) and whether its prediction was right.
  void add_fit(const Batch& batch, const Output& out) {
    torch::NoGradGuard ng;
    if (!fit_.gate) fit_.gate.emplace(opt_.num_experts, classes_);
    const auto y = batch.targets.to(torch::kCPU);
    fit_.gate->add(out.aux.at("gate").detach().to(torch::kCPU, torch::kDouble),
                   out.aux.at("experts").detach().to(torch::kCPU, torch::kDouble), y);
    fit_.errors += (out.prediction.detach().argmax(1).to(torch::kCPU) != y).sum().item<std::int64_t>();
  }

  /// Writes the `fit_*` metrics of the epoch just trained.
  void end_epoch(const EpochContext&, Recorder& recorder) override {
    if (!fit_.gate || fit_.gate->examples() == 0) return;
    const GateSummary s = fit_.gate->summary();
    recorder.scalar("fit_gate_sample_entropy", s.sample_entropy);
    recorder.scalar("fit_gate_usage_entropy", s.usage_entropy);
    recorder.scalar("fit_gate_mutual_information", s.mutual_information);
    recorder.scalar("fit_error", static_cast<double>(fit_.errors) / static_cast<double>(s.examples));
    recorder.append("fit/allocation", s.allocation, {"expert", "class"});
    fit_ = FitStats{};
  }

  Losses loss(const Batch& batch, const Output& out) override {
    // Undefined after the lean forward of the training step, where no term below reads them.
    const torch::Tensor g = aux_or_undefined(out, "gate");
    const torch::Tensor f = aux_or_undefined(out, "experts");
    const auto& y = batch.targets;
    if (auto only = method_->phase_loss(*this, batch, out)) return *only;
    if (opt_.expert_objective == "own_classes") {
      // Each expert alone on the examples of its classes: Σ_e mean_{i: y_i ∈ classes(e)} −log f_e(x_i)[y_i]
      // (the same gradients as training every expert separately on its own class subset).
      const auto own = expert_mask_.t().index_select(0, y).to(f.scalar_type());              // [B, E]
      const auto nll = -torch::log(f.gather(2, y.view({-1, 1, 1}).expand({y.size(0), f.size(1), 1})).squeeze(2) + 1e-7);
      return {{"own_classes", ((nll * own).sum(0) / own.sum(0).clamp_min(1.0)).sum()}};
    }
    Losses losses = method_->task_loss(*this, batch, out);
    if (!method_->regularized()) return losses;
    if (opt_.w_importance > 0) losses.push_back({"importance", opt_.w_importance * importance_loss(g)});
    if (opt_.w_ortho > 0) losses.push_back({"ortho", opt_.w_ortho * ortho_loss(g, f, opt_.ortho_form)});
    if (opt_.w_ideal_gate > 0) losses.push_back({"ideal_gate", opt_.w_ideal_gate * ideal_gate_loss(g, f, y)});
    // L_s is O(B²) in the batch: training batches only, so a 10,000-example evaluation batch does
    // not build a 10⁴ × 10⁴ distance matrix.
    if ((opt_.beta_same != 0 || opt_.beta_diff != 0) && is_training())
      losses.push_back({"sample_similarity", sample_similarity_loss(out.aux.at("inputs"), g, opt_.beta_same,
                                                                    opt_.beta_diff, opt_.sample_similarity_form)});
    return losses;
  }

  /// With `expert_lr_scale`, the optimizer's step of expert e's block of every stacked expert
  /// parameter is multiplied by s_e: p ← p_before + s_e·(p_after − p_before). SGD (with momentum
  /// or Nesterov), RMSprop (also centered / with momentum), Adam, AdamW and Adagrad all step
  /// p ← p − lr·u, where u and every state buffer are independent of lr, so this is exactly the
  /// trajectory of one optimizer with lr·s_e for expert e (and a learning-rate schedule scales
  /// every expert alike). Scaling the *gradient* instead is exact only for plain SGD: RMSprop and
  /// Adam divide by a running gradient scale and would ignore the factor (up to their ε).
  Losses train_step(const Batch& batch, StepContext& ctx) override {
    if (!expert_lr_scale_.defined()) return method_->step(*this, batch, ctx);
    const auto params = group_params("experts");
    std::vector<torch::Tensor> before;
    before.reserve(params.size());
    for (const auto& p : params) before.push_back(p.detach().clone());
    Losses losses = method_->step(*this, batch, ctx);
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto p = params[i].detach().view({opt_.num_experts, -1});
      const auto s = expert_lr_scale_.to(p.device(), p.scalar_type()).view({-1, 1});
      // lerp is exact at both ends: s = 0 restores p_before, s = 1 keeps p_after bit for bit.
      p.copy_(torch::lerp(before[i].view({opt_.num_experts, -1}), p, s));
    }
    return losses;
  }

  std::vector<Phase> phases() const override { return method_->phases(); }

  void begin_phase(const Phase& phase) override { phase_ = phase.name; }

  std::vector<ParamGroup> param_groups(const std::string& phase) override { return method_->param_groups(*this, phase); }

  void begin_epoch(const EpochContext& ctx) override {
    fit_ = FitStats{};
    method_->begin_epoch(*this, ctx);
  }

  /// The dual-temperature schedule: T[epoch] (the last entry repeated; `temperature` without a
  /// schedule), divided by 1 + decay·(epoch − start) from `temperature_decay_start` on, at least 0.001.
  double scheduled_temperature(std::int64_t epoch) const {
    double t = opt_.temperature;
    if (!opt_.temperature_schedule.empty()) {
      const auto i = std::min<std::size_t>(static_cast<std::size_t>(epoch), opt_.temperature_schedule.size() - 1);
      t = opt_.temperature_schedule[i];
    }
    if (opt_.temperature_decay > 0 && epoch >= opt_.temperature_decay_start)
      t /= 1.0 + opt_.temperature_decay * static_cast<double>(epoch - opt_.temperature_decay_start);
    return std::max(t, 0.001);
  }

  /// EM E-step on `em_estep_samples` random training examples: a_i = argmax_e g_e(x_i) f_e(x_i)[y_i].
  void e_step(const Split& train) {
    const auto n = train.size();
    if (!assignments_.defined() || assignments_.size(0) != n)
      assignments_ = torch::randint(opt_.num_experts, {n}, torch::TensorOptions().dtype(torch::kLong));
    const auto idx = torch::randperm(n, torch::TensorOptions().dtype(torch::kLong))
                         .slice(0, 0, std::min<std::int64_t>(opt_.em_estep_samples, n));
    torch::NoGradGuard ng;
    const auto device = experts_->parameters().front().device();
    const Batch b = train.get(idx, false).to(device);
    const Output out = forward_at(b, opt_.temperature);
    const auto score = out.aux.at("gate") * true_class_probs(out.aux.at("experts"), b.targets);
    assignments_.index_put_({idx}, score.argmax(1).to(torch::kCPU));
  }

  const torch::Tensor& assignments() const { return assignments_; }
  double temperature() const { return temperature_; }

  void eval_begin(const std::string& split) override {
    stats_.erase(split);
    stats_.emplace(split, SplitStats{GateStats(opt_.num_experts, classes_), torch::zeros({opt_.num_experts}, torch::kDouble)});
  }

  void eval_batch(const std::string& split, const Batch& batch, const Output& out, MetricSet&) override {
    auto it = stats_.find(split);
    if (it == stats_.end())
      it = stats_.emplace(split, SplitStats{GateStats(opt_.num_experts, classes_),
                                            torch::zeros({opt_.num_experts}, torch::kDouble)}).first;
    const auto g = out.aux.at("gate").detach().to(torch::kCPU, torch::kDouble);
    const auto f = out.aux.at("experts").detach().to(torch::kCPU, torch::kDouble);
    const auto y = batch.targets.to(torch::kCPU);
    it->second.gate.add(g, f, y);
    it->second.weighted_loss += (g * -torch::log(true_class_probs(f, y) + opt_.eps)).sum(0);
    if (batch.inputs.dim() == 2 && batch.inputs.size(1) == 2) {
      const auto x = batch.inputs.detach().to(torch::kCPU, torch::kDouble);
      const auto lo = std::get<0>(x.min(0)), hi = std::get<0>(x.max(0));
      bbox_lo_ = bbox_lo_.defined() ? torch::minimum(bbox_lo_, lo) : lo;
      bbox_hi_ = bbox_hi_.defined() ? torch::maximum(bbox_hi_, hi) : hi;
    }
  }

  void eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) override {
    auto it = stats_.find(split);
    if (it == stats_.end() || it->second.gate.examples() == 0) return;
    const GateSummary s = it->second.gate.summary();
    metrics.set("gate_sample_entropy", s.sample_entropy);
    metrics.set("gate_usage_entropy", s.usage_entropy);
    metrics.set("gate_mutual_information", s.mutual_information);
    metrics.set("gate_importance_cv", s.importance_cv);
    const auto weighted = it->second.weighted_loss / static_cast<double>(s.examples);
    for (std::int64_t e = 0; e < opt_.num_experts; ++e) {
      metrics.set("expert" + std::to_string(e) + "_count", static_cast<double>(s.expert_counts[e].item<std::int64_t>()));
      metrics.set("expert" + std::to_string(e) + "_loss", weighted[e].item<double>());
    }
    recorder.append(split + "/allocation", s.allocation, {"expert", "class"});
    recorder.append(split + "/gate_mean", s.gate_mean, {"expert"});
    recorder.append(split + "/expert_counts", s.expert_counts, {"expert"});
    recorder.append(split + "/expert_loss", weighted.to(torch::kFloat), {"expert"});
    if (split == "test" || !final_is_test_) {
      final_allocation_ = s.allocation;
      final_is_test_ = split == "test";
    }
  }

  void record(Recorder& recorder) override {
    if (final_allocation_.defined()) recorder.tensor("allocation", final_allocation_, {"expert", "class"});
    if (opt_.decision_grid > 0 && bbox_lo_.defined() && inputs_ == 2) record_decision_maps(recorder);
  }

  /// Gate and expert decisions on a grid × grid mesh over the bounding box of the evaluated 2-D inputs.
  void record_decision_maps(Recorder& recorder) {
    const auto n = opt_.decision_grid;
    const auto xs = torch::linspace(bbox_lo_[0].item<double>(), bbox_hi_[0].item<double>(), n, torch::kDouble);
    const auto ys = torch::linspace(bbox_lo_[1].item<double>(), bbox_hi_[1].item<double>(), n, torch::kDouble);
    const auto mesh = torch::meshgrid({ys, xs}, "ij");  // row = y, column = x
    const auto points = torch::stack({mesh[1].reshape(-1), mesh[0].reshape(-1)}, 1).to(torch::kFloat);
    const bool was_training = is_training();
    eval();
    torch::NoGradGuard ng;
    Batch b;
    const auto device = experts_->parameters().front().device();
    b.inputs = points.to(device);
    b.targets = torch::zeros({points.size(0)}, torch::TensorOptions().dtype(torch::kLong).device(device));
    const Output out = forward(b);
    recorder.tensor("decision/x", xs.to(torch::kFloat), {"x"});
    recorder.tensor("decision/y", ys.to(torch::kFloat), {"y"});
    recorder.tensor("decision/gate", out.aux.at("gate").argmax(1).reshape({n, n}).to(torch::kCPU), {"y", "x"});
    recorder.tensor("decision/experts",
                    out.aux.at("experts").argmax(2).t().reshape({opt_.num_experts, n, n}).to(torch::kCPU),
                    {"expert", "y", "x"});
    recorder.tensor("decision/prediction", out.prediction.argmax(1).reshape({n, n}).to(torch::kCPU), {"y", "x"});
    if (was_training) train();
  }

 private:
  friend class Method;
  friend class Expectation;
  friend class DualTemperature;
  friend class Stochastic;
  friend class PreSoftmax;
  friend class Em;
  friend class ExpertLoss;
  friend class NoGate;

  struct SplitStats {
    GateStats gate;
    torch::Tensor weighted_loss;  // [E]: Σ_i g_e(x_i) · CE(f_e(x_i), y_i)
  };
  struct FitStats {  // over the training batches of the current epoch (fit_gate_metrics)
    std::optional<GateStats> gate;
    std::int64_t errors = 0;
  };

  /// Index [B] per row of the distribution `p` [B, E]: sampled when `sample`, else argmax.
  static torch::Tensor pick(const torch::Tensor& p, bool sample) {
    if (!sample) return p.argmax(1);
    return torch::multinomial(p.detach().clamp_min(0), 1).squeeze(1);
  }

  /// The no-gate selection p = softmin(h/T) (detached) of §1.3.6.
  torch::Tensor no_gate_selection(const torch::Tensor& probs, const torch::Tensor& targets) const {
    torch::NoGradGuard ng;
    const auto f = probs.detach();
    torch::Tensor h;
    if (opt_.selection == "self_information") {
      h = -torch::log2(true_class_probs(f, targets) + opt_.eps);
      if (is_training()) h = h + torch::randn_like(h);
    } else {
      h = -(f * torch::log2(f + opt_.eps)).sum(2);
    }
    return torch::softmax(-h / opt_.temperature, 1);
  }

  static std::string shape_text(const torch::Tensor& t) {
    std::string s = "[";
    for (std::int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
    return s + "]";
  }

  std::vector<torch::Tensor> group_params(const std::string& which) const {
    std::vector<torch::Tensor> out;
    auto add = [&out](const torch::nn::Module& m) {
      for (const auto& p : m.parameters())
        if (p.requires_grad()) out.push_back(p);
    };
    if (which == "experts") {
      add(*experts_);
    } else {
      add(*gate_);
      if (attention_) add(*attention_);
    }
    return out;
  }

  static void assign_grads(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (!grads[i].defined()) continue;
      auto p = params[i];
      p.mutable_grad() = grads[i].detach();
    }
  }

  static const torch::Tensor& aux_or_undefined(const Output& out, const std::string& key) {
    static const torch::Tensor none;
    const auto it = out.aux.find(key);
    return it == out.aux.end() ? none : it->second;
  }

  /// `eps` as a 0-dim tensor of `like`'s dtype and device, made once: adding the double itself
  /// converts it to a tensor on every call (same float result either way).
  const torch::Tensor& eps_like(const torch::Tensor& like) {
    if (!eps_.defined() || eps_.scalar_type() != like.scalar_type() || eps_.device() != like.device())
      eps_ = torch::scalar_tensor(opt_.eps, like.options());
    return eps_;
  }

  MoeOptions opt_;
  DatasetSpec spec_;
  std::vector<std::int64_t> input_shape_;  // [C, H, W] for image networks
  std::int64_t inputs_, classes_;
  std::shared_ptr<ExpertBank> experts_;
  std::shared_ptr<Gate> gate_;
  std::shared_ptr<Attention> attention_;
  std::unique_ptr<Method> method_;
  std::string phase_ = "train";
  double temperature_ = 1.0;
  torch::Tensor assignments_;  // EM: [N] int64 hard assignment per training example
  torch::Tensor expert_lr_scale_;  // [E] double, undefined without `expert_lr_scale`
  torch::Tensor eps_;               // `eps` as a 0-dim tensor (eps_like)
  bool lean_step_ = false;          // the training step's loss reads no aux (forward_at)
  torch::Tensor expert_mask_;      // [E, C] bool: classes each expert may output; undefined = all
  std::map<std::string, SplitStats> stats_;
  FitStats fit_;
  torch::Tensor bbox_lo_, bbox_hi_;  // [2] over the evaluated 2-D inputs
  torch::Tensor final_allocation_;   // of the last evaluated "test" split (else the last evaluated one)
  bool final_is_test_ = false;
};

// ---------------------------------------------------------------- the methods (README, moe §1.3)

double Method::temperature(const MoeModel& m) const { return m.opt_.temperature; }

Losses Method::task_loss(MoeModel& m, const Batch& batch, const Output& out) const {
  namespace F = torch::nn::functional;
  const auto nll = F::nll_loss(torch::log(out.prediction + m.eps_like(out.prediction)), batch.targets,
                               F::NLLLossFuncOptions().reduction(torch::kNone));
  // Per population member (modlab/population.hpp), except with training-time gate statistics:
  // those accumulate in the model that runs the step, which in a population is no member's own,
  // so such a run trains alone (the scalar mean tells the host so).
  return {{"task", m.opt_.fit_gate_metrics ? nll.mean() : member_mean(nll)}};
}

std::vector<ParamGroup> Method::param_groups(MoeModel& m, const std::string&) const {
  // train_parts: with prechosen experts only the gate trains, with a reused gate only the experts.
  std::vector<ParamGroup> groups;
  if (m.opt_.train_parts != "experts") groups.push_back(ParamGroup{"gate", m.group_params("gate"), std::nullopt, std::nullopt});
  if (m.opt_.train_parts != "gate")
    groups.push_back(ParamGroup{"experts", m.group_params("experts"), std::nullopt, std::nullopt});
  return groups;
}

Losses Method::step(MoeModel& m, const Batch& batch, StepContext& ctx) const {
  Losses losses = m.loss(batch, m.forward_at(batch, m.current_temperature(), /*for_loss=*/true));
  ctx.optimize(losses);
  return losses;
}

/// ŷ = Σ_e g_e f_e, trained on NLL(log(ŷ + ε)) (§1.2).
class Expectation : public Method {
 public:
  bool reads_aux() const override { return false; }
  torch::Tensor predict(MoeModel& m, const Batch&, const Mixture& mx, torch::Tensor& g) const override {
    auto p = mx.dense ? (mx.f.probs_t * mx.g_t.unsqueeze(1)).sum(0).t() : mix(g, mx.f.probs);
    // Reference quirk (§1.3.4): with k = 1 the top-k model applies a softmax to Σ g_e f_e.
    if (m.opt_.top_k == 1 && m.opt_.top1_softmax_quirk) p = torch::softmax(p, -1);
    return p;
  }
};

/// The expectation mixture with the experts trained at temperature T and the gate at T = 1 (§1.3.3).
class DualTemperature : public Expectation {
 public:
  double temperature(const MoeModel& m) const override { return m.is_training() ? m.temperature_ : 1.0; }
  void begin_epoch(MoeModel& m, const EpochContext& ctx) const override {
    m.temperature_ = m.scheduled_temperature(ctx.epoch);
  }
  /// Experts follow the loss at temperature T, the gate the loss at T = 1 (expert grads excluded).
  Losses step(MoeModel& m, const Batch& batch, StepContext& ctx) const override {
    ctx.zero_grad();
    const auto expert_params = m.group_params("experts");
    const auto gate_params = m.group_params("gate");
    const Losses soft = m.loss(batch, m.forward_at(batch, m.temperature_, true));
    auto ge = torch::autograd::grad({total(soft)}, expert_params, {}, false, false, true);
    const Losses hard = m.loss(batch, m.forward_at(batch, 1.0, true));
    auto gg = torch::autograd::grad({total(hard)}, gate_params, {}, false, false, true);
    MoeModel::assign_grads(expert_params, ge);
    MoeModel::assign_grads(gate_params, gg);
    ctx.apply();
    Losses logged;
    for (const auto& l : soft) logged.push_back({l.name, l.value.detach()});
    logged.push_back({"gate_t1", total(hard).detach()});
    return logged;
  }
};

/// One expert sampled from g in training (the argmax in evaluation), Jacobs' loss (§1.3.1).
class Stochastic : public Method {
 public:
  torch::Tensor predict(MoeModel& m, const Batch&, const Mixture& mx, torch::Tensor& g) const override {
    return select_expert(mx.f.probs, MoeModel::pick(g, m.is_training()));
  }
  Losses task_loss(MoeModel& m, const Batch& batch, const Output& out) const override {
    return {{"task", jacobs_loss(out.aux.at("gate"), out.aux.at("experts"), batch.targets, m.opt_.eps)}};
  }
};

/// Softmax of the gated sum of expert logits (§1.3.2).
class PreSoftmax : public Method {
 public:
  torch::Tensor predict(MoeModel& m, const Batch&, const Mixture& mx, torch::Tensor& g) const override {
    return torch::softmax(m.tempered(mix(g, mx.f.logits), mx.t, 0), -1);
  }
};

/// The argmax-gate expert predicts.
torch::Tensor argmax_expert(const Mixture& mx, const torch::Tensor& g) { return select_expert(mx.f.probs, g.argmax(1)); }

/// Hard EM: an E-step on random training examples every epoch, the M-step loss on the assignments (§1.3.5).
class Em : public Method {
 public:
  torch::Tensor predict(MoeModel&, const Batch&, const Mixture& mx, torch::Tensor& g) const override {
    return argmax_expert(mx, g);
  }
  Losses task_loss(MoeModel& m, const Batch& batch, const Output& out) const override {
    const auto& g = out.aux.at("gate");
    const auto& f = out.aux.at("experts");
    torch::Tensor assign;
    if (m.is_training() && m.assignments_.defined() && batch.indices.defined())
      assign = m.assignments_.index_select(0, batch.indices.to(torch::kCPU)).to(g.device());
    else
      assign = g.detach().argmax(1);
    return {{"task", m.opt_.em_loss_form == "complete_data" ? em_complete_data_loss(g, f, batch.targets, assign, 1e-7)
                                                            : em_loss(g, f, batch.targets, assign, 1e-7)}};
  }
  void begin_epoch(MoeModel& m, const EpochContext& ctx) const override {
    if (ctx.train != nullptr && ctx.train->size() > 0) m.e_step(*ctx.train);
  }
};

/// The mixture's NLL plus a gate loss towards the expert with the lowest loss (§1.3.7).
class ExpertLoss : public Method {
 public:
  torch::Tensor predict(MoeModel&, const Batch&, const Mixture& mx, torch::Tensor& g) const override {
    return argmax_expert(mx, g);
  }
  Losses task_loss(MoeModel& m, const Batch& batch, const Output& out) const override {
    Losses losses = Method::task_loss(m, batch, out);
    losses.push_back({"gate", expert_loss_gate_loss(out.aux.at("gate"), out.aux.at("experts"), batch.targets, m.opt_.eps)});
    return losses;
  }
};

/// No gate while the experts train: the selection p = softmin(h/T) picks experts; then, with
/// `gate_epochs`, a gate phase distils the selection into the gate (§1.3.6).
class NoGate : public Method {
 public:
  torch::Tensor predict(MoeModel& m, const Batch& batch, const Mixture& mx, torch::Tensor& g) const override {
    if (m.phase_ == "gate") return argmax_expert(mx, g);
    g = m.no_gate_selection(mx.f.probs, batch.targets);
    if (m.opt_.selection_output == "expectation") return mix(g, mx.f.probs);
    return select_expert(mx.f.probs, MoeModel::pick(g, m.opt_.selection_output == "sample"));
  }
  /// Reverse distillation: the gate learns to predict the expert the no-gate rule selects.
  std::optional<Losses> phase_loss(MoeModel& m, const Batch& batch, const Output& out) const override {
    if (m.phase_ != "gate") return {};
    torch::Tensor target;
    {
      torch::NoGradGuard ng;
      target = m.no_gate_selection(out.aux.at("experts"), batch.targets).argmax(1);
    }
    return Losses{{"gate_distill", torch::nn::functional::cross_entropy(out.aux.at("gate_logits"), target)}};
  }
  bool regularized() const override { return false; }
  std::vector<Phase> phases() const override {
    if (gate_epochs_ == 0) return {Phase{"train", -1}};
    return {Phase{"experts", -1}, Phase{"gate", gate_epochs_}};
  }
  std::vector<ParamGroup> param_groups(MoeModel& m, const std::string& phase) const override {
    const std::string which = phase == "gate" ? "gate" : "experts";
    return {ParamGroup{which, m.group_params(which), std::nullopt, std::nullopt}};
  }
  explicit NoGate(std::int64_t gate_epochs) : gate_epochs_(gate_epochs) {}

 private:
  std::int64_t gate_epochs_;
};

std::unique_ptr<Method> make_method(const MoeOptions& o) {
  if (o.method == "dual_temperature") return std::make_unique<DualTemperature>();
  if (o.method == "stochastic") return std::make_unique<Stochastic>();
  if (o.method == "pre_softmax") return std::make_unique<PreSoftmax>();
  if (o.method == "em") return std::make_unique<Em>();
  if (o.method == "expert_loss") return std::make_unique<ExpertLoss>();
  if (o.method == "no_gate") return std::make_unique<NoGate>(o.gate_epochs);
  return std::make_unique<Expectation>();  // "expectation"; read_options checked the choice
}

std::shared_ptr<Model> make_moe(const Config& config, const DatasetSpec& spec, Host& host) {
  MoeOptions opt = read_options(config);
  require_classification("moe", spec);
  for (const auto& cl : opt.expert_classes)
    for (auto k : cl)
      if (k < 0 || k >= spec.num_classes)
        config.fail("expert_classes", "class " + std::to_string(k) + " is outside the dataset's 0.." +
                                          std::to_string(spec.num_classes - 1));
  const std::string experts_from = opt.init_experts_from, gate_from = opt.init_gate_from;
  auto model = std::make_shared<MoeModel>(std::move(opt), spec);
  // Errors name the key (file:line) as well as the run and the names that do not fit.
  auto init = [&](const std::string& key, const std::string& ref,
                  void (MoeModel::*load)(const Host&, const std::string&)) {
    if (ref.empty()) return;
    try {
      ((*model).*load)(host, ref);
    } catch (const std::exception& e) {
      config.fail(key, e.what());
    }
  };
  init("init_experts_from", experts_from, &MoeModel::init_experts_from);
  init("init_gate_from", gate_from, &MoeModel::init_gate_from);
  return model;
}

/// Before any run starts: what make_moe checks of the dataset, and the model's size against the
/// machine's memory (num_experts = 10^9 is refused here, not in a worker's allocation).
void check_moe(const Config& config, const DatasetSpec& spec) {
  const MoeOptions opt = read_options(config);
  require_classification("moe", spec);
  check_model_size(config, "num_experts",
                   mixture_parameters("moe", opt.expert, opt.expert_hidden, opt.gate, opt.gate_hidden, opt.num_experts, spec));
}

void register_moe(Registrar& registrar) {
  ModelEntry e;
  e.name = "moe";
  e.description = "gated mixtures of experts (expectation, stochastic, EM, dual temperature, no-gate, attentive ...)";
  e.variants = {
      "expert = \"mlp\"\nexpert_hidden = [6]\ngate = \"mlp\"\ngate_hidden = [5]",
      "expert = \"mlp\"\nexpert_hidden = [6]\ngate = \"mlp\"\ngate_hidden = [5]\ngating = \"attentive\"",
      "expert = \"mnist_cnn\"\ngate = \"mnist_cnn\"",
      "expert = \"fmnist_cnn\"\ngate = \"fmnist_cnn\"\ngating = \"attentive\"",
      "expert = \"cifar_cnn\"\ngate = \"cifar_cnn\"\nexpert_hidden = [16]\ngate_hidden = [16]",
  };
  e.keys = moe_options().specs();
  e.factory = &make_moe;
  e.check = &check_moe;
  registrar.add_model(std::move(e));
}

}  // namespace
}  // namespace modlab::moe

MODLAB_PLUGIN("moe", modlab::kModelPlugin, "1.0.0", "gated mixtures of experts", modlab::moe::register_moe)

// The masked_analyzer model: stages, mask training and the hooks that run the analyses.
#include "analyzer.hpp"

#include "subtasks.hpp"
#include "targets.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

#include <set>

namespace modlab::masked {

const Options<AnalyzerOptions>& analyzer_options() {
  using A = AnalyzerOptions;
  static const auto o =
      Options<A>()
          .key("inner", &A::inner, "the analysed model: [model.inner] with its plugin and keys").model_table()
          .key("inner_weights", &A::inner_weights,
               "an earlier run whose final weights the inner model takes (\"<results dir>/<run id>\", \"<run id>\", "
               "\"<results dir>/same-seed\"); \"\" = train the inner model here, in its own phases first")
          .key("inner_weights_part", &A::inner_weights_part,
               "dotted prefix of those weights (\"inner\" when the earlier run was a masked_analyzer run)")
          .key("samples", &A::samples, "K mask samples per batch (the batch is cut into K chunks, one per sample)")
          .at_least(1)
          .key("mask_init", &A::mask_init, "initial logit of every mask entry (keep probability sigmoid(2) = 0.88)")
          .finite()
          .key("temperature", &A::temperature, "temperature of the Gumbel-sigmoid").greater_than(0).finite()
          .key("mask_loss_weight", &A::mask_loss_weight, "alpha of the regulariser (alpha / batch_size) * sum of logits")
          .greater_than(0)
          .finite()
          .key("bias_no_mask", &A::bias_no_mask, "leave biases unmasked")
          .key("norm_no_mask", &A::norm_no_mask, "leave LayerNorm / BatchNorm parameters unmasked")
          .key("control_stage", &A::control_stage, "train a control mask on the full task first (stage 'full')")
          .key("stages", &A::stages, "sub-tasks of the dataset to mask, in order ([] = all it declares)")
          .key("inverse_exclude_io", &A::inverse_exclude_io,
               "fullmask: the inverse masks keep the control mask on the first and last masked weights")
          .choices({"none", "fullmask"})
          .key("save_logits", &A::save_logits, "also write the mask logits (mask_logits/<stage>/<parameter>)")
          .key("protocol", &A::protocol,
               "analysis: masks on frozen weights; sequential: per stage, weights and mask train together and "
               "the weights of earlier stages' masks stay frozen (permuted MNIST)")
          .choices({"analysis", "sequential"});
  return o;
}

Analyzer::Analyzer(const AnalyzerOptions& o, const DatasetSpec& spec, Host& host) : opt_(o), spec_(spec), host_(&host) {
  if (!opt_.inner.has("plugin")) opt_.inner.fail("plugin", "required key is missing (the model to analyse)");
  inner_name_ = opt_.inner.get<std::string>("plugin");
  if (inner_name_ == "masked_analyzer") opt_.inner.fail("plugin", "an analyzer cannot analyse another analyzer");
  inner_ = register_module("inner", host.create_model(inner_name_, opt_.inner, spec_));
  if (!opt_.inner_weights.empty()) {
    try {
      host.load_weights(*inner_, opt_.inner_weights, opt_.inner_weights_part);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      opt_.table.fail("inner_weights", what.substr(0, what.find('\n')));
    }
    train_inner_ = false;
  }
  params_ = select_masked(*inner_, MaskFilter{!opt_.bias_no_mask, !opt_.norm_no_mask}, inner_name_);
  if (sequential()) {
    if (!opt_.inner_weights.empty())
      opt_.inner.fail("plugin", "protocol = \"sequential\" trains the weights itself; inner_weights must be \"\"");
    train_inner_ = false;
    opt_.control_stage = false;  // every stage is a task of its own
    // Weights an earlier stage's mask keeps get no gradient (frozen_ is set per stage).
    for (std::size_t i = 0; i < params_.size(); ++i)
      params_[i].weight.register_hook([this, i](torch::Tensor g) {
        return i < frozen_.size() ? g.masked_fill(frozen_[i], 0) : g;
      });
  }
  stages_ = stage_list(opt_, spec_);
  for (std::size_t s = 0; s < stages_.size(); ++s) {
    auto holder = register_module("masks" + std::to_string(s), std::make_shared<torch::nn::Module>());
    std::vector<torch::Tensor> l;
    for (std::size_t i = 0; i < params_.size(); ++i)
      l.push_back(holder->register_parameter("p" + std::to_string(i),
                                             torch::full_like(params_[i].weight.detach(), opt_.mask_init)));
    logits_.push_back(std::move(l));
  }
  last_phase_ = phases().back().name;
}

std::vector<Stage> stage_list(const AnalyzerOptions& o, const DatasetSpec& spec) {
  const bool control = o.control_stage && o.protocol != "sequential";  // sequential: every stage is a task
  std::vector<Stage> out;
  if (control) out.push_back({"full", nullptr});
  std::vector<std::string> names = o.stages;
  if (names.empty())
    for (const auto& t : spec.subtasks) names.push_back(t.name);
  std::set<std::string> seen(control ? std::set<std::string>{"full"} : std::set<std::string>{});
  for (const auto& n : names) {
    static const std::string kKey = "model.stages";  // no temporary: t refers into spec
    const SubTask& t = find_subtask(spec, n, kKey);
    if (!seen.insert(n).second)
      throw ConfigError("model.stages: stage '" + n + "' appears twice" +
                        (n == "full" ? " (\"full\" is the control stage's name)" : ""));
    check_subtask(spec, t);
    out.push_back({t.name, &t});
  }
  if (out.empty())
    throw ConfigError("masked_analyzer: nothing to analyse: dataset '" + spec.name +
                      "' declares no sub-tasks and model.control_stage = false");
  if (o.inverse_exclude_io == "fullmask" && !control)
    throw ConfigError("model.inverse_exclude_io = \"fullmask\" takes the control mask, but model.control_stage = false");
  return out;
}

void check_analyzer(const Config& c, const DatasetSpec& spec) {
  const auto o = analyzer_options().parse(c);
  stage_list(o, spec);
  // The inner models of this plugin have dataset checks; another plugin's model is checked when built.
  const std::string inner = o.inner.has("plugin") ? o.inner.get<std::string>("plugin") : "";
  if (inner == "mask_transformer") check_transformer(o.inner, spec);
  if (inner == "mask_fnn") check_fnn(o.inner, spec);
  if (inner == "mask_lstm") check_lstm(o.inner, spec);
}

std::vector<Phase> Analyzer::phases() const {
  std::vector<Phase> out;
  if (train_inner_) out = inner_->phases();
  for (const auto& s : stages_) {
    Phase p;
    p.name = "mask_" + s.name;
    p.settings = "mask";
    p.train_split = s.task ? s.task->train_split : "";
    out.push_back(p);
  }
  return out;
}

int Analyzer::stage_of_phase(const std::string& phase) const {
  for (std::size_t s = 0; s < stages_.size(); ++s)
    if (phase == "mask_" + stages_[s].name) return static_cast<int>(s);
  return -1;
}

void Analyzer::begin_phase(const Phase& phase) {
  active_ = stage_of_phase(phase.name);
  if (active_ < 0) return inner_->begin_phase(phase);
  if (sequential()) return begin_sequential_stage(static_cast<std::size_t>(active_));
  // From here on the analysed weights are fixed: no gradient, evaluation mode (no dropout, running
  // norm statistics), whatever the trainer switches.
  for (auto& p : inner_->parameters()) p.requires_grad_(false);
  inner_->eval();
}

void Analyzer::train(bool on) {
  Model::train(on);
  if (active_ >= 0 && !sequential()) inner_->eval();
}

// Stage t of the sequential protocol: weights in the union of the earlier stages' masks are kept
// and frozen (no gradient); parameters without masks train in the first stage only.
void Analyzer::begin_sequential_stage(std::size_t stage) {
  torch::NoGradGuard ng;
  frozen_.clear();
  std::set<std::string> masked;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    auto used = torch::zeros_like(params_[i].weight, torch::TensorOptions().dtype(torch::kBool));
    for (std::size_t e = 0; e < stage; ++e) used = used | hard_mask(logits_[e][i]);
    frozen_.push_back(used);
    masked.insert(params_[i].name);
  }
  for (auto& p : inner_->named_parameters()) p.value().requires_grad_(masked.count(p.key()) > 0 || stage == 0);
}

// At the first epoch of a sequential stage every masked weight outside the earlier masks is drawn
// afresh, from a new inner model seeded by the run's seed and the stage (so a run resumed at this
// point draws the same; one resumed later in the stage keeps what the stage has trained).
void Analyzer::redraw_free_weights(std::size_t stage) {
  torch::NoGradGuard ng;
  torch::manual_seed(host_->seed() * 1009 + stage);
  auto fresh = host_->create_model(inner_name_, opt_.inner, spec_)->named_parameters();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    auto& w = params_[i].weight;
    w.copy_(torch::where(frozen_[i], w, fresh[params_[i].name].to(w.device())));
  }
}

std::vector<ParamGroup> Analyzer::param_groups(const std::string& phase) {
  const int s = stage_of_phase(phase);
  if (s < 0) return inner_->param_groups(phase);
  ParamGroup g;
  g.name = "masks";
  g.params = logits_[static_cast<std::size_t>(s)];
  if (!sequential()) return {g};
  ParamGroup w;
  w.name = "weights";
  for (auto& p : inner_->parameters())
    if (p.requires_grad()) w.params.push_back(p);
  return {g, w};
}

void Analyzer::begin_epoch(const EpochContext& ctx) {
  final_eval_ = ctx.phase == last_phase_ && ctx.epoch + 1 == ctx.epochs;
  if (active_ < 0) return inner_->begin_epoch(ctx);
  if (sequential() && ctx.epoch == 0) redraw_free_weights(static_cast<std::size_t>(active_));
}

void Analyzer::end_epoch(const EpochContext& ctx, Recorder& recorder) {
  if (active_ < 0) inner_->end_epoch(ctx, recorder);  // the inner model's own training
}

std::vector<torch::Tensor> Analyzer::eval_masks(std::size_t stage) const {
  std::vector<torch::Tensor> out;
  for (const auto& l : logits_[stage]) out.push_back(hard_mask(l));
  return out;
}

StageMasks Analyzer::stage_masks() const {
  StageMasks m;
  for (std::size_t s = 0; s < stages_.size(); ++s) {
    m.names.push_back(stages_[s].name);
    m.masks.push_back(eval_masks(s));
  }
  m.control = opt_.control_stage ? 0 : -1;
  return m;
}

Output Analyzer::masked_forward(const Batch& batch, const std::vector<torch::Tensor>& masks) {
  modlab::nn::OverrideScope scope(*inner_, masked_overrides(params_, masks));
  return inner_->forward(batch);
}

Output Analyzer::forward(const Batch& batch) {
  if (active_ < 0) return inner_->forward(batch);
  return masked_forward(batch, eval_masks(static_cast<std::size_t>(active_)));
}

Losses Analyzer::loss(const Batch& batch, const Output& output) { return inner_->loss(batch, output); }
torch::Tensor Analyzer::correct(const Batch& batch, const Output& output) { return inner_->correct(batch, output); }

Losses Analyzer::train_step(const Batch& batch, StepContext& ctx) {
  if (active_ < 0) return inner_->train_step(batch, ctx);
  return mask_step(batch, ctx);
}

// One mask step (§4.1): the stage's restriction of the batch, cut to a multiple of K rows; K hard
// Gumbel-sigmoid samples of every mask, sample k on rows k·B/K … (k+1)·B/K − 1, all in one forward;
// the inner model's loss on the stage's outputs plus (α/B)·Σ logits.
Losses Analyzer::mask_step(const Batch& batch, StepContext& ctx) {
  const Stage& st = stages_[static_cast<std::size_t>(active_)];
  const bool own_split = st.task && !st.task->train_split.empty();
  Batch b = st.task ? restrict_batch(batch, *st.task, own_split) : batch;
  const std::int64_t K = opt_.samples;
  const std::int64_t rows = b.size() / K * K;
  if (rows == 0) return {{"task", torch::zeros({})}};  // a filtered batch without K examples of the stage
  if (rows < b.size()) b = b.select(torch::arange(rows, torch::TensorOptions().dtype(torch::kLong).device(b.inputs.device())));
  const auto& logits = logits_[static_cast<std::size_t>(active_)];
  std::map<std::string, torch::Tensor> samples;
  for (std::size_t i = 0; i < params_.size(); ++i)
    samples[params_[i].name] = sample_masked_weights(logits[i], params_[i].weight, K, opt_.temperature);
  Output out;
  {
    modlab::nn::OverrideScope scope(*inner_, samples);
    out = inner_->forward(b);
  }
  if (st.task) restrict_outputs(*st.task, b, out);
  Losses losses = inner_->loss(b, out);
  torch::Tensor reg = torch::zeros({}, logits.front().options());
  for (const auto& l : logits) reg = reg + l.sum();
  losses.push_back({"mask_reg", reg * (opt_.mask_loss_weight / static_cast<double>(batch.size()))});
  ctx.optimize(losses);
  return losses;
}

void Analyzer::eval_begin(const std::string& split) {
  if (active_ < 0) return inner_->eval_begin(split);
  if (!final_eval_) return;
  std::vector<Column> cols{{"full", nullptr}};
  for (const auto& s : stages_)
    if (s.task) cols.push_back({s.name, s.task});
  tallies_.erase(split);
  tallies_.emplace(split, AccuracyTally(analysis_configs(params_, stage_masks(), opt_.inverse_exclude_io == "fullmask"),
                                        std::move(cols), spec_.subtasks.size()));
}

// Accuracy on each sub-task with the active stage's mask, as `<split>_accuracy_<sub-task>`.
void Analyzer::stage_accuracy(const Batch& batch, MetricSet& metrics) {
  const auto masks = eval_masks(static_cast<std::size_t>(active_));
  for (const auto& s : stages_) {
    if (!s.task) continue;
    Batch b = restrict_batch(batch, *s.task);
    if (b.size() == 0) continue;
    Output out = masked_forward(b, masks);
    restrict_outputs(*s.task, b, out);
    metrics.add("accuracy_" + s.name, inner_->correct(b, out).mean().item<double>(), static_cast<double>(b.size()));
  }
}

void Analyzer::eval_batch(const std::string& split, const Batch& batch, const Output& output, MetricSet& metrics) {
  if (active_ < 0) return inner_->eval_batch(split, batch, output, metrics);
  stage_accuracy(batch, metrics);
  auto it = tallies_.find(split);
  if (final_eval_ && it != tallies_.end()) it->second.add(*inner_, params_, batch);
}

void Analyzer::eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) {
  if (active_ < 0) return inner_->eval_end(split, metrics, recorder);
  auto it = tallies_.find(split);
  if (!final_eval_ || it == tallies_.end()) return;
  std::vector<std::string> names;
  for (const auto& t : spec_.subtasks) names.push_back(t.name);
  it->second.record(split, names, recorder);
}

void Analyzer::record(Recorder& recorder) {
  if (train_inner_) inner_->record(recorder);  // the inner model's own tensors; it runs unmasked
  std::string stage_list, param_list;
  for (std::size_t s = 0; s < stages_.size(); ++s) {
    stage_list += (s ? "," : "") + stages_[s].name;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      recorder.tensor("masks/" + stages_[s].name + "/" + params_[i].name, hard_mask(logits_[s][i]));
      if (opt_.save_logits)
        recorder.tensor("mask_logits/" + stages_[s].name + "/" + params_[i].name, logits_[s][i].detach());
    }
  }
  for (std::size_t i = 0; i < params_.size(); ++i) param_list += (i ? "," : "") + params_[i].name;
  recorder.note("masked_analyzer.stages", stage_list);
  recorder.note("masked_analyzer.parameters", param_list);
  record_mask_statistics(params_, stage_masks(), recorder);
  if (sequential()) record_sequential_sharing(params_, stage_masks(), recorder);
}

std::map<std::string, std::string> Analyzer::unmaskable_parameters() const {
  std::map<std::string, std::string> out;
  for (const auto& [name, why] : inner_->unmaskable_parameters()) out["inner." + name] = why;
  for (std::size_t s = 0; s < logits_.size(); ++s)
    for (std::size_t i = 0; i < params_.size(); ++i)
      out["masks" + std::to_string(s) + ".p" + std::to_string(i)] =
          "the mask logits are what the analysis trains; they select weights of the inner model";
  return out;
}

}  // namespace modlab::masked

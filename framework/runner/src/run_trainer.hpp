#pragma once
// One run's trainer (RunTrainer): what a solo run does from start to end, and the member-level
// steps a population (population.cpp) drives for each of its members.
#include "checkpoint.hpp"
#include "phase_optimizer.hpp"
#include "provenance.hpp"

#include <modlab/errors.hpp>
#include <modlab/model.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/trainer.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab::runner {

/// Thrown when a stop was requested: the run checkpoints and returns Interrupted.
struct Interrupted {};

/// Keys of `table` the plugin declared but did not read.
std::vector<std::string> unread_keys(const Config& table, const AccessLog& log);
/// See run_trainer.cpp.
void keep_freed_memory();
/// The host of a run; seeds LibTorch's global generator first (dataset and model are built from it).
HostOptions seeded_host_options(const RunRequest& req, const RunPaths& paths);
/// A run's recorded error: the first line of `e`'s message.
std::string first_line_of(const std::exception& e);

// Model metrics of a split go to the run file through this view, prefixed by the split's name.
class PrefixedRecorder : public Recorder {
 public:
  PrefixedRecorder(RunWriter& writer, std::string prefix) : w_(writer), prefix_(std::move(prefix)) {}
  void scalar(const std::string& n, double v) override { w_.scalar(prefix_ + "_" + n, v); }
  void tensor(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
    w_.tensor(n, v, d);
  }
  void append(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
    w_.append(n, v, d);
  }
  void note(const std::string& n, const std::string& v) override { w_.note(n, v); }
  void table(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& r,
             const std::vector<std::string>& c) override {
    w_.table(n, v, r, c);
  }

 private:
  RunWriter& w_;
  std::string prefix_;
};

// The splits and settings of one phase.
struct PhaseSetup {
  const Phase* phase = nullptr;
  std::int64_t index = 0;
  TrainOptions opt;
  std::int64_t epochs = 0;
  std::shared_ptr<const Split> train;
  std::vector<std::string> eval_names;
  std::vector<std::shared_ptr<const Split>> evals;
};

// Loss sums of an epoch, weighted by batch size.
struct EpochLoss {
  std::map<std::string, double> sums;  // per term
  double total = 0.0, weight = 0.0;
  double mean() const { return weight > 0 ? total / weight : std::nan(""); }
};

class RunTrainer {
 public:
  RunTrainer(const Registry& registry, const RunRequest& req)
      : req_(req),
        paths_(RunPaths::of(req.out_dir, req.run_id)),
        access_(std::make_shared<AccessLog>()),
        root_(req.config, "", access_),
        dcfg_(root_.sub("dataset")),
        mcfg_(root_.sub("model")),
        tcfg_(root_.sub("train")),
        dplug_(dcfg_.get<std::string>("plugin")),
        mplug_(mcfg_.get<std::string>("plugin")),
        attrs_(run_attributes(req, registry, dplug_, mplug_)),
        host_(registry, seeded_host_options(req, paths_)) {}

  RunOutcome run() {
    try {
      build();
      resume_or_start();
      auto phases = model_->phases();
      const std::int64_t nphases = static_cast<std::int64_t>(phases.size());
      for (std::int64_t pi = pos_.phase; pi < nphases; ++pi) run_phase(setup(phases, pi), nphases);
      finish();
      return RunOutcome{RunStatus::Completed, ""};
    } catch (const Interrupted&) {
      if (writer_) writer_->finish("interrupted", "interrupted by the user");
      return RunOutcome{RunStatus::Interrupted, "interrupted"};
    } catch (const std::exception& e) {
      if (std::string(e.what()).find('\n') != std::string::npos) log(std::string("error: ") + e.what());
      return fail(first_line_of(e));
    }
  }

 // The member-level steps, also driven by a population (population.cpp).
  void log(const std::string& m) const {
    if (req_.logger) req_.logger(m);
  }

  void build() {
    dataset_ = host_.create_dataset(dplug_, dcfg_);
    spec_ = dataset_->spec();
    model_ = host_.create_model(mplug_, mcfg_, spec_);
    model_->to(req_.device);
    // A key the plugin declares but did not read for this config is usually a sign of a setting that
    // has no effect here (e.g. expert_hidden with linear experts); say so in the run log.
    for (const auto* table : {&dcfg_, &mcfg_})
      for (const auto& key : unread_keys(*table, *access_))
        log("note: " + key + " is set but was not used by plugin '" + table->get<std::string>("plugin") +
            "' with this configuration");
  }

  // Resume state, if a checkpoint of this exact run exists; then the run file (rebuilt from the
  // checkpoint's history on resume).
  void resume_or_start() {
    if (std::filesystem::exists(paths_.checkpoint)) {
      try {
        resumed_ = load_checkpoint(paths_.checkpoint, *model_, pos_, history_, opt_state_, has_opt_state_);
        log("resuming from checkpoint at phase " + std::to_string(pos_.phase) + ", epoch " +
            std::to_string(pos_.epoch));
      } catch (const std::exception& e) {
        std::string why = e.what();
        log("checkpoint unreadable, starting over: " + why.substr(0, why.find('\n')));
        // rebuild a fresh model: a partial load may have changed weights
        torch::manual_seed(req_.seed);
        model_ = host_.create_model(mplug_, mcfg_, spec_);
        model_->to(req_.device);
        pos_ = Position{};
        history_ = RunHistory{};
        resumed_ = false;
      }
    }
    writer_ = std::make_unique<RunWriter>(paths_.h5, attrs_.text, attrs_.integers, resumed_ ? &history_ : nullptr);
    if (!resumed_) {
      writer_->note("dataset", spec_.name);
      writer_->note("task", task_kind_name(spec_.task));
      for (const auto& [k, v] : spec_.info) writer_->note("dataset." + k, v);
    }
  }

  PhaseSetup setup(const std::vector<Phase>& phases, std::int64_t pi) const {
    PhaseSetup s;
    s.phase = &phases[static_cast<std::size_t>(pi)];
    s.index = pi;
    s.opt = parse_train_options(tcfg_, s.phase->settings.empty() ? s.phase->name : s.phase->settings,
                                s.phase->defaults);
    s.epochs = s.phase->epochs >= 0 ? s.phase->epochs : s.opt.epochs;
    std::string train = !s.phase->train_split.empty() ? s.phase->train_split : s.opt.train_split;
    s.train = dataset_->split(train.empty() ? spec_.splits.at(0) : train);
    s.eval_names = s.opt.eval_splits.empty() ? spec_.splits : s.opt.eval_splits;
    for (const auto& n : s.eval_names) s.evals.push_back(dataset_->split(n));
    return s;
  }

  void run_phase(const PhaseSetup& s, std::int64_t nphases) {
    model_->begin_phase(*s.phase);
    PhaseOptimizer bo = build_optimizer(s.opt, model_->param_groups(s.phase->name));
    std::int64_t first_epoch = 0;
    if (s.index == pos_.phase && resumed_) {
      first_epoch = pos_.epoch;
      if (has_opt_state_ && bo.opt) bo.opt->load(opt_state_);
    }
    for (std::int64_t ep = first_epoch; ep < s.epochs; ++ep) {
      const auto t0 = std::chrono::steady_clock::now();
      bo.schedule(s.opt, ep);
      begin_epoch(s, ep);
      const EpochLoss loss = train_epoch(s, bo, ep);
      close_epoch(s, ep, loss, bo.opt ? bo.lr() : std::nan(""), t0, nphases, [&] { return bo.opt.get(); });
    }
    end_phase(s);
  }

  void begin_epoch(const PhaseSetup& s, std::int64_t ep) {
    model_->begin_epoch(EpochContext{s.phase->name, ep, s.epochs, pos_.global_epoch, s.train.get()});
    model_->train();
  }

  /// The epoch's row after its training steps: fit metrics, the model's end_epoch, evaluation as
  /// due, time, flush, checkpoint (with the optimizer `optimizer()` returns) and progress.
  void close_epoch(const PhaseSetup& s, std::int64_t ep, const EpochLoss& loss, double lr,
                   std::chrono::steady_clock::time_point t0, std::int64_t nphases,
                   const std::function<torch::optim::Optimizer*()>& optimizer) {
    write_fit_row(s, loss, lr);
    model_->end_epoch(EpochContext{s.phase->name, ep, s.epochs, pos_.global_epoch, s.train.get()}, *writer_);
    if ((ep + 1) % s.opt.eval_every == 0 || ep + 1 == s.epochs) evaluate(s);
    end_epoch(s, optimizer, ep, t0, loss.mean(), nphases);
  }

  void end_phase(const PhaseSetup& s) {
    pos_.epoch = 0;
    pos_.phase = s.index + 1;
    resumed_ = false;
  }

  /// The seed of the training batch order of epoch `ep` of phase `s`.
  std::uint64_t batch_seed(const PhaseSetup& s, std::int64_t ep) const {
    return static_cast<std::uint64_t>(req_.seed) * 1000003ULL + static_cast<std::uint64_t>(s.index) * 7919ULL +
           static_cast<std::uint64_t>(ep);
  }

  EpochLoss train_epoch(const PhaseSetup& s, PhaseOptimizer& bo, std::int64_t ep) {
    const TrainOptions& opt = s.opt;
    // Batch order depends only on (seed, phase, epoch), so a resumed run sees the same batches.
    const auto batches = epoch_batches(*s.train, opt, batch_seed(s, ep));
    EpochLoss loss;
    StepCtx sctx(bo, opt.grad_clip, pos_.step, ep);
    for (const auto& indices : batches) {
      if (req_.stop && req_.stop->load()) throw Interrupted{};
      Batch batch = s.train->get(indices, /*training=*/true).to(req_.device);
      const std::int64_t step_index = pos_.step;  // the step this batch belongs to
      Losses losses = model_->train_step(batch, sctx);
      add_batch_loss(loss, losses, static_cast<double>(indices.size(0)), step_index, s.phase->name, ep);
    }
    return loss;
  }

  // Adds one batch's terms; a term that is not finite fails the run, naming all such terms.
  static void add_batch_loss(EpochLoss& loss, const Losses& losses, double bw, std::int64_t step,
                             const std::string& phase, std::int64_t ep) {
    std::vector<double> values;
    for (const auto& term : losses) values.push_back(term.value.item<double>());
    add_batch_values(loss, losses, values, bw, step, phase, ep);
  }

  /// add_batch_loss with the terms' values already read (`values`[i] of `losses`[i]).
  static void add_batch_values(EpochLoss& loss, const Losses& losses, const std::vector<double>& values, double bw,
                               std::int64_t step, const std::string& phase, std::int64_t ep) {
    double tot = 0.0;
    std::vector<NonFiniteLoss::Term> bad;
    for (std::size_t i = 0; i < losses.size(); ++i) {
      const double v = values[i];
      if (!std::isfinite(v)) bad.push_back({losses[i].name, v});
      loss.sums[losses[i].name] += v * bw;
      tot += v;
    }
    if (!bad.empty()) throw NonFiniteLoss(step, phase, ep, std::move(bad));
    loss.total += tot * bw;
    loss.weight += bw;
  }

  void write_fit_row(const PhaseSetup& s, const EpochLoss& loss, double lr) {
    writer_->begin_row(pos_.global_epoch, pos_.step, s.phase->name);
    writer_->scalar("fit_loss", loss.mean());
    const auto& sums = loss.sums;
    if (sums.size() > 1 || (sums.size() == 1 && sums.begin()->first != "task"))
      for (const auto& [k, v] : sums) writer_->scalar("fit_" + k, v / loss.weight);
    if (!std::isnan(lr)) writer_->scalar("lr", lr);
  }

  void evaluate(const PhaseSetup& s) {
    model_->eval();
    torch::NoGradGuard ng;
    for (std::size_t si = 0; si < s.evals.size(); ++si) evaluate_split(*s.evals[si], s.eval_names[si], s.opt);
    model_->train();
  }

  void evaluate_split(const Split& split, const std::string& sname, const TrainOptions& opt) {
    MetricSet ms;
    model_->eval_begin(sname);
    for (std::int64_t lo = 0; lo < split.size(); lo += opt.eval_batch_size) {
      std::int64_t hi = std::min(lo + opt.eval_batch_size, split.size());
      Batch batch = split.get(torch::arange(lo, hi, torch::kLong), false).to(req_.device);
      Output out = model_->forward(batch);
      double bw = static_cast<double>(hi - lo);
      ms.add("loss", total(model_->loss(batch, out)).item<double>(), bw);
      ms.add("accuracy", model_->correct(batch, out).mean().item<double>(), bw);
      model_->eval_batch(sname, batch, out, ms);
    }
    PrefixedRecorder pre(*writer_, sname);
    model_->eval_end(sname, ms, pre);
    for (const auto& [k, v] : ms.values()) writer_->scalar(sname + "_" + k, v);
  }

  // Ends the epoch's row; flushes, checkpoints and reports progress as due.
  void end_epoch(const PhaseSetup& s, const std::function<torch::optim::Optimizer*()>& optimizer, std::int64_t ep,
                 std::chrono::steady_clock::time_point t0, double train_loss, std::int64_t nphases) {
    const auto t1 = std::chrono::steady_clock::now();
    writer_->scalar("time_s", std::chrono::duration<double>(t1 - t0).count());
    ++pos_.global_epoch;
    pos_.epoch = ep + 1;
    pos_.phase = s.index;
    const bool phase_done = pos_.epoch == s.epochs;
    const bool checkpoint = s.opt.checkpoint_every > 0 && ((ep + 1) % s.opt.checkpoint_every == 0 || phase_done);
    // Rows reach the live file at most once per kFlushInterval (and with every checkpoint and at
    // the end of a phase): a flush costs more than a whole epoch of a small model.
    constexpr std::chrono::milliseconds kFlushInterval{1000};
    if (checkpoint || phase_done || t1 - last_flush_ >= kFlushInterval) {
      writer_->flush();
      last_flush_ = t1;
    }
    if (checkpoint) {
      Position save = pos_;
      if (phase_done) save = Position{s.index + 1, 0, pos_.step, pos_.global_epoch};
      save_checkpoint(paths_.checkpoint, *model_, phase_done ? nullptr : optimizer(), save, writer_->history());
    }
    if (req_.on_progress)
      req_.on_progress(Progress{s.phase->name, ep + 1, s.epochs, s.index, nphases, train_loss, pos_.step});
  }

  // Final tensors, final weights, the run file renamed into place, the checkpoint removed.
  void finish() {
    model_->eval();
    {
      torch::NoGradGuard ng;
      model_->record(*writer_);
    }
    {
      torch::serialize::OutputArchive ar;
      model_->save(ar);
      ar.save_to(paths_.weights + ".tmp");
      std::filesystem::rename(paths_.weights + ".tmp", paths_.weights);
    }
    writer_->set_attribute("end_time", now_iso());
    writer_->finish("completed");
    std::error_code ec;
    std::filesystem::remove(paths_.checkpoint, ec);
  }

  RunOutcome fail(std::string msg) {
    try {
      if (!writer_) writer_ = std::make_unique<RunWriter>(paths_.h5, attrs_.text, attrs_.integers, nullptr);
      writer_->set_attribute("end_time", now_iso());
      writer_->finish("failed", msg);
    } catch (const std::exception& e2) {
      msg += std::string(" (and the run file could not be written: ") + e2.what() + ")";
    }
    std::error_code ec;
    std::filesystem::remove(paths_.checkpoint, ec);
    return RunOutcome{RunStatus::Failed, msg};
  }

 Model& model() { return *model_; }
  /// The model's extra copy that drives a population's folded steps: built like the run's own
  /// model, from the run's seed, after it.
  std::shared_ptr<Model> build_driver() {
    torch::manual_seed(req_.seed);
    auto m = host_.create_model(mplug_, mcfg_, spec_);
    m->to(req_.device);
    return m;
  }
  Position& position() { return pos_; }
  bool resumed() const { return resumed_; }
  const RunRequest& request() const { return req_; }
  RunWriter& writer() { return *writer_; }
  const DatasetSpec& spec() const { return spec_; }

 private:
  const RunRequest& req_;
  const RunPaths paths_;
  std::shared_ptr<AccessLog> access_;
  Config root_, dcfg_, mcfg_, tcfg_;
  std::string dplug_, mplug_;
  RunAttributes attrs_;
  RunHost host_;
  std::shared_ptr<Dataset> dataset_;
  DatasetSpec spec_;
  std::shared_ptr<Model> model_;
  std::unique_ptr<RunWriter> writer_;
  Position pos_;
  RunHistory history_;
  torch::serialize::InputArchive opt_state_;
  bool has_opt_state_ = false, resumed_ = false;
  std::chrono::steady_clock::time_point last_flush_ = std::chrono::steady_clock::now();
};


}  // namespace modlab::runner

// Run configuration: the `[run]` and `[train]` keys, the trainer options of a phase, validation of
// a run's config before anything runs, and where a run's files are. The training itself is in
// run_trainer.cpp, checkpoints in checkpoint.cpp, the run file's provenance in provenance.cpp.
#include <modlab/errors.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <modlab_internal/closest_match.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>

namespace fs = std::filesystem;

namespace modlab::runner {

const Options<TrainOptions>& train_options() {
  using T = TrainOptions;
  static const auto o =
      Options<T>()
          .key("epochs", &T::epochs, "training epochs (per phase unless the model fixes them)").at_least(1)
          .key("batch_size", &T::batch_size, "training batch size").at_least(1)
          .key("eval_batch_size", &T::eval_batch_size, "batch size for evaluation").at_least(1)
          .key("steps_per_epoch", &T::steps_per_epoch, "0: one pass over the data per epoch; N: N random batches")
          .at_least(0)
          .key("shuffle", &T::shuffle, "shuffle the training split every epoch")
          .key("drop_last", &T::drop_last, "drop the last incomplete batch")
          .key("bucket", &T::bucket, "0: off; N: sort each window of N batches by example length, then shuffle the batches")
          .at_least(0)
          .key("optimizer", &T::optimizer, "optimizer").choices({"adam", "adamw", "sgd", "rmsprop"})
          .key("lr", &T::lr, "learning rate (at most 1000: larger ones only overflow)").greater_than(0).at_most(1e3).finite()
          .key("momentum", &T::momentum, "momentum (sgd, rmsprop)").at_least(0).less_than(1)
          .key("nesterov", &T::nesterov, "Nesterov momentum (sgd)")
          .key("amsgrad", &T::amsgrad, "AMSGrad variant (adam, adamw)")
          .key("weight_decay", &T::weight_decay, "L2 weight decay (decoupled for adamw)").at_least(0).finite()
          .key("beta1", &T::beta1, "Adam beta1").at_least(0).less_than(1)
          .key("beta2", &T::beta2, "Adam beta2").at_least(0).less_than(1)
          .key("eps", &T::eps, "optimizer epsilon").greater_than(0).finite()
          .key("alpha", &T::alpha, "RMSprop smoothing constant").in_range(0, 1)
          .key("schedule", &T::schedule, "lr schedule per epoch").choices({"constant", "step", "exponential", "cosine"})
          .key("step_size", &T::step_size, "step schedule: epochs between decays").at_least(1)
          .key("gamma", &T::gamma, "step / exponential schedule: decay factor").greater_than(0).finite()
          .key("eta_min", &T::eta_min, "cosine schedule: final lr").at_least(0).finite()
          .key("grad_clip", &T::grad_clip, "clip the global gradient norm to this (0 = off)").at_least(0).finite()
          .key("warmup_steps", &T::warmup_steps, "lr rises linearly over the run's first N optimizer steps (0 = off)")
          .at_least(0)
          .key("eval_every", &T::eval_every, "evaluate every N epochs (and after the last)").at_least(1)
          .key("eval_splits", &T::eval_splits, "splits to evaluate (default: all)")
          .key("train_split", &T::train_split, "split to train on (default: the dataset's first)")
          .key("lr_groups", &T::lr_groups, "learning rate per named parameter group, e.g. {routing = 0.1}")
          .greater_than(0).at_most(1e3).finite()
          .key("checkpoint_every", &T::checkpoint_every, "epochs between checkpoints (0 = never)").at_least(0);
  return o;
}

namespace {

/// `order` cut into batches, each window of `bucket` batches sorted by example length first.
std::vector<torch::Tensor> bucketed(const Split& split, const torch::Tensor& order, std::int64_t batch,
                                    std::int64_t bucket) {
  std::vector<torch::Tensor> out;
  const std::int64_t window = batch * bucket, n = order.size(0);
  for (std::int64_t lo = 0; lo < n; lo += window) {
    const auto part = order.slice(0, lo, std::min(lo + window, n));
    const auto len = split.lengths(part);
    if (!len.defined())
      throw DataError("train.bucket: this dataset's training split gives no example lengths (Split::lengths); set bucket = 0");
    const auto sorted = part.index_select(0, std::get<1>(len.to(torch::kLong).sort(/*stable=*/true, 0, false)));
    for (std::int64_t b = 0; b < sorted.size(0); b += batch) out.push_back(sorted.slice(0, b, std::min(b + batch, sorted.size(0))));
  }
  return out;
}

}  // namespace

std::vector<torch::Tensor> epoch_batches(const Split& split, const TrainOptions& opt, std::uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  const std::int64_t n = split.size();
  torch::Tensor order;
  if (opt.steps_per_epoch > 0) {
    order = torch::randint(n, {opt.steps_per_epoch * opt.batch_size}, gen, torch::kLong);
  } else {
    order = opt.shuffle ? torch::randperm(n, gen, torch::kLong) : torch::arange(n, torch::kLong);
    if (opt.drop_last) order = order.slice(0, 0, n / opt.batch_size * opt.batch_size);
  }
  std::vector<torch::Tensor> out;
  if (opt.bucket > 0) {
    out = bucketed(split, order, opt.batch_size, opt.bucket);
    const auto perm = torch::randperm(static_cast<std::int64_t>(out.size()), gen, torch::kLong);
    std::vector<torch::Tensor> shuffled;
    for (std::int64_t i = 0; i < perm.size(0); ++i) shuffled.push_back(out[static_cast<std::size_t>(perm[i].item<std::int64_t>())]);
    return shuffled;
  }
  for (std::int64_t lo = 0; lo < order.size(0); lo += opt.batch_size)
    out.push_back(order.slice(0, lo, std::min(lo + opt.batch_size, order.size(0))));
  return out;
}

const std::vector<KeySpec>& train_keys() {
  static const std::vector<KeySpec> keys = [] {
    std::vector<KeySpec> k = train_options().specs();
    KeySpec phases;
    phases.name = "phases";
    phases.type = ValueType::Table;
    phases.default_value = "{}";
    phases.doc = "per-phase overrides: [train.phases.<name>] with the keys above";
    k.push_back(std::move(phases));
    return k;
  }();
  return keys;
}

const Options<RunSettings>& run_options() {
  static const auto o = Options<RunSettings>()
                            .key("name", &RunSettings::name, "sweep name (default: the file's stem)")
                            .key("seed", &RunSettings::seed, "seed of the run (set per run by [sweep] seeds)")
                            .at_least(0)
                            .key("description", &RunSettings::description, "free text, kept in the run file")
                            .key("population", &RunSettings::population,
                                 "train up to this many runs that differ only in seed, train.lr, train.weight_decay, train.lr_groups or "
                                 "keys their plugins declare per member as one batched "
                                 "model (1 = each run alone; \"auto\" = the largest P whose step takes at most "
                                 "4 times a solo step, up to 256; docs/population.md)")
                            .at_least(0).at_most(4096);
  return o;
}

const std::vector<KeySpec>& run_keys() { return run_options().specs(); }

TrainOptions parse_train_options(const Config& base, const std::string& phase, const std::string& defaults) {
  TrainOptions o;
  // A phase's table overrides the base table key by key; the cross-key check sees the merged result.
  auto apply = [&o](const Config& c) {
    train_options().parse_into(c, o);
    if (o.nesterov && o.optimizer != "sgd") c.fail("nesterov", "only applies to optimizer = \"sgd\"");
    if (o.amsgrad && o.optimizer != "adam" && o.optimizer != "adamw")
      c.fail("amsgrad", "only applies to optimizer = \"adam\" or \"adamw\"");
  };
  apply(base);
  if (!defaults.empty()) {
    // The model's own settings for the phase (Phase::defaults): checked like the user's keys.
    Config d(std::make_shared<const Value>(parse_toml(defaults, "phase '" + phase + "' defaults")), "train");
    validate_keys(d, train_options().specs());
    apply(d);
  }
  if (!phase.empty() && base.has("phases")) {
    Config phases = base.sub("phases");
    if (phases.has(phase)) apply(phases.sub(phase));
  }
  return o;
}

namespace {

const std::vector<std::string> kRunTables = {"run", "dataset", "model", "train"};

/// Every top-level key is one of kRunTables and a table.
void check_top_level(const Config& c, ConfigErrors& errors) {
  for (const auto& k : c.keys())
    errors.check([&] {
      if (std::find(kRunTables.begin(), kRunTables.end(), k) != kRunTables.end()) {
        const Value* v = c.find(k);
        if (v->type() != ValueType::Table) c.fail(k, std::string("expected a table, found ") + type_name(v->type()));
        return;
      }
      std::string msg = c.find(k)->where().str() + ": unknown table '" + k + "'";
      auto near = closest_match(k, kRunTables);
      msg += near.empty() ? "; expected run, dataset, model, train, sweep" : " (did you mean '" + near + "'?)";
      throw ConfigError(msg);
    });
}

void check_run_table(const Config& run, ConfigErrors& errors) {
  validate_keys(run, run_keys(), {}, &errors);
  errors.check([&] {
    const RunSettings settings = run_options().parse(run);
    // The name is the default results folder, results/<name>: one plain folder name.
    const std::string& name = settings.name;
    if (run.has("name") && (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos))
      run.fail("name", "expected a folder name for results/<name> (not empty, no '/', not '.' or '..'), found '" + name + "'");
  });
}

void check_train_table(const Config& train, ConfigErrors& errors) {
  validate_keys(train, train_keys(), {}, &errors);
  errors.check([&] { parse_train_options(train); });
  if (!train.has("phases")) return;
  const Config phases = train.sub("phases");
  for (const auto& p : phases.keys()) {
    validate_keys(phases.sub(p), train_options().specs(), {}, &errors);  // no nested phases
    errors.check([&] { parse_train_options(train, p); });
  }
}

/// [dataset] or [model]: a `plugin` the registry knows, and the keys that plugin declares.
void check_plugin_table(const Config& t, const std::string& kind, const Registry& registry, ConfigErrors& errors) {
  errors.check([&] {
    if (!t.has("plugin")) t.fail("plugin", "required key is missing (which " + kind + " to use)");
    const std::string name = t.get<std::string>("plugin");
    const std::vector<KeySpec>* keys = nullptr;
    try {
      keys = kind == "model" ? &registry.model(name).keys : &registry.dataset(name).keys;
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      if (m.rfind("unknown ", 0) == 0) throw ConfigError(t.find("plugin")->where().str() + ": " + m);
      throw;
    }
    if (kind == "model") validate_model_table(t, *keys, registry, &errors);
    else validate_keys(t, *keys, {"plugin"}, &errors);
  });
}

}  // namespace

void validate_run_config(const Value& config, const Registry& registry, const std::string& what, ConfigErrors* errors) {
  Config c(std::make_shared<const Value>(config), "");
  ConfigErrors own;
  ConfigErrors& found = errors ? *errors : own;
  check_top_level(c, found);
  for (const auto& table : kRunTables)
    if (c.has(table) && c.find(table)->type() != ValueType::Table) return own.throw_if_any("in " + what);
  check_run_table(c.sub("run"), found);
  check_train_table(c.sub("train"), found);
  for (const char* kind : {"dataset", "model"}) check_plugin_table(c.sub(kind), kind, registry, found);
  own.throw_if_any("in " + what);
}

RunPaths RunPaths::of(const std::string& out_dir, const std::string& id) {
  fs::path d = fs::path(out_dir) / "runs";
  RunPaths p;
  p.h5 = (d / (id + ".h5")).string();
  p.checkpoint = (d / (id + ".ckpt")).string();
  p.weights = (d / (id + ".weights.pt")).string();
  p.log = (d / (id + ".log")).string();
  p.spec = (d / (id + ".toml")).string();
  return p;
}

std::string run_state(const std::string& out_dir, const std::string& id) {
  RunPaths p = RunPaths::of(out_dir, id);
  if (fs::exists(p.h5)) {
    auto s = read_run_summary(p.h5);
    if (s && s->status == "completed") return "completed";
    return "failed";
  }
  if (fs::exists(p.h5 + ".partial") || fs::exists(p.checkpoint)) return "partial";
  return "";
}

}  // namespace modlab::runner

// Run configuration: the `[run]` and `[train]` keys, the trainer options of a phase, validation of
// a run's config before anything runs, and where a run's files are. The training itself is in
// run_trainer.cpp, checkpoints in checkpoint.cpp, the run file's provenance in provenance.cpp.
#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/trainer.hpp>

#include <algorithm>
#include <filesystem>

namespace fs = std::filesystem;

namespace modlab::runner {

const std::vector<KeySpec>& train_keys() {
  static const std::vector<KeySpec> keys = {
      key_spec("epochs", ValueType::Int, "10", "training epochs (per phase unless the model fixes them)"),
      key_spec("batch_size", ValueType::Int, "32", "training batch size"),
      key_spec("eval_batch_size", ValueType::Int, "4096", "batch size for evaluation"),
      key_spec("steps_per_epoch", ValueType::Int, "0", "0: one pass over the data per epoch; N: N random batches"),
      key_spec("shuffle", ValueType::Bool, "true", "shuffle the training split every epoch"),
      key_spec("drop_last", ValueType::Bool, "false", "drop the last incomplete batch"),
      key_spec("optimizer", ValueType::String, "\"adam\"", "adam | adamw | sgd | rmsprop"),
      key_spec("lr", ValueType::Float, "0.001", "learning rate"),
      key_spec("momentum", ValueType::Float, "0.0", "momentum (sgd, rmsprop)"),
      key_spec("nesterov", ValueType::Bool, "false", "Nesterov momentum (sgd)"),
      key_spec("weight_decay", ValueType::Float, "0.0", "L2 weight decay (decoupled for adamw)"),
      key_spec("beta1", ValueType::Float, "0.9", "Adam beta1"),
      key_spec("beta2", ValueType::Float, "0.999", "Adam beta2"),
      key_spec("eps", ValueType::Float, "1e-08", "optimizer epsilon"),
      key_spec("alpha", ValueType::Float, "0.99", "RMSprop smoothing constant"),
      key_spec("schedule", ValueType::String, "\"constant\"", "lr schedule per epoch: constant | step | exponential | cosine"),
      key_spec("step_size", ValueType::Int, "30", "step schedule: epochs between decays"),
      key_spec("gamma", ValueType::Float, "0.1", "step / exponential schedule: decay factor"),
      key_spec("eta_min", ValueType::Float, "0.0", "cosine schedule: final lr"),
      key_spec("grad_clip", ValueType::Float, "0.0", "clip the global gradient norm to this (0 = off)"),
      key_spec("eval_every", ValueType::Int, "1", "evaluate every N epochs (and after the last)"),
      key_spec("eval_splits", ValueType::Array, "[]", "splits to evaluate (default: all)", ValueType::String),
      key_spec("train_split", ValueType::String, "\"\"", "split to train on (default: the dataset's first)"),
      key_spec("lr_groups", ValueType::Table, "{}", "learning rate per named parameter group, e.g. {routing = 0.1}"),
      key_spec("checkpoint_every", ValueType::Int, "1", "epochs between checkpoints (0 = never)"),
      key_spec("phases", ValueType::Table, "{}", "per-phase overrides: [train.phases.<name>] with the keys above"),
  };
  return keys;
}

const std::vector<KeySpec>& run_keys() {
  static const std::vector<KeySpec> keys = {
      key_spec("name", ValueType::String, "\"\"", "sweep name (default: the file's stem)"),
      key_spec("seed", ValueType::Int, "0", "seed of the run (set per run by [sweep] seeds)"),
      key_spec("description", ValueType::String, "\"\"", "free text, kept in the run file"),
  };
  return keys;
}

TrainOptions parse_train_options(const Config& base, const std::string& phase) {
  TrainOptions o;
  auto apply = [&o](const Config& c) {
    o.epochs = c.get_or<std::int64_t>("epochs", o.epochs);
    o.batch_size = c.get_or<std::int64_t>("batch_size", o.batch_size);
    o.eval_batch_size = c.get_or<std::int64_t>("eval_batch_size", o.eval_batch_size);
    o.steps_per_epoch = c.get_or<std::int64_t>("steps_per_epoch", o.steps_per_epoch);
    o.shuffle = c.get_or<bool>("shuffle", o.shuffle);
    o.drop_last = c.get_or<bool>("drop_last", o.drop_last);
    o.optimizer = c.get_or<std::string>("optimizer", o.optimizer);
    o.lr = c.get_or<double>("lr", o.lr);
    o.momentum = c.get_or<double>("momentum", o.momentum);
    o.nesterov = c.get_or<bool>("nesterov", o.nesterov);
    o.weight_decay = c.get_or<double>("weight_decay", o.weight_decay);
    o.beta1 = c.get_or<double>("beta1", o.beta1);
    o.beta2 = c.get_or<double>("beta2", o.beta2);
    o.eps = c.get_or<double>("eps", o.eps);
    o.alpha = c.get_or<double>("alpha", o.alpha);
    o.schedule = c.get_or<std::string>("schedule", o.schedule);
    o.step_size = c.get_or<std::int64_t>("step_size", o.step_size);
    o.gamma = c.get_or<double>("gamma", o.gamma);
    o.eta_min = c.get_or<double>("eta_min", o.eta_min);
    o.grad_clip = c.get_or<double>("grad_clip", o.grad_clip);
    o.eval_every = c.get_or<std::int64_t>("eval_every", o.eval_every);
    o.eval_splits = c.get_or<std::vector<std::string>>("eval_splits", o.eval_splits);
    o.train_split = c.get_or<std::string>("train_split", o.train_split);
    o.checkpoint_every = c.get_or<std::int64_t>("checkpoint_every", o.checkpoint_every);
    if (c.has("lr_groups")) {
      Config g = c.sub("lr_groups");
      for (const auto& k : g.keys()) o.lr_groups[k] = g.get<double>(k);
    }
    auto check = [&c](bool ok, const std::string& k, const std::string& what) {
      if (!ok) c.fail(k, what);
    };
    check(o.epochs >= 0, "epochs", "must be >= 0");
    check(o.batch_size > 0, "batch_size", "must be > 0");
    check(o.eval_batch_size > 0, "eval_batch_size", "must be > 0");
    check(o.steps_per_epoch >= 0, "steps_per_epoch", "must be >= 0");
    check(o.eval_every > 0, "eval_every", "must be > 0");
    check(o.lr >= 0, "lr", "must be >= 0");
    check(o.optimizer == "adam" || o.optimizer == "adamw" || o.optimizer == "sgd" || o.optimizer == "rmsprop",
          "optimizer", "expected one of adam, adamw, sgd, rmsprop, found \"" + o.optimizer + "\"");
    check(o.schedule == "constant" || o.schedule == "step" || o.schedule == "exponential" || o.schedule == "cosine",
          "schedule", "expected one of constant, step, exponential, cosine, found \"" + o.schedule + "\"");
    check(!o.nesterov || o.optimizer == "sgd", "nesterov", "only applies to optimizer = \"sgd\"");
  };
  apply(base);
  if (!phase.empty() && base.has("phases")) {
    Config phases = base.sub("phases");
    if (phases.has(phase)) apply(phases.sub(phase));
  }
  return o;
}

void validate_run_config(const Value& config, const Registry& registry, const std::string& what) {
  auto root = std::make_shared<const Value>(config);
  Config c(root, "");
  const std::vector<std::string> tables = {"run", "dataset", "model", "train"};
  for (const auto& k : c.keys()) {
    if (std::find(tables.begin(), tables.end(), k) != tables.end()) {
      const Value* v = c.find(k);
      if (v->type() != ValueType::Table) c.fail(k, std::string("expected a table, found ") + type_name(v->type()));
      continue;
    }
    std::string msg = c.find(k)->where().str() + ": unknown table '" + k + "'";
    auto near = closest_match(k, tables);
    msg += near.empty() ? "; expected run, dataset, model, train, sweep" : " (did you mean '" + near + "'?)";
    throw ConfigError(msg);
  }
  validate_keys(c.sub("run"), run_keys());
  Config train = c.sub("train");
  validate_keys(train, train_keys());
  parse_train_options(train);
  if (train.has("phases")) {
    Config phases = train.sub("phases");
    for (const auto& p : phases.keys()) {
      std::vector<KeySpec> keys = train_keys();
      keys.pop_back();  // no nested phases
      validate_keys(phases.sub(p), keys);
      parse_train_options(train, p);
    }
  }
  for (const char* kind : {"dataset", "model"}) {
    Config t = c.sub(kind);
    if (!t.has("plugin")) t.fail("plugin", std::string("required key is missing (which ") + kind + " to use)");
    std::string name = t.get<std::string>("plugin");
    try {
      const auto& keys = std::string(kind) == "model" ? registry.model(name).keys : registry.dataset(name).keys;
      validate_keys(t, keys, {"plugin"});
    } catch (const ConfigError& e) {
      std::string m = e.what();
      if (m.rfind("unknown ", 0) == 0) throw ConfigError(t.find("plugin")->where().str() + ": " + m);
      throw;
    }
  }
  (void)what;
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

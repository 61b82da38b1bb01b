// The training loop. One run = one dataset + one model + the phases the model asks for. Every
// epoch ends with evaluation, a metrics row in the run file, and a checkpoint written to a temp
// name and renamed, so a killed run resumes where it stopped instead of starting over.
#include <modlab/errors.hpp>
#include <modlab/model.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/optimizers.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <modlab_internal/closest_match.hpp>

#include <torch/torch.h>
#include <torch/version.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

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
          .key("optimizer", &T::optimizer, "optimizer").choices({"adam", "adamw", "sgd", "rmsprop"})
          .key("lr", &T::lr, "learning rate").greater_than(0).finite()
          .key("momentum", &T::momentum, "momentum (sgd, rmsprop)").at_least(0).less_than(1)
          .key("nesterov", &T::nesterov, "Nesterov momentum (sgd)")
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
          .key("eval_every", &T::eval_every, "evaluate every N epochs (and after the last)").at_least(1)
          .key("eval_splits", &T::eval_splits, "splits to evaluate (default: all)")
          .key("train_split", &T::train_split, "split to train on (default: the dataset's first)")
          .key("lr_groups", &T::lr_groups, "learning rate per named parameter group, e.g. {routing = 0.1}")
          .greater_than(0).finite()
          .key("checkpoint_every", &T::checkpoint_every, "epochs between checkpoints (0 = never)").at_least(0);
  return o;
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
                            .key("description", &RunSettings::description, "free text, kept in the run file");
  return o;
}

const std::vector<KeySpec>& run_keys() { return run_options().specs(); }

TrainOptions parse_train_options(const Config& base, const std::string& phase) {
  TrainOptions o;
  // A phase's table overrides the base table key by key; the cross-key check sees the merged result.
  auto apply = [&o](const Config& c) {
    train_options().parse_into(c, o);
    if (o.nesterov && o.optimizer != "sgd") c.fail("nesterov", "only applies to optimizer = \"sgd\"");
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
  Config run = c.sub("run");
  validate_keys(run, run_keys());
  run_options().parse(run);
  Config train = c.sub("train");
  validate_keys(train, train_keys());
  parse_train_options(train);
  if (train.has("phases")) {
    Config phases = train.sub("phases");
    for (const auto& p : phases.keys()) {
      validate_keys(phases.sub(p), train_options().specs());  // no nested phases
      parse_train_options(train, p);
    }
  }
  for (const char* kind : {"dataset", "model"}) {
    Config t = c.sub(kind);
    if (!t.has("plugin")) t.fail("plugin", std::string("required key is missing (which ") + kind + " to use)");
    std::string name = t.get<std::string>("plugin");
    try {
      if (std::string(kind) == "model") validate_model_table(t, registry.model(name).keys, registry);
      else validate_keys(t, registry.dataset(name).keys, {"plugin"});
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

namespace {

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string git_revision() {
  // Read .git/HEAD of the source tree directly: no subprocess, works without git installed.
  try {
    fs::path git = fs::path(MODLAB_SOURCE_DIR) / ".git";
    std::ifstream head((git / "HEAD").string());
    std::string line;
    if (!std::getline(head, line)) return "unknown";
    if (line.rfind("ref: ", 0) != 0) return line;
    std::string ref = line.substr(5);
    std::ifstream r((git / ref).string());
    std::string sha;
    if (std::getline(r, sha)) return sha;
    std::ifstream packed((git / "packed-refs").string());
    while (std::getline(packed, line))
      if (line.size() > 41 && line.compare(41, std::string::npos, ref) == 0) return line.substr(0, 40);
  } catch (...) {
  }
  return "unknown";
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

double lr_factor(const TrainOptions& o, std::int64_t epoch) {
  if (o.schedule == "step") return std::pow(o.gamma, static_cast<double>(epoch / std::max<std::int64_t>(1, o.step_size)));
  if (o.schedule == "exponential") return std::pow(o.gamma, static_cast<double>(epoch));
  return 1.0;  // cosine is handled per group (needs eta_min)
}

double scheduled_lr(const TrainOptions& o, double base, std::int64_t epoch) {
  if (o.schedule == "cosine") {
    double T = static_cast<double>(std::max<std::int64_t>(1, o.epochs));
    return o.eta_min + (base - o.eta_min) * (1.0 + std::cos(M_PI * static_cast<double>(epoch) / T)) / 2.0;
  }
  return base * lr_factor(o, epoch);
}

std::unique_ptr<torch::optim::OptimizerOptions> make_options(const TrainOptions& o, double lr, double wd) {
  namespace optim = torch::optim;
  if (o.optimizer == "adam")
    return std::make_unique<optim::AdamOptions>(
        optim::AdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
  if (o.optimizer == "adamw")
    return std::make_unique<optim::AdamWOptions>(
        optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
  if (o.optimizer == "sgd")
    return std::make_unique<optim::SGDOptions>(
        optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(wd));
  return std::make_unique<optim::RMSpropOptions>(
      optim::RMSpropOptions(lr).alpha(o.alpha).eps(o.eps).momentum(o.momentum).weight_decay(wd));
}

struct BuiltOptimizer {
  std::unique_ptr<torch::optim::Optimizer> opt;
  std::vector<double> base_lr;  // per group
  std::vector<torch::Tensor> params;
};

BuiltOptimizer build_optimizer(const TrainOptions& o, const std::vector<ParamGroup>& groups) {
  BuiltOptimizer b;
  std::vector<torch::optim::OptimizerParamGroup> pgs;
  for (const auto& g : groups) {
    if (g.params.empty()) continue;
    double lr = o.lr;
    if (g.lr) lr = *g.lr;
    auto it = o.lr_groups.find(g.name);
    if (it != o.lr_groups.end()) lr = it->second;
    double wd = g.weight_decay ? *g.weight_decay : o.weight_decay;
    pgs.emplace_back(g.params, make_options(o, lr, wd));
    b.base_lr.push_back(lr);
    b.params.insert(b.params.end(), g.params.begin(), g.params.end());
  }
  for (const auto& [name, lr] : o.lr_groups) {
    bool known = std::any_of(groups.begin(), groups.end(), [&](const ParamGroup& g) { return g.name == name; });
    if (!known) {
      std::string names;
      for (const auto& g : groups) names += (names.empty() ? "" : ", ") + g.name;
      throw ConfigError("train.lr_groups." + name + ": the model has no parameter group '" + name +
                        "' (it has: " + names + ")");
    }
  }
  if (pgs.empty()) return b;
  auto defaults = make_options(o, o.lr, o.weight_decay);
  namespace optim = torch::optim;
  if (o.optimizer == "adam")
    b.opt = std::make_unique<FastAdam>(pgs, static_cast<optim::AdamOptions&>(*defaults));
  else if (o.optimizer == "adamw")
    b.opt = std::make_unique<optim::AdamW>(pgs, static_cast<optim::AdamWOptions&>(*defaults));
  else if (o.optimizer == "sgd")
    b.opt = std::make_unique<optim::SGD>(pgs, static_cast<optim::SGDOptions&>(*defaults));
  else
    b.opt = std::make_unique<FastRMSprop>(pgs, static_cast<optim::RMSpropOptions&>(*defaults));
  return b;
}

class StepCtx : public StepContext {
 public:
  StepCtx(BuiltOptimizer& o, double clip, std::int64_t& step, std::int64_t epoch)
      : o_(o), clip_(clip), step_(step), epoch_(epoch) {}
  void zero_grad() override {
    if (o_.opt) modlab::runner::zero_grad(*o_.opt);
  }
  void apply() override {
    if (!o_.opt) return;
    if (clip_ > 0) torch::nn::utils::clip_grad_norm_(o_.params, clip_);
    o_.opt->step();
    ++step_;
  }
  void optimize(const Losses& losses) override {
    zero_grad();
    auto t = total(losses);
    if (t.requires_grad()) t.backward();
    apply();
  }
  std::int64_t step() const override { return step_; }
  std::int64_t epoch() const override { return epoch_; }

 private:
  BuiltOptimizer& o_;
  double clip_;
  std::int64_t& step_;
  std::int64_t epoch_;
};

// ---- checkpoints: model, optimizer, RNG, position and the run's metric history

struct Position {
  std::int64_t phase = 0;         // phase index
  std::int64_t epoch = 0;         // next epoch to run within that phase
  std::int64_t step = 0;
  std::int64_t global_epoch = 0;  // rows written
};

void write_strings(torch::serialize::OutputArchive& ar, const std::string& key, const std::vector<std::string>& v) {
  c10::List<std::string> l;
  for (const auto& s : v) l.push_back(s);
  ar.write(key, c10::IValue(l));
}
std::vector<std::string> read_strings(torch::serialize::InputArchive& ar, const std::string& key) {
  c10::IValue v;
  ar.read(key, v);
  std::vector<std::string> out;
  for (const auto& s : v.toListRef()) out.push_back(s.toStringRef());
  return out;
}

void save_checkpoint(const std::string& path, Model& model, torch::optim::Optimizer* opt, const Position& pos,
                     const RunHistory& h) {
  torch::serialize::OutputArchive ar;
  torch::serialize::OutputArchive m;
  model.save(m);
  ar.write("model", m);
  if (opt) {
    torch::serialize::OutputArchive o;
    opt->save(o);
    ar.write("optimizer", o);
  }
  ar.write("position", torch::tensor({pos.phase, pos.epoch, pos.step, pos.global_epoch}, torch::kLong));
  ar.write("rng", at::detail::getDefaultCPUGenerator().get_state());
  ar.write("history.epoch", torch::tensor(h.epoch, torch::kLong));
  ar.write("history.step", torch::tensor(h.step, torch::kLong));
  write_strings(ar, "history.phase", h.phase);
  std::vector<std::string> names;
  for (const auto& [name, vals] : h.metrics) {
    ar.write("history.metric." + std::to_string(names.size()), torch::tensor(vals, torch::kDouble));
    names.push_back(name);
  }
  write_strings(ar, "history.metric_names", names);
  std::vector<std::string> anames;
  for (const auto& [name, dv] : h.appended) {
    std::string k = "history.appended." + std::to_string(anames.size());
    write_strings(ar, k + ".dims", dv.first);
    ar.write(k + ".values", torch::stack(dv.second));
    anames.push_back(name);
  }
  write_strings(ar, "history.appended_names", anames);
  std::vector<std::string> notes;
  for (const auto& [k, v] : h.notes) {
    notes.push_back(k);
    notes.push_back(v);
  }
  write_strings(ar, "history.notes", notes);
  std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  fs::rename(tmp, path);
}

// Reads `key` from the archive as a contiguous tensor of `dtype`, naming the key on failure.
torch::Tensor read_tensor(torch::serialize::InputArchive& ar, const std::string& key, torch::Dtype dtype) {
  torch::Tensor t;
  try {
    ar.read(key, t);
  } catch (const std::exception& e) {
    throw Error("checkpoint entry '" + key + "': " + std::string(e.what()).substr(0, 200));
  }
  return t.to(dtype).contiguous();
}

template <class T>
std::vector<T> to_vector(const torch::Tensor& t) {
  return std::vector<T>(t.data_ptr<T>(), t.data_ptr<T>() + t.numel());
}

bool load_checkpoint(const std::string& path, Model& model, Position& pos, RunHistory& h,
                     torch::serialize::InputArchive& opt_state, bool& has_opt) {
  torch::serialize::InputArchive ar;
  ar.load_from(path);
  torch::serialize::InputArchive m;
  ar.read("model", m);
  model.load(m);
  has_opt = ar.try_read("optimizer", opt_state);
  auto p = to_vector<std::int64_t>(read_tensor(ar, "position", torch::kLong));
  if (p.size() != 4) throw Error("checkpoint entry 'position' has " + std::to_string(p.size()) + " values, expected 4");
  pos = Position{p[0], p[1], p[2], p[3]};
  torch::Tensor rng;
  ar.read("rng", rng);
  at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle: shares the global state
  gen.set_state(rng);
  h.epoch = to_vector<std::int64_t>(read_tensor(ar, "history.epoch", torch::kLong));
  h.step = to_vector<std::int64_t>(read_tensor(ar, "history.step", torch::kLong));
  h.phase = read_strings(ar, "history.phase");
  auto names = read_strings(ar, "history.metric_names");
  for (std::size_t i = 0; i < names.size(); ++i)
    h.metrics[names[i]] = to_vector<double>(read_tensor(ar, "history.metric." + std::to_string(i), torch::kDouble));
  auto anames = read_strings(ar, "history.appended_names");
  for (std::size_t i = 0; i < anames.size(); ++i) {
    std::string k = "history.appended." + std::to_string(i);
    auto dims = read_strings(ar, k + ".dims");
    torch::Tensor t;
    ar.read(k + ".values", t);
    std::vector<torch::Tensor> vals;
    for (std::int64_t j = 0; j < t.size(0); ++j) vals.push_back(t[j].clone());
    h.appended[anames[i]] = {dims, vals};
  }
  auto notes = read_strings(ar, "history.notes");
  for (std::size_t i = 0; i + 1 < notes.size(); i += 2) h.notes[notes[i]] = notes[i + 1];
  return true;
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(4);
  os << v;
  return os.str();
}

struct Interrupted {};

void collect_leaves(const Value& v, const std::string& prefix, std::vector<std::string>& out) {
  if (v.type() != ValueType::Table) {
    out.push_back(prefix);
    return;
  }
  for (const auto& [k, child] : v.as_table()) collect_leaves(child, prefix.empty() ? k : prefix + "." + k, out);
}

std::vector<std::string> unread_keys(const Config& table, const AccessLog& log) {
  std::vector<std::string> leaves, out;
  collect_leaves(table.value(), table.prefix(), leaves);
  for (const auto& k : leaves)
    if (k != table.dotted("plugin") && !log.was_read(k)) out.push_back(k);
  return out;
}

}  // namespace

namespace {
/// Keeps freed tensor memory in the process. A training step of a CNN model allocates and frees
/// tensors of several MiB; by default glibc hands such blocks back to the kernel (munmap, heap
/// trimming) after every step and the next step page-faults them back in, zeroed: profiled, more
/// than half of an MNIST mixture step (E = 5, batch 512) went to page faults. A fixed mmap threshold
/// (the largest glibc accepts, 32 MiB) and a 1 GiB trim threshold make the steady state fault-free;
/// the process keeps at most its peak heap. Once per process, for every model. (modlab's executables
/// link tcmalloc where it is installed, which keeps freed memory anyway; its mallopt does nothing.)
void keep_freed_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    return true;
  }();
  (void)done;
#endif
}
}  // namespace

RunOutcome execute_run(const Registry& registry, const RunRequest& req) {
  keep_freed_memory();
  RunPaths paths = RunPaths::of(req.out_dir, req.run_id);
  fs::create_directories(fs::path(paths.h5).parent_path());
  auto log = [&](const std::string& m) {
    if (req.logger) req.logger(m);
  };

  auto access = std::make_shared<AccessLog>();
  Config root(req.config, "", access);
  Config dcfg = root.sub("dataset"), mcfg = root.sub("model"), tcfg = root.sub("train");
  std::string dplug = dcfg.get<std::string>("plugin"), mplug = mcfg.get<std::string>("plugin");
  const auto& downer = registry.owner_of_dataset(dplug);
  const auto& mowner = registry.owner_of_model(mplug);

  std::map<std::string, std::string> attrs = {
      {"run_id", req.run_id},
      {"sweep", req.sweep_name},
      {"config", canonical_text(*req.config)},
      {"dataset_plugin", dplug},
      {"dataset_plugin_version", downer.info->version},
      {"model_plugin", mplug},
      {"model_plugin_version", mowner.info->version},
      {"git_revision", git_revision()},
      {"modlab_version", MODLAB_VERSION},
      {"torch_version", TORCH_VERSION},
      {"host", host_name()},
      {"device", req.device.str()},
      {"start_time", now_iso()},
      {"status", "running"},
      {"error", ""},
  };
  std::map<std::string, std::int64_t> iattrs = {
      {"seed", req.seed}, {"index", req.index}, {"threads", req.threads}};

  // Resume state, if a checkpoint of this exact run exists.
  torch::manual_seed(req.seed);
  std::unique_ptr<RunWriter> writer;
  std::shared_ptr<Model> model;
  HostOptions hopt;
  hopt.device = req.device;
  hopt.seed = static_cast<std::uint64_t>(req.seed);
  hopt.threads = req.threads;
  hopt.run_dir = fs::path(paths.h5).parent_path().string();
  hopt.sweep_dir = req.sweep_dir;
  hopt.results_dir = req.out_dir;
  hopt.logger = req.logger;
  RunHost host(registry, hopt);

  try {
    auto dataset = host.create_dataset(dplug, dcfg);
    DatasetSpec spec = dataset->spec();
    model = host.create_model(mplug, mcfg, spec);
    model->to(req.device);
    // A key the plugin declares but did not read for this config is usually a sign of a setting that
    // has no effect here (e.g. expert_hidden with linear experts); say so in the run log.
    for (const auto* table : {&dcfg, &mcfg})
      for (const auto& key : unread_keys(*table, *access))
        log("note: " + key + " is set but was not used by plugin '" +
            table->get<std::string>("plugin") + "' with this configuration");

    Position pos;
    RunHistory history;
    torch::serialize::InputArchive opt_state;
    bool has_opt_state = false, resumed = false;
    if (fs::exists(paths.checkpoint)) {
      try {
        resumed = load_checkpoint(paths.checkpoint, *model, pos, history, opt_state, has_opt_state);
        log("resuming from checkpoint at phase " + std::to_string(pos.phase) + ", epoch " + std::to_string(pos.epoch));
      } catch (const std::exception& e) {
        std::string why = e.what();
        log("checkpoint unreadable, starting over: " + why.substr(0, why.find('\n')));
        // rebuild a fresh model: a partial load may have changed weights
        torch::manual_seed(req.seed);
        model = host.create_model(mplug, mcfg, spec);
        model->to(req.device);
        pos = Position{};
        history = RunHistory{};
        resumed = false;
      }
    }
    writer = std::make_unique<RunWriter>(paths.h5, attrs, iattrs, resumed ? &history : nullptr);
    if (!resumed) {
      writer->note("dataset", spec.name);
      writer->note("task", task_kind_name(spec.task));
      for (const auto& [k, v] : spec.info) writer->note("dataset." + k, v);
    }

    auto phases = model->phases();
    const std::int64_t nphases = static_cast<std::int64_t>(phases.size());
    constexpr std::chrono::milliseconds kFlushInterval{1000};
    auto last_flush = std::chrono::steady_clock::now();
    for (std::int64_t pi = pos.phase; pi < nphases; ++pi) {
      const Phase& phase = phases[static_cast<std::size_t>(pi)];
      TrainOptions opt = parse_train_options(tcfg, phase.name);
      std::int64_t epochs = phase.epochs >= 0 ? phase.epochs : opt.epochs;
      std::string train_name = opt.train_split.empty() ? spec.splits.at(0) : opt.train_split;
      auto train = dataset->split(train_name);
      std::vector<std::string> eval_names = opt.eval_splits.empty() ? spec.splits : opt.eval_splits;
      std::vector<std::shared_ptr<const Split>> evals;
      for (const auto& n : eval_names) evals.push_back(dataset->split(n));

      model->begin_phase(phase);
      BuiltOptimizer bo = build_optimizer(opt, model->param_groups(phase.name));
      std::int64_t first_epoch = 0;
      if (pi == pos.phase && resumed) {
        first_epoch = pos.epoch;
        if (has_opt_state && bo.opt) bo.opt->load(opt_state);
      }

      for (std::int64_t ep = first_epoch; ep < epochs; ++ep) {
        auto t0 = std::chrono::steady_clock::now();
        if (bo.opt) {
          auto& groups = bo.opt->param_groups();
          for (std::size_t g = 0; g < groups.size(); ++g)
            groups[g].options().set_lr(scheduled_lr(opt, bo.base_lr[g], ep));
        }
        EpochContext ectx{phase.name, ep, epochs, pos.global_epoch, train.get()};
        model->begin_epoch(ectx);
        model->train();

        // Batch order depends only on (seed, phase, epoch), so a resumed run sees the same batches.
        auto gen = at::detail::createCPUGenerator(static_cast<std::uint64_t>(req.seed) * 1000003ULL +
                                                  static_cast<std::uint64_t>(pi) * 7919ULL + static_cast<std::uint64_t>(ep));
        const std::int64_t n = train->size();
        torch::Tensor order;
        std::int64_t nbatches;
        if (opt.steps_per_epoch > 0) {
          order = torch::randint(n, {opt.steps_per_epoch * opt.batch_size}, gen, torch::kLong);
          nbatches = opt.steps_per_epoch;
        } else {
          order = opt.shuffle ? torch::randperm(n, gen, torch::kLong) : torch::arange(n, torch::kLong);
          nbatches = opt.drop_last ? n / opt.batch_size : (n + opt.batch_size - 1) / opt.batch_size;
        }
        std::map<std::string, double> sums;
        double total_sum = 0.0, weight = 0.0;
        StepCtx sctx(bo, opt.grad_clip, pos.step, ep);
        for (std::int64_t b = 0; b < nbatches; ++b) {
          if (req.stop && req.stop->load()) throw Interrupted{};
          std::int64_t lo = b * opt.batch_size;
          std::int64_t hi = std::min<std::int64_t>(lo + opt.batch_size, order.size(0));
          Batch batch = train->get(order.slice(0, lo, hi), /*training=*/true).to(req.device);
          const std::int64_t step_index = pos.step;  // the step this batch belongs to
          Losses losses = model->train_step(batch, sctx);
          double bw = static_cast<double>(hi - lo), tot = 0.0;
          for (const auto& term : losses) {
            double v = term.value.item<double>();
            if (!std::isfinite(v))
               throw Error("non-finite loss at step " + std::to_string(step_index) + " (phase " + phase.name +
                          ", epoch " + std::to_string(ep) + "): term '" + term.name + "' = " + fmt(v));
            sums[term.name] += v * bw;
            tot += v;
          }
          total_sum += tot * bw;
          weight += bw;
        }

        // metrics row
        writer->begin_row(pos.global_epoch, pos.step, phase.name);
        double train_loss = weight > 0 ? total_sum / weight : std::nan("");
        writer->scalar("fit_loss", train_loss);
        if (sums.size() > 1 || (sums.size() == 1 && sums.begin()->first != "task"))
          for (const auto& [k, v] : sums) writer->scalar("fit_" + k, v / weight);
        if (bo.opt) writer->scalar("lr", bo.opt->param_groups()[0].options().get_lr());

        bool last = ep + 1 == epochs;
        if ((ep + 1) % opt.eval_every == 0 || last) {
          model->eval();
          torch::NoGradGuard ng;
          for (std::size_t si = 0; si < evals.size(); ++si) {
            const auto& split = *evals[si];
            const std::string& sname = eval_names[si];
            MetricSet ms;
            model->eval_begin(sname);
            for (std::int64_t lo = 0; lo < split.size(); lo += opt.eval_batch_size) {
              std::int64_t hi = std::min(lo + opt.eval_batch_size, split.size());
              Batch batch = split.get(torch::arange(lo, hi, torch::kLong), false).to(req.device);
              Output out = model->forward(batch);
              double bw = static_cast<double>(hi - lo);
              ms.add("loss", total(model->loss(batch, out)).item<double>(), bw);
              ms.add("accuracy", model->correct(batch, out).mean().item<double>(), bw);
              model->eval_batch(sname, batch, out, ms);
            }
            // model metrics recorded through a prefixing recorder view
            struct Prefixed : Recorder {
              RunWriter& w;
              std::string p;
              Prefixed(RunWriter& w_, std::string p_) : w(w_), p(std::move(p_)) {}
              void scalar(const std::string& n, double v) override { w.scalar(p + "_" + n, v); }
              void tensor(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
                w.tensor(n, v, d);
              }
              void append(const std::string& n, const torch::Tensor& v, const std::vector<std::string>& d) override {
                w.append(n, v, d);
              }
              void note(const std::string& n, const std::string& v) override { w.note(n, v); }
            } pre(*writer, sname);
            model->eval_end(sname, ms, pre);
            for (const auto& [k, v] : ms.values()) writer->scalar(sname + "_" + k, v);
          }
          model->train();
        }
        const auto t1 = std::chrono::steady_clock::now();
        writer->scalar("time_s", std::chrono::duration<double>(t1 - t0).count());
        ++pos.global_epoch;
        pos.epoch = ep + 1;
        pos.phase = pi;
        bool phase_done = pos.epoch == epochs;
        const bool checkpoint = opt.checkpoint_every > 0 && ((ep + 1) % opt.checkpoint_every == 0 || phase_done);
        // Rows reach the live file at most once per kFlushInterval (and with every checkpoint and at
        // the end of a phase): a flush costs more than a whole epoch of a small model.
        if (checkpoint || phase_done || t1 - last_flush >= kFlushInterval) {
          writer->flush();
          last_flush = t1;
        }
        if (checkpoint) {
          Position save = pos;
          if (phase_done) save = Position{pi + 1, 0, pos.step, pos.global_epoch};
          save_checkpoint(paths.checkpoint, *model, phase_done ? nullptr : bo.opt.get(), save, writer->history());
        }
        if (req.on_progress) req.on_progress(Progress{phase.name, ep + 1, epochs, pi, nphases, train_loss, pos.step});
      }
      pos.epoch = 0;
      pos.phase = pi + 1;
      resumed = false;
    }

    model->eval();
    {
      torch::NoGradGuard ng;
      model->record(*writer);
    }
    {
      torch::serialize::OutputArchive ar;
      model->save(ar);
      ar.save_to(paths.weights + ".tmp");
      fs::rename(paths.weights + ".tmp", paths.weights);
    }
    writer->set_attribute("end_time", now_iso());
    writer->finish("completed");
    std::error_code ec;
    fs::remove(paths.checkpoint, ec);
    return RunOutcome{RunStatus::Completed, ""};
  } catch (const Interrupted&) {
    if (writer) writer->finish("interrupted", "interrupted by the user");
    return RunOutcome{RunStatus::Interrupted, "interrupted"};
  } catch (const std::exception& e) {
    std::string msg = e.what();
    // c10 errors carry a long backtrace after the first line; keep the message short
    auto nl = msg.find("\nException raised from");
    if (nl != std::string::npos) msg = msg.substr(0, nl);
    try {
      if (!writer) writer = std::make_unique<RunWriter>(paths.h5, attrs, iattrs, nullptr);
      writer->set_attribute("end_time", now_iso());
      writer->finish("failed", msg);
    } catch (const std::exception& e2) {
      msg += std::string(" (and the run file could not be written: ") + e2.what() + ")";
    }
    std::error_code ec;
    fs::remove(paths.checkpoint, ec);
    return RunOutcome{RunStatus::Failed, msg};
  }
}

}  // namespace modlab::runner

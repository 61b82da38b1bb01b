// Everything `modlab run` checks before the first run starts, so that a bad value stops the sweep
// with one located error and nothing written: every run's config against the declared keys, the
// command line, the output folder, and what needs the data or the model to be known (split names,
// phase names, parameter groups, a model's own dataset check or, for a model without one, that it
// builds for its dataset; length bucketing).
#include <modlab/errors.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

namespace fs = std::filesystem;

namespace modlab::runner {
namespace {

/// cpu, cuda or cuda:N, parsed as LibTorch parses it; CUDA must be there to be asked for.
void check_device(const std::string& device) {
  std::optional<torch::Device> d;
  try {
    d.emplace(device);
  } catch (const std::exception&) {
    throw ConfigError("--device " + device + ": expected cpu, cuda or cuda:N");
  }
  if (!d->is_cpu() && !d->is_cuda()) throw ConfigError("--device " + device + ": expected cpu, cuda or cuda:N");
  if (d->is_cuda() && !torch::cuda::is_available())
    throw ConfigError("--device " + device + ": CUDA is not available in this build or on this machine");
  if (d->is_cuda() && d->has_index() && d->index() >= static_cast<int>(torch::cuda::device_count()))
    throw ConfigError("--device " + device + ": this machine has " + std::to_string(torch::cuda::device_count()) +
                      " CUDA device(s), numbered from 0");
}

void check_output_folder(const std::string& out_dir) {
  std::error_code ec;
  const fs::path out(out_dir);
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw OutputError("output path " + out_dir + " exists and is not a folder");
  for (fs::path p = out.parent_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p, ec)) {
      if (!fs::is_directory(p, ec)) throw OutputError("output path " + out_dir + ": " + p.string() + " is a file");
      break;
    }
    if (p == p.parent_path()) break;
  }
  if (fs::exists(out / "runs", ec) && !fs::is_directory(out / "runs", ec))
    throw OutputError("output path " + (out / "runs").string() + " exists and is not a folder");
}

/// The `[train]` table and each `[train.phases.<name>]` table.
std::vector<Config> train_tables(const Config& root) {
  const Config train = root.sub("train");
  std::vector<Config> out{train};
  if (train.has("phases"))
    for (const auto& name : train.sub("phases").keys()) out.push_back(train.sub("phases").sub(name));
  return out;
}

/// The `[train]` or phase table that asks for length bucketing (bucket > 0), if any.
std::optional<Config> bucket_table(const Config& root) {
  for (const auto& t : train_tables(root))
    if (t.get_or<std::int64_t>("bucket", 0) > 0) return t;
  return std::nullopt;
}

/// Phase tables or learning rates per parameter group: only the model knows their names.
bool needs_model(const Config& root) {
  const Config train = root.sub("train");
  if (train.has("phases") && !train.sub("phases").keys().empty()) return true;
  return train.has("lr_groups");
}

HostOptions quiet_host(const Sweep& sweep, const RunSpec& r, const SweepOptions& o) {
  HostOptions h;
  h.seed = static_cast<std::uint64_t>(r.seed);
  h.threads = o.threads > 0 ? o.threads : default_threads();
  h.sweep_dir = sweep.dir;
  h.results_dir = o.out_dir;
  h.run_dir = o.out_dir;
  h.logger = [](const std::string&) {};
  h.inspect_only = true;
  return h;
}

/// What preflight learns from building a dataset once.
struct BuiltDataset {
  DatasetSpec spec;
  bool has_lengths = false;  ///< its first split answers Split::lengths
};

BuiltDataset build_dataset(RunHost& host, const Config& data) {
  const auto ds = host.create_dataset(data.get<std::string>("plugin"), data);
  BuiltDataset b{ds->spec(), false};
  const auto first = ds->split(b.spec.splits.at(0));
  b.has_lengths = first->lengths(torch::zeros({first->size() > 0 ? 1 : 0}, torch::kLong)).defined();
  return b;
}

void check_splits(const Config& root, const DatasetSpec& spec) {
  const std::string note = "; dataset '" + spec.name + "' has: " + [&] {
    std::string s;
    for (const auto& n : spec.splits) s += (s.empty() ? "" : ", ") + n;
    return s;
  }();
  auto known = [&](const std::string& n) { return std::find(spec.splits.begin(), spec.splits.end(), n) != spec.splits.end(); };
  for (const auto& t : train_tables(root)) {
    if (t.has("train_split") && !known(t.get<std::string>("train_split")))
      t.fail_unknown("train_split", "split", t.get<std::string>("train_split"), spec.splits, note);
    if (t.has("eval_splits"))
      for (const auto& n : t.get<std::vector<std::string>>("eval_splits"))
        if (!known(n)) t.fail_unknown("eval_splits", "split", n, spec.splits, note);
  }
}

/// The model, or a ConfigError at its table when it cannot be built (weights of another
/// architecture in `inner_weights`, say).
std::shared_ptr<Model> build_model(RunHost& host, const Config& model, const DatasetSpec& spec) {
  try {
    return host.create_model(model.get<std::string>("plugin"), model, spec);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    model.fail("plugin", "the model cannot be built: " + what.substr(0, what.find('\n')));
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::string table_of(const Phase& p) { return p.settings.empty() ? p.name : p.settings; }

/// Each lr group names one of the model's parameter groups in every phase it applies to (the
/// optimizer refuses it otherwise). Returns the phase tables the model reads.
std::vector<std::string> check_groups(const Config& root, Model& model) {
  const Config train = root.sub("train");
  std::vector<std::string> tables;
  for (const auto& p : model.phases()) {
    tables.push_back(table_of(p));
    const TrainOptions opt = parse_train_options(train, table_of(p), p.defaults);
    std::vector<std::string> groups;
    for (const auto& g : model.param_groups(p.name)) groups.push_back(g.name);
    for (const auto& [name, lr] : opt.lr_groups) {
      if (std::find(groups.begin(), groups.end(), name) != groups.end()) continue;
      const Config phase = train.sub("phases").sub(table_of(p));
      const Config where = (phase.has("lr_groups") ? phase : train).sub("lr_groups");
      where.fail_unknown(name, "parameter group", name, groups,
                         " in phase '" + p.name + "' (the model's groups: " + joined(groups) + ")");
    }
  }
  return tables;
}

/// Every `[train.phases.<name>]` names a phase of some run's model (a grid may mix models with
/// and without that phase: goe's router phase exists for the latent router only).
void check_phase_tables(const Sweep& sweep, const std::set<std::string>& known) {
  const std::vector<std::string> names(known.begin(), known.end());
  for (const auto& r : sweep.runs) {
    const Config train = Config(r.config, "").sub("train");
    if (!train.has("phases")) continue;
    for (const auto& n : train.sub("phases").keys())
      if (!known.count(n))
        train.sub("phases").fail_unknown(n, "phase", n, names, " (the models' phases: " + joined(names) + ")");
  }
}

}  // namespace

void preflight(const Sweep& sweep, const Registry& registry, const SweepOptions& o) {
  ConfigErrors errors;  // every run's problems, each once (runs share most of their config)
  for (const auto& r : sweep.runs)
    validate_run_config(*r.config, registry, "run #" + std::to_string(r.index) + " (" + r.run_id + ")", &errors);
  errors.throw_if_any("in " + sweep.file);
  if (o.jobs < 1) throw ConfigError("--jobs: expected a positive number, found " + std::to_string(o.jobs));
  if (o.threads < 0)
    throw ConfigError("--threads: expected 0 (the CPUs this process may use) or a positive number, found " + std::to_string(o.threads));
  if (o.shard_count < 1 || o.shard_index < 0 || o.shard_index >= o.shard_count)
    throw ConfigError("--shard: expected i/n with 0 <= i < n");
  check_output_folder(o.out_dir);
  check_device(o.device);
}

void check_model_datasets(const Sweep& sweep, const Registry& registry, const SweepOptions& o) {
  std::map<std::string, BuiltDataset> built;  // canonical [dataset] text → what it gave
  std::set<std::string> models;               // canonical [model] + [dataset] texts built
  std::set<std::string> phase_tables;         // the phase tables of every model built
  for (const auto& r : sweep.runs) {
    const Config root(r.config, "");
    const Config model = root.sub("model"), data = root.sub("dataset");
    const auto& entry = registry.model(model.get<std::string>("plugin"));
    const auto bucket = bucket_table(root);
    // Every model is checked against its dataset: by its own check, or, without one, by building
    // it once per distinct model and dataset, so that one that cannot use its data stops the sweep.
    const bool build = needs_model(root) || !entry.check;
    RunHost host(registry, quiet_host(sweep, r, o));
    const std::string key = canonical_text(data.value());
    auto it = built.find(key);
    if (it == built.end()) {
      try {
        it = built.emplace(key, build_dataset(host, data)).first;
      } catch (const DataError&) {
        continue;  // data missing: every run of it reports that itself
      }
    }
    const DatasetSpec& spec = it->second.spec;
    check_splits(root, spec);
    if (entry.check) entry.check(model, spec);
    if (bucket && !it->second.has_lengths)
      bucket->fail("bucket", "dataset '" + spec.name +
                                 "' gives no example lengths to bucket by (it is not a sequence dataset); set it to 0");
    if (build && models.insert(canonical_text(model.value()) + "\n" + key).second) {
      const auto m = build_model(host, model, spec);
      if (needs_model(root))
        for (const auto& t : check_groups(root, *m)) phase_tables.insert(t);
    }
  }
  if (!phase_tables.empty()) check_phase_tables(sweep, phase_tables);
}

}  // namespace modlab::runner

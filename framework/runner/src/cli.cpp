// The modlab command line: run, expand, plugins, show (and the hidden _worker).
#include <modlab/errors.hpp>
#include <modlab/runner/cli.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/exit_codes.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/new_plugin.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/show.hpp>
#include <modlab/runner/slurm.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>
#include <modlab/runner/verify.hpp>
#include <modlab_internal/closest_match.hpp>

#include <boost/program_options.hpp>
#include <unistd.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace modlab::runner {

namespace {

const char* kUsage =
    "usage: modlab <command> [options]\n\n"
    "commands:\n"
    "  run SWEEP.toml      expand a sweep and run it (resumes: finished runs are skipped)\n"
    "  expand SWEEP.toml   list the runs a sweep expands to, without running them\n"
    "  plugins [NAME]      list loadable plugins with their config keys (NAME: one model, dataset or plugin)\n"
    "  slurm SWEEP.toml    submit a sweep to Slurm as one job array (-- then sbatch options)\n"
    "  show DIR            print the summary table of a sweep's results\n"
    "  verify DIR          check every run file of a results folder (checksum, identity)\n"
    "  new-plugin NAME --kind model|dataset   write a plugin folder to start from (builds, has a sweep)\n\n"
    "options: --help (also after a command: modlab run --help), --version\n\n"
    "environment:\n"
    "  MODLAB_PLUGIN_PATH  folders of plugins (':'-separated), searched after --plugin-path and before\n"
    "                      the plugins beside the executable (<prefix>/plugins, <prefix>/lib/modlab/plugins)\n"
    "  MODLAB_DATA_DIR     where dataset plugins look for their files when a config gives no path\n\n"
    "docs: README.md and docs/ of the source tree (sweeps.md, output-format.md, python.md, slurm.md,\n"
    "      writing-a-model.md)\n\n";

const char* kPluginSearch =
    "\nPlugins are searched in --plugin-path, then MODLAB_PLUGIN_PATH, then beside the executable.\n";

struct UsageError : Error {
  using Error::Error;
};

po::variables_map parse(const std::vector<std::string>& args, po::options_description& desc,
                        const po::positional_options_description& pos) {
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return vm;
}

/// Every entry named on the command line or in MODLAB_PLUGIN_PATH must be a folder of plugins or
/// a plugin's .so file.
void check_plugin_folders(const std::vector<std::string>& plugin_path) {
  auto check = [](const std::string& dir, const std::string& from) {
    std::error_code ec;
    if (fs::is_directory(dir, ec) || (fs::is_regular_file(dir, ec) && fs::path(dir).extension() == ".so")) return;
    throw UsageError(from + " " + dir + ": " +
                     (fs::exists(dir, ec) ? "is neither a folder nor a plugin's .so file" : "no such folder or file"));
  };
  for (const auto& d : plugin_path) check(d, "--plugin-path");
  if (const char* env = std::getenv("MODLAB_PLUGIN_PATH")) {
    std::istringstream in(env);
    for (std::string d; std::getline(in, d, ':');)
      if (!d.empty()) check(d, "MODLAB_PLUGIN_PATH entry");
  }
}

Registry& load_registry(const std::vector<std::string>& plugin_path) {
  static Registry registry;
  check_plugin_folders(plugin_path);
  registry.load_directories(plugin_search_path(plugin_path));
  return registry;
}

std::string table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  return render(TextTable{header, rows}, ShowOptions{});
}

void add_plugin_path_option(po::options_description& d) {
  d.add_options()("plugin-path", po::value<std::vector<std::string>>()->composing(),
                  "extra folder of plugins, or one plugin's .so file (repeatable; searched first)");
}

void add_sweep_options(po::options_description& d) {
  d.add_options()("set", po::value<std::vector<std::string>>()->composing(), "override a config key: --set train.lr=0.01 (repeatable)");
  add_plugin_path_option(d);
}

/// Parses a command's arguments into `vm`, `positional` taking its one positional argument. False,
/// after printing the help (and `after`), when help was asked for.
bool parse_command(const std::vector<std::string>& args, po::options_description& d, const char* positional, bool help,
                   po::variables_map& vm, const std::string& after = "") {
  po::positional_options_description pos;
  pos.add(positional, 1);
  vm = parse(args, d, pos);
  if (!help && !vm.count("help")) return true;
  std::cout << d << after;
  return false;
}

std::vector<std::string> strings(const po::variables_map& vm, const char* k) {
  return vm.count(k) ? vm[k].as<std::vector<std::string>>() : std::vector<std::string>{};
}

int cmd_expand(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab expand SWEEP.toml [options]\n\nLists the runs of a sweep (run id = hash of the resolved config).\n\noptions");
  d.add_options()("help,h", "this help")("sweep", po::value<std::string>(), "sweep file")(
      "no-validate", "do not load plugins to validate keys");
  add_sweep_options(d);
  po::variables_map vm;
  if (!parse_command(args, d, "sweep", help, vm)) return exit_status(ExitCode::Ok);
  if (!vm.count("sweep")) throw UsageError("expand: missing the sweep file");
  Sweep s = load_sweep(vm["sweep"].as<std::string>(), strings(vm, "set"));
  if (!vm.count("no-validate")) {
    auto& reg = load_registry(strings(vm, "plugin-path"));
    ConfigErrors errors;
    for (const auto& r : s.runs) validate_run_config(*r.config, reg, r.run_id, &errors);
    errors.throw_if_any("in " + s.file);
  }
  std::cout << format_expansion(s);
  std::cout << s.runs.size() << " runs\n";
  return exit_status(ExitCode::Ok);
}

// "i/n" → shard i of n (range checked by preflight).
void parse_shard(const std::string& shard, SweepOptions& o) {
  std::istringstream is(shard);
  char slash = 0;
  if (!(is >> o.shard_index >> slash >> o.shard_count) || slash != '/' || !is.eof())
    throw UsageError("--shard: expected i/n, e.g. 0/4, found '" + shard + "'");
}

/// --dry-run: the runs this invocation would run (those of its shard), with their ids.
void print_dry_run(const Sweep& s, const SweepOptions& o) {
  Sweep mine = s;
  mine.runs.clear();
  for (const auto& r : s.runs)
    if (o.in_shard(r.index)) mine.runs.push_back(r);
  std::cout << format_expansion(mine) << mine.runs.size() << " runs";
  if (o.shard_count > 1)
    std::cout << " of " << s.runs.size() << " (shard " << o.shard_index << "/" << o.shard_count << ")";
  std::cout << " -> " << o.out_dir << "\n";
}

int cmd_run(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab run SWEEP.toml [options]\n\nRuns every run of a sweep not yet completed in OUT; results go to OUT/runs/<run_id>.h5 and OUT/sweep.h5.\n\noptions");
  SweepOptions o;
  std::string shard;
  d.add_options()("help,h", "this help")("sweep", po::value<std::string>(), "sweep file")(
      "jobs,j", po::value<int>(&o.jobs)->default_value(1), "runs at once (worker processes)")(
      "threads", po::value<int>(&o.threads)->default_value(0), "LibTorch threads in all, divided among jobs (0 = the CPUs this process may use)")(
      "device", po::value<std::string>(&o.device)->default_value("cpu"), "cpu | cuda | cuda:N")(
      "out,o", po::value<std::string>(&o.out_dir), "output folder (default results/<sweep name>)")(
      "shard", po::value<std::string>(&shard), "i/n: run only runs whose index % n == i (for job arrays)")(
      "dry-run", "print the runs and exit")("verbose,v", "per-epoch log lines");
  add_sweep_options(d);
  po::variables_map vm;
  if (!parse_command(args, d, "sweep", help, vm, std::string("\n") + exit_codes_help())) return exit_status(ExitCode::Ok);
  if (!vm.count("sweep")) throw UsageError("run: missing the sweep file");
  if (vm.count("out") && o.out_dir.empty()) throw UsageError("--out: expected a folder, found an empty path");
  o.verbose = vm.count("verbose") > 0;
  o.plugin_path = strings(vm, "plugin-path");
  if (!shard.empty()) parse_shard(shard, o);
  Sweep s = load_sweep(vm["sweep"].as<std::string>(), strings(vm, "set"));
  if (o.out_dir.empty()) o.out_dir = (fs::path("results") / s.name).string();
  auto& reg = load_registry(o.plugin_path);
  if (vm.count("dry-run")) {
    preflight(s, reg, o);
    check_model_datasets(s, reg, o);
    print_dry_run(s, o);
    return exit_status(ExitCode::Ok);
  }
  return run_sweep(s, reg, o);
}

/// Runs of the sweep already completed in `out_dir`.
int completed_runs(const Sweep& s, const std::string& out_dir) {
  int n = 0;
  for (const auto& r : s.runs) {
    const auto summary = read_run_summary(RunPaths::of(out_dir, r.run_id).h5);
    n += summary && summary->status == "completed";
  }
  return n;
}

/// The `modlab run` arguments every array task repeats: overrides, plugin folders, device.
std::vector<std::string> forwarded_run_args(const po::variables_map& vm, const SweepOptions& o) {
  std::vector<std::string> a;
  for (const auto& set : strings(vm, "set")) a.insert(a.end(), {"--set", set});
  for (const auto& p : o.plugin_path) a.insert(a.end(), {"--plugin-path", fs::absolute(p).string()});
  if (o.device != "cpu") a.insert(a.end(), {"--device", o.device});
  return a;
}

void print_submitted(const SlurmJob& job, const std::string& id, int done) {
  std::cout << "submitted job " << id << ": " << job.runs - done << " of " << job.runs << " runs to do, in "
            << job.tasks << " array tasks of " << job.cpus_per_task << " CPU(s), " << job.jobs
            << " run(s) at once each -> " << job.out_dir << "\n  job script: " << job.out_dir << "/slurm/"
            << job.sweep_name << ".sbatch (task logs beside it)\n  watch: squeue -j " << id
            << "; modlab show " << job.out_dir << " --watch\n"
            << "  the same command again resumes: completed runs are skipped\n";
}

int cmd_slurm(std::vector<std::string> args, bool help) {
  po::options_description d(
      "modlab slurm SWEEP.toml [options] [-- sbatch options]\n\nSubmits the sweep as one Slurm job array: array task i "
      "runs `modlab run --shard i/TASKS`\ninto the one output folder. Every run is checked first, as `modlab run` "
      "does.\nOptions after -- go to sbatch (e.g. -- --partition=cpu --time=4:00:00).\n\noptions");
  SweepOptions o;
  int tasks = 0, cpus = 1;
  d.add_options()("help,h", "this help")("sweep", po::value<std::string>(), "sweep file")(
      "tasks", po::value<int>(&tasks)->default_value(0), "array tasks (0 = one per run, at most 1000)")(
      "cpus-per-task,c", po::value<int>(&cpus)->default_value(1), "CPUs Slurm gives each task (its torch threads)")(
      "jobs,j", po::value<int>(&o.jobs)->default_value(0), "runs at once inside a task (0 = one per CPU)")(
      "device", po::value<std::string>(&o.device)->default_value("cpu"), "cpu | cuda | cuda:N")(
      "out,o", po::value<std::string>(&o.out_dir), "output folder (default results/<sweep name>)")(
      "force", "submit even if this folder's previous job is still queued or running")(
      "dry-run", "print the job script and exit");
  add_sweep_options(d);
  const auto dashes = std::find(args.begin(), args.end(), "--");
  const std::vector<std::string> sbatch_args(dashes == args.end() ? dashes : dashes + 1, args.end());
  args.erase(dashes, args.end());
  po::variables_map vm;
  if (!parse_command(args, d, "sweep", help, vm)) return exit_status(ExitCode::Ok);
  if (!vm.count("sweep")) throw UsageError("slurm: missing the sweep file");
  o.plugin_path = strings(vm, "plugin-path");
  Sweep s = load_sweep(vm["sweep"].as<std::string>(), strings(vm, "set"));
  if (o.out_dir.empty()) o.out_dir = (fs::path("results") / s.name).string();
  SlurmJob job{s.name, fs::canonical("/proc/self/exe").string(), s.file, fs::absolute(o.out_dir).lexically_normal().string(),
               forwarded_run_args(vm, o), static_cast<int>(s.runs.size())};
  job.tasks = slurm_task_count(job.runs, tasks);
  job.cpus_per_task = cpus;
  job.jobs = o.jobs = slurm_jobs_per_task(job.runs, job.tasks, cpus, o.jobs);
  auto& reg = load_registry(o.plugin_path);
  // The submitting machine may have no GPU where the nodes have: --device is checked by each task.
  SweepOptions here = o;
  here.device = "cpu";
  preflight(s, reg, here);
  check_model_datasets(s, reg, here);
  if (vm.count("dry-run")) {
    std::cout << slurm_script(job);
    return exit_status(ExitCode::Ok);
  }
  const int done = completed_runs(s, job.out_dir);
  if (done == job.runs) {
    std::cout << "all " << job.runs << " runs are complete in " << job.out_dir << "; nothing to submit\n";
    return exit_status(ExitCode::Ok);
  }
  print_submitted(job, submit_slurm_job(job, sbatch_args, vm.count("force") > 0), done);
  return exit_status(ExitCode::Ok);
}

std::string key_type(const KeySpec& k) {
  if (k.type == ValueType::Array && k.element != ValueType::Null) return std::string(type_name(k.element)) + "[]";
  return type_name(k.type);
}

std::string keys_table(const std::vector<KeySpec>& keys) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& k : keys)
    rows.push_back({"  " + k.name, key_type(k), k.default_value.empty() ? "(required)" : k.default_value,
                    k.constraint(), k.doc + (k.per_member ? " (may differ within a population)" : "")});
  return table({"  key", "type", "default", "allowed", ""}, rows);
}

/// `modlab plugins NAME` takes a model, a dataset or a plugin (library) name; anything else is an
/// error listing all three, with the closest name.
void check_plugins_name(const Registry& reg, const std::string& name) {
  const auto models = reg.model_names(), datasets = reg.dataset_names();
  std::vector<std::string> libraries;
  for (const auto& p : reg.plugins()) libraries.push_back(p.info->name);
  if (reg.has_model(name) || reg.has_dataset(name) ||
      std::find(libraries.begin(), libraries.end(), name) != libraries.end())
    return;
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
    return out.empty() ? std::string("none") : out;
  };
  std::vector<std::string> all = libraries;
  all.insert(all.end(), models.begin(), models.end());
  all.insert(all.end(), datasets.begin(), datasets.end());
  const std::string guess = closest_match(name, all);
  throw UsageError("plugins: no model, dataset or plugin named '" + name + "'" +
                   (guess.empty() ? "" : "; did you mean '" + guess + "'?") + "\n  models: " + join(models) +
                   "\n  datasets: " + join(datasets) + "\n  plugins: " + join(libraries));
}

int cmd_plugins(const std::vector<std::string>& args, bool help) {
  po::options_description d(
      "modlab plugins [NAME] [options]\n\nLists the loadable plugins and their config keys; NAME (a model, a dataset or a\n"
      "plugin such as hier_modular) shows only that.\n\noptions");
  d.add_options()("help,h", "this help")("name", po::value<std::string>(), "model, dataset or plugin to show");
  add_plugin_path_option(d);
  po::variables_map vm;
  if (!parse_command(args, d, "name", help, vm, kPluginSearch)) return exit_status(ExitCode::Ok);
  auto& reg = load_registry(strings(vm, "plugin-path"));
  const std::string only = vm.count("name") ? vm["name"].as<std::string>() : "";
  if (!only.empty()) check_plugins_name(reg, only);
  auto print = [&](const LoadedPlugin& p, const char* kind, const std::string& n, const std::string& description,
                   const std::vector<KeySpec>& keys) {
    if (!only.empty() && n != only && p.info->name != only) return;
    std::cout << kind << " " << n << "  (" << p.info->name << " " << p.info->version << ", " << p.file << ")\n  "
              << description << "\n" << keys_table(keys) << "\n";
  };
  for (const auto& p : reg.plugins()) {
    for (const auto& m : p.models) print(p, "model", m, reg.model(m).description, reg.model(m).keys);
    for (const auto& n : p.datasets) print(p, "dataset", n, reg.dataset(n).description, reg.dataset(n).keys);
  }
  if (only.empty()) std::cout << "trainer [train]\n" << keys_table(train_keys()) << "\nrun [run]\n" << keys_table(run_keys());
  return exit_status(ExitCode::Ok);
}

// The tables of the completed runs (or of run `only`), each under a heading with its run and name.
void print_tables(const std::string& dir, const std::vector<RunSummary>& rows, const std::string& only) {
  bool found = only.empty();
  for (const auto& r : rows) {
    if ((!only.empty() && r.run_id != only) || r.status != "completed" || r.file.empty()) continue;
    found = true;
    for (const auto& t : read_run_tables((fs::path(dir) / r.file).string())) {
      std::vector<std::string> header = {""};
      header.insert(header.end(), t.columns.begin(), t.columns.end());
      std::vector<std::vector<std::string>> cells;
      for (std::size_t i = 0; i < t.rows.size(); ++i) {
        std::vector<std::string> row = {t.rows[i]};
        for (std::size_t j = 0; j < t.columns.size(); ++j) {
          std::ostringstream os;
          const double v = t.values[i * t.columns.size() + j];
          if (!std::isnan(v)) os << std::setprecision(4) << v + 0.0;
          row.push_back(os.str());
        }
        cells.push_back(row);
      }
      std::cout << "\nrun " << r.run_id << " (#" << r.index << "), " << t.name << ":\n" << table(header, cells);
    }
  }
  if (!found) throw UsageError("show: no completed run '" + only + "' in " + dir);
}

std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string f; std::getline(in, f, ',');)
    if (!f.empty()) out.push_back(f);
  return out;
}

ShowOptions show_options(const po::variables_map& vm) {
  ShowOptions o;
  o.metric_filters = comma_list(vm["metrics"].as<std::string>());
  if (vm.count("group-by")) o.group_by = comma_list(vm["group-by"].as<std::string>());
  if (vm.count("sort")) o.sort = vm["sort"].as<std::string>();
  o.reverse = vm.count("reverse") > 0;
  if (vm.count("columns")) o.columns = comma_list(vm["columns"].as<std::string>());
  o.csv = vm.count("csv") > 0;
  if (!o.csv && isatty(STDOUT_FILENO)) o.width = terminal_width(STDOUT_FILENO);
  return o;
}

/// --watch: the table redrawn every `seconds` until Ctrl-C.
int watch_summary(const std::string& dir, const ShowOptions& o, double seconds) {
  for (;;) {
    const std::string text = show_summary(dir, o);
    std::cout << (isatty(STDOUT_FILENO) ? "\033[H\033[2J" : "") << dir << "  (every " << seconds
              << " s; Ctrl-C to stop)\n\n" << text << std::flush;
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long long>(seconds * 1000)));
  }
}

int cmd_show(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab show DIR [options]\n\nPrints the summary table of a sweep's results (DIR/sweep.h5), "
                            "also while the sweep runs.\n\noptions");
  d.add_options()("help,h", "this help")("dir", po::value<std::string>(), "sweep output folder")(
      "metrics", po::value<std::string>()->default_value("accuracy,loss,entropy,information"),
      "comma-separated substrings selecting metric columns ('' = all)")(
      "group-by", po::value<std::string>()->implicit_value(""),
      "one row per value of these varied keys (comma-separated), metrics as mean ± std over the completed runs; "
      "alone: every varied key but run.seed (the mean over seeds)")(
      "sort", po::value<std::string>(), "sort rows by this column")("reverse", "with --sort: largest first")(
      "columns", po::value<std::string>(), "show only these columns, in this order (comma-separated)")(
      "csv", "comma-separated values, every column")(
      "watch", po::value<double>()->implicit_value(2.0), "redraw every N seconds (default 2) until Ctrl-C")(
      "tables", "print the tables each completed run recorded (masks, accuracies per sub-task ...)")(
      "run", po::value<std::string>(), "with --tables: only this run id");
  po::variables_map vm;
  if (!parse_command(args, d, "dir", help, vm)) return exit_status(ExitCode::Ok);
  if (!vm.count("dir")) throw UsageError("show: missing the results folder");
  const std::string dir = vm["dir"].as<std::string>();
  const ShowOptions o = show_options(vm);
  if (vm.count("watch")) {
    const double s = vm["watch"].as<double>();
    if (!(s >= 0.1 && s <= 86400)) throw UsageError("show --watch: expected seconds in [0.1, 86400]");
    return watch_summary(dir, o, s);
  }
  std::cout << show_summary(dir, o);
  const auto rows = read_sweep_index(dir);
  for (const auto& r : rows)
    if (r.status == "failed" && !o.csv) std::cout << "run " << r.run_id << " failed: " << r.error << "\n";
  if (vm.count("tables")) print_tables(dir, rows, vm.count("run") ? vm["run"].as<std::string>() : "");
  return exit_status(ExitCode::Ok);
}

/// The install prefix this executable runs from, if it is one (it holds modlab's CMake package).
std::string install_prefix() {
  const fs::path prefix = fs::canonical("/proc/self/exe").parent_path().parent_path();
  const fs::path libdir = fs::path(MODLAB_PLUGIN_INSTALL_SUBDIR).parent_path().parent_path();
  std::error_code ec;
  return fs::exists(prefix / libdir / "cmake" / "modlab" / "modlabConfig.cmake", ec) ? prefix.string() : "";
}

int cmd_new_plugin(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab new-plugin NAME --kind model|dataset [--dir DIR]\n\nWrites a plugin folder to start "
                            "from: the source, its CMakeLists.txt (find_package(modlab)),\na sweep that trains it "
                            "and a README. docs/writing-a-model.md walks through it.\n\noptions");
  d.add_options()("help,h", "this help")("name", po::value<std::string>(), "plugin name (lower-case, digits, _)")(
      "kind", po::value<std::string>(), "model (an MLP classifier) or dataset (2-D spirals)")(
      "dir", po::value<std::string>(), "folder to write (default ./NAME; must not exist or be empty)");
  po::variables_map vm;
  if (!parse_command(args, d, "name", help, vm)) return exit_status(ExitCode::Ok);
  if (!vm.count("name")) throw UsageError("new-plugin: missing the plugin's name");
  if (!vm.count("kind")) throw UsageError("new-plugin: missing --kind model or --kind dataset");
  const std::string name = vm["name"].as<std::string>();
  const std::string dir = vm.count("dir") ? vm["dir"].as<std::string>() : name;
  for (const auto& f : write_new_plugin(name, vm["kind"].as<std::string>(), dir)) std::cout << "wrote " << f << "\n";
  const std::string prefix = install_prefix();
  std::cout << "\nbuild it and train it:\n  cd " << dir << "\n  cmake -S . -B build -DCMAKE_PREFIX_PATH="
            << (prefix.empty() ? "<modlab install prefix>" : prefix) << "\n  cmake --build build\n  modlab run sweep.toml "
            << "--plugin-path build/plugins --out results\n";
  if (prefix.empty())
    std::cout << "(this modlab runs from a build tree: install it first, cmake --install <build> --prefix P)\n";
  return exit_status(ExitCode::Ok);
}

int cmd_verify(const std::vector<std::string>& args, bool help) {
  po::options_description d(
      "modlab verify DIR\n\nChecks every run file in DIR/runs: its bytes against the checksum written when it was\n"
      "finished, and that it is the run its name says (run id and config); and that DIR/sweep.h5 reads.\n"
      "Exit status 1 when a file has a problem (`modlab run` moves such files aside and reruns them).\n\noptions");
  d.add_options()("help,h", "this help")("dir", po::value<std::string>(), "results folder");
  po::variables_map vm;
  if (!parse_command(args, d, "dir", help, vm)) return exit_status(ExitCode::Ok);
  if (!vm.count("dir")) throw UsageError("verify: missing the results folder");
  return exit_status(verify_folder(vm["dir"].as<std::string>(), std::cout) == 0 ? ExitCode::Ok : ExitCode::RunsFailed);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage << exit_codes_help();
    return exit_status(ExitCode::BadInput);
  }
  std::string cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (cmd == "--version" || cmd == "version") {
      std::cout << "modlab " << MODLAB_VERSION << " (LibTorch " << TORCH_VERSION << ", plugin ABI " << kAbiVersion << ")\n";
      return exit_status(ExitCode::Ok);
    }
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      if (!rest.empty()) {
        std::string sub = rest[0];
        rest.clear();
        if (sub == "run") return cmd_run(rest, true);
        if (sub == "expand") return cmd_expand(rest, true);
        if (sub == "plugins") return cmd_plugins(rest, true);
        if (sub == "show") return cmd_show(rest, true);
        if (sub == "slurm") return cmd_slurm(rest, true);
        if (sub == "verify") return cmd_verify(rest, true);
        if (sub == "new-plugin") return cmd_new_plugin(rest, true);
      }
      std::cout << kUsage << exit_codes_help();
      return exit_status(ExitCode::Ok);
    }
    if (cmd == "run") return cmd_run(rest, false);
    if (cmd == "expand") return cmd_expand(rest, false);
    if (cmd == "plugins") return cmd_plugins(rest, false);
    if (cmd == "show") return cmd_show(rest, false);
    if (cmd == "slurm") return cmd_slurm(rest, false);
    if (cmd == "verify") return cmd_verify(rest, false);
    if (cmd == "new-plugin") return cmd_new_plugin(rest, false);
    if (cmd == "_worker") return worker_main(rest);
    throw UsageError("unknown command '" + cmd + "' (commands: run, expand, plugins, slurm, show, verify, new-plugin)");
  } catch (const UsageError& e) {
    std::cerr << "modlab: " << e.what() << " (see modlab --help)\n";
    return exit_status(ExitCode::BadInput);
  } catch (const Error& e) {
    std::cerr << "modlab: error: " << e.what() << "\n";
    return exit_status(ExitCode::BadInput);
  } catch (const fs::filesystem_error& e) {
    // e.g. a results folder that cannot be made: the path and the system's reason
    std::cerr << "modlab: error: " << e.path1().string() << ": " << e.code().message() << "\n";
    return exit_status(ExitCode::BadInput);
  } catch (const std::exception& e) {
    std::cerr << "modlab: internal error: " << e.what() << "\n";
    return exit_status(ExitCode::BadInput);
  }
}

}  // namespace modlab::runner

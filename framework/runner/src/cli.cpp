// The modlab command line: run, expand, plugins, show (and the hidden _worker).
#include <modlab/errors.hpp>
#include <modlab/runner/cli.hpp>
#include <modlab/runner/exit_codes.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>
#include <modlab/runner/verify.hpp>

#include <boost/program_options.hpp>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace modlab::runner {

namespace {

const char* kUsage =
    "usage: modlab <command> [options]\n\n"
    "commands:\n"
    "  run SWEEP.toml      expand a sweep and run it (resumes: finished runs are skipped)\n"
    "  expand SWEEP.toml   list the runs a sweep expands to, without running them\n"
    "  plugins             list loadable plugins with their config keys\n"
    "  show DIR            print the summary table of a sweep's results\n"
    "  verify DIR          check every run file of a results folder (checksum, identity)\n\n"
    "options: --help (also after a command), --version\n\n";

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
  std::vector<std::size_t> w(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& r) {
    for (std::size_t i = 0; i < w.size(); ++i) {
      std::string c = i < r.size() ? r[i] : "";
      os << c << (i + 1 < w.size() ? std::string(w[i] - c.size() + 2, ' ') : "");
    }
    os << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  return os.str();
}

void add_sweep_options(po::options_description& d) {
  d.add_options()("set", po::value<std::vector<std::string>>()->composing(), "override a config key: --set train.lr=0.01 (repeatable)")(
      "plugin-path", po::value<std::vector<std::string>>()->composing(), "extra folder of plugins, or one plugin's .so file (repeatable)");
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
    for (const auto& r : s.runs) validate_run_config(*r.config, reg, r.run_id);
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

int cmd_run(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab run SWEEP.toml [options]\n\nRuns every run of a sweep not yet completed in OUT; results go to OUT/runs/<run_id>.h5 and OUT/sweep.h5.\n\noptions");
  SweepOptions o;
  std::string shard;
  d.add_options()("help,h", "this help")("sweep", po::value<std::string>(), "sweep file")(
      "jobs,j", po::value<int>(&o.jobs)->default_value(1), "runs at once (worker processes)")(
      "threads", po::value<int>(&o.threads)->default_value(0), "LibTorch threads in all, divided among jobs (0 = all cores)")(
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
    std::cout << format_expansion(s) << s.runs.size() << " runs -> " << o.out_dir << "\n";
    return exit_status(ExitCode::Ok);
  }
  return run_sweep(s, reg, o);
}

std::string key_type(const KeySpec& k) {
  if (k.type == ValueType::Array && k.element != ValueType::Null) return std::string(type_name(k.element)) + "[]";
  return type_name(k.type);
}

int cmd_plugins(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab plugins [options]\n\nLists loadable plugins and their config keys.\n\noptions");
  d.add_options()("help,h", "this help")("name", po::value<std::string>(), "show only this model/dataset");
  add_sweep_options(d);
  po::variables_map vm;
  if (!parse_command(args, d, "name", help, vm)) return exit_status(ExitCode::Ok);
  auto& reg = load_registry(strings(vm, "plugin-path"));
  std::string only = vm.count("name") ? vm["name"].as<std::string>() : "";
  auto keys_table = [](const std::vector<KeySpec>& keys) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& k : keys)
      rows.push_back({"  " + k.name, key_type(k), k.default_value.empty() ? "(required)" : k.default_value,
                      k.constraint(), k.doc});
    return table({"  key", "type", "default", "allowed", ""}, rows);
  };
  for (const auto& p : reg.plugins()) {
    for (const auto& m : p.models) {
      if (!only.empty() && m != only) continue;
      const auto& e = reg.model(m);
      std::cout << "model " << m << "  (" << p.info->name << " " << p.info->version << ", " << p.file << ")\n  "
                << e.description << "\n" << keys_table(e.keys) << "\n";
    }
    for (const auto& n : p.datasets) {
      if (!only.empty() && n != only) continue;
      const auto& e = reg.dataset(n);
      std::cout << "dataset " << n << "  (" << p.info->name << " " << p.info->version << ", " << p.file << ")\n  "
                << e.description << "\n" << keys_table(e.keys) << "\n";
    }
  }
  if (only.empty()) std::cout << "trainer [train]\n" << keys_table(train_keys()) << "\nrun [run]\n" << keys_table(run_keys());
  else if (!reg.has_model(only) && !reg.has_dataset(only)) {
    reg.model(only);  // throws with the known names
  }
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

int cmd_show(const std::vector<std::string>& args, bool help) {
  po::options_description d("modlab show DIR [options]\n\nPrints the summary table of a sweep's results (DIR/sweep.h5).\n\noptions");
  d.add_options()("help,h", "this help")("dir", po::value<std::string>(), "sweep output folder")(
      "metrics", po::value<std::string>()->default_value("accuracy,loss,entropy,information"),
      "comma-separated substrings selecting metric columns ('' = all)")(
      "tables", "print the tables each completed run recorded (masks, accuracies per sub-task ...)")(
      "run", po::value<std::string>(), "with --tables: only this run id");
  po::variables_map vm;
  if (!parse_command(args, d, "dir", help, vm)) return exit_status(ExitCode::Ok);
  if (!vm.count("dir")) throw UsageError("show: missing the results folder");
  std::string dir = vm["dir"].as<std::string>();
  if (!fs::exists(fs::path(dir) / "sweep.h5")) throw OutputError(dir + ": no sweep.h5 here (is it a sweep's output folder?)");
  std::vector<std::string> varied;
  auto rows = read_sweep_index(dir, &varied);
  std::vector<std::string> filters;
  std::stringstream fs_(vm["metrics"].as<std::string>());
  for (std::string f; std::getline(fs_, f, ',');)
    if (!f.empty()) filters.push_back(f);
  std::set<std::string> metric_names;
  for (const auto& r : rows)
    for (const auto& [k, v] : r.final_metrics) {
      bool keep = filters.empty();
      for (const auto& f : filters) keep = keep || k.find(f) != std::string::npos;
      if (keep && k.rfind("fit_", 0) != 0) metric_names.insert(k);
    }
  std::vector<std::string> header = {"#", "run_id", "status"};
  for (const auto& v : varied) header.push_back(v);
  for (const auto& m : metric_names) header.push_back(m);
  std::vector<std::vector<std::string>> out;
  for (const auto& r : rows) {
    std::vector<std::string> row = {std::to_string(r.index), r.run_id, r.status};
    for (const auto& v : varied) row.push_back(r.params.count(v) ? r.params.at(v) : "");
    for (const auto& m : metric_names) {
      auto it = r.final_metrics.find(m);
      std::ostringstream os;
      if (it != r.final_metrics.end() && !std::isnan(it->second)) os << std::setprecision(4) << it->second + 0.0;  // no "-0"
      row.push_back(os.str());
    }
    out.push_back(row);
  }
  std::cout << table(header, out);
  for (const auto& r : rows)
    if (r.status == "failed") std::cout << "run " << r.run_id << " failed: " << r.error << "\n";
  if (vm.count("tables")) print_tables(dir, rows, vm.count("run") ? vm["run"].as<std::string>() : "");
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
        if (sub == "verify") return cmd_verify(rest, true);
      }
      std::cout << kUsage << exit_codes_help();
      return exit_status(ExitCode::Ok);
    }
    if (cmd == "run") return cmd_run(rest, false);
    if (cmd == "expand") return cmd_expand(rest, false);
    if (cmd == "plugins") return cmd_plugins(rest, false);
    if (cmd == "show") return cmd_show(rest, false);
    if (cmd == "verify") return cmd_verify(rest, false);
    if (cmd == "_worker") return worker_main(rest);
    throw UsageError("unknown command '" + cmd + "' (commands: run, expand, plugins, show, verify)");
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

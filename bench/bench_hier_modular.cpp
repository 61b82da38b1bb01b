// Throughput of the hier_modular generalization sweep: the [6,3,2,2] half of
// sweeps/hier_modular/{mlp,modular,shared}.toml (6 model variants x 7 training fractions x N seeds)
// run by the modlab executable with --jobs J, against the same models written in idiomatic PyTorch
// (bench/python/hier_modular_ref.py) run one after another in one Python process on the same
// machine. Prints one row per model variant and the total.
//
//   build/bin/bench_hier_modular [--exe build/bin/modlab] [--epochs 500] [--seeds 10] [--jobs 2]
//                                [--python-runs 3] [--out /tmp/bench_hier_modular]
//
// The modlab executable defaults to the one beside this binary. Every model variant gets a fresh
// output folder, so nothing is skipped as already completed. Besides wall time the bench reports the
// CPU seconds each side spends per run (getrusage of the child processes), which stay comparable
// when other users load the machine; "runs/min on free cores" is 60 x cores / (CPU s per run), with
// the jobs' cores for modlab and one core for the sequential Python process.
#include "bench_hier_modular_variants.hpp"
#include "bench_process.hpp"
#include "bench_util.hpp"
#include <modlab/runner/remove_tree.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

using bench::kVariants;
using bench::loadavg;
using bench::quote;
using bench::self_dir;
using bench::timed;
using bench::Timed;

namespace {

struct Options {
  std::string exe = (fs::path(self_dir()) / "modlab").string();
  std::string out = (fs::temp_directory_path() / "bench_hier_modular").string();
  int epochs = 500, seeds = 10, jobs = 2, python_runs = 3;
};

/// The command line; exits with 2 on an unknown option or a missing executable.
Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--exe") o.exe = v;
    else if (a == "--epochs") o.epochs = std::stoi(v);
    else if (a == "--seeds") o.seeds = std::stoi(v);
    else if (a == "--jobs") o.jobs = std::stoi(v);
    else if (a == "--python-runs") o.python_runs = std::stoi(v);
    else if (a == "--out") o.out = v;
    else {
      std::cerr << "unknown option " << a << "\n";
      std::exit(2);
    }
  }
  if (!fs::exists(o.exe)) {
    std::cerr << "modlab executable not found: " << o.exe << " (pass --exe)\n";
    std::exit(2);
  }
  return o;
}

struct Row {
  std::string label;
  int runs = 0, failed = 0, py_runs = 0;
  double wall = 0, cpu = 0, py_wall = 0, py_cpu = 0;
};

void print_header(const Options& o) {
  std::cout << "# hier_modular sweep throughput\n\n";
  std::cout << "- modlab: " << o.exe << " run --jobs " << o.jobs << ", [6,3,2,2], 7 fractions x " << o.seeds
            << " seeds, " << o.epochs << " epochs (eval every 10)\n";
  std::cout << "- BLAS: " << bench::active_blas() << "\n";
  std::cout << "- allocator (modlab's executables are linked alike): " << bench::active_allocator() << "\n";
  std::cout << "- cores: " << std::thread::hardware_concurrency() << ", load average at start: " << loadavg() << "\n";
  // Fixed cost of every run: a worker is a fresh process, so LibTorch initialises each time.
  Timed start = timed(quote(o.exe) + " --version > /dev/null 2>&1");
  std::cout << "- process start of the modlab executable (LibTorch initialisation, paid by every run's worker): "
            << bench::num(start.cpu, 2) << " s CPU\n\n";
  std::cout.flush();
}

/// Every model variant's sweep through the modlab executable, each into a fresh folder; exits
/// with 1 when one fails.
std::vector<Row> run_modlab(const Options& o, const fs::path& src) {
  modlab::runner::remove_tree(o.out);
  fs::create_directories(o.out);
  const std::string common = bench::boolean_grid_sets(o.seeds, o.epochs);
  std::vector<Row> rows;
  for (const auto& v : kVariants) {
    Row r;
    r.label = v.label;
    const std::string dir = (fs::path(o.out) / v.name).string();
    std::string cmd = quote(o.exe) + " run " + quote((src / "sweeps" / "hier_modular" / v.sweep).string()) +
                      " --jobs " + std::to_string(o.jobs) + " --out " + quote(dir) + common;
    if (!v.zip.empty()) cmd += " --set " + quote("sweep.zip=" + v.zip);
    const Timed t = timed(cmd + " 2>&1");
    r.wall = t.wall;
    r.cpu = t.cpu;
    std::ofstream(fs::path(o.out) / (v.name + ".log")) << t.out;
    bench::sweep_counts(t.out, r.runs, r.failed);
    if (t.code != 0 || r.runs == 0) {
      std::cerr << "modlab failed for " << v.name << " (exit " << t.code << "); log: " << o.out << "/" << v.name
                << ".log\n"
                << t.out.substr(t.out.size() > 2000 ? t.out.size() - 2000 : 0) << "\n";
      std::exit(1);
    }
    std::cout << "  modlab " << v.name << ": " << r.runs << " runs in " << bench::num(r.wall, 1) << " s wall, "
              << bench::num(r.cpu, 1) << " s CPU (load " << loadavg() << ")\n";
    std::cout.flush();
    rows.push_back(r);
  }
  return rows;
}

/// The Python reference: a sample of runs per variant (spread over the fractions), sequentially,
/// one thread (as one modlab worker), into `rows`; exits with 1 when one fails.
void run_python(const Options& o, const fs::path& src, std::vector<Row>& rows) {
  const std::string ref = (src / "bench" / "python" / "hier_modular_ref.py").string();
  std::regex runs_re(R"("runs": ([0-9]+), "seconds": ([0-9.eE+-]+), "cpu_seconds": ([0-9.eE+-]+))");
  std::vector<std::string> fracs = {"0.3", "0.6", "0.9", "0.4", "0.7", "0.5", "0.8"};
  for (std::size_t i = 0; i < kVariants.size(); ++i) {
    std::string fr;
    for (int j = 0; j < o.python_runs; ++j) fr += " " + fracs[static_cast<std::size_t>(j) % fracs.size()];
    const std::string cmd = "/usr/bin/python3 " + quote(ref) + " --models " + kVariants[i].name + " --fractions" + fr +
                            " --seeds 0 --threads 1 --epochs " + std::to_string(o.epochs) +
                            " --eval-every 10 --noise 0.1 --wd 1e-3 2>&1";  // the sweeps' reference protocol
    const Timed t = timed(cmd);
    std::smatch m;
    if (t.code != 0 || !std::regex_search(t.out, m, runs_re)) {
      std::cerr << "python reference failed for " << kVariants[i].name << ":\n" << t.out << "\n";
      std::exit(1);
    }
    // Only the runs count (timed by the script), not the interpreter's start and `import torch`,
    // which a sequential Python sweep pays once.
    const double n = std::stod(m[1]), s = std::stod(m[2]);
    rows[i].py_runs = static_cast<int>(n);
    rows[i].py_wall = s;
    rows[i].py_cpu = std::stod(m[3]);
    std::cout << "  python " << kVariants[i].name << ": " << n << " runs in " << bench::num(s, 1) << " s wall (load "
              << loadavg() << ")\n";
    std::cout.flush();
  }
}

/// The table (a row per variant and the whole sweep) and the goals' verdicts.
void print_results(const std::vector<Row>& rows, int jobs) {
  std::cout << "\n";
  std::vector<std::vector<std::string>> table;
  auto add_row = [&](const std::string& label, const Row& r) {
    const double rpm = 60.0 * r.runs / r.wall, py_rpm = 60.0 * r.py_runs / r.py_wall;
    const double free_rpm = 60.0 * jobs * r.runs / r.cpu, py_free_rpm = 60.0 * r.py_runs / r.py_cpu;
    table.push_back({label, std::to_string(r.runs), bench::num(r.wall, 1), bench::num(r.cpu / r.runs, 2),
                     bench::num(rpm, 1), bench::num(free_rpm, 1), bench::num(r.py_cpu / r.py_runs, 2),
                     bench::num(py_rpm, 1), bench::num(py_free_rpm, 1), bench::num(rpm / py_rpm, 1) + "x",
                     bench::num(free_rpm / py_free_rpm, 1) + "x"});
  };
  Row total;
  for (const auto& r : rows) {
    add_row(r.label + (r.failed ? " (" + std::to_string(r.failed) + " failed)" : ""), r);
    total.wall += r.wall, total.cpu += r.cpu, total.runs += r.runs;
    total.py_wall += r.py_wall, total.py_cpu += r.py_cpu, total.py_runs += r.py_runs;
  }
  add_row("**whole sweep**", total);
  const std::string J = std::to_string(jobs);
  bench::table({"model", "runs", "modlab wall s", "modlab CPU s/run", "modlab runs/min (wall, --jobs " + J + ")",
                "modlab runs/min (" + J + " free cores)", "python CPU s/run", "python runs/min (wall)",
                "python runs/min (1 free core)", "speedup (wall)", "speedup (free cores)"},
               table);
  const double free_wall = total.cpu / jobs;
  const double speed_wall = (60.0 * total.runs / total.wall) / (60.0 * total.py_runs / total.py_wall);
  const double speed_free = (60.0 * jobs * total.runs / total.cpu) / (60.0 * total.py_runs / total.py_cpu);
  std::cout << "\nwhole sweep: " << bench::num(total.wall, 1) << " s wall (goal < 300 s: "
            << (total.wall < 300 ? "met" : "missed") << "); on " << J << " free cores its CPU time would take "
            << bench::num(free_wall, 1) << " s (" << (free_wall < 300 ? "met" : "missed") << ")\n";
  std::cout << "speedup over sequential PyTorch: " << bench::num(speed_wall, 1) << "x wall, " << bench::num(speed_free, 1)
            << "x on free cores (goal >= 5x: " << (speed_free >= 5 ? "met" : "missed") << ")\n";
  std::cout << "load average at end: " << loadavg() << " (the machine may be shared; compare runs at similar load)\n";
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const fs::path src(MODLAB_SOURCE_DIR);
  print_header(o);
  std::vector<Row> rows = run_modlab(o, src);
  run_python(o, src, rows);
  print_results(rows, o.jobs);
  return 0;
}

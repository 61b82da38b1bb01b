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
using bench::children_cpu;
using bench::loadavg;
using bench::quote;
using bench::seconds_since;
using bench::self_dir;
using bench::timed;
using bench::Timed;

int main(int argc, char** argv) {
  std::string exe = (fs::path(self_dir()) / "modlab").string();
  std::string out = (fs::temp_directory_path() / "bench_hier_modular").string();
  int epochs = 500, seeds = 10, jobs = 2, python_runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--exe") exe = v;
    else if (a == "--epochs") epochs = std::stoi(v);
    else if (a == "--seeds") seeds = std::stoi(v);
    else if (a == "--jobs") jobs = std::stoi(v);
    else if (a == "--python-runs") python_runs = std::stoi(v);
    else if (a == "--out") out = v;
    else {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    }
  }
  if (!fs::exists(exe)) {
    std::cerr << "modlab executable not found: " << exe << " (pass --exe)\n";
    return 2;
  }
  const fs::path src(MODLAB_SOURCE_DIR);
  const std::string python = "/usr/bin/python3";
  const std::string ref = (src / "bench" / "python" / "hier_modular_ref.py").string();

  std::cout << "# hier_modular sweep throughput\n\n";
  std::cout << "- modlab: " << exe << " run --jobs " << jobs << ", [6,3,2,2], 7 fractions x " << seeds << " seeds, "
            << epochs << " epochs (eval every 10)\n";
  std::cout << "- BLAS: " << bench::active_blas() << "\n";
  std::cout << "- allocator (modlab's executables are linked alike): " << bench::active_allocator() << "\n";
  std::cout << "- cores: " << std::thread::hardware_concurrency() << ", load average at start: " << loadavg() << "\n";
  std::cout.flush();

  modlab::runner::remove_tree(out);
  fs::create_directories(out);
  const std::string common = bench::boolean_grid_sets(seeds, epochs);

  struct Row {
    std::string label;
    int runs = 0, failed = 0, py_runs = 0;
    double wall = 0, cpu = 0, py_wall = 0, py_cpu = 0;
  };
  std::vector<Row> rows;

  // Fixed cost of every run: a worker is a fresh process, so LibTorch initialises each time.
  Timed start = timed(quote(exe) + " --version > /dev/null 2>&1");
  std::cout << "- process start of the modlab executable (LibTorch initialisation, paid by every run's worker): "
            << bench::num(start.cpu, 2) << " s CPU\n\n";
  std::cout.flush();

  for (const auto& v : kVariants) {
    Row r;
    r.label = v.label;
    const std::string dir = (fs::path(out) / v.name).string();
    std::string cmd = quote(exe) + " run " + quote((src / "sweeps" / "hier_modular" / v.sweep).string()) + " --jobs " +
                      std::to_string(jobs) + " --out " + quote(dir) + common;
    if (!v.zip.empty()) cmd += " --set " + quote("sweep.zip=" + v.zip);
    const Timed t = timed(cmd + " 2>&1");
    r.wall = t.wall;
    r.cpu = t.cpu;
    std::ofstream(fs::path(out) / (v.name + ".log")) << t.out;
    bench::sweep_counts(t.out, r.runs, r.failed);
    if (t.code != 0 || r.runs == 0) {
      std::cerr << "modlab failed for " << v.name << " (exit " << t.code << "); log: " << out << "/" << v.name << ".log\n"
                << t.out.substr(t.out.size() > 2000 ? t.out.size() - 2000 : 0) << "\n";
      return 1;
    }
    std::cout << "  modlab " << v.name << ": " << r.runs << " runs in " << bench::num(r.wall, 1) << " s wall, "
              << bench::num(r.cpu, 1) << " s CPU (load " << loadavg() << ")\n";
    std::cout.flush();
    rows.push_back(r);
  }

  // The Python reference: a sample of runs per variant (spread over the fractions), sequentially,
  // one thread (as one modlab worker).
  std::regex runs_re(R"("runs": ([0-9]+), "seconds": ([0-9.eE+-]+), "cpu_seconds": ([0-9.eE+-]+))");
  std::vector<std::string> fracs = {"0.3", "0.6", "0.9", "0.4", "0.7", "0.5", "0.8"};
  for (std::size_t i = 0; i < kVariants.size(); ++i) {
    std::string fr;
    for (int j = 0; j < python_runs; ++j) fr += " " + fracs[static_cast<std::size_t>(j) % fracs.size()];
    const std::string cmd = python + " " + quote(ref) + " --models " + kVariants[i].name + " --fractions" + fr +
                            " --seeds 0 --threads 1 --epochs " + std::to_string(epochs) +
                            " --eval-every 10 --noise 0.1 --wd 1e-3 2>&1";  // the sweeps' reference protocol
    const Timed t = timed(cmd);
    std::smatch m;
    if (t.code != 0 || !std::regex_search(t.out, m, runs_re)) {
      std::cerr << "python reference failed for " << kVariants[i].name << ":\n" << t.out << "\n";
      return 1;
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

  std::cout << "\n";
  std::vector<std::vector<std::string>> table;
  double tw = 0, tc = 0, pw = 0, pc = 0;
  int tr = 0, pr = 0;
  auto add_row = [&](const std::string& label, int runs, double wall, double cpu, int py_runs, double py_wall,
                     double py_cpu) {
    const double rpm = 60.0 * runs / wall, py_rpm = 60.0 * py_runs / py_wall;
    const double free_rpm = 60.0 * jobs * runs / cpu, py_free_rpm = 60.0 * py_runs / py_cpu;
    table.push_back({label, std::to_string(runs), bench::num(wall, 1), bench::num(cpu / runs, 2), bench::num(rpm, 1),
                     bench::num(free_rpm, 1), bench::num(py_cpu / py_runs, 2), bench::num(py_rpm, 1),
                     bench::num(py_free_rpm, 1), bench::num(rpm / py_rpm, 1) + "x", bench::num(free_rpm / py_free_rpm, 1) + "x"});
  };
  for (const auto& r : rows) {
    add_row(r.label + (r.failed ? " (" + std::to_string(r.failed) + " failed)" : ""), r.runs, r.wall, r.cpu, r.py_runs,
            r.py_wall, r.py_cpu);
    tw += r.wall, tc += r.cpu, tr += r.runs, pw += r.py_wall, pc += r.py_cpu, pr += r.py_runs;
  }
  add_row("**whole sweep**", tr, tw, tc, pr, pw, pc);
  const std::string J = std::to_string(jobs);
  bench::table({"model", "runs", "modlab wall s", "modlab CPU s/run", "modlab runs/min (wall, --jobs " + J + ")",
                "modlab runs/min (" + J + " free cores)", "python CPU s/run", "python runs/min (wall)",
                "python runs/min (1 free core)", "speedup (wall)", "speedup (free cores)"},
               table);
  const double free_wall = tc / jobs;
  const double speed_wall = (60.0 * tr / tw) / (60.0 * pr / pw), speed_free = (60.0 * jobs * tr / tc) / (60.0 * pr / pc);
  std::cout << "\nwhole sweep: " << bench::num(tw, 1) << " s wall (goal < 300 s: " << (tw < 300 ? "met" : "missed")
            << "); on " << J << " free cores its CPU time would take " << bench::num(free_wall, 1) << " s ("
            << (free_wall < 300 ? "met" : "missed") << ")\n";
  std::cout << "speedup over sequential PyTorch: " << bench::num(speed_wall, 1) << "x wall, " << bench::num(speed_free, 1)
            << "x on free cores (goal >= 5x: " << (speed_free >= 5 ? "met" : "missed") << ")\n";
  std::cout << "load average at end: " << loadavg() << " (the machine may be shared; compare runs at similar load)\n";
  return 0;
}

// Sweep throughput with population training (docs/population.md): each workload is one sweep run
// by the modlab executable twice with the same --jobs, once with every run alone
// (`run.population = 1`, today's scheduling) and once with runs that differ only in seed trained
// together (`run.population = P`). Prints runs per minute of both and their ratio, measured in
// the same invocation, and whether each workload's runs were batched (a model that cannot be, such
// as goe's router or hier_modular's Gumbel routing, runs its members alone: the run logs say why).
//
//   build/bin/bench_population [--exe build/bin/modlab] [--jobs 2] [--seeds 32] [--hier-seeds 10]
//                              [--hier-epochs 1000] [--goe-epochs 2] [--only NAME] [--out /tmp/bench_population]
//
// Workloads: the quick-start grid (moe on toy multi_class, E = 1, 2, 4) with --seeds seeds per
// width; the [6,3,2,2] half of the hier_modular Boolean sweeps (7 training fractions x --hier-seeds
// seeds) for each model variant of bench_hier_modular; one goe width on Rotated MNIST with 5 seeds
// for each of its 3 networks (--goe-epochs of the reference's 100; needs MODLAB_DATA_DIR).
#include "bench_hier_modular_variants.hpp"
#include "bench_process.hpp"
#include "bench_util.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Workload {
  std::string name, label;
  std::string sweep;  ///< path under the source tree
  std::string sets;   ///< extra --set arguments
  int population = 1;
};

struct Measured {
  int runs = 0, failed = 0, batched = 0;
  double wall = 0, cpu = 0;
};

/// Members whose run log says they trained alone although a population was asked for.
int solo_members(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir / "runs")) {
    if (e.path().extension() != ".log") continue;
    std::ifstream f(e.path());
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (text.find("one member at a time") != std::string::npos) ++n;
  }
  return n;
}

Measured run_sweep(const std::string& exe, const Workload& w, int population, int jobs, const fs::path& dir) {
  const fs::path src(MODLAB_SOURCE_DIR);
  const std::string cmd = bench::quote(exe) + " run " + bench::quote((src / w.sweep).string()) + " --jobs " +
                          std::to_string(jobs) + " --out " + bench::quote(dir.string()) + w.sets +
                          " --set run.population=" + std::to_string(population) + " 2>&1";
  const bench::Timed t = bench::timed(cmd);
  std::ofstream(dir.string() + ".log") << t.out;
  Measured m;
  m.wall = t.wall;
  m.cpu = t.cpu;
  if (t.code != 0 || !bench::sweep_counts(t.out, m.runs, m.failed))
    throw std::runtime_error("modlab failed for " + w.name + " (exit " + std::to_string(t.code) + "); log: " + dir.string() +
                             ".log\n" + t.out.substr(t.out.size() > 2000 ? t.out.size() - 2000 : 0));
  m.batched = population > 1 ? m.runs + m.failed - solo_members(dir) : 0;
  return m;
}

std::vector<Workload> workloads(int seeds, int hier_seeds, int hier_epochs, int goe_epochs) {
  std::vector<Workload> out;
  out.push_back({"quickstart", "quick-start grid (moe, toy, E = 1, 2, 4)", "sweeps/quickstart.toml",
                 " --set sweep.seeds=" + std::to_string(seeds), seeds});
  const std::string grid = bench::boolean_grid_sets(hier_seeds, hier_epochs);
  for (const auto& v : bench::kVariants)
    out.push_back({"hier_" + v.name, "hier_modular " + v.label, "sweeps/hier_modular/" + v.sweep,
                   grid + " --set " + bench::quote("sweep.zip=" + v.zip), hier_seeds});
  out.push_back({"goe", "goe Rotated MNIST, param_factor 4, 3 networks, 5 seeds", "sweeps/goe/rotated_mnist.toml",
                 " --set 'sweep.grid={ \"model.param_factor\" = [4] }' --set sweep.seeds=5 --set train.epochs=" +
                     std::to_string(goe_epochs) + " --set train.eval_every=" + std::to_string(goe_epochs),
                 5});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string exe = (fs::path(bench::self_dir()) / "modlab").string();
  std::string out = (fs::temp_directory_path() / "bench_population").string(), only;
  int jobs = 2, seeds = 32, hier_seeds = 10, hier_epochs = 1000, goe_epochs = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--exe") exe = v;
    else if (a == "--jobs") jobs = std::stoi(v);
    else if (a == "--seeds") seeds = std::stoi(v);
    else if (a == "--hier-seeds") hier_seeds = std::stoi(v);
    else if (a == "--hier-epochs") hier_epochs = std::stoi(v);
    else if (a == "--goe-epochs") goe_epochs = std::stoi(v);
    else if (a == "--only") only = v;
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
  std::cout << "# population training: sweep throughput\n\n- modlab: " << exe << " run --jobs " << jobs
            << "; each sweep once with run.population = 1 and once with P\n- BLAS: " << bench::active_blas()
            << "\n- cores: " << std::thread::hardware_concurrency() << ", load average at start: " << bench::loadavg()
            << "\n\n";
  std::cout.flush();
  fs::remove_all(out);
  fs::create_directories(out);
  std::vector<std::vector<std::string>> rows;
  for (const auto& w : workloads(seeds, hier_seeds, hier_epochs, goe_epochs)) {
    if (!only.empty() && w.name.find(only) == std::string::npos) continue;
    try {
      const Measured solo = run_sweep(exe, w, 1, jobs, fs::path(out) / (w.name + "_solo"));
      const Measured pop = run_sweep(exe, w, w.population, jobs, fs::path(out) / (w.name + "_population"));
      const double rpm_solo = 60.0 * solo.runs / solo.wall, rpm_pop = 60.0 * pop.runs / pop.wall;
      rows.push_back({w.label, std::to_string(solo.runs), std::to_string(w.population),
                      std::to_string(pop.batched) + "/" + std::to_string(pop.runs + pop.failed), bench::num(solo.wall, 1),
                      bench::num(pop.wall, 1), bench::num(rpm_solo, 1), bench::num(rpm_pop, 1),
                      bench::num(rpm_pop / rpm_solo, 2) + "x"});
      std::cout << "  " << w.name << ": alone " << bench::num(solo.wall, 1) << " s, population " << bench::num(pop.wall, 1)
                << " s (load " << bench::loadavg() << ")\n";
      std::cout.flush();
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 1;
    }
  }
  std::cout << "\n";
  bench::table({"sweep", "runs", "P", "runs batched", "alone s", "population s", "runs/min alone",
                "runs/min population", "ratio"},
               rows);
  std::cout << "\nload average at end: " << bench::loadavg() << "\n";
  return 0;
}

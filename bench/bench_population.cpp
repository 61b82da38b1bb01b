// Sweep throughput with population training (docs/population.md): each workload is one sweep run
// by the modlab executable twice with the same --jobs, once with every run alone
// (`run.population = 1`, today's scheduling) and once with runs that differ only in seed trained
// together (`run.population = P`). Prints runs per minute of both and their ratio, measured in
// the same invocation, and whether each workload's runs were batched (a model that cannot be, such
// as goe's router or hier_modular's Gumbel routing, runs its members alone: the run logs say why).
//
//   build/bin/bench_population [--exe build/bin/modlab] [--jobs 2] [--seeds 32] [--hier-seeds 10]
//                              [--hier-epochs 1000] [--goe-epochs 2] [--only NAME] [--out /tmp/bench_population]
//                              [--device cuda --members 32 [--member-epochs 200]]
//
// Workloads: the quick-start grid (moe on toy multi_class, E = 1, 2, 4) with --seeds seeds per
// width; the [6,3,2,2] half of the hier_modular Boolean sweeps (7 training fractions x --hier-seeds
// seeds) for each model variant of bench_hier_modular, and the learned-routing variant under both
// protocols (reference and ablation: 2 x --hier-seeds members); one goe width on Rotated MNIST with 5 seeds
// for each of its 3 networks (--goe-epochs of the reference's 100; needs MODLAB_DATA_DIR).
//
// With --device (the GPU benchmark, e.g. --device cuda), it measures instead the wall time of one
// run against a population of --members runs, each a single `modlab run --jobs 1 --device ...`:
// the quick-start moe (E = 4) and the [6,3,2,2] Boolean MLP and known-routing network at train
// fraction 0.5 (--member-epochs epochs). The goal on a GPU: --members members in at most twice the
// wall time of one.
#include "bench_hier_modular_variants.hpp"
#include "bench_process.hpp"
#include "bench_util.hpp"
#include <modlab/runner/remove_tree.hpp>

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

Measured run_sweep(const std::string& exe, const Workload& w, int population, int jobs, const fs::path& dir,
                   const std::string& device = "") {
  const fs::path src(MODLAB_SOURCE_DIR);
  const std::string cmd = bench::quote(exe) + " run " + bench::quote((src / w.sweep).string()) + " --jobs " +
                          std::to_string(jobs) + " --out " + bench::quote(dir.string()) + w.sets +
                          " --set run.population=" + std::to_string(population) +
                          (device.empty() ? "" : " --device " + bench::quote(device)) + " 2>&1";
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
  // The reference protocol and its ablation (input noise, weight decay: keys a population's members
  // may differ in) of one variant: a configuration's seeds of both train together.
  const auto& learned = bench::kVariants[1];
  const std::string both = learned.zip.substr(0, learned.zip.size() - 1) +
                           R"(, { "dataset.train_noise" = [0.1, 0.0], "train.weight_decay" = [1e-3, 0.0] }])";
  out.push_back({"hier_both_protocols", "hier_modular " + learned.label + ", both protocols", "sweeps/hier_modular/" + learned.sweep,
                 grid + " --set " + bench::quote("sweep.zip=" + both), 2 * hier_seeds});
  out.push_back({"goe", "goe Rotated MNIST, param_factor 4, 3 networks, 5 seeds", "sweeps/goe/rotated_mnist.toml",
                 " --set 'sweep.grid={ \"model.param_factor\" = [4] }' --set sweep.seeds=5 --set train.epochs=" +
                     std::to_string(goe_epochs) + " --set train.eval_every=" + std::to_string(goe_epochs),
                 5});
  return out;
}

/// The one-against-many workloads of --device: `sets` without the seeds.
std::vector<Workload> member_workloads(int epochs) {
  const std::string boolean = " --set 'sweep.grid={ \"dataset.structure\" = [[6, 3, 2, 2]], \"dataset.train_fraction\" = "
                              "[0.5] }' --set train.epochs=" + std::to_string(epochs) + " --set sweep.zip=";
  return {{"quickstart", "quick-start moe, toy, E = 4", "sweeps/quickstart.toml",
           " --set 'sweep.grid={ \"model.num_experts\" = [4] }'", 0},
          {"hier_mlp", "hier_modular " + bench::kVariants[0].label, "sweeps/hier_modular/" + bench::kVariants[0].sweep,
           boolean + bench::quote(bench::kVariants[0].zip), 0},
          {"hier_known", "hier_modular " + bench::kVariants[3].label, "sweeps/hier_modular/" + bench::kVariants[3].sweep,
           boolean + bench::quote(bench::kVariants[3].zip), 0}};
}

/// One run alone against a population of `members` runs on `device`, each workload in turn.
int members_table(const std::string& exe, const std::string& device, int members, int epochs, const std::string& only,
                  const fs::path& out) {
  std::vector<std::vector<std::string>> rows;
  for (auto w : member_workloads(epochs)) {
    if (!only.empty() && w.name.find(only) == std::string::npos) continue;
    const std::string sets = w.sets;
    w.sets = sets + " --set sweep.seeds=1";
    const Measured one = run_sweep(exe, w, 1, 1, out / (w.name + "_one"), device);
    w.sets = sets + " --set sweep.seeds=" + std::to_string(members);
    const Measured many = run_sweep(exe, w, members, 1, out / (w.name + "_members"), device);
    rows.push_back({w.label, std::to_string(many.batched) + "/" + std::to_string(many.runs + many.failed),
                    bench::num(one.wall, 2), bench::num(many.wall, 2), bench::num(many.wall / one.wall, 2) + "x"});
    std::cout << "  " << w.name << ": one " << bench::num(one.wall, 2) << " s, " << members << " members "
              << bench::num(many.wall, 2) << " s\n";
    std::cout.flush();
  }
  std::cout << "\n";
  bench::table({"workload", "members batched", "1 run s", std::to_string(members) + " members s",
                "ratio (goal <= 2x)"},
               rows);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string exe = (fs::path(bench::self_dir()) / "modlab").string();
  std::string out = (fs::temp_directory_path() / "bench_population").string(), only;
  std::string device;
  int jobs = 2, seeds = 32, hier_seeds = 10, hier_epochs = 1000, goe_epochs = 2, members = 32, member_epochs = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--exe") exe = v;
    else if (a == "--jobs") jobs = std::stoi(v);
    else if (a == "--seeds") seeds = std::stoi(v);
    else if (a == "--hier-seeds") hier_seeds = std::stoi(v);
    else if (a == "--hier-epochs") hier_epochs = std::stoi(v);
    else if (a == "--goe-epochs") goe_epochs = std::stoi(v);
    else if (a == "--only") only = v;
    else if (a == "--device") device = v;
    else if (a == "--members") members = std::stoi(v);
    else if (a == "--member-epochs") member_epochs = std::stoi(v);
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
  std::cout << "# population training: sweep throughput\n\n- modlab: " << exe
            << (device.empty() ? " run --jobs " + std::to_string(jobs) +
                                     "; each sweep once with run.population = 1 and once with P"
                               : " run --jobs 1 --device " + device + "; one run, then " + std::to_string(members) +
                                     " seeds as one population")
            << "\n- BLAS: " << bench::active_blas() << "\n- cores: " << std::thread::hardware_concurrency()
            << ", load average at start: " << bench::loadavg() << "\n\n";
  std::cout.flush();
  modlab::runner::remove_tree(out);
  fs::create_directories(out);
  if (!device.empty()) {
    try {
      return members_table(exe, device, members, member_epochs, only, out);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      return 1;
    }
  }
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

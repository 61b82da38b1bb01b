// Per-step training time of the basic moe (expectation MoE, E = 4 linear experts, linear gate) on
// toy multi_class with batch 32 — a launch-bound workload — through modlab's real trainer, against
// the same model written as idiomatic PyTorch (bench/python/moe_step.py), same thread count.
//
//   build/bin/bench_moe_step [--threads 1] [--epochs 20] [--skip-python]
#include "bench_run.hpp"
#include "bench_util.hpp"

#include <modlab/runner/registry.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace fs = std::filesystem;
using namespace modlab::runner;

int main(int argc, char** argv) {
  int threads = 1, epochs = 20;
  bool python = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    if (a == "--epochs" && i + 1 < argc) epochs = std::stoi(argv[++i]);
    if (a == "--skip-python") python = false;
  }
  torch::set_num_threads(threads);
  Registry& reg = default_registry();
  std::string text = R"(
[dataset]
plugin = "toy"
task = "multi_class"
[model]
plugin = "moe"
num_experts = 4
expert = "linear"
gate = "linear"
[train]
batch_size = 32
optimizer = "rmsprop"
lr = 0.01
momentum = 0.9
eval_every = 100000
checkpoint_every = 0
eval_splits = ["test"]
)";
  modlab::Value cfg = parse_toml(text, "bench");
  set_dotted(cfg, "train.epochs", modlab::Value::integer(epochs));
  // ms per step of one modlab run, over epochs 2 … epochs − 1 (the first warms up, the last
  // evaluates); sets `steps` to the number of steps timed.
  double steps = 0;
  auto modlab_ms = [&]() {
    RunRequest req = bench::run_request(cfg, "modlab_bench_moe_step", threads);
    const fs::path out = req.out_dir;
    std::vector<std::pair<double, std::int64_t>> marks;  // (seconds, steps) after each epoch
    auto t0 = std::chrono::steady_clock::now();
    req.on_progress = [&](const Progress& p) {
      marks.emplace_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), p.step);
    };
    auto outcome = execute_run(reg, req);
    fs::remove_all(out);
    if (outcome.status != RunStatus::Completed || marks.size() < 3) {
      std::cerr << "bench run failed: " << outcome.error << "\n";
      std::exit(1);
    }
    steps = static_cast<double>(marks[marks.size() - 2].second - marks[0].second);
    return 1000.0 * (marks[marks.size() - 2].first - marks[0].first) / steps;
  };
  auto python_ms = [&]() {
    int code = 0;
    std::string py = bench::capture("/usr/bin/python3 " + std::string(MODLAB_SOURCE_DIR) +
                                        "/bench/python/moe_step.py --threads " + std::to_string(threads) +
                                        " --steps " + std::to_string(static_cast<int>(steps)),
                                    &code);
    return code == 0 && !py.empty() ? std::stod(py) : -1.0;
  };
  // A step is ~0.1 ms: load from outside the machine moves single runs a lot. Each side runs three
  // times, alternating, and keeps its fastest.
  double cpp_ms = -1, py_ms = -1;
  for (int r = 0; r < 3; ++r) {
    const double c = modlab_ms();
    cpp_ms = cpp_ms < 0 ? c : std::min(cpp_ms, c);
    if (!python) continue;
    const double p = python_ms();
    if (p > 0) py_ms = py_ms < 0 ? p : std::min(py_ms, p);
  }

  std::cout << "moe per-step time, toy multi_class, E = 4 linear experts, batch 32, RMSprop\n"
            << "LibTorch " << TORCH_VERSION << ", " << threads << " intra-op thread(s), BLAS: " << bench::active_blas()
            << "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"modlab (trainer, batched experts), best of 3", bench::num(cpp_ms, 4), "1.00"},
  };
  if (py_ms > 0) rows.push_back({"PyTorch (Python, idiomatic), best of 3", bench::num(py_ms, 4), bench::num(py_ms / cpp_ms, 2)});
  else if (python) rows.push_back({"PyTorch (Python)", "unavailable (install python3-torch: scripts/setup --bench)", "-"});
  bench::table({"implementation", "ms/step", "Python time / modlab time"}, rows);
  return 0;
}

// One MNIST training epoch of mode (MoDE, E = 8 MLP experts 784 -> 128 -> 128 -> 10 with dropout,
// gate 784 -> 64 -> 8, T = 0.02, alpha = 0.01, batch 64, Adam) through modlab's real trainer, against
// the same model and training step written as idiomatic PyTorch after the reference code
// (bench/python/mode_reference.py: ModuleList of experts, separate expert forwards for L_KD, a double
// loop over expert pairs, DataLoader batches), same intra-op thread count.
//
//   build/bin/bench_mode [--threads 1] [--epochs 3] [--skip-python]
//
// The C++ side is run twice: with `kd_outputs = "separate"` (the same work as the reference: a second
// forward of every expert for L_KD) and with the default `kd_outputs = "shared"`.
#include "bench_run.hpp"
#include "bench_util.hpp"

#include <modlab/runner/registry.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>
#include <modlab/runner/remove_tree.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace fs = std::filesystem;
using namespace modlab::runner;

namespace {

struct EpochTime {
  double seconds = -1.0;
  std::int64_t steps = 0;
};

/// Trains `epochs` epochs and returns the time of the second one (the first warms up; evaluation
/// runs only after the last).
EpochTime cpp_epoch(Registry& reg, const std::string& kd_outputs, int threads, int epochs, const fs::path& mnist) {
  std::string text = R"(
[dataset]
plugin = "rotated_mnist"
mode = "plain"
rotations = [0]
invert_unrotated = false
normalize = "standard"
flatten = true
val_fraction = 0.1
val_seed = 42
[model]
plugin = "mode"
num_experts = 8
expert_hidden = [128, 128]
dropout = 0.2
gate_hidden = [64]
temperature = 0.02
alpha = 0.01
[train]
batch_size = 64
optimizer = "adam"
lr = 0.001
eval_every = 100000
checkpoint_every = 0
eval_splits = ["val"]
)";
  modlab::Value cfg = parse_toml(text, "bench");
  set_dotted(cfg, "train.epochs", modlab::Value::integer(epochs));
  set_dotted(cfg, "model.kd_outputs", modlab::Value::string(kd_outputs));
  set_dotted(cfg, "dataset.root", modlab::Value::string(mnist.string()));
  RunRequest req = bench::run_request(cfg, "modlab_bench_mode", threads);
  const fs::path out = req.out_dir;
  std::vector<std::pair<double, std::int64_t>> marks;  // (seconds, steps) after each epoch
  const auto t0 = std::chrono::steady_clock::now();
  req.on_progress = [&](const Progress& p) {
    marks.emplace_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), p.step);
  };
  const auto outcome = execute_run(reg, req);
  modlab::runner::remove_tree(out);
  if (outcome.status != RunStatus::Completed || marks.size() < 3) {
    std::cerr << "bench run failed: " << outcome.error << "\n";
    return {};
  }
  return {marks[1].first - marks[0].first, marks[1].second - marks[0].second};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, epochs = 3;
  bool python = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--skip-python") python = false;
    if (i + 1 < argc && a == "--threads") threads = std::stoi(argv[i + 1]);
    if (i + 1 < argc && a == "--epochs") epochs = std::max(3, std::stoi(argv[i + 1]));
  }
  torch::set_num_threads(threads);
  const char* env = std::getenv("MODLAB_DATA_DIR");
  const fs::path data = env ? fs::path(env) : fs::path(MODLAB_SOURCE_DIR) / ".." / "shared" / "data";
  const fs::path mnist = data / "mnist";
  Registry& reg = default_registry();

  const EpochTime sep = cpp_epoch(reg, "separate", threads, epochs, mnist);
  const EpochTime shared = cpp_epoch(reg, "shared", threads, epochs, mnist);
  if (sep.seconds < 0 || shared.seconds < 0) return 1;

  double py_s = -1.0;
  std::int64_t py_steps = 0;
  if (python) {
    int code = 0;
    const std::string out = bench::capture("/usr/bin/python3 " + std::string(MODLAB_SOURCE_DIR) +
                                               "/bench/python/mode_reference.py --threads " + std::to_string(threads) +
                                               " --root " + mnist.string(),
                                           &code);
    std::istringstream is(out);
    if (code == 0 && (is >> py_s >> py_steps)) {
    } else {
      py_s = -1.0;
    }
  }

  std::cout << "mode: one MNIST training epoch (54,000 examples, batch 64), E = 8 MLP experts "
               "784-128-128-10 + Dropout(0.2), gate 784-64-8, T = 0.02, alpha = 0.01, Adam\n"
            << "LibTorch " << TORCH_VERSION << ", " << threads << " intra-op thread(s), BLAS: " << bench::active_blas()
            << "\nallocator: " << bench::active_allocator() << "\n\n";
  auto ms_step = [](const EpochTime& t) { return bench::num(1000.0 * t.seconds / static_cast<double>(t.steps), 3); };
  std::vector<std::vector<std::string>> rows = {
      {"modlab, kd_outputs = \"separate\" (same work as the reference)", bench::num(sep.seconds, 2), ms_step(sep),
       "1.00", py_s > 0 ? bench::num(py_s / sep.seconds, 2) : "-"},
      {"modlab, kd_outputs = \"shared\" (default)", bench::num(shared.seconds, 2), ms_step(shared),
       bench::num(sep.seconds / shared.seconds, 2), py_s > 0 ? bench::num(py_s / shared.seconds, 2) : "-"},
  };
  if (py_s > 0)
    rows.push_back({"PyTorch (Python, idiomatic, as the reference)", bench::num(py_s, 2),
                    bench::num(1000.0 * py_s / static_cast<double>(py_steps), 3), bench::num(sep.seconds / py_s, 2),
                    "1.00"});
  else
    rows.push_back({"PyTorch (Python)", "unavailable (install python3-torch: scripts/setup --bench)", "-", "-", "-"});
  bench::table({"implementation", "s/epoch", "ms/step", "separate time / this time", "Python time / this time"}, rows);
  return 0;
}

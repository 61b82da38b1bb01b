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
#include <modlab/runner/remove_tree.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>

namespace fs = std::filesystem;
using namespace modlab::runner;

namespace {

/// ms per step of the same model and update as a bare LibTorch loop, no framework: the forward
/// modlab's moe runs for linear experts and gate (batch innermost), NLL of log(ŷ + ε), backward,
/// RMSprop with momentum over one flat buffer (as FastRMSprop does), loss.item(). What any
/// framework built on these ops costs at the least.
double bare_loop_ms(int steps) {
  const std::int64_t E = 4, B = 32, C = 6, D = 2, N = 2400;
  torch::manual_seed(0);
  const auto X = torch::rand({N, D}), Y = torch::randint(C, {N}, torch::kLong);
  auto flat = torch::randn({E * D * C + E * C + E * D + E}) * 0.1;
  auto grads = torch::zeros_like(flat), square_avg = torch::zeros_like(flat), buf = torch::zeros_like(flat);
  auto slice = [](torch::Tensor& t, std::int64_t& off, at::IntArrayRef shape) {
    const auto n = c10::multiply_integers(shape);
    auto v = t.narrow(0, off, n).view(shape);
    off += n;
    return v;
  };
  std::int64_t off = 0, goff = 0;
  auto W = slice(flat, off, {E, D, C}).detach().requires_grad_(), b = slice(flat, off, {E, C}).detach().requires_grad_();
  auto Wg = slice(flat, off, {E, D}).detach().requires_grad_(), bg = slice(flat, off, {E}).detach().requires_grad_();
  for (auto* p : {&W, &b, &Wg, &bg}) p->mutable_grad() = slice(grads, goff, p->sizes());
  const auto alpha = torch::scalar_tensor(0.99), momentum = torch::scalar_tensor(0.9), eps = torch::scalar_tensor(1e-8);
  const auto tiny = torch::scalar_tensor(1e-15);
  auto order = torch::randperm(N, torch::kLong);
  std::int64_t lo = 0;
  auto step = [&] {
    if (lo + B > N) {
      order = torch::randperm(N, torch::kLong);
      lo = 0;
    }
    const auto idx = order.slice(0, lo, lo + B);
    lo += B;
    const auto x = X.index_select(0, idx), y = Y.index_select(0, idx);
    grads.zero_();
    const auto xt = x.t();
    const auto f = torch::softmax(torch::baddbmm(b.unsqueeze(2), W.transpose(1, 2), xt.expand({E, D, B})), 1);
    const auto g = torch::softmax(torch::addmm(bg.unsqueeze(1), Wg, xt), 0);
    const auto loss = torch::nll_loss(torch::log((f * g.unsqueeze(1)).sum(0).t() + tiny), y);
    loss.backward();
    {
      torch::NoGradGuard no_grad;
      square_avg.mul_(alpha).addcmul_(grads, grads, 0.01);
      buf.mul_(momentum).addcdiv_(grads, square_avg.sqrt().add_(eps));
      flat.add_(buf, -0.01);
    }
    return loss.item<double>();
  };
  for (int i = 0; i < 200; ++i) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  return 1000.0 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
}

}  // namespace

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
    modlab::runner::remove_tree(out);
    if (outcome.status != RunStatus::Completed || marks.size() < 3) {
      std::cerr << "bench run failed: " << outcome.error << "\n";
      std::exit(1);
    }
    steps = static_cast<double>(marks[marks.size() - 2].second - marks[0].second);
    return 1000.0 * (marks[marks.size() - 2].first - marks[0].first) / steps;
  };
  auto python_ms = [&](const std::string& env) {
    int code = 0;
    std::string py = bench::capture(env + "/usr/bin/python3 " + std::string(MODLAB_SOURCE_DIR) +
                                        "/bench/python/moe_step.py --threads " + std::to_string(threads) +
                                        " --steps " + std::to_string(static_cast<int>(steps)),
                                    &code);
    return code == 0 && !py.empty() ? std::stod(py) : -1.0;
  };
  // A step is ~0.1 ms: load from outside the machine moves single runs a lot. Each side runs three
  // times, alternating, and keeps its fastest.
  // The Python side also runs with modlab's allocator (tcmalloc preloaded), so that the allocator
  // is not counted as modlab's advantage.
  double cpp_ms = -1, py_ms = -1, py_alloc_ms = -1, bare_ms = -1;
  auto keep_min = [](double& best, double v) {
    if (v > 0) best = best < 0 ? v : std::min(best, v);
  };
  for (int r = 0; r < 3; ++r) {
    keep_min(cpp_ms, modlab_ms());
    keep_min(bare_ms, bare_loop_ms(static_cast<int>(steps)));
    if (!python) continue;
    keep_min(py_ms, python_ms(""));
    keep_min(py_alloc_ms, python_ms(bench::python_allocator_env()));
  }

  std::cout << "moe per-step time, toy multi_class, E = 4 linear experts, batch 32, RMSprop\n"
            << "LibTorch " << TORCH_VERSION << ", " << threads << " intra-op thread(s), BLAS: " << bench::active_blas()
            << "\nallocator: " << bench::active_allocator() << "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"modlab (trainer, batched experts), best of 3", bench::num(cpp_ms, 4), "1.00"},
      {"the same ops as a bare LibTorch loop (no framework), best of 3", bench::num(bare_ms, 4),
       bench::num(bare_ms / cpp_ms, 2)},
  };
  if (py_ms > 0) rows.push_back({"PyTorch (Python, idiomatic), best of 3", bench::num(py_ms, 4), bench::num(py_ms / cpp_ms, 2)});
  if (py_alloc_ms > 0)
    rows.push_back({"PyTorch (Python, idiomatic) with modlab's allocator set-up, best of 3", bench::num(py_alloc_ms, 4),
                    bench::num(py_alloc_ms / cpp_ms, 2)});
  else if (python) rows.push_back({"PyTorch (Python)", "unavailable (install python3-torch: scripts/setup --bench)", "-"});
  bench::table({"implementation", "ms/step", "time / modlab time"}, rows);
  return 0;
}

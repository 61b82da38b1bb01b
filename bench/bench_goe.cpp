// A goe training step (Rotated MNIST GoE, oracle paths, batch 32, Adam 0.005 as the trainer runs it:
// modlab's flat Adam) against the same
// model in idiomatic PyTorch (bench/python/goe_step.py: a ModuleList per depth, boolean-mask
// routing per node as the reference does), same intra-op threads; and the latent router's k-means
// on 8,400 embeddings of 196 dimensions (K = 4, 10 restarts), as after the VQ-VAE.
//
//   build/bin/bench_goe [--threads 1] [--steps 300] [--rounds 3] [--skip-python]
#include "bench_util.hpp"

#include "clustering.hpp"
#include "goe.hpp"

#include <modlab/runner/optimizers.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <torch/torch.h>

#include <chrono>
#include <map>
#include <sstream>

namespace {

using Clock = std::chrono::steady_clock;

modlab::DatasetSpec rotated_spec() {
  modlab::DatasetSpec s;
  s.name = "rotated_mnist (synthetic batches)";
  s.input_shape = {1, 28, 28};
  s.num_classes = 10;
  s.splits = {"train", "val", "test"};
  s.group_kind = "rotation";
  s.group_names = {"0", "90", "180", "270"};
  return s;
}

/// Milliseconds per training step of the oracle GoE at width p (after 20 warm-up steps).
double cpp_step_ms(modlab::Host& host, std::int64_t p, int steps, std::int64_t batch) {
  torch::manual_seed(0);
  modlab::goe::GoeOptions o;
  o.param_factor = p;
  modlab::goe::GoeModel model(o, rotated_spec(), host);
  model.train();
  modlab::runner::FastAdam opt(model.tree->parameters(), torch::optim::AdamOptions(0.005));
  std::vector<modlab::Batch> data;
  for (int i = 0; i < 16; ++i) {
    modlab::Batch b;
    b.inputs = torch::rand({batch, 1, 28, 28});
    b.targets = torch::randint(10, {batch}, torch::kLong);
    b.groups = torch::randint(4, {batch}, torch::kLong);
    data.push_back(b);
  }
  auto step = [&](int i) {
    const auto& b = data[static_cast<std::size_t>(i) % data.size()];
    opt.zero_grad();
    const auto loss = modlab::total(model.loss(b, model.forward(b)));
    loss.backward();
    opt.step();
    return loss.item<double>();
  };
  for (int i = 0; i < 20; ++i) step(i);
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step(i);
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
}

/// Seconds of k-means (K = 4, 10 restarts) on 8,400 points of 196 dimensions in four blobs.
std::pair<double, double> kmeans_seconds() {
  torch::manual_seed(1);
  const auto centres = torch::randn({4, 196}) * 2;
  const auto labels = torch::randint(4, {8400}, torch::kLong);
  const auto x = centres.index_select(0, labels) + torch::randn({8400, 196});
  const auto t0 = Clock::now();
  const auto r = modlab::goe::kmeans(x, 4, 10, 300, 0);
  const auto t1 = Clock::now();
  modlab::goe::balanced_leaves(r.centres, 42, false);
  const auto t2 = Clock::now();
  return {std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count()};
}

}  // namespace

int main(int argc, char** argv) {
  const auto opt = bench::step_options(argc, argv, {});
  const int threads = opt.threads, steps = opt.steps, rounds = opt.rounds;
  bool python = opt.python;
  torch::set_num_threads(threads);
  modlab::runner::RunHost host(modlab::runner::default_registry(), modlab::runner::HostOptions{});
  const std::vector<std::int64_t> widths = {4, 8, 16};
  std::map<std::int64_t, double> cpp, py;
  auto keep_min = [](std::map<std::int64_t, double>& m, std::int64_t p, double v) {
    m[p] = m.count(p) ? std::min(m[p], v) : v;
  };
  // Rounds alternate the two sides; each keeps its fastest.
  for (int round = 0; round < rounds; ++round) {
    for (auto p : widths) keep_min(cpp, p, cpp_step_ms(host, p, steps, 32));
    if (!python) continue;
    const std::string out = bench::capture("/usr/bin/python3 " + std::string(MODLAB_SOURCE_DIR) +
                                           "/bench/python/goe_step.py --threads " + std::to_string(threads) +
                                           " --steps " + std::to_string(steps) + " --p 4 8 16 2>&1");
    std::istringstream in(out);
    std::string word;
    std::int64_t p;
    double ms;
    while (in >> word)
      if (word == "ms_per_step" && in >> p >> ms) keep_min(py, p, ms);
    if (py.empty()) {
      std::cerr << "Python reference unavailable:\n" << out << "\n";
      python = false;
    }
  }
  std::cout << "goe training step, Rotated MNIST GoE (oracle paths), batch 32, Adam; fastest of " << rounds
            << " alternating rounds of " << steps << " steps; LibTorch " << TORCH_VERSION
            << ", " << threads << " intra-op thread(s), BLAS: " << bench::active_blas()
            << ", allocator: " << bench::active_allocator() << "\n\n";
  std::vector<std::vector<std::string>> rows;
  for (auto p : widths) {
    const bool have = py.count(p) > 0;
    rows.push_back({std::to_string(p), bench::fixed(cpp[p], 3), have ? bench::fixed(py[p], 3) : "unavailable (scripts/setup --bench)",
                    have ? bench::fixed(py[p] / cpp[p], 2) + "×" : "-"});
  }
  bench::table({"p", "modlab ms/step", "PyTorch (Python) ms/step", "speed-up"}, rows);
  const auto [km, split] = kmeans_seconds();
  std::cout << "\nk-means, 8,400 × 196, K = 4, 10 restarts: " << bench::fixed(km, 3) << " s; balanced 2-means of the 4 centres: "
            << bench::fixed(split * 1000.0, 3) << " ms\n";
  return 0;
}

// A mask-training step with K samples folded into the batch against the unmasked training step
// of the same network and against K separate passes (the reference's loop), for the tuple FNN and
// LSTM of the mask-analysis reference, the moe MNIST CNN and the hier_modular network. Each step: hard Gumbel-sigmoid masks over every maskable weight,
// forward on a batch of B rows (K blocks of B/K), cross-entropy / BCE loss, backward to the mask
// logits. Prints one table; every ratio is measured in this run.
//
//   build/bench/bench_masked [--threads N] [--batch B] [--samples K]
#include "bench_util.hpp"
#include "masks.hpp"

#include <modlab/model.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <iostream>
#include <map>

using namespace modlab;
using namespace modlab::runner;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Fastest of `reps` interleaved rounds of each function, ms (two warm-up rounds first).
std::vector<double> fastest_ms(const std::vector<std::function<void()>>& fs, int reps) {
  std::vector<double> best(fs.size(), -1.0);
  for (int r = 0; r < reps + 2; ++r)
    for (std::size_t i = 0; i < fs.size(); ++i) {
      const double a = now_ms();
      fs[i]();
      const double ms = now_ms() - a;
      if (r >= 2 && (best[i] < 0 || ms < best[i])) best[i] = ms;
    }
  return best;
}

Batch batch_of(const DatasetSpec& spec, std::int64_t n) {
  Batch b;
  std::vector<std::int64_t> shape{n};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  b.inputs = torch::rand(shape);
  if (spec.task == TaskKind::Classification) b.targets = torch::randint(spec.num_classes, {n}, torch::kLong);
  else if (spec.task == TaskKind::MultiClass) b.targets = torch::randint(spec.num_classes, {n, spec.num_outputs}, torch::kLong);
  else b.targets = torch::randint(2, {n, spec.num_outputs}, torch::kLong).to(torch::kFloat);
  b.groups = torch::zeros({n}, torch::kLong);
  b.indices = torch::arange(n, torch::kLong);
  return b;
}

struct Case {
  std::string name;
  std::shared_ptr<Model> model;
  DatasetSpec spec;
};

/// The three steps of one network, ms: unmasked, masked with K folded, K separate masked passes.
std::vector<double> time_case(Case& c, std::int64_t batch, std::int64_t k, int reps) {
  Model& m = *c.model;
  m.eval();  // the mask analysis runs the frozen model in eval mode
  const Batch b = batch_of(c.spec, batch);
  std::vector<Batch> chunks;
  for (std::int64_t i = 0; i < k; ++i) chunks.push_back(b.select(torch::arange(i * batch / k, (i + 1) * batch / k)));
  auto params = m.named_parameters();
  std::map<std::string, torch::Tensor> logits;  // one logit per weight, as the analyzer trains them
  for (const auto& name : nn::maskable_parameters(m)) logits[name] = torch::full_like(params[name], 2.0).requires_grad_();
  // W ⊙ m for `samples` hard Gumbel-sigmoid masks, straight-through: masked_analyzer's own sampler
  auto sampled = [&](std::int64_t samples) {
    std::map<std::string, torch::Tensor> over;
    for (const auto& [name, l] : logits)
      over[name] = masked::sample_masked_weights(l, params[name].detach(), samples, /*temperature=*/1.0);
    return over;
  };
  auto unmasked = [&] {
    m.zero_grad();
    total(m.loss(b, m.forward(b))).backward();
  };
  auto folded = [&] {
    nn::OverrideScope scope(m, sampled(k));
    total(m.loss(b, m.forward(b))).backward();
  };
  auto separate = [&] {  // the reference's loop: one mask sample per pass of B/K rows
    for (std::int64_t i = 0; i < k; ++i) {
      nn::OverrideScope scope(m, sampled(1));
      const auto& x = chunks[static_cast<std::size_t>(i)];
      (total(m.loss(x, m.forward(x))) / static_cast<double>(k)).backward();
    }
  };
  return fastest_ms({unmasked, folded, separate}, reps);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, reps = 10;
  std::int64_t batch = 128, k = 4;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    if (a == "--batch" && i + 1 < argc) batch = std::stoll(argv[++i]);
    if (a == "--samples" && i + 1 < argc) k = std::stoll(argv[++i]);
    if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  Registry& reg = default_registry();
  RunHost host(reg, HostOptions{});
  auto model = [&](const std::string& text) {
    Value v = parse_toml(text, "bench");
    return Config(std::make_shared<Value>(v), "model");
  };
  DatasetSpec mnist;
  mnist.name = "mnist";
  mnist.input_shape = {1, 28, 28};
  mnist.num_classes = 10;
  mnist.splits = {"train", "test"};
  DatasetSpec boolean;
  boolean.name = "toy/boolean";
  boolean.task = TaskKind::MultiLabel;
  boolean.input_shape = {6};
  boolean.num_outputs = 2;
  boolean.splits = {"train", "test"};
  boolean.info["structure"] = "6,3,2,2";
  // The tuple task of the mask-analysis reference: 2 tuples × 2 digits, one-hot digits (80 inputs);
  // the FNN runs once per tuple with the other tuple's inputs zeroed.
  auto tuple_spec = [](std::vector<std::int64_t> shape) {
    DatasetSpec t;
    t.name = "tuple_rnn/tuple";
    t.task = TaskKind::MultiClass;
    t.input_shape = shape;
    t.num_outputs = 4;
    t.num_classes = 10;
    t.splits = {"train", "valid"};
    const std::int64_t steps = shape.size() == 2 ? shape[0] : 1;
    for (std::int64_t p = 0; p < 2; ++p) {
      SubTask s;
      s.name = "pair" + std::to_string(p + 1);
      s.outputs = {2 * p, 2 * p + 1};
      for (std::int64_t step = 0; step < steps; ++step)
        for (std::int64_t f = 0; f < 40; ++f) s.zeroed_inputs.push_back(step * 80 + (1 - p) * 40 + f);
      t.subtasks.push_back(s);
    }
    return t;
  };
  const DatasetSpec tuple_ff = tuple_spec({80}), tuple_seq = tuple_spec({6, 80});
  std::vector<Case> cases = {
      {"tuple FNN 800x4 (mask_fnn, one run per tuple)",
       host.create_model("mask_fnn", model("plugin = \"mask_fnn\"\nlayer_sizes = [800, 800, 800, 800]\nrun_per_subtask = true"),
                         tuple_ff),
       tuple_ff},
      {"tuple LSTM 2x256 (mask_lstm, 6 steps)",
       host.create_model("mask_lstm", model("plugin = \"mask_lstm\"\nstate_size = 256\nn_layers = 2"), tuple_seq), tuple_seq},
      {"moe MNIST CNN (E = 5, mnist_cnn experts and gate)",
       host.create_model("moe", model("plugin = \"moe\"\nnum_experts = 5\nexpert = \"mnist_cnn\"\ngate = \"mnist_cnn\""), mnist),
       mnist},
      {"hier_modular [6,3,2,2] (hierarchically_modular)",
       host.create_model("hierarchically_modular", model("plugin = \"hierarchically_modular\""), boolean), boolean},
  };
  std::cout << "Mask-training step, K = " << k << " mask samples, batch " << batch << " (" << batch / k
            << " rows per sample), forward + loss + backward, fastest of " << reps << " interleaved rounds\n"
            << "LibTorch " << TORCH_VERSION << ", " << threads << " intra-op thread(s), BLAS: " << bench::active_blas()
            << "\nallocator: " << bench::active_allocator() << "\n\n";
  std::vector<std::vector<std::string>> rows;
  for (auto& c : cases) {
    const auto ms = time_case(c, batch, k, reps);
    rows.push_back({c.name, bench::num(ms[0], 3), bench::num(ms[1], 3), bench::num(ms[2], 3), bench::num(ms[1] / ms[0], 2),
                    bench::num(ms[2] / ms[1], 2)});
  }
  bench::table({"network", "unmasked ms", "masked, K folded ms", "K separate passes ms", "folded / unmasked",
                "separate / folded"},
               rows);
  return 0;
}

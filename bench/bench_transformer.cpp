// A training step of the DeepMind Mathematics Transformer (masked_analyzer's mask_transformer,
// built through the plugin as a sweep builds it) against the same network in idiomatic PyTorch
// (bench/python/transformer_step.py: nn.TransformerEncoder / Decoder, post-norm, tied embedding),
// same intra-op threads: teacher-forced forward, cross-entropy, backward, gradient clipping at 0.1
// and Adam(1e-4, β2 0.995, ε 1e-9) as the trainer runs them. One fixed batch of 64 rows, questions of
// 20–40 tokens and answers of 6–12, padded to 40 and 12. Rounds alternate the two sides; each keeps
// its fastest.
//
//   build/bin/bench_transformer [--threads 1] [--steps 30] [--rounds 2] [--skip-python] [--dims 64,128,512]
#include "bench_util.hpp"

#include <modlab/runner/optimizers.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <sstream>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::int64_t kVocab = 40, kRows = 64, kLq = 40, kLa = 12;

struct Shape {
  std::int64_t d, heads, layers;
  std::string key() const { return std::to_string(d) + ":" + std::to_string(heads) + ":" + std::to_string(layers); }
};

modlab::DatasetSpec sequence_spec() {
  modlab::DatasetSpec s;
  s.name = "random tokens";
  s.task = modlab::TaskKind::Sequence;
  s.input_shape = {kLq};
  s.vocabulary = {"<pad>", "<start>", "<end>"};
  for (std::int64_t i = 3; i < kVocab; ++i) s.vocabulary.emplace_back(1, static_cast<char>('0' + i));
  s.pad_token = 0;
  s.info["start_token"] = "1";
  s.info["end_token"] = "2";
  s.splits = {"train"};
  return s;
}

/// The Python side's batch: row i has Lq − i mod (Lq/2) question and La − i mod (La/2) answer tokens.
modlab::Batch batch() {
  auto g = at::detail::createCPUGenerator(0);
  modlab::Batch b;
  b.inputs = torch::randint(3, kVocab, {kRows, kLq}, g, torch::kLong);
  b.targets = torch::randint(3, kVocab, {kRows, kLa}, g, torch::kLong);
  for (std::int64_t i = 0; i < kRows; ++i) {
    const auto nq = kLq - i % (kLq / 2), na = kLa - i % (kLa / 2);
    b.inputs[i].narrow(0, nq, kLq - nq).fill_(0);
    b.targets[i][na - 1] = 2;
    b.targets[i].narrow(0, na, kLa - na).fill_(0);
  }
  return b;
}

double cpp_step_ms(modlab::Host& host, const Shape& s, int steps) {
  torch::manual_seed(0);
  const std::string toml = "[model]\nplugin = \"mask_transformer\"\ndropout = 0.0\ndim = " + std::to_string(s.d) +
                           "\nheads = " + std::to_string(s.heads) + "\nencoder_layers = " + std::to_string(s.layers) +
                           "\ndecoder_layers = " + std::to_string(s.layers) + "\n";
  const auto c = modlab::Config(std::make_shared<const modlab::Value>(modlab::runner::parse_toml(toml, "bench")), "").sub("model");
  auto model = host.create_model("mask_transformer", c, sequence_spec());
  model->train();
  modlab::runner::FastAdam opt(model->parameters(), torch::optim::AdamOptions(1e-4).betas({0.9, 0.995}).eps(1e-9));
  const auto b = batch();
  auto step = [&] {
    modlab::runner::zero_grad(opt);
    const auto loss = modlab::total(model->loss(b, model->forward(b)));
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 0.1);
    opt.step();
    return loss.item<double>();
  };
  for (int i = 0; i < 5; ++i) step();
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) step();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
}

}  // namespace

int main(int argc, char** argv) {
  const auto opt = bench::step_options(argc, argv, {1, 30, 2, true});
  const int threads = opt.threads, steps = opt.steps, rounds = opt.rounds;
  bool python = opt.python;
  torch::set_num_threads(threads);
  modlab::runner::HostOptions ho;
  ho.logger = [](const std::string&) {};
  modlab::runner::RunHost host(modlab::runner::default_registry(), ho);
  // The CPU sweep's model, a middle size, and the reference's d = 512, 6 + 6 (fewer steps: same
  // rule as the Python side, steps · 64 / d).
  std::vector<Shape> shapes = {{64, 4, 2}, {128, 4, 3}, {512, 8, 6}};
  for (int i = 1; i + 1 < argc; ++i)  // --dims 64,512: only these widths
    if (std::string(argv[i]) == "--dims") {
      const std::string dims = "," + std::string(argv[i + 1]) + ",";
      shapes.erase(std::remove_if(shapes.begin(), shapes.end(),
                                  [&](const Shape& s) { return dims.find("," + std::to_string(s.d) + ",") == std::string::npos; }),
                   shapes.end());
    }
  std::map<std::string, double> cpp, py;
  auto keep_min = [](std::map<std::string, double>& m, const std::string& k, double v) {
    m[k] = m.count(k) ? std::min(m[k], v) : v;
  };
  std::string configs;
  for (const auto& s : shapes) configs += " " + s.key();
  for (int round = 0; round < rounds; ++round) {
    for (const auto& s : shapes)
      keep_min(cpp, s.key(), cpp_step_ms(host, s, std::max<int>(3, steps * 64 / static_cast<int>(s.d))));
    if (!python) continue;
    const std::string out = bench::capture(bench::python_allocator_env() + "/usr/bin/python3 " +
                                           std::string(MODLAB_SOURCE_DIR) + "/bench/python/transformer_step.py --threads " +
                                           std::to_string(threads) + " --steps " + std::to_string(steps) +
                                           " --config" + configs + " 2>&1");
    std::istringstream in(out);
    std::string word, key;
    double ms;
    while (in >> word)
      if (word == "ms_per_step" && in >> key >> ms) keep_min(py, key, ms);
    if (py.empty()) {
      std::cerr << "Python reference unavailable:\n" << out << "\n";
      python = false;
    }
  }
  std::cout << "DeepMind Mathematics Transformer training step, batch " << kRows << " × (" << kLq << " + " << kLa
            << ") tokens, Adam + clip 0.1; fastest of " << rounds << " alternating rounds; LibTorch " << TORCH_VERSION
            << ", " << threads << " intra-op thread(s), BLAS: " << bench::active_blas()
            << ", allocator: " << bench::active_allocator() << "\n\n";
  const double tokens = static_cast<double>(kRows * (kLq + kLa));
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : shapes) {
    const bool have = py.count(s.key()) > 0;
    const double c = cpp[s.key()];
    rows.push_back({"d=" + std::to_string(s.d) + ", " + std::to_string(s.heads) + " heads, " + std::to_string(s.layers) +
                        "+" + std::to_string(s.layers),
                    bench::fixed(c, 1), bench::fixed(tokens * 1000.0 / c, 0), have ? bench::fixed(py[s.key()], 1) : "unavailable (scripts/setup --bench)",
                    have ? bench::fixed(tokens * 1000.0 / py[s.key()], 0) : "-", have ? bench::fixed(py[s.key()] / c, 2) + "×" : "-"});
  }
  bench::table({"model", "modlab ms/step", "modlab tokens/s", "PyTorch ms/step", "PyTorch tokens/s", "speed-up"}, rows);
  return 0;
}

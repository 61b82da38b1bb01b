#define BOOST_TEST_MODULE trainer
#include <boost/test/unit_test.hpp>

#include "fixture_registry.hpp"

#include <modlab/dataset.hpp>
#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include "../temp_dir.hpp"

#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <filesystem>

using namespace modlab;
using namespace modlab::runner;
namespace fs = std::filesystem;

namespace {
Registry& registry() { return test_fixtures::basic_registry(); }

const char* kBase = R"(
[dataset]
plugin = "fixture_blobs"
n = 240
[model]
plugin = "fixture_mlp"
hidden = 8
[train]
epochs = 4
batch_size = 16
optimizer = "adam"
lr = 0.01
)";

using modlab_test::TempDir;

RunRequest request(const std::string& extra, const fs::path& out, std::int64_t seed = 1) {
  Value v = parse_toml(std::string(kBase) + extra, "test.toml");
  RunRequest r;
  r.config = std::make_shared<const Value>(v);
  r.run_id = run_id_of(v);
  r.seed = seed;
  r.sweep_name = "test";
  r.sweep_dir = out.string();
  r.out_dir = out.string();
  return r;
}

RunRequest with(const std::vector<std::string>& sets, const fs::path& out, std::int64_t seed = 1) {
  Value v = parse_toml(kBase, "test.toml");
  for (const auto& s : sets) {
    auto [k, val] = parse_override(s);
    set_dotted(v, k, val);
  }
  RunRequest r = request("", out, seed);
  r.config = std::make_shared<const Value>(v);
  r.run_id = run_id_of(v);
  return r;
}

std::map<std::string, double> deterministic(std::map<std::string, double> m) {
  m.erase("time_s");
  return m;
}
}  // namespace

BOOST_AUTO_TEST_CASE(trains_and_writes_a_completed_run) {
  TempDir d;
  auto req = request("", d.path);
  auto out = execute_run(registry(), req);
  BOOST_TEST_REQUIRE((out.status == RunStatus::Completed), out.error);
  auto paths = RunPaths::of(d.path.string(), req.run_id);
  BOOST_TEST(fs::exists(paths.h5));
  BOOST_TEST(!fs::exists(paths.h5 + ".partial"));
  BOOST_TEST(!fs::exists(paths.checkpoint));
  BOOST_TEST(fs::exists(paths.weights));
  auto s = read_run_summary(paths.h5);
  BOOST_TEST_REQUIRE(s.has_value());
  BOOST_TEST(s->status == "completed");
  BOOST_TEST(s->final_metrics.at("test_accuracy") > 0.8);
  BOOST_TEST(s->final_metrics.at("train_accuracy") > 0.8);
  BOOST_TEST(s->final_metrics.count("test_mean_logit") == 1u);  // model metric, prefixed by split
  BOOST_TEST(s->final_metrics.at("fit_loss") < 1.0);
  // Model::end_epoch writes in the epoch's row, unprefixed: 240 examples in batches of 16
  BOOST_TEST(s->final_metrics.at("fit_steps") == 15.0);
  BOOST_TEST(s->final_metrics.count("train_fit_steps") + s->final_metrics.count("test_fit_steps") == 0u);
  BOOST_TEST(run_state(d.path.string(), req.run_id) == "completed");
}

BOOST_AUTO_TEST_CASE(same_seed_same_metrics_different_seed_different) {
  TempDir a, b, c;
  auto ra = request("", a.path, 7), rb = request("", b.path, 7), rc = request("", c.path, 8);
  BOOST_TEST_REQUIRE((execute_run(registry(), ra).status == RunStatus::Completed));
  BOOST_TEST_REQUIRE((execute_run(registry(), rb).status == RunStatus::Completed));
  BOOST_TEST_REQUIRE((execute_run(registry(), rc).status == RunStatus::Completed));
  auto ma = deterministic(read_run_summary(RunPaths::of(a.path.string(), ra.run_id).h5)->final_metrics);
  auto mb = deterministic(read_run_summary(RunPaths::of(b.path.string(), rb.run_id).h5)->final_metrics);
  auto mc = deterministic(read_run_summary(RunPaths::of(c.path.string(), rc.run_id).h5)->final_metrics);
  BOOST_TEST((ma == mb));
  BOOST_TEST(ma.at("fit_loss") != mc.at("fit_loss"));
}

BOOST_AUTO_TEST_CASE(nan_loss_fails_the_run_naming_step_and_term) {
  TempDir d;
  auto req = with({"model.fail=\"nan\"", "model.fail_epoch=2"}, d.path);
  auto out = execute_run(registry(), req);
  BOOST_TEST_REQUIRE((out.status == RunStatus::Failed));
  BOOST_TEST(out.error.find("non-finite loss at step 30") != std::string::npos, out.error);  // 240/16 = 15 steps/epoch
  BOOST_TEST(out.error == "non-finite loss at step 30 (phase train, epoch 2): term 'task' = nan", out.error);
  auto s = read_run_summary(RunPaths::of(d.path.string(), req.run_id).h5);
  BOOST_TEST_REQUIRE(s.has_value());
  BOOST_TEST(s->status == "failed");
  BOOST_TEST(s->error == out.error);
}

BOOST_AUTO_TEST_CASE(non_finite_loss_names_every_bad_term) {
  NonFiniteLoss e(12, "finetune", 3, {{"task", std::nan("")}, {"balance", -INFINITY}});
  BOOST_TEST(std::string(e.what()) ==
             "non-finite loss at step 12 (phase finetune, epoch 3): terms 'task' = nan, 'balance' = -inf");
  BOOST_TEST(e.step() == 12);
  BOOST_TEST(e.terms().size() == 2u);
  BOOST_TEST(e.terms()[1].name == "balance");
  const Error& base = e;  // caught as the one hierarchy's base, as main and the trainer do
  BOOST_TEST(std::string(base.what()).find("step 12") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(keys_set_but_not_read_are_reported) {
  TempDir d;
  auto req = with({"model.fail_epoch=3"}, d.path);  // no effect without model.fail
  std::vector<std::string> lines;
  req.logger = [&](const std::string& m) { lines.push_back(m); };
  BOOST_TEST_REQUIRE((execute_run(registry(), req).status == RunStatus::Completed));
  bool noted = std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("note: model.fail_epoch is set but was not used by plugin 'fixture_mlp'") != std::string::npos;
  });
  BOOST_TEST(noted);
  bool others = std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("model.hidden") != std::string::npos || l.find("dataset.n") != std::string::npos;
  });
  BOOST_TEST(!others);
}

BOOST_AUTO_TEST_CASE(exception_in_model_fails_the_run) {
  TempDir d;
  auto req = with({"model.fail=\"throw\""}, d.path);
  auto out = execute_run(registry(), req);
  BOOST_TEST((out.status == RunStatus::Failed));
  BOOST_TEST(out.error.find("fixture model failed on purpose") != std::string::npos, out.error);
}

BOOST_AUTO_TEST_CASE(interrupted_run_resumes_to_identical_result) {
  TempDir full, cut;
  auto rf = request("", full.path, 3);
  BOOST_TEST_REQUIRE((execute_run(registry(), rf).status == RunStatus::Completed));

  auto rc = request("", cut.path, 3);
  std::atomic<bool> stop{false};
  rc.stop = &stop;
  rc.on_progress = [&](const Progress& p) {
    if (p.epoch == 1) stop = true;
  };
  BOOST_TEST_REQUIRE((execute_run(registry(), rc).status == RunStatus::Interrupted));
  auto paths = RunPaths::of(cut.path.string(), rc.run_id);
  BOOST_TEST(fs::exists(paths.checkpoint));
  BOOST_TEST(fs::exists(paths.h5 + ".partial"));
  BOOST_TEST(!fs::exists(paths.h5));
  BOOST_TEST(run_state(cut.path.string(), rc.run_id) == "partial");

  rc.stop = nullptr;
  rc.on_progress = nullptr;
  BOOST_TEST_REQUIRE((execute_run(registry(), rc).status == RunStatus::Completed));
  auto mf = deterministic(read_run_summary(RunPaths::of(full.path.string(), rf.run_id).h5)->final_metrics);
  auto mc = deterministic(read_run_summary(paths.h5)->final_metrics);
  BOOST_TEST((mf == mc));
  // the resumed file has every epoch exactly once
  BOOST_TEST(read_run_summary(paths.h5)->status == "completed");
}

BOOST_AUTO_TEST_CASE(phases_and_parameter_groups) {
  TempDir d;
  auto req = with({"model.two_phase=true", "train.epochs=3", "train.lr_groups={head = 0.05}"}, d.path);
  auto out = execute_run(registry(), req);
  BOOST_TEST_REQUIRE((out.status == RunStatus::Completed), out.error);

  TempDir e;
  auto bad = with({"train.lr_groups={heda = 0.05}"}, e.path);
  auto o2 = execute_run(registry(), bad);
  BOOST_TEST((o2.status == RunStatus::Failed));
  BOOST_TEST(o2.error.find("no parameter group 'heda' (it has: body, head)") != std::string::npos, o2.error);
}

BOOST_AUTO_TEST_CASE(optimizers_and_schedules_all_train) {
  for (const char* opt : {"\"sgd\"", "\"rmsprop\"", "\"adamw\""}) {
    for (const char* sched : {"\"constant\"", "\"step\"", "\"exponential\"", "\"cosine\""}) {
      TempDir d;
      auto req = with({std::string("train.optimizer=") + opt, std::string("train.schedule=") + sched,
                       "train.step_size=2", "train.gamma=0.5", "train.momentum=0.9", "train.grad_clip=1.0"},
                      d.path);
      auto out = execute_run(registry(), req);
      BOOST_TEST_REQUIRE((out.status == RunStatus::Completed), out.error);
      auto s = read_run_summary(RunPaths::of(d.path.string(), req.run_id).h5);
      BOOST_TEST(s->final_metrics.at("test_accuracy") > 0.5, opt << " " << sched);
      double lr = s->final_metrics.at("lr");  // lr of the last (4th, index 3) epoch
      if (std::string(sched) == "\"step\"") BOOST_TEST(lr == 0.01 * 0.5, sched);
      if (std::string(sched) == "\"exponential\"") BOOST_TEST(lr == 0.01 * 0.125, sched);
      if (std::string(sched) == "\"cosine\"")
        BOOST_TEST(std::abs(lr - 0.01 * (1 + std::cos(M_PI * 3 / 4)) / 2) < 1e-12, sched);
    }
  }
}

BOOST_AUTO_TEST_CASE(validation_catches_bad_configs_before_running) {
  auto err = [](const std::string& text) {
    try {
      validate_run_config(parse_toml(text, "v.toml"), registry(), "run");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string base = kBase;
  BOOST_TEST(err(base).empty());
  auto m = err(base + "[trian]\nx = 1\n");
  BOOST_TEST(m.find("unknown table 'trian' (did you mean 'train'?)") != std::string::npos, m);
  m = err("[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"fixture_mlp\"\nhiden = 3\n");
  BOOST_TEST(m.find("v.toml:5:9: unknown key 'model.hiden' (did you mean 'model.hidden'?)") != std::string::npos, m);
  m = err("[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"nope\"\n");
  BOOST_TEST(m.find("v.toml:4") != std::string::npos, m);
  BOOST_TEST(m.find("unknown model plugin 'nope'") != std::string::npos, m);
  m = err(base + "[run]\nseed = \"x\"\n");
  BOOST_TEST(m.find("run.seed: expected integer, found string") != std::string::npos, m);
  m = err("[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"fixture_mlp\"\n[train]\noptimizer = \"adagrad\"\n");
  BOOST_TEST(m.find("train.optimizer: expected one of \"adam\", \"adamw\", \"sgd\", \"rmsprop\", got \"adagrad\"") !=
                 std::string::npos,
             m);
  m = err(base + "[train.phases.finetune]\nlr = 0\n");
  BOOST_TEST(m.find("v.toml:14:6: train.phases.finetune.lr: expected a finite number in (0, 1000], got 0") != std::string::npos, m);
  m = err("[model]\nplugin = \"fixture_mlp\"\n");
  BOOST_TEST(m.find("dataset.plugin: required key is missing") != std::string::npos, m);
  // Several problems: every one, under a line that counts them.
  m = err("[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"fixture_mlp\"\nhiden = 3\nhidden = 0\n[trian]\n");
  BOOST_TEST(m.rfind("3 problems in run:\n  v.toml:", 0) == 0, m);
  BOOST_TEST(m.find("\n  v.toml:5:9: unknown key 'model.hiden'") != std::string::npos, m);
  BOOST_TEST(m.find("\n  v.toml:6:10: model.hidden: expected an integer >= 1") != std::string::npos, m);
  BOOST_TEST(m.find("unknown table 'trian'") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(tensor_split_batches_carry_the_rows_and_their_indices) {
  const auto x = torch::arange(12, torch::kFloat).view({6, 2}), y = torch::arange(6, torch::kLong) * 10;
  const auto idx = torch::tensor({4, 1, 3}, torch::kLong);
  // Rows numbered 0 … n − 1 (no indices given): a batch's indices are the requested ones.
  const TensorSplit plain(Batch{x, y, {}, {}, {}, {}, {}});
  const auto a = plain.get(idx);
  BOOST_TEST(torch::equal(a.inputs, x.index_select(0, idx)));
  BOOST_TEST(torch::equal(a.targets, torch::tensor({40, 10, 30}, torch::kLong)));
  BOOST_TEST(torch::equal(a.indices, idx));
  // Rows with their own indices (a subset of a larger set): gathered like the rest.
  const TensorSplit subset(Batch{x, y, {}, {}, {}, torch::arange(100, 106, torch::kLong), {}});
  BOOST_TEST(torch::equal(subset.get(idx).indices, torch::tensor({104, 101, 103}, torch::kLong)));
}

// A phase's settings: [train], then the model's defaults for the phase, then [train.phases.<name>].
BOOST_AUTO_TEST_CASE(phase_defaults_sit_between_train_and_the_phase_table) {
  auto train = [](const std::string& text) {
    return Config(std::make_shared<const Value>(parse_toml(text, "t.toml")), "").sub("train");
  };
  const std::string defaults = "lr = 0.2\nbatch_size = 128\namsgrad = true\n";
  auto o = parse_train_options(train("[train]\nlr = 0.1\nepochs = 7\n"), "router", defaults);
  BOOST_TEST(o.lr == 0.2);
  BOOST_TEST(o.batch_size == 128);
  BOOST_TEST(o.amsgrad);
  BOOST_TEST(o.epochs == 7);  // not in the defaults: [train]'s
  o = parse_train_options(train("[train]\nlr = 0.1\n[train.phases.router]\nlr = 0.3\n"), "router", defaults);
  BOOST_TEST(o.lr == 0.3);
  BOOST_TEST(o.batch_size == 128);
  BOOST_TEST(parse_train_options(train("[train]\nlr = 0.1\n"), "other").lr == 0.1);
  auto err = [&](const std::string& base, const std::string& d) {
    try {
      parse_train_options(train(base), "router", d);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  BOOST_TEST(err("[train]\n", "batch_sise = 3\n").find("unknown key 'train.batch_sise'") != std::string::npos);
  BOOST_TEST(err("[train]\noptimizer = \"sgd\"\n", "amsgrad = true\n").find("train.amsgrad: only applies to optimizer") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(amsgrad_trains) {
  TempDir d;
  auto req = with({"train.amsgrad=true"}, d.path);
  auto out = execute_run(registry(), req);
  BOOST_TEST_REQUIRE((out.status == RunStatus::Completed), out.error);
  BOOST_TEST(read_run_summary(RunPaths::of(d.path.string(), req.run_id).h5)->final_metrics.at("test_accuracy") > 0.5);
}

// Warm-up: the rate rises linearly over the run's first optimizer steps (15 per epoch here).
BOOST_AUTO_TEST_CASE(warmup_raises_the_learning_rate_step_by_step) {
  auto final_lr = [](std::int64_t epochs) {
    TempDir d;
    auto req = with({"train.warmup_steps=30", "train.epochs=" + std::to_string(epochs)}, d.path);
    auto out = execute_run(registry(), req);
    BOOST_TEST_REQUIRE((out.status == RunStatus::Completed), out.error);
    return read_run_summary(RunPaths::of(d.path.string(), req.run_id).h5)->final_metrics.at("lr");
  };
  BOOST_TEST(final_lr(1) == 0.01 * 15 / 30);  // the epoch's last step was step 15 of 30
  BOOST_TEST(final_lr(3) == 0.01);            // 45 steps: warm
}

BOOST_AUTO_TEST_CASE(bucketing_sorts_windows_by_length_and_draws_every_example_once) {
  const std::int64_t n = 50;
  Batch data;
  data.inputs = torch::zeros({n, 3});
  data.targets = torch::zeros({n}, torch::kLong);
  data.lengths = (torch::arange(n, torch::kLong) * 17) % 41 + 1;  // lengths 1 … 41, in no order
  const TensorSplit split(data);
  TrainOptions o;
  o.batch_size = 4;
  auto padded = [&](const std::vector<torch::Tensor>& batches) {  // tokens a padded batch costs
    std::int64_t cost = 0;
    for (const auto& b : batches) cost += data.lengths.index_select(0, b).max().item<std::int64_t>() * b.size(0);
    return cost;
  };
  const auto plain = epoch_batches(split, o, 7);
  o.bucket = 3;
  const auto bucketed = epoch_batches(split, o, 7);
  BOOST_TEST(bucketed.size() == 13u);
  BOOST_TEST(torch::equal(std::get<0>(torch::cat(bucketed).sort()), torch::arange(n, torch::kLong)));
  for (const auto& b : bucketed) {  // a slice of a sorted window: ascending lengths
    const auto len = data.lengths.index_select(0, b);
    BOOST_TEST(torch::equal(len, std::get<0>(len.sort())));
  }
  BOOST_TEST(padded(bucketed) < padded(plain));
  // The same seed draws the same batches; bucket = 0 keeps the draw of an unbucketed trainer.
  const auto again = epoch_batches(split, o, 7);
  for (std::size_t i = 0; i < again.size(); ++i) BOOST_TEST(torch::equal(again[i], bucketed[i]));
  auto gen = at::detail::createCPUGenerator(7);
  BOOST_TEST(torch::equal(plain[0], torch::randperm(n, gen, torch::kLong).slice(0, 0, 4)));
  o.steps_per_epoch = 5;
  BOOST_TEST(epoch_batches(split, o, 7).size() == 5u);
  // A split without lengths cannot be bucketed.
  Batch flat = data;
  flat.lengths = torch::Tensor();
  const TensorSplit no_lengths(flat);
  BOOST_CHECK_EXCEPTION(epoch_batches(no_lengths, o, 7), DataError, [](const DataError& e) {
    return std::string(e.what()).find("train.bucket: this dataset's training split gives no example lengths") !=
           std::string::npos;
  });
}

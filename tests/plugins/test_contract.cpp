#define BOOST_TEST_MODULE plugin_contract
// The contract every plugin found on the plugin path must keep, checked generically:
// datasets: spec agrees with batches, same config → same data; models: output shape, finite loss,
// finite gradients, train/eval switch, deterministic evaluation; every parameter of every model
// variant can be overridden (or is declared unmaskable with a reason), and a forward with K override
// sets folded into the batch equals K separate forwards.
// MODLAB_CONTRACT_PLUGINS=a,b checks only the models and datasets of the plugins (libraries) a and b,
// e.g. a plugin of one's own on MODLAB_PLUGIN_PATH (docs/writing-a-model.md).
#include <boost/test/unit_test.hpp>

#include <modlab/errors.hpp>
#include <modlab/model.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

using namespace modlab;
using namespace modlab::runner;

namespace {
/// The plugins MODLAB_CONTRACT_PLUGINS names (empty: every plugin found).
std::set<std::string> selected_plugins() {
  std::set<std::string> names;
  if (const char* env = std::getenv("MODLAB_CONTRACT_PLUGINS")) {
    std::istringstream in(env);
    for (std::string n; std::getline(in, n, ',');)
      if (!n.empty()) names.insert(n);
  }
  return names;
}

/// The models (or datasets) to check: all, or those of the selected plugins (at least one of them).
std::vector<std::string> checked(const Registry& reg, bool models) {
  const auto only = selected_plugins();
  std::vector<std::string> names;
  for (const auto& p : reg.plugins())
    if (only.empty() || only.count(p.info->name))
      for (const auto& n : models ? p.models : p.datasets) names.push_back(n);
  if (only.empty()) BOOST_TEST_REQUIRE(!names.empty(), (models ? "no model found" : "no dataset found"));
  for (const auto& n : only)
    BOOST_TEST_REQUIRE(std::any_of(reg.plugins().begin(), reg.plugins().end(), [&](const auto& p) { return p.info->name == n; }),
                       "MODLAB_CONTRACT_PLUGINS names " << n << ", which is not on the plugin path");
  return names;
}

Config empty_config(const std::string& prefix, const std::string& plugin) {
  Value::Table t;
  t["plugin"] = Value::string(plugin);
  return Config(std::make_shared<Value>(Value::table(t)), prefix);
}

// Datasets that need files skip when the files are absent (DataError), all others must build.
std::shared_ptr<Dataset> try_dataset(RunHost& host, const std::string& name) {
  try {
    return host.create_dataset(name, empty_config("dataset", name));
  } catch (const DataError& e) {
    BOOST_TEST_MESSAGE("dataset " << name << " skipped (data missing): " << e.what());
    return nullptr;
  }
}

/// Synthetic batches for a spec, so models can be checked without real data.
Batch synthetic_batch(const DatasetSpec& spec, std::int64_t n) {
  Batch b;
  if (spec.task == TaskKind::Sequence) {
    // Token ids past <pad>, <start>, <end>; answers end with <end> (id 2).
    const auto v = static_cast<std::int64_t>(spec.vocabulary.size());
    const std::int64_t lq = spec.input_shape.at(0), la = std::stoll(spec.info.at("max_answer_length"));
    b.inputs = torch::randint(3, v, {n, lq}, torch::kLong);
    b.lengths = torch::full({n}, lq, torch::kLong);
    b.targets = torch::randint(3, v, {n, la}, torch::kLong);
    b.targets.select(1, la - 1).fill_(2);
    b.target_lengths = torch::full({n}, la, torch::kLong);
    b.groups = torch::zeros({n}, torch::kLong);
    b.indices = torch::arange(n, torch::kLong);
    return b;
  }
  std::vector<std::int64_t> shape = {n};
  shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
  b.inputs = torch::rand(shape);
  if (spec.task == TaskKind::Classification) b.targets = torch::randint(spec.num_classes, {n}, torch::kLong);
  else if (spec.task == TaskKind::MultiClass) b.targets = torch::randint(spec.num_classes, {n, spec.num_outputs}, torch::kLong);
  else b.targets = torch::randint(2, {n, spec.num_outputs}, torch::kLong).to(torch::kFloat);
  const auto groups = static_cast<std::int64_t>(spec.group_names.size());
  b.groups = groups > 0 ? torch::randint(groups, {n}, torch::kLong) : torch::zeros({n}, torch::kLong);
  b.indices = torch::arange(n, torch::kLong);
  return b;
}

std::vector<DatasetSpec> candidate_specs() {
  DatasetSpec flat;
  flat.name = "synthetic/flat";
  flat.input_shape = {2};
  flat.num_classes = 6;
  flat.splits = {"train", "test"};
  DatasetSpec image = flat;
  image.name = "synthetic/image";
  image.input_shape = {1, 28, 28};
  image.num_classes = 10;
  // Images with a group id per example (rotations), what routed models such as goe's oracle read.
  DatasetSpec rotated = image;
  rotated.name = "synthetic/rotated_image";
  rotated.group_kind = "rotation";
  rotated.group_names = {"0", "90", "180", "270"};
  DatasetSpec bits;
  bits.name = "synthetic/boolean";
  bits.task = TaskKind::MultiLabel;
  bits.input_shape = {6};
  bits.num_outputs = 2;
  bits.splits = {"train", "val", "test"};
  bits.info["structure"] = "6,3,2,2";
  // Two-digit results of two separable parts, as steps of feature vectors (the tuple task's shape).
  DatasetSpec digits;
  digits.name = "synthetic/digits";
  digits.task = TaskKind::MultiClass;
  digits.input_shape = {3, 8};
  digits.num_outputs = 4;
  digits.num_classes = 10;
  digits.splits = {"train", "valid"};
  digits.info["output_steps"] = "1,1,2,2";
  for (std::int64_t t = 0; t < 2; ++t) {
    SubTask s;
    s.name = "part" + std::to_string(t + 1);
    s.outputs = {2 * t, 2 * t + 1};
    for (std::int64_t step = 0; step < 3; ++step)
      for (std::int64_t f = 0; f < 4; ++f) s.zeroed_inputs.push_back(step * 8 + (1 - t) * 4 + f);
    digits.subtasks.push_back(s);
  }
  // Question → answer token sequences (dm_math's shape): 6 question tokens, answers of 3 + <end>.
  DatasetSpec sequence;
  sequence.name = "synthetic/sequence";
  sequence.task = TaskKind::Sequence;
  sequence.input_shape = {6};
  sequence.vocabulary = {"<pad>", "<start>", "<end>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  sequence.splits = {"train", "test"};
  sequence.info = {{"start_token", "1"}, {"end_token", "2"}, {"max_question_length", "6"}, {"max_answer_length", "4"}};
  return {flat, image, rotated, bits, digits, sequence};
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_dataset_keeps_the_contract) {
  Registry& reg = default_registry();
  RunHost host(reg, HostOptions{});
  for (const auto& name : checked(reg, false)) {
    BOOST_TEST_CONTEXT("dataset " << name) {
      torch::manual_seed(0);
      auto a = try_dataset(host, name);
      if (!a) continue;
      torch::manual_seed(0);
      auto b = try_dataset(host, name);
      DatasetSpec spec = a->spec();
      BOOST_TEST(!spec.splits.empty());
      for (const auto& split_name : spec.splits) {
        auto split = a->split(split_name);
        BOOST_TEST_REQUIRE(split->size() > 0);
        auto n = std::min<std::int64_t>(split->size(), 5);
        auto idx = torch::arange(n, torch::kLong);
        Batch x = split->get(idx, false);
        BOOST_TEST(x.size() == n);
        std::vector<std::int64_t> want = {n};
        want.insert(want.end(), spec.input_shape.begin(), spec.input_shape.end());
        if (spec.task != TaskKind::Sequence) BOOST_TEST((x.inputs.sizes().vec() == want), split_name);
        if (spec.task == TaskKind::Classification) {
          BOOST_TEST((x.targets.scalar_type() == torch::kLong));
          BOOST_TEST(x.targets.min().item<std::int64_t>() >= 0);
          BOOST_TEST(x.targets.max().item<std::int64_t>() < spec.num_classes);
        } else if (spec.task == TaskKind::MultiLabel) {
          BOOST_TEST(x.targets.size(1) == spec.num_outputs);
        } else if (spec.task == TaskKind::MultiClass) {
          BOOST_TEST((x.targets.scalar_type() == torch::kLong));
          BOOST_TEST(x.targets.size(1) == spec.num_outputs);
          BOOST_TEST(x.targets.min().item<std::int64_t>() >= 0);
          BOOST_TEST(x.targets.max().item<std::int64_t>() < spec.num_classes);
        }
        for (const auto& t : spec.subtasks) {
          for (auto o : t.outputs) BOOST_TEST((o >= 0 && o < spec.num_outputs), "sub-task " << t.name);
          for (auto i : t.zeroed_inputs) BOOST_TEST((i >= 0 && i < spec.input_numel()), "sub-task " << t.name);
          if (!t.train_split.empty()) BOOST_TEST(a->split(t.train_split)->size() > 0, "sub-task " << t.name);
        }
        if (x.subtask_targets.defined()) {
          BOOST_TEST(x.subtask_targets.size(0) == n);
          BOOST_TEST(x.subtask_targets.size(1) == static_cast<std::int64_t>(spec.subtasks.size()));
        }
        if (x.groups.defined() && !spec.group_names.empty())
          BOOST_TEST(x.groups.max().item<std::int64_t>() < static_cast<std::int64_t>(spec.group_names.size()));
        BOOST_TEST(torch::isfinite(x.inputs.to(torch::kFloat)).all().item<bool>());
        // the same config gives the same data
        Batch y = b->split(split_name)->get(idx, false);
        BOOST_TEST(torch::equal(x.inputs, y.inputs), split_name);
        BOOST_TEST(torch::equal(x.targets, y.targets), split_name);
        // all() agrees with get()
        Batch all = split->all();
        BOOST_TEST(all.size() == split->size());
        BOOST_TEST(torch::equal(all.inputs.slice(0, 0, n), x.inputs));
      }
      BOOST_CHECK_THROW(a->split("no_such_split"), DataError);
    }
  }
}

namespace {
/// A model's defaults, or its first variant when a key is required (a wrapper's inner model).
Config basic_config(const Registry& reg, const std::string& name) {
  for (const auto& k : reg.model(name).keys)
    if (k.model_table && !reg.model(name).variants.empty()) {
      Value v = parse_toml(reg.model(name).variants.front(), name + " variant");
      set_dotted(v, "plugin", Value::string(name));
      return Config(std::make_shared<Value>(v), "model");
    }
  return empty_config("model", name);
}
/// The ConfigError message of the model's dataset check for `spec` ("" when it passes or there is none).
std::string check_refusal(const ModelEntry& entry, const Config& config, const DatasetSpec& spec) {
  if (!entry.check) return "";
  try {
    entry.check(config, spec);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_model_keeps_the_contract) {
  Registry& reg = default_registry();
  RunHost host(reg, HostOptions{});
  for (const auto& name : checked(reg, true)) {
    BOOST_TEST_CONTEXT("model " << name) {
      int built = 0;
      for (const auto& spec : candidate_specs()) {
        torch::manual_seed(1);
        // The model's dataset check (what `modlab run` asks before the first run) agrees with its factory.
        const std::string refused = check_refusal(reg.model(name), basic_config(reg, name), spec);
        std::shared_ptr<Model> m;
        try {
          m = host.create_model(name, basic_config(reg, name), spec);
        } catch (const Error& e) {
          BOOST_TEST_MESSAGE(name << " does not take " << spec.name << ": " << e.what());
          BOOST_TEST(!(reg.model(name).check && refused.empty()),
                     "the dataset check accepts " << spec.name << " but the model fails: " << e.what());
          continue;
        }
        BOOST_TEST(refused.empty(), "the dataset check refuses " << spec.name << ", which the model takes: " << refused);
        ++built;
        BOOST_TEST_CONTEXT("on " << spec.name) {
          Batch batch = synthetic_batch(spec, 8);
          m->train();
          BOOST_TEST(m->is_training());
          Output out = m->forward(batch);
          BOOST_TEST(out.prediction.size(0) == 8);
          if (spec.task == TaskKind::Classification) BOOST_TEST(out.prediction.size(-1) == spec.num_classes);
          else if (spec.task == TaskKind::MultiClass)
            BOOST_TEST((out.prediction.sizes().vec() == std::vector<std::int64_t>{8, spec.num_outputs, spec.num_classes}));
          else if (spec.task == TaskKind::Sequence)
            BOOST_TEST((out.prediction.sizes().vec() ==
                        std::vector<std::int64_t>{8, batch.targets.size(1), static_cast<std::int64_t>(spec.vocabulary.size())}));
          else BOOST_TEST(out.prediction.size(-1) == spec.num_outputs);
          Losses losses = m->loss(batch, out);
          BOOST_TEST_REQUIRE(!losses.empty());
          auto l = total(losses);
          BOOST_TEST(std::isfinite(l.item<double>()));
          m->zero_grad();
          l.backward();
          int with_grad = 0;
          for (const auto& p : m->named_parameters()) {
            if (!p.value().grad().defined()) continue;
            ++with_grad;
            BOOST_TEST(torch::isfinite(p.value().grad()).all().item<bool>(), p.key());
          }
          BOOST_TEST(with_grad > 0);
          m->eval();
          BOOST_TEST(!m->is_training());
          torch::NoGradGuard ng;
          auto e1 = m->forward(batch).prediction;
          auto e2 = m->forward(batch).prediction;
          BOOST_TEST(torch::equal(e1, e2), "evaluation must be deterministic");
          auto c = m->correct(batch, m->forward(batch));
          BOOST_TEST(c.size(0) == 8);
        }
      }
      BOOST_TEST(built > 0, "model " << name << " built for none of the synthetic specs");
    }
  }
}

namespace {
/// The model's configs to check: its defaults, then each declared variant.
std::vector<std::pair<std::string, Config>> model_configs(const Registry& reg, const std::string& name) {
  std::vector<std::pair<std::string, Config>> out;
  const auto& keys = reg.model(name).keys;
  const bool wrapper = std::any_of(keys.begin(), keys.end(), [](const KeySpec& k) { return k.model_table; });
  if (!wrapper) out.emplace_back("defaults", empty_config("model", name));  // a wrapper's inner model is required
  for (const auto& text : reg.model(name).variants) {
    Value v = parse_toml(text, name + " variant");
    set_dotted(v, "plugin", Value::string(name));
    out.emplace_back(text, Config(std::make_shared<Value>(v), "model"));
  }
  return out;
}

Batch cat_batches(const std::vector<Batch>& parts) {
  auto cat = [&](torch::Tensor Batch::*field) {
    std::vector<torch::Tensor> ts;
    for (const auto& b : parts) ts.push_back(b.*field);
    return ts.front().defined() ? torch::cat(ts) : torch::Tensor();
  };
  return Batch{cat(&Batch::inputs), cat(&Batch::targets), cat(&Batch::groups),
               cat(&Batch::lengths), cat(&Batch::target_lengths), cat(&Batch::indices), cat(&Batch::subtask_targets)};
}

/// Every parameter can be overridden (so that an analyzer can mask it and a population stack it)
/// or is declared unmaskable with a reason; a declared one may still be overridable (hier_modular's
/// routing logits: a population stacks them, an analyzer leaves them alone), and then folds too.
void check_coverage(Model& m) {
  const auto maskable = modlab::nn::maskable_parameters(m);
  const std::set<std::string> can(maskable.begin(), maskable.end());
  const auto declared = m.unmaskable_parameters();
  for (const auto& p : m.named_parameters()) {
    const bool masked = can.count(p.key()) > 0;
    const auto it = declared.find(p.key());
    BOOST_TEST((masked || it != declared.end()), p.key() << " is neither maskable nor declared unmaskable");
    if (it != declared.end()) BOOST_TEST(!it->second.empty(), p.key() << ": no reason given");
  }
  BOOST_TEST(std::any_of(maskable.begin(), maskable.end(), [&](const std::string& n) { return !declared.count(n); }),
             "no parameter an analyzer can mask");
}

/// K = 3 override sets (each parameter times its own random 0/1 mask): the folded forward on
/// three batches laid end to end equals three separate forwards, to 1e-5 of the outputs' scale.
void check_folded_forward(Model& m, const DatasetSpec& spec) {
  const std::int64_t K = 3, B = 4;
  torch::manual_seed(7);
  auto params = m.named_parameters();
  std::vector<std::map<std::string, torch::Tensor>> sets(K);
  std::map<std::string, torch::Tensor> folded;
  for (const auto& name : modlab::nn::maskable_parameters(m)) {
    std::vector<torch::Tensor> per;
    for (std::int64_t k = 0; k < K; ++k) {
      per.push_back(params[name].detach() * torch::bernoulli(torch::full_like(params[name], 0.8)));
      sets[static_cast<std::size_t>(k)][name] = per.back();
    }
    folded[name] = torch::stack(per);
  }
  std::vector<Batch> batches;
  std::vector<torch::Tensor> want;
  torch::NoGradGuard ng;
  m.eval();
  for (std::int64_t k = 0; k < K; ++k) {
    batches.push_back(synthetic_batch(spec, B));
    modlab::nn::OverrideScope scope(m, sets[static_cast<std::size_t>(k)]);
    want.push_back(m.forward(batches.back()).prediction);
  }
  // The overrides reach the output: masking a fifth of every weight changes the prediction.
  const auto plain = m.forward(batches.front()).prediction;
  BOOST_TEST(!torch::allclose(plain, want.front()), "the override sets do not change the prediction");
  modlab::nn::OverrideScope scope(m, folded);
  const auto got = m.forward(cat_batches(batches)).prediction;
  BOOST_TEST_REQUIRE(got.size(0) == K * B);
  for (std::int64_t k = 0; k < K; ++k) {
    // float32 rounding grows with the output's scale (a deep Transformer's logits reach tens).
    const auto& w = want[static_cast<std::size_t>(k)];
    const double scale = std::max(1.0, w.abs().max().item<double>());
    const auto diff = (got.narrow(0, k * B, B) - w).abs().max().item<double>();
    BOOST_TEST(diff < 1e-5 * scale, "sample " << k << ": folded forward differs by " << diff << " (outputs up to " << scale << ")");
  }
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_model_variant_is_maskable_and_folds_k_into_the_batch) {
  Registry& reg = default_registry();
  RunHost host(reg, HostOptions{});
  for (const auto& name : checked(reg, true)) {
    for (const auto& [variant, config] : model_configs(reg, name)) {
      BOOST_TEST_CONTEXT("model " << name << " (" << variant << ")") {
        validate_keys(config, reg.model(name).keys, {"plugin"});
        int built = 0;
        for (const auto& spec : candidate_specs()) {
          torch::manual_seed(1);
          std::shared_ptr<Model> m;
          try {
            m = host.create_model(name, config, spec);
          } catch (const Error& e) {
            continue;
          }
          ++built;
          BOOST_TEST_CONTEXT("on " << spec.name) {
            check_coverage(*m);
            check_folded_forward(*m, spec);
          }
        }
        BOOST_TEST(built > 0, "variant built for none of the synthetic specs");
      }
    }
  }
}

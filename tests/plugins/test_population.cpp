#define BOOST_TEST_MODULE plugin_population
// Population training on the real model plugins: for each configuration below, three seeds run as
// one population and each alone. A configuration whose model batches must train as one (no
// "one member at a time" in its logs) with every final metric of every member equal to its solo
// run within the case's tolerance; one whose model cannot must say why in each run log and then
// equal its solo runs bit for bit. Cases on real data skip when the data is absent.
#include <boost/test/unit_test.hpp>

#include "../unit/population_checks.hpp"

#include <modlab/config.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>

#include <cstdlib>

using namespace population_checks;

namespace {

struct Case {
  std::string name;
  std::string config;
  std::vector<std::string> sets;  ///< key=value overrides on `config`
  std::string why;                ///< "" when the members must train as one, else what each run log says
  double tolerance;               ///< relative, on every final metric
  std::string needs;              ///< a folder under MODLAB_DATA_DIR the case reads ("" for none)
};

const char* kMoeToy = R"(
[dataset]
plugin = "toy"
task = "multi_class"
[model]
plugin = "moe"
num_experts = 4
expert = "linear"
gate = "linear"
[train]
epochs = 4
batch_size = 32
optimizer = "rmsprop"
lr = 0.01
momentum = 0.9
eval_splits = ["train", "test"]
)";

const char* kMoeMnist = R"(
[dataset]
plugin = "rotated_mnist"
mode = "plain"
rotations = [0]
train_limit = 512
test_limit = 256
[model]
plugin = "moe"
num_experts = 3
expert = "mnist_cnn"
gate = "mnist_cnn"
[train]
epochs = 1
batch_size = 64
optimizer = "adam"
lr = 0.001
)";

/// A hier_modular Boolean run with the reference's settings, 40 of its 1000 epochs.
std::string boolean_run(const std::string& model) {
  return R"(
[dataset]
plugin = "toy"
task = "boolean"
structure = [6, 3, 2, 2]
train_fraction = 0.5
split_seed = 40
train_noise = 0.1
[train]
epochs = 40
batch_size = 64
optimizer = "adam"
lr = 0.01
weight_decay = 1e-3
eval_every = 10
eval_splits = ["train", "val", "test"]
[model]
)" + model;
}

const std::string kModular =
    "plugin = \"hierarchically_modular\"\nmodule_arch = [2, 12, 1]\ntopk = 2\ntau = 2.0\nlr_module_input = 0.1\n";
const std::string kShared = "plugin = \"hierarchically_modular_shared_modules\"\nmodule_arch = [2, 12, 1]\ntopk = 2\n";

const std::vector<Case>& cases() {
  static const std::vector<Case> all{
      {"moe toy (quick start)", kMoeToy, {}, "", 1e-4, ""},
      {"moe MNIST CNNs", kMoeMnist, {}, "", 1e-3, "mnist"},
      {"moe toy, importance, ortho and ideal-gate terms", kMoeToy,
       {"model.w_importance=0.1", "model.w_ortho=0.5", "model.w_ideal_gate=0.2"}, "", 1e-4, ""},
      {"moe toy, sample similarity (reference form)", kMoeToy,
       {"model.beta_same=0.1", "model.beta_diff=0.1", "model.sample_similarity_form=\"reference\""}, "", 1e-4, ""},
      {"moe toy, training-time gate metrics", kMoeToy, {"model.fit_gate_metrics=true"},
       "its loss term 'task' is computed over the whole folded batch", 0.0, ""},
      {"hier_modular MLP", boolean_run("plugin = \"mlp\"\n"), {}, "", 1e-4, ""},
      {"hier_modular known routing", boolean_run(kModular), {"model.known_module_inputs=true"}, "", 1e-4, ""},
      {"hier_modular shared modules, known", boolean_run(kShared),
       {"model.known_module_inputs=true", "model.known_module_locations=true"}, "", 1e-4, ""},
      {"hier_modular learned routing", boolean_run(kModular), {}, "", 1e-4, ""},
      {"hier_modular shared modules, learned", boolean_run(kShared), {}, "", 1e-4, ""},
      {"hier_modular learned routing, Gumbel noise", boolean_run(kModular),
       {"model.use_gumbel=true", "model.per_sample_routing=true", "model.tau=1.0"}, "its training forward draws random numbers",
       0.0, ""},
      {"mode, dropout experts", R"(
[dataset]
plugin = "toy"
task = "multi_class"
[model]
plugin = "mode"
num_experts = 2
[train]
epochs = 2
batch_size = 32
optimizer = "adam"
lr = 0.001
)",
       {}, "one member at a time", 0.0, ""},
  };
  return all;
}

std::string data_dir() {
  const char* d = std::getenv("MODLAB_DATA_DIR");
  return d ? d : "";
}

/// Members `sets`[m] of config `text` trained as one population and alone: each equals its solo run.
void check_members(const std::string& text, const std::vector<std::vector<std::string>>& sets, const std::string& why,
                   double tolerance) {
  TempDir pop, solo;
  std::vector<RunRequest> members;
  for (std::size_t m = 0; m < sets.size(); ++m) members.push_back(request(text, pop.path, 3 + static_cast<std::int64_t>(m), sets[m]));
  check_members_equal_solo(default_registry(), members, solo.path, tolerance, why);
  BOOST_TEST(final_metrics(members[0]) != final_metrics(members[1]));  // seeds differ
}

void check_case(const Case& c) {
  BOOST_TEST_CONTEXT("case " << c.name) {
    if (!c.needs.empty() && !fs::exists(fs::path(data_dir()) / c.needs)) {
      BOOST_TEST_MESSAGE("case " << c.name << " skipped: " << (fs::path(data_dir()) / c.needs) << " is absent");
      return;
    }
    check_members(c.config, {c.sets, c.sets, c.sets}, c.why, c.tolerance);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_model_batches_or_says_why_and_its_members_equal_their_solo_runs) {
  for (const auto& c : cases()) check_case(c);
}

// hier_modular's routing logits have their own rate (lr_module_input = 0.1) whatever train.lr is:
// members differing in train.lr scale only the module weights' steps.
BOOST_AUTO_TEST_CASE(members_with_their_own_learning_rates_keep_a_group_rate_that_does_not_follow_them) {
  check_members(boolean_run(kModular), {{"train.lr=0.01"}, {"train.lr=0.003"}, {"train.lr=0.03"}}, "", 1e-4);
}

// The hier_modular reference protocol (input noise 0.1, weight decay 1e-3) and its ablation (no
// noise, no decay), and a routing rate of their own: keys that toy and hier_modular declare per
// member, and weight decay. Each member equals its solo run.
BOOST_AUTO_TEST_CASE(members_may_differ_in_keys_their_plugins_declare_per_member) {
  check_members(boolean_run(kModular),
                {{}, {"dataset.train_noise=0.0", "train.weight_decay=0.0"}, {"model.lr_module_input=0.05"}}, "", 1e-4);
}

// moe's gate temperature, read by the batched forward through member_option: each member's own.
BOOST_AUTO_TEST_CASE(members_with_their_own_gate_temperatures_each_use_theirs) {
  check_members(kMoeToy, {{"model.temperature=1.0"}, {"model.temperature=0.25"}, {"model.temperature=3.0"}}, "", 1e-4);
  check_members(kMoeToy, {{"model.temperature=1.0", "model.method=\"pre_softmax\""}, {"model.temperature=0.5", "model.method=\"pre_softmax\""},
                          {"model.temperature=2.0", "model.method=\"pre_softmax\""}}, "", 1e-4);
}

// hier_modular's routing temperature, read by the batched forward through member_option: each
// member's own in the routing's σ((R + G)/τ) and, with location_tau = 0, in the shared modules'
// location softmax.
BOOST_AUTO_TEST_CASE(members_with_their_own_routing_temperatures_each_use_theirs) {
  const std::vector<std::vector<std::string>> taus{{"model.tau=2.0"}, {"model.tau=1.0"}, {"model.tau=0.5"}};
  check_members(boolean_run(kModular), taus, "", 1e-4);
  check_members(boolean_run(kShared), taus, "", 1e-4);
}

BOOST_AUTO_TEST_CASE(the_scheduler_groups_by_the_keys_plugins_declare_per_member_and_never_by_others) {
  const std::string text = boolean_run(kModular) + R"(
[run]
population = 64
[sweep]
grid = { "dataset.train_noise" = [0.0, 0.1], "model.lr_module_input" = [0.05, 0.1], "dataset.train_fraction" = [0.3, 0.5], "model.tau" = [1.0, 2.0], "model.routing_init" = ["randn", "known"] }
seeds = [0, 1]
)";
  const auto sweep = modlab::runner::expand_sweep(modlab::runner::parse_toml(text, "pop.toml"), "pop.toml", text);
  std::vector<const modlab::runner::RunSpec*> todo;
  for (const auto& r : sweep.runs) todo.push_back(&r);
  const auto groups = modlab::runner::population_groups(todo, default_registry());
  // 64 runs: train_fraction changes the batch and routing_init the initial routing (not per
  // member), so 4 groups of 16
  BOOST_TEST_REQUIRE(groups.size() == 4u);
  for (const auto& g : groups) {
    BOOST_TEST(g.size() == 16u);
    const auto key = [](const modlab::runner::RunSpec* r) {
      const modlab::Config c(r->config, "");
      return std::make_pair(c.sub("dataset").get<double>("train_fraction"), c.sub("model").get<std::string>("routing_init"));
    };
    for (const auto* r : g) BOOST_TEST((key(r) == key(g.front())));
  }
  const auto& some = *todo.front();
  BOOST_TEST(modlab::runner::member_key(some, "dataset.train_noise", default_registry()));
  BOOST_TEST(modlab::runner::member_key(some, "model.lr_module_input", default_registry()));
  BOOST_TEST(modlab::runner::member_key(some, "train.lr_groups.routing", default_registry()));
  BOOST_TEST(modlab::runner::member_key(some, "model.tau", default_registry()));
  BOOST_TEST(!modlab::runner::member_key(some, "model.routing_init", default_registry()));
  BOOST_TEST(!modlab::runner::member_key(some, "dataset.train_fraction", default_registry()));
}

#define BOOST_TEST_MODULE population
#include <boost/test/unit_test.hpp>

#include "fixture_registry.hpp"
#include "population_checks.hpp"

#include <modlab/population.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace modlab;
using namespace modlab::runner;
using namespace population_checks;
namespace fs = std::filesystem;

namespace {
Registry& registry() { return test_fixtures::basic_registry(); }

// fixture_mlp with `population = true`: a two-layer MLP whose loss is the default, per member.
const char* kBase = R"(
[dataset]
plugin = "fixture_blobs"
n = 240
[model]
plugin = "fixture_mlp"
hidden = 8
population = true
[train]
epochs = 4
batch_size = 16
optimizer = "adam"
lr = 0.01
grad_clip = 0.5
)";

RunRequest request(const fs::path& out, std::int64_t seed, const std::vector<std::string>& sets = {}) {
  return population_checks::request(kBase, out, seed, sets);
}
}  // namespace

BOOST_AUTO_TEST_CASE(member_mean_is_per_member_inside_a_population_only) {
  const auto x = torch::arange(6, torch::kFloat);  // members of 3 rows: 0 1 2 | 3 4 5
  BOOST_TEST(member_mean(x).dim() == 0);
  BOOST_TEST(member_mean(x).item<double>() == 2.5);
  PopulationScope scope(2);
  const auto m = member_mean(x);
  BOOST_TEST_REQUIRE(m.sizes() == torch::IntArrayRef({2}));
  BOOST_TEST(m[0].item<double>() == 1.0);
  BOOST_TEST(m[1].item<double>() == 4.0);
  BOOST_CHECK_THROW(member_mean(torch::ones({5})), Error);
}

BOOST_AUTO_TEST_CASE(member_option_gives_each_member_its_own_value_where_they_differ) {
  const auto rows = torch::ones({6, 2});  // 3 members of 2 rows
  BOOST_TEST(member_option("t", 0.5, rows).dim() == 0);  // outside a population: the model's own
  BOOST_TEST(member_option("t", 0.5, rows).item<double>() == 0.5);
  BOOST_CHECK_THROW(PopulationScope(3, {{"t", {1.0, 2.0}}}), Error);  // a value per member
  {
    PopulationScope scope(3, {{"t", {0.5, 2.0, 4.0}}});
    BOOST_TEST(member_option("other", 0.25, rows).dim() == 0);  // the members agree on it
    const auto per_row = member_option("t", 0.5, rows);
    BOOST_TEST_REQUIRE(per_row.sizes() == torch::IntArrayRef({6, 1}));
    BOOST_TEST(per_row.scalar_type() == torch::kFloat);
    BOOST_TEST(torch::equal(per_row.flatten(), torch::tensor({0.5, 0.5, 2.0, 2.0, 4.0, 4.0}, torch::kFloat)));
    const auto per_member = member_option("t", 0.5, torch::zeros({3}, torch::kDouble));  // a loss term [P]
    BOOST_TEST(torch::equal(per_member, torch::tensor({0.5, 2.0, 4.0}, torch::kDouble)));
    const auto columns = member_option("t", 0.5, torch::ones({5, 6}), 1);  // rows innermost: [E, P·B]
    BOOST_TEST_REQUIRE(columns.sizes() == torch::IntArrayRef({1, 6}));
    BOOST_TEST(columns[0][3].item<double>() == 2.0);
    BOOST_CHECK_THROW(member_option("t", 0.5, torch::ones({4, 2})), Error);  // 4 rows for 3 members
    {
      PopulationScope inner(2);
      BOOST_TEST(member_option("t", 0.5, rows).dim() == 0);  // an inner scope has its own options
    }
    BOOST_TEST(member_option("t", 0.5, rows).dim() == 2);  // and the outer ones come back
  }
  BOOST_TEST(member_option("t", 0.5, rows).dim() == 0);
}

BOOST_AUTO_TEST_CASE(each_member_equals_its_solo_run) {
  TempDir pop, solo;
  std::vector<RunRequest> members;
  for (std::int64_t seed : {1, 2, 3}) members.push_back(request(pop.path, seed));
  check_members_equal_solo(registry(), members, solo.path, 1e-5);
  for (const auto& m : members) BOOST_TEST(!fs::exists(RunPaths::of(pop.path.string(), m.run_id).checkpoint));
  // members differ from each other: each has its own initialisation and data order
  BOOST_TEST(final_metrics(members[0]).at("fit_loss") != final_metrics(members[1]).at("fit_loss"));
}

BOOST_AUTO_TEST_CASE(members_with_different_learning_rates_each_train_at_their_own) {
  TempDir pop, solo;
  std::vector<RunRequest> members{request(pop.path, 1, {"train.lr=0.01"}), request(pop.path, 1, {"train.lr=0.002"}),
                                  request(pop.path, 2, {"train.lr=0.05"})};
  check_members_equal_solo(registry(), members, solo.path, 1e-5);
  BOOST_TEST(final_metrics(members[0]).at("lr") == 0.01);
  BOOST_TEST(final_metrics(members[1]).at("lr") == 0.002);
}

BOOST_AUTO_TEST_CASE(members_with_different_weight_decays_each_decay_at_their_own) {
  // L2 decay (Adam: into the gradient) and decoupled decay (AdamW: on the weights at the member's
  // rate), with a learning rate that differs as well.
  for (const std::string optimizer : {"adam", "adamw"}) {
    TempDir pop, solo;
    const std::string opt = "train.optimizer=\"" + optimizer + "\"";
    std::vector<RunRequest> members{request(pop.path, 1, {opt, "train.weight_decay=0.0"}),
                                    request(pop.path, 1, {opt, "train.weight_decay=0.5"}),
                                    request(pop.path, 2, {opt, "train.weight_decay=0.1", "train.lr=0.002"})};
    check_members_equal_solo(registry(), members, solo.path, 1e-5);
    // the decay acts: the same seed and rate without it ends elsewhere
    BOOST_TEST(final_metrics(members[0]).at("fit_loss") != final_metrics(members[1]).at("fit_loss"), optimizer);
  }
}

BOOST_AUTO_TEST_CASE(members_may_differ_in_a_key_their_dataset_declares_per_member) {
  TempDir pop, solo;
  std::vector<RunRequest> members{request(pop.path, 1, {"dataset.spread=0.5"}), request(pop.path, 1, {"dataset.spread=2.0"}),
                                  request(pop.path, 2, {"dataset.spread=0.1", "train.lr_groups.head=0.05"})};
  check_members_equal_solo(registry(), members, solo.path, 1e-5);
  // each member read its own data: the same seed on wider blobs ends elsewhere
  BOOST_TEST(final_metrics(members[0]).at("fit_loss") != final_metrics(members[1]).at("fit_loss"));
  const RunSpec some{"", 0, 1, std::make_shared<const Value>(parse_toml(kBase, "pop.toml")), {}};
  BOOST_TEST(member_key(some, "dataset.spread", registry()));
  BOOST_TEST(!member_key(some, "dataset.n", registry()));
  BOOST_TEST(!member_key(some, "model.hidden", registry()));
}

BOOST_AUTO_TEST_CASE(a_diverging_member_fails_alone) {
  TempDir pop, solo;
  const std::vector<std::string> sgd{"train.optimizer=\"sgd\"", "train.grad_clip=0.0"};
  auto fast = sgd, slow = sgd;
  fast.push_back("train.lr=1000.0");
  slow.push_back("train.lr=0.1");
  std::vector<RunRequest> members{request(pop.path, 1, slow), request(pop.path, 2, fast), request(pop.path, 3, slow)};
  const auto outcomes = execute_population(registry(), logged(members));
  BOOST_TEST_REQUIRE((outcomes[1].status == RunStatus::Failed));
  BOOST_TEST(outcomes[1].error.find("non-finite loss") != std::string::npos, outcomes[1].error);
  const auto failed = read_run_summary(RunPaths::of(pop.path.string(), members[1].run_id).h5);
  BOOST_TEST_REQUIRE(failed.has_value());
  BOOST_TEST(failed->status == "failed");
  for (std::size_t m : {0u, 2u}) {
    BOOST_TEST_REQUIRE((outcomes[m].status == RunStatus::Completed), outcomes[m].error);
    RunRequest alone = moved_to(members[m], solo.path);
    BOOST_TEST_REQUIRE((execute_run(registry(), alone).status == RunStatus::Completed));
    check_same(members[m], alone, 1e-5);
  }
  // the solo run of the diverging member fails at the same step
  RunRequest alone = moved_to(members[1], solo.path);
  const auto solo_out = execute_run(registry(), alone);
  BOOST_TEST_REQUIRE((solo_out.status == RunStatus::Failed));
  BOOST_TEST(solo_out.error == outcomes[1].error);
}

BOOST_AUTO_TEST_CASE(a_killed_population_resumes_every_member) {
  TempDir pop, solo;
  std::vector<RunRequest> members = logged({request(pop.path, 1), request(pop.path, 2)});
  std::atomic<bool> stop{false};
  for (auto& r : members) r.stop = &stop;
  members[0].on_progress = [&](const Progress& p) {
    if (p.epoch == 2) stop = true;
  };
  auto outcomes = execute_population(registry(), members);
  for (std::size_t m = 0; m < members.size(); ++m) {
    BOOST_TEST_REQUIRE((outcomes[m].status == RunStatus::Interrupted), outcomes[m].error);
    BOOST_TEST(fs::exists(RunPaths::of(pop.path.string(), members[m].run_id).checkpoint));
  }
  stop = false;
  members[0].on_progress = nullptr;
  outcomes = execute_population(registry(), members);  // members with checkpoints resume on their own
  for (std::size_t m = 0; m < members.size(); ++m) {
    BOOST_TEST_REQUIRE((outcomes[m].status == RunStatus::Completed), outcomes[m].error);
    BOOST_TEST(read_log(members[m]).find("resuming from checkpoint") != std::string::npos);
    RunRequest alone = moved_to(members[m], solo.path);
    alone.stop = nullptr;
    BOOST_TEST_REQUIRE((execute_run(registry(), alone).status == RunStatus::Completed));
    check_same(members[m], alone, 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(a_model_with_a_loss_over_the_whole_batch_runs_its_members_alone) {
  TempDir pop, solo;
  std::vector<RunRequest> members{request(pop.path, 1, {"model.population=false"}),
                                  request(pop.path, 2, {"model.population=false"})};
  // solo runs: bit for bit
  check_members_equal_solo(registry(), members, solo.path, 0.0, "its loss term 'task' is computed over the whole folded batch");
}

BOOST_AUTO_TEST_CASE(grouping_takes_seeds_rates_and_decays_never_shapes) {
  const std::string text = std::string(kBase) + R"(
[run]
population = 3
[sweep]
grid = { "model.hidden" = [4, 8], "train.lr" = [0.01, 0.02], "train.weight_decay" = [0.0, 0.1], "train.lr_groups.head" = [0.01, 0.05] }
seeds = [0, 1]
)";
  const auto sweep = expand_sweep(parse_toml(text, "pop.toml"), "pop.toml", text);
  std::vector<const RunSpec*> todo;
  for (const auto& r : sweep.runs) todo.push_back(&r);
  const auto groups = population_groups(todo, registry());
  // 32 runs: for each width, 16 runs (2 rates x 2 decays x 2 head rates x 2 seeds) in groups of at most 3
  BOOST_TEST_REQUIRE(groups.size() == 12u);
  std::size_t total = 0;
  for (const auto& g : groups) {
    BOOST_TEST(g.size() <= 3u);
    total += g.size();
    for (const RunSpec* r : g) {
      const Config model(r->config, "");
      BOOST_TEST(model.sub("model").get<std::int64_t>("hidden") ==
                 Config(g.front()->config, "").sub("model").get<std::int64_t>("hidden"));
    }
  }
  BOOST_TEST(total == 32u);
  BOOST_TEST((population_groups(todo, registry()) == groups));  // deterministic
}

BOOST_AUTO_TEST_CASE(population_is_not_part_of_the_run_id_and_takes_auto) {
  auto runs_of = [](const std::string& run_table) {
    const std::string text = std::string(kBase) + run_table + "[sweep]\nseeds = [0, 1]\n";
    return expand_sweep(parse_toml(text, "pop.toml"), "pop.toml", text).runs;
  };
  const auto alone = runs_of(""), together = runs_of("[run]\npopulation = 8\n"), picked = runs_of("[run]\npopulation = \"auto\"\n");
  BOOST_TEST_REQUIRE(alone.size() == 2u);
  for (std::size_t i = 0; i < alone.size(); ++i) {
    BOOST_TEST(together[i].run_id == alone[i].run_id);  // the same run, the same file
    BOOST_TEST(picked[i].run_id == alone[i].run_id);
  }
  BOOST_TEST(population_of(alone[0]) == 1);
  BOOST_TEST(population_of(together[0]) == 8);
  BOOST_TEST(population_of(picked[0]) == kAutoPopulationLimit);
  try {
    runs_of("[run]\npopulation = \"many\"\n");
    BOOST_FAIL("a population that is neither a number nor \"auto\" was accepted");
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    BOOST_TEST(m.find("pop.toml:") != std::string::npos, m);
    BOOST_TEST(m.find("run.population: expected a number of runs (1 = alone) or \"auto\", got \"many\"") != std::string::npos, m);
  }
}

BOOST_AUTO_TEST_CASE(auto_trains_as_many_members_at_once_as_its_measurement_allows) {
  TempDir pop, solo;
  std::vector<RunRequest> members;
  for (std::int64_t seed : {1, 2, 3, 4, 5}) members.push_back(request(pop.path, seed, {"run.population=0"}));
  const auto outcomes = execute_population(registry(), logged(members));
  for (std::size_t m = 0; m < members.size(); ++m) {
    BOOST_TEST_REQUIRE((outcomes[m].status == RunStatus::Completed), outcomes[m].error);
    const auto log = read_log(members[m]);
    BOOST_TEST(log.find("population \"auto\": folded step time by size (1: ") != std::string::npos, log);
    BOOST_TEST(log.find("members at a time") != std::string::npos, log);
    BOOST_TEST(log.find("one member at a time") == std::string::npos, log);
    const auto alone = moved_to(members[m], solo.path);
    BOOST_TEST_REQUIRE((execute_run(registry(), alone).status == RunStatus::Completed));
    check_same(members[m], alone, 1e-5);
  }
}

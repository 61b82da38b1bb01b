// Shared pieces of the population tests (unit/test_population.cpp on the fixture plugins,
// plugins/test_population.cpp on the real ones): run requests from a config text, the final
// metrics of a run file, a member against its solo run, run logs.
#pragma once

#include <modlab/runner/h5.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include "../temp_dir.hpp"

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace population_checks {

namespace fs = std::filesystem;
using namespace modlab;
using namespace modlab::runner;

using modlab_test::TempDir;

/// The run of config `text` with `seed` and the `key=value` overrides `sets`, writing under `out`.
inline RunRequest request(const std::string& text, const fs::path& out, std::int64_t seed,
                          const std::vector<std::string>& sets = {}) {
  Value v = parse_toml(text, "test.toml");
  set_dotted(v, "run.seed", parse_override("run.seed=" + std::to_string(seed)).second);
  for (const auto& s : sets) {
    auto [k, val] = parse_override(s);
    set_dotted(v, k, val);
  }
  RunRequest r;
  r.config = std::make_shared<const Value>(v);
  r.run_id = run_id_of(v);
  r.seed = seed;
  r.sweep_name = "test";
  r.sweep_dir = out.string();
  r.out_dir = out.string();
  return r;
}

/// `r` writing under `out` instead.
inline RunRequest moved_to(RunRequest r, const fs::path& out) {
  r.out_dir = r.sweep_dir = out.string();
  return r;
}

inline std::map<std::string, double> final_metrics(const RunRequest& r) {
  auto s = read_run_summary(RunPaths::of(r.out_dir, r.run_id).h5);
  BOOST_TEST_REQUIRE(s.has_value());
  BOOST_TEST_REQUIRE(s->status == "completed", r.run_id << ": " << s->error);
  auto m = s->final_metrics;
  m.erase("time_s");
  return m;
}

/// Every final metric of a population member against its solo run: the same keys; values within
/// `tolerance` relative to max(1, |solo|) (the folded forward sums in another order than the solo one).
inline void check_same(const RunRequest& member, const RunRequest& solo, double tolerance) {
  const auto a = final_metrics(member), b = final_metrics(solo);
  BOOST_TEST_REQUIRE(a.size() == b.size());
  for (const auto& [k, v] : b) {
    BOOST_TEST_REQUIRE(a.count(k) == 1u, k);
    BOOST_TEST(std::abs(a.at(k) - v) <= tolerance * std::max(1.0, std::abs(v)),
               member.run_id << " " << k << ": population " << a.at(k) << ", solo " << v);
  }
}

inline std::string read_log(const RunRequest& r) {
  std::ifstream f(RunPaths::of(r.out_dir, r.run_id).log);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Requests whose logger appends to their run log, as a worker's do.
inline std::vector<RunRequest> logged(std::vector<RunRequest> rs) {
  for (auto& r : rs) {
    const auto path = RunPaths::of(r.out_dir, r.run_id).log;
    r.logger = [path](const std::string& m) { std::ofstream(path, std::ios::app) << m << "\n"; };
  }
  return rs;
}

/// Trains `members` as one population, then each alone under `solo`: every member completes, has
/// trained batched (`why` empty: no "one member at a time" in its log) or says `why` in its log,
/// and equals its solo run within `tolerance` (check_same).
inline void check_members_equal_solo(const Registry& registry, const std::vector<RunRequest>& members, const fs::path& solo,
                                     double tolerance, const std::string& why = "") {
  const auto outcomes = execute_population(registry, logged(members));
  BOOST_TEST_REQUIRE(outcomes.size() == members.size());
  for (std::size_t m = 0; m < members.size(); ++m) {
    BOOST_TEST_REQUIRE((outcomes[m].status == RunStatus::Completed), outcomes[m].error);
    const auto log = read_log(members[m]);
    if (why.empty())
      BOOST_TEST(log.find("one member at a time") == std::string::npos, log);
    else
      BOOST_TEST(log.find(why) != std::string::npos, log);
    const auto alone = moved_to(members[m], solo);
    BOOST_TEST_REQUIRE((execute_run(registry, alone).status == RunStatus::Completed));
    BOOST_TEST(alone.run_id == members[m].run_id);  // the same run, the same file name
    check_same(members[m], alone, tolerance);
  }
}

}  // namespace population_checks

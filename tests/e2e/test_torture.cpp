// kill -9 torture, kept short for CI: six rounds of `modlab run` on one folder, each killed with
// SIGKILL — the main process, one worker, or the whole process group — at a random moment or the
// moment a run completes (a killed worker's round ends with its group killed 0.3 s later). After
// each round no run file may be corrupt; after a last, uninterrupted
// run every run must be completed exactly once, `modlab verify` must pass, and every metric of
// every run must be bit-identical to a lone uninterrupted run of the same sweep.
#define BOOST_TEST_MODULE torture
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <hdf5.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <thread>

using namespace e2e;

namespace {

// 9 runs of 30 epochs × 10 steps × 10 ms, about 14 s of work at 2 jobs: each round ends long
// before the sweep would.
const char* kSweep = R"([run]
name = "torture"
[dataset]
plugin = "fixture_blobs"
n = 200
[model]
plugin = "fixture_mlp"
sleep_ms = 10
[train]
epochs = 30
batch_size = 20
lr = 0.01
checkpoint_every = 1
[sweep]
grid = { "model.hidden" = [4, 8, 16] }
seeds = [0, 1, 2]
)";

/// Processes whose parent is `pid` (the workers of a runner).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::istringstream stat(slurp(e.path() / "stat"));
    std::string comm_and_rest;
    std::getline(stat, comm_and_rest);
    const auto close = comm_and_rest.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(comm_and_rest.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == pid) out.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return out;
}

/// Every dataset below /metrics of a run file, as doubles.
std::map<std::string, std::vector<double>> metrics_of(const fs::path& file) {
  std::map<std::string, std::vector<double>> m;
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  BOOST_TEST_REQUIRE(f >= 0, file);
  const hid_t g = H5Gopen2(f, "/metrics", H5P_DEFAULT);
  BOOST_TEST_REQUIRE(g >= 0, file);
  H5G_info_t info;
  H5Gget_info(g, &info);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    char name[256];
    H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
    const hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    const hid_t space = H5Dget_space(d);
    std::vector<double> v(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)));
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    m[name] = v;
    H5Sclose(space);
    H5Dclose(d);
  }
  H5Gclose(g);
  H5Fclose(f);
  return m;
}

enum class Target { Main, Worker, Group };
const char* name_of(Target t) { return t == Target::Main ? "main" : t == Target::Worker ? "worker" : "group"; }

/// One round: start a runner, kill `target` after `delay_ms` (or, when negative, the moment the
/// next run file appears), wait for the runner to end.
std::string round(const std::vector<std::string>& args, const fs::path& log, Target target, int delay_ms,
                  const fs::path& runs) {
  const std::size_t done_before = count_files(runs, ".h5");
  const pid_t pid = start_modlab(args, log.string());
  if (delay_ms >= 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  else if (!wait_for([&] { return count_files(runs, ".h5") > done_before; }, 60)) return "no run completed";
  std::string what = name_of(target);
  if (target == Target::Main) kill(pid, SIGKILL);
  if (target == Target::Group) kill(-pid, SIGKILL);
  if (target == Target::Worker) {
    const auto workers = children_of(pid);
    if (workers.empty()) what += " (none running)";
    else kill(workers.front(), SIGKILL);
    // the runner records the run as failed and goes on; end the round before it finishes the sweep
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    kill(-pid, SIGKILL);
  }
  wait_exit(pid);
  if (target == Target::Main) {
    // its workers die with it (PR_SET_PDEATHSIG); wait until they are gone before the next round
    wait_for([&] { return children_of(pid).empty(); }, 10);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return what;
}

}  // namespace

BOOST_AUTO_TEST_CASE(kill_minus_9_rounds_leave_results_identical_to_an_uninterrupted_run) {
  TempDir d("torture");
  write(d.path / "t.toml", kSweep);
  const fs::path out = d.path / "out", lone = d.path / "lone", runs = out / "runs";
  const std::vector<std::string> args = {"run", (d.path / "t.toml").string(), "--jobs", "2", "--out", out.string(),
                                         "--plugin-path", fixture_plugins()};
  std::mt19937 rng(20261203);
  const Target targets[] = {Target::Main, Target::Worker, Target::Group};
  for (int r = 0; r < 6; ++r) {
    const Target t = targets[r % 3];
    const int delay = r < 3 ? std::uniform_int_distribution<int>(800, 2500)(rng) : -1;
    const auto what = round(args, d.path / ("round" + std::to_string(r) + ".log"), t, delay, runs);
    BOOST_TEST_MESSAGE("round " << r << ": killed " << what << (delay >= 0 ? " after " + std::to_string(delay) + " ms" : " at a run's completion"));
    BOOST_TEST(what.find("no run") == std::string::npos, "round " << r << ": " << what);
    // no corrupt file: every finished run file is sealed and whole
    std::error_code ec;
    for (auto it = fs::directory_iterator(runs, ec); !ec && it != fs::directory_iterator(); ++it) {
      const auto& e = *it;
      if (e.path().extension() != ".h5") continue;
      BOOST_TEST(modlab::runner::run_file_checksum_problem(e.path().string()).empty(), "round " << r << ": " << e.path());
      const auto s = modlab::runner::read_run_summary(e.path().string());
      BOOST_TEST_REQUIRE(s.has_value(), e.path());
      BOOST_TEST(s->run_id + ".h5" == e.path().filename().string());
    }
  }
  BOOST_TEST(count_files(runs, ".h5") < 9u);  // the rounds left work for the last run

  auto last = run_modlab("run " + quote((d.path / "t.toml").string()) + " --jobs 2 --out " + quote(out.string()) +
                         " --plugin-path " + quote(fixture_plugins()));
  BOOST_TEST_REQUIRE(last.code == 0, last.output);
  auto alone = run_modlab("run " + quote((d.path / "t.toml").string()) + " --jobs 2 --out " + quote(lone.string()) +
                          " --plugin-path " + quote(fixture_plugins()));
  BOOST_TEST_REQUIRE(alone.code == 0, alone.output);
  BOOST_TEST(run_modlab("verify " + quote(out.string())).code == 0);

  const auto rows = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST_REQUIRE(rows.size() == 9u);
  BOOST_TEST(count_files(runs, ".h5") == 9u);  // no run lost, none twice
  BOOST_TEST(count_files(runs, ".partial") == 0u);
  for (const auto& row : rows) {
    BOOST_TEST(row.status == "completed", row.run_id);
    const auto killed = metrics_of(runs / (row.run_id + ".h5")), clean = metrics_of(lone / "runs" / (row.run_id + ".h5"));
    BOOST_TEST(killed.at("epoch").size() == 30u, row.run_id);
    BOOST_TEST_REQUIRE(killed.size() == clean.size(), row.run_id);
    for (const auto& [name, values] : clean) {
      if (name.find("time") != std::string::npos) continue;  // wall-clock seconds differ by nature
      const auto& k = killed.at(name);
      BOOST_TEST_REQUIRE(k.size() == values.size(), row.run_id << " " << name);
      for (std::size_t i = 0; i < values.size(); ++i)  // bit-identical (NaN where the clean run has NaN)
        BOOST_TEST((std::memcmp(&k[i], &values[i], sizeof(double)) == 0), row.run_id << " " << name << "[" << i << "]");
    }
  }
}

#define BOOST_TEST_MODULE cli
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <cctype>
#include <cmath>
#include <chrono>
#include <set>
#include <sstream>
#include <thread>

using namespace e2e;

namespace {
const char* kSweep = R"([run]
name = "fx"
[dataset]
plugin = "fixture_blobs"
n = 200
[model]
plugin = "fixture_mlp"
[train]
epochs = 3
batch_size = 20
lr = 0.01
[sweep]
grid = { "model.hidden" = [4, 8] }
seeds = [0, 1]
)";

std::string plug() { return "--plugin-path " + quote(fixture_plugins()); }

std::map<std::string, modlab::runner::RunSummary> by_id(const fs::path& out) {
  std::map<std::string, modlab::runner::RunSummary> m;
  for (auto& r : modlab::runner::read_sweep_index(out.string())) m[r.run_id] = r;
  return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(version_and_help) {
  auto v = run_modlab("--version");
  BOOST_TEST(v.code == 0);
  BOOST_TEST(v.output.find("modlab 0.1.0") != std::string::npos, v.output);
  for (const char* c : {"run", "expand", "plugins", "show"}) {
    auto h = run_modlab(std::string(c) + " --help");
    BOOST_TEST(h.code == 0, c);
    BOOST_TEST(h.output.find(std::string("modlab ") + c) != std::string::npos, h.output);
  }
  // the exit codes are listed where a user looks for them
  auto help = run_modlab("--help");
  BOOST_TEST(help.code == 0);
  for (const char* line : {"exit codes:", "\n  0    every run completed", "\n  1    some runs failed",
                           "\n  2    bad input", "\n  130  interrupted"})
    BOOST_TEST(help.output.find(line) != std::string::npos, line << " in " << help.output);
  for (const char* line : {"plugins [NAME]", "MODLAB_PLUGIN_PATH", "MODLAB_DATA_DIR", "docs/"})
    BOOST_TEST(help.output.find(line) != std::string::npos, line << " in " << help.output);
  BOOST_TEST(run_modlab("run --help").output.find("130  interrupted") != std::string::npos);
  auto bad = run_modlab("frobnicate");
  BOOST_TEST(bad.code == 2);
  BOOST_TEST(bad.output.find("unknown command 'frobnicate'") != std::string::npos, bad.output);
}

BOOST_AUTO_TEST_CASE(plugins_lists_keys) {
  auto r = run_modlab("plugins " + plug());
  BOOST_TEST(r.code == 0, r.output);
  BOOST_TEST(r.output.find("model fixture_mlp") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("dataset fixture_blobs") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("sleep_ms") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("trainer [train]") != std::string::npos, r.output);
  // one plugin named by its file
  auto one = run_modlab("plugins fixture_mlp --plugin-path " + quote(fixture_plugins() + "/fixture_basic.so"));
  BOOST_TEST(one.code == 0, one.output);
  BOOST_TEST(one.output.find("model fixture_mlp") != std::string::npos, one.output);
  BOOST_TEST(one.output.find("dataset fixture_blobs") == std::string::npos, one.output);
  // a key the runs of a population may differ in says so
  auto blobs = run_modlab("plugins fixture_blobs " + plug());
  const auto spread = blobs.output.substr(blobs.output.find("  spread"));
  BOOST_TEST(spread.substr(0, spread.find('\n')).find("(may differ within a population)") != std::string::npos, blobs.output);
  BOOST_TEST(blobs.output.find("data seed (may differ") == std::string::npos, blobs.output);
  // a plugin (library) name shows all its entries; `plugins --help` offers no --set
  auto lib = run_modlab("plugins fixture_basic " + plug());
  BOOST_TEST(lib.code == 0, lib.output);
  for (const char* e : {"model fixture_mlp", "model fixture_wrapper", "dataset fixture_blobs"})
    BOOST_TEST(lib.output.find(e) != std::string::npos, e << " in " << lib.output);
  BOOST_TEST(run_modlab("plugins --help").output.find("--set") == std::string::npos);
  // a typo: exit 2, the closest name and every kind of name
  auto typo = run_modlab("plugins fixture_blbos " + plug());
  BOOST_TEST(typo.code == 2, typo.output);
  for (const char* m : {"no model, dataset or plugin named 'fixture_blbos'", "did you mean 'fixture_blobs'?",
                        "\n  models: ", "\n  datasets: ", "\n  plugins: ", "fixture_mlp", "fixture_basic"})
    BOOST_TEST(typo.output.find(m) != std::string::npos, m << " in " << typo.output);
}

// Every sweep example in docs/sweeps.md that names a dataset is a valid sweep: its dry run passes
// every check modlab makes before a run (keys, values, splits, the model's own checks).
BOOST_AUTO_TEST_CASE(the_sweep_examples_in_the_docs_pass_preflight) {
  const std::string doc = slurp(fs::path(MODLAB_TEST_SOURCE_DIR) / ".." / "docs" / "sweeps.md");
  TempDir d("docs");
  std::size_t n = 0;
  for (auto at = doc.find("```toml\n"); at != std::string::npos; at = doc.find("```toml\n", at + 1)) {
    const auto start = at + 8;
    const std::string block = doc.substr(start, doc.find("```", start) - start);
    if (block.find("[dataset]") == std::string::npos) continue;
    const auto file = d.path / ("example" + std::to_string(++n) + ".toml");
    write(file, block);
    auto r = run_modlab("run " + quote(file.string()) + " --dry-run --out " + quote((d.path / "out").string()));
    BOOST_TEST(r.code == 0, "docs/sweeps.md, example " << n << ":\n" << block << r.output);
  }
  BOOST_TEST(n >= 3u);
  BOOST_TEST(!fs::exists(d.path / "out"));
}

// A shard's dry run lists the runs that shard would run, not the whole sweep.
BOOST_AUTO_TEST_CASE(a_dry_run_of_a_shard_lists_its_runs_only) {
  TempDir d("shard_dry");
  write(d.path / "fx.toml", kSweep);
  auto r = run_modlab("run " + quote((d.path / "fx.toml").string()) + " --shard 1/2 --dry-run --out " +
                      quote((d.path / "out").string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  BOOST_TEST(r.output.find("2 runs of 4 (shard 1/2)") != std::string::npos, r.output);
  std::size_t rows = 0;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);)
    if (line.size() > 3 && std::isdigit(static_cast<unsigned char>(line[0])) && line.compare(1, 2, "  ") == 0) {
      ++rows;
      BOOST_TEST((line[0] == '1' || line[0] == '3'), line);  // indices 1 and 3: index % 2 == 1
    }
  BOOST_TEST(rows == 2u, r.output);
  BOOST_TEST(!fs::exists(d.path / "out"));
}

BOOST_AUTO_TEST_CASE(expand_run_rerun_show) {
  TempDir d("basic");
  write(d.path / "fx.toml", kSweep);
  auto e = run_modlab("expand " + quote((d.path / "fx.toml").string()) + " " + plug());
  BOOST_TEST(e.code == 0, e.output);
  BOOST_TEST(e.output.find("4 runs") != std::string::npos, e.output);
  BOOST_TEST(e.output.find("model.hidden") != std::string::npos, e.output);

  fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote((d.path / "fx.toml").string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  BOOST_TEST(count_files(out / "runs", ".h5") == 4u);
  BOOST_TEST(count_files(out / "runs", ".partial") == 0u);
  BOOST_TEST(count_files(out / "runs", ".ckpt") == 0u);
  auto rows = by_id(out);
  BOOST_TEST(rows.size() == 4u);
  for (auto& [id, s] : rows) {
    BOOST_TEST(s.status == "completed", id);
    BOOST_TEST(s.final_metrics.at("test_accuracy") > 0.7, id);
    BOOST_TEST(s.params.count("model.hidden") == 1u);
  }

  auto again = run_modlab("run " + quote((d.path / "fx.toml").string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(again.code == 0, again.output);
  BOOST_TEST(again.output.find("4 already completed, 0 to run") != std::string::npos, again.output);

  auto show = run_modlab("show " + quote(out.string()));
  BOOST_TEST(show.code == 0, show.output);
  BOOST_TEST(show.output.find("test_accuracy") != std::string::npos, show.output);
  BOOST_TEST(show.output.find("completed") != std::string::npos, show.output);

  // --set changes the config, hence the run ids: a new run, the old ones untouched
  auto more = run_modlab("run " + quote((d.path / "fx.toml").string()) + " --set train.epochs=2 --set 'sweep.seeds=[0]' --out " +
                     quote(out.string()) + " " + plug());
  BOOST_TEST(more.code == 0, more.output);
  BOOST_TEST(count_files(out / "runs", ".h5") == 6u);
}

// Through the scheduler and its workers: seeds train as populations and each member writes its solo
// run's file; a model that cannot batch gets its runs handed out one by one instead.
BOOST_AUTO_TEST_CASE(populations_through_the_scheduler) {
  TempDir d("population");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("[sweep]"), std::string::npos,
                "[sweep]\ngrid = { \"model.population\" = [true, false] }\nseeds = [0, 1, 2]\n");
  sweep.replace(sweep.find("name = \"fx\""), 11, "name = \"fx\"\npopulation = 3");
  write(d.path / "pop.toml", sweep);
  fs::path out = d.path / "out", solo = d.path / "solo";
  auto r = run_modlab("run " + quote((d.path / "pop.toml").string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  BOOST_TEST(r.output.find("(population of 3)") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("population of 3 cannot train as one (its run logs say why); its runs go one at a time") !=
                 std::string::npos,
             r.output);
  auto alone = run_modlab("run " + quote((d.path / "pop.toml").string()) + " --set run.population=1 --jobs 2 --out " +
                          quote(solo.string()) + " " + plug());
  BOOST_TEST_REQUIRE(alone.code == 0, alone.output);
  const auto together = by_id(out), single = by_id(solo);
  BOOST_TEST_REQUIRE(together.size() == 6u);
  for (const auto& [id, s] : together) {
    BOOST_TEST_REQUIRE(single.count(id) == 1u, id << " has another id alone");  // the same runs, the same ids
    BOOST_TEST(s.status == "completed", id);
    const auto log = slurp(out / "runs" / (id + ".log"));
    const bool batched = s.params.at("model.population") == "true";
    BOOST_TEST((log.find("one member at a time") == std::string::npos) == batched, log);
    BOOST_TEST(log.size() >= 10u);
    BOOST_TEST(log.compare(log.size() - 10, 10, "completed\n") == 0, log);  // a member's last line too
    const double a = s.final_metrics.at("test_loss"), b = single.at(id).final_metrics.at("test_loss");
    BOOST_TEST(std::abs(a - b) <= 1e-5 * std::max(1.0, std::abs(b)), id << ": " << a << " in a population, " << b << " alone");
  }
}

// One group that cannot batch: its runs come back one at a time to the one worker the group was
// given all the threads for, not to more workers (which would oversubscribe them).
BOOST_AUTO_TEST_CASE(a_handed_back_group_stays_on_its_worker) {
  TempDir d("population_one_group");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("[sweep]"), std::string::npos, "[sweep]\nseeds = [0, 1, 2]\n");
  sweep.replace(sweep.find("name = \"fx\""), 11, "name = \"fx\"\npopulation = 3");
  write(d.path / "one_group.toml", sweep);
  fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote((d.path / "one_group.toml").string()) + " --jobs 2 --threads 2 --set model.population=false --out " +
                      quote(out.string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  std::set<std::string> workers;
  for (const auto& [id, s] : by_id(out)) {
    const auto log = slurp(out / "runs" / (id + ".log"));
    const auto at = log.rfind("2 threads, cpu, worker ");
    BOOST_TEST_REQUIRE(at != std::string::npos, log);
    workers.insert(log.substr(at, log.find(')', at) - at));
  }
  BOOST_TEST(workers.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_sweep_of_one_run) {
  TempDir d("single");
  std::string sweep = kSweep;
  write(d.path / "one.toml", sweep.substr(0, sweep.find("[sweep]")));
  fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote((d.path / "one.toml").string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  auto rows = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST_REQUIRE(rows.size() == 1u);
  BOOST_TEST(rows[0].status == "completed");
  BOOST_TEST(rows[0].seed == 0);
}

BOOST_AUTO_TEST_CASE(a_crashing_run_does_not_take_the_sweep_down) {
  TempDir d("crash");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("grid = {"), std::string::npos,
                "grid = { \"model.fail\" = [\"\", \"segv\", \"abort\", \"throw\", \"torch\"] }\n");
  write(d.path / "crash.toml", sweep);
  fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote((d.path / "crash.toml").string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(r.code == 1, r.output);
  std::map<std::string, std::string> status_by_fail;
  for (auto& s : modlab::runner::read_sweep_index(out.string())) {
    std::string fail = s.params.at("model.fail");
    status_by_fail[fail] = s.status + ": " + s.error;
  }
  BOOST_TEST(status_by_fail.at("\"\"").rfind("completed", 0) == 0u, status_by_fail.at("\"\""));
  BOOST_TEST(status_by_fail.at("\"segv\"").find("failed: worker killed by signal 11 (SIGSEGV)") == 0u,
             status_by_fail.at("\"segv\""));
  BOOST_TEST(status_by_fail.at("\"abort\"").find("SIGABRT") != std::string::npos, status_by_fail.at("\"abort\""));
  BOOST_TEST(status_by_fail.at("\"throw\"").find("fixture model failed on purpose") != std::string::npos,
             status_by_fail.at("\"throw\""));
  // LibTorch's own error: one line in the index, the backtrace only in the run log
  const std::string torch_error = status_by_fail.at("\"torch\"");
  BOOST_TEST(torch_error.find("mat1 and mat2 shapes cannot be multiplied") != std::string::npos, torch_error);
  BOOST_TEST(torch_error.find('\n') == std::string::npos, torch_error);
  BOOST_TEST(torch_error.find("the whole message is in the run log") != std::string::npos, torch_error);
  for (auto& s : modlab::runner::read_sweep_index(out.string()))
    if (s.params.at("model.fail") == "\"torch\"")
      BOOST_TEST(slurp(out / "runs" / (s.run_id + ".log")).find("Exception raised from") != std::string::npos);
  BOOST_TEST(r.output.find("FAILED") != std::string::npos);

  // rerunning retries only the failed ones (they fail again, the completed one is skipped)
  auto again = run_modlab("run " + quote((d.path / "crash.toml").string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(again.code == 1);
  BOOST_TEST(again.output.find("1 already completed, 4 to run") != std::string::npos, again.output);
}

BOOST_AUTO_TEST_CASE(a_non_finite_loss_fails_its_run_with_one_line_naming_step_and_term_exit_1) {
  TempDir d("nan");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("grid = {"), std::string::npos, "grid = { \"model.fail\" = [\"\", \"nan\"] }\n");
  write(d.path / "nan.toml", sweep);
  fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote((d.path / "nan.toml").string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(r.code == 1, r.output);
  std::size_t failed = 0;
  for (auto& s : modlab::runner::read_sweep_index(out.string())) {
    if (s.status != "failed") continue;
    ++failed;
    // fixture_blobs n = 200, batch 20: 10 steps per epoch; the loss turns NaN at global epoch 1
    BOOST_TEST(s.error == "non-finite loss at step 10 (phase train, epoch 1): term 'task' = nan", s.error);
  }
  BOOST_TEST(failed == 1u);  // of the two runs, the one with fail = "nan"
}

// sweep.h5 is there from the first runs' start, listing them as running, so `modlab show` (and
// --group-by over the seeds) works while the sweep goes on.
BOOST_AUTO_TEST_CASE(show_lists_running_runs_while_the_sweep_goes_on) {
  TempDir d("show_live");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("plugin = \"fixture_mlp\""), 22, "plugin = \"fixture_mlp\"\nsleep_ms = 20");
  write(d.path / "live.toml", sweep);
  const fs::path out = d.path / "out";
  pid_t pid = start_modlab({"run", (d.path / "live.toml").string(), "--jobs", "1", "--out", out.string(),
                            "--plugin-path", fixture_plugins()},
                           (d.path / "run.log").string());
  Result live;
  const bool seen = wait_for([&] {
    live = run_modlab("show " + quote(out.string()));
    return live.code == 0 && live.output.find(" running ") != std::string::npos;
  }, 60);
  BOOST_TEST(seen, live.output << slurp(d.path / "run.log"));
  BOOST_TEST(live.output.find(" pending ") != std::string::npos, live.output);  // one job: the others wait
  BOOST_TEST_REQUIRE(wait_exit(pid) == 0, slurp(d.path / "run.log"));
  auto grouped = run_modlab("show " + quote(out.string()) + " --group-by --csv --metrics mean_logit");
  BOOST_TEST(grouped.code == 0, grouped.output);
  BOOST_TEST(grouped.output.rfind("model.hidden,runs,", 0) == 0, grouped.output);
  BOOST_TEST(grouped.output.find(",2/2,") != std::string::npos, grouped.output);
  BOOST_TEST(grouped.output.find(" ± ") != std::string::npos, grouped.output);
}

BOOST_AUTO_TEST_CASE(kill_minus_9_then_rerun_resumes_everything) {
  TempDir d("kill");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("epochs = 3"), 10, "epochs = 6");
  sweep.replace(sweep.find("[train]"), 7, "[train]\ncheckpoint_every = 1");
  sweep.replace(sweep.find("plugin = \"fixture_mlp\""), 22, "plugin = \"fixture_mlp\"\nsleep_ms = 15");
  write(d.path / "kill.toml", sweep);
  fs::path out = d.path / "out";
  pid_t pid = start_modlab({"run", (d.path / "kill.toml").string(), "--jobs", "2", "--out", out.string(),
                            "--plugin-path", fixture_plugins()},
                           (d.path / "first.log").string());
  // wait until some run has checkpointed mid-way, then kill the whole process group
  bool mid = wait_for([&] { return count_files(out / "runs", ".ckpt") > 0; }, 60);
  BOOST_TEST_REQUIRE(mid, slurp(d.path / "first.log"));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  kill(-pid, SIGKILL);
  wait_exit(pid);
  BOOST_TEST(count_files(out / "runs", ".partial") + count_files(out / "runs", ".ckpt") > 0u);

  auto r = run_modlab("run " + quote((d.path / "kill.toml").string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  auto rows = by_id(out);
  BOOST_TEST(rows.size() == 4u);
  bool resumed = false;
  for (auto& [id, s] : rows) {
    BOOST_TEST(s.status == "completed", id);
    resumed = resumed || slurp(out / "runs" / (id + ".log")).find("resuming from checkpoint") != std::string::npos;
  }
  BOOST_TEST(resumed);
  BOOST_TEST(count_files(out / "runs", ".partial") == 0u);
  if (has_python_h5py()) {
    // every run file has exactly 6 epochs, 0..5, once each
    auto py = sh("/usr/bin/python3 -c \"import h5py,glob,sys\nfor p in glob.glob(sys.argv[1]+'/runs/*.h5'):\n"
                 "  e=list(h5py.File(p,'r')['metrics/epoch'][:])\n  assert e==list(range(6)),(p,e)\nprint('ok')\" " +
                 quote(out.string()));
    BOOST_TEST(py.code == 0, py.output);
  }
}

BOOST_AUTO_TEST_CASE(ctrl_c_stops_cleanly) {
  TempDir d("sigint");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("plugin = \"fixture_mlp\""), 22, "plugin = \"fixture_mlp\"\nsleep_ms = 20");
  write(d.path / "int.toml", sweep);
  fs::path out = d.path / "out";
  pid_t pid = start_modlab({"run", (d.path / "int.toml").string(), "--jobs", "1", "--out", out.string(),
                            "--plugin-path", fixture_plugins()},
                           (d.path / "run.log").string());
  bool one_done = wait_for([&] { return count_files(out / "runs", ".h5") >= 1; }, 60);
  BOOST_TEST_REQUIRE(one_done, slurp(d.path / "run.log"));
  kill(-pid, SIGINT);  // what a terminal's Ctrl-C does: the whole foreground group
  int code = wait_exit(pid);
  BOOST_TEST(code == 130, slurp(d.path / "run.log"));
  auto rows = by_id(out);
  std::size_t completed = 0;
  for (auto& [id, s] : rows) completed += s.status == "completed";
  BOOST_TEST(completed >= 1u);
  BOOST_TEST(completed < 4u);
  auto r = run_modlab("run " + quote((d.path / "int.toml").string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(r.code == 0, r.output);
  for (auto& [id, s] : by_id(out)) BOOST_TEST(s.status == "completed", id);
}

struct BadCase {
  std::string name, sweep, extra, expect;
};

BOOST_AUTO_TEST_CASE(bad_input_one_line_exit_2_nothing_written) {
  std::string base = kSweep;
  std::vector<BadCase> cases = {
      {"malformed", "[run]\nname = \"x\n", "", "malformed.toml:2:"},
      {"unknown_plugin", "[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"moee_nope\"\n", "",
       "unknown model plugin 'moee_nope'"},
      {"misspelled_key", "[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"fixture_mlp\"\nhiden = 4\n", "",
       "did you mean 'model.hidden'"},
      {"wrong_type", "[dataset]\nplugin = \"fixture_blobs\"\n[model]\nplugin = \"fixture_mlp\"\nhidden = \"four\"\n", "",
       "model.hidden: expected integer, found string"},
      {"empty_axis", base.substr(0, base.find("[sweep]")) + "[sweep]\ngrid = { \"model.hidden\" = [] }\n", "",
       "at least one value"},
      {"zip_lengths",
       base.substr(0, base.find("[sweep]")) + "[sweep]\n[[sweep.zip]]\n\"model.hidden\" = [1, 2]\n\"train.lr\" = [0.1]\n", "",
       "length"},
      {"collision", base.substr(0, base.find("[sweep]")) + "[sweep]\nseeds = [1, 1]\n", "", "same config"},
      {"out_is_file", kSweep, "FILE", "is not a folder"},
  };
  for (const auto& c : cases) {
    TempDir d("bad_" + c.name);
    fs::path sweep = d.path / (c.name + ".toml");
    write(sweep, c.sweep);
    fs::path out = d.path / "out";
    if (c.extra == "FILE") write(out, "i am a file");
    auto r = run_modlab("run " + quote(sweep.string()) + " --out " + quote(out.string()) + " " + plug());
    BOOST_TEST(r.code == 2, c.name << ": " << r.output);
    BOOST_TEST(r.output.find(c.expect) != std::string::npos, c.name << ": " << r.output);
    // one line
    BOOST_TEST(std::count(r.output.begin(), r.output.end(), '\n') == 1, c.name << ": " << r.output);
    if (c.extra != "FILE") BOOST_TEST(!fs::exists(out), c.name);
    else BOOST_TEST(slurp(out) == "i am a file");
  }
}

// A value out of its declared range in one run of a grid stops the sweep before any run starts,
// naming the file, line and key.
BOOST_AUTO_TEST_CASE(out_of_range_value_in_one_run_stops_the_sweep_before_it_starts) {
  std::string base = kSweep;
  struct Case {
    std::string name, sweep, expect;
  };
  const std::vector<Case> cases = {
      {"grid_lr", base.substr(0, base.find("[sweep]")) + "[sweep]\ngrid = { \"train.lr\" = [0.01, 0.0] }\n",
       ":13:30: train.lr: expected a finite number in (0, 1000], got 0.0"},
      {"model_hidden", base.substr(0, base.find("[model]")) + "[model]\nplugin = \"fixture_mlp\"\nhidden = 0\n[train]\n",
       ":8:10: model.hidden: expected an integer >= 1, got 0"},
      {"nested_model", base.substr(0, base.find("[model]")) +
                           "[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nplugin = \"fixture_mlp\"\nsleep_ms = -5\n",
       ":10:12: model.inner.sleep_ms: expected an integer >= 0, got -5"},
      // Found by building the dataset once before any run: blobs have no lengths to bucket by.
      {"bucket", base.substr(0, base.find("[sweep]")) + "bucket = 2\n" + base.substr(base.find("[sweep]")),
       ":12:10: train.bucket: dataset 'fixture_blobs' gives no example lengths to bucket by"},
  };
  for (const auto& c : cases) {
    TempDir d("range_" + c.name);
    fs::path sweep = d.path / (c.name + ".toml");
    write(sweep, c.sweep);
    fs::path out = d.path / "out";
    auto r = run_modlab("run " + quote(sweep.string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug());
    BOOST_TEST(r.code == 2, c.name << ": " << r.output);
    BOOST_TEST(r.output.find(sweep.string() + c.expect) != std::string::npos, c.name << ": " << r.output);
    BOOST_TEST(std::count(r.output.begin(), r.output.end(), '\n') == 1, c.name << ": " << r.output);
    BOOST_TEST(!fs::exists(out), c.name);  // no run started, nothing written
  }
}

// Every problem of every run is reported by one invocation, each once (all runs share the
// misspelled key), under a line that counts them; nothing is written.
BOOST_AUTO_TEST_CASE(every_problem_of_a_sweep_is_reported_at_once) {
  TempDir d("many_problems");
  const fs::path sweep = d.path / "many.toml";
  write(sweep, "[run]\nname = \"many\"\n[dataset]\nplugin = \"fixture_blobs\"\nn = 200\n[model]\nplugin = \"fixture_mlp\"\n"
               "hiden = 4\n[train]\nepochs = 0\noptimiser = \"adam\"\n[trian]\nx = 1\n"
               "[sweep]\ngrid = { \"train.lr\" = [0.01, 0.0] }\n");
  const fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote(sweep.string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("modlab: error: 5 problems in " + sweep.string() + ":\n") != std::string::npos, r.output);
  for (const char* line : {":8:9: unknown key 'model.hiden' (did you mean 'model.hidden'?)", ":10:10: train.epochs: expected",
                           ":11:13: unknown key 'train.optimiser' (did you mean 'train.optimizer'?)",
                           ":12:1: unknown table 'trian' (did you mean 'train'?)", ":15:30: train.lr: expected"})
    BOOST_TEST(r.output.find("\n  " + sweep.string() + line) != std::string::npos, line << "\n" << r.output);
  BOOST_TEST(std::count(r.output.begin(), r.output.end(), '\n') == 6, r.output);
  BOOST_TEST(!fs::exists(out));
}

BOOST_AUTO_TEST_CASE(results_read_back_with_h5py_and_h5dump) {
  if (!has_python_h5py()) {
    BOOST_TEST_MESSAGE("skipped: /usr/bin/python3 cannot import h5py (install python3-h5py)");
    return;
  }
  TempDir d("h5py");
  write(d.path / "fx.toml", kSweep);
  fs::path out = d.path / "out";
  auto r = run_modlab("run " + quote((d.path / "fx.toml").string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug());
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  auto py = sh("cd / && /usr/bin/python3 " + quote(std::string(MODLAB_TEST_SOURCE_DIR) + "/e2e/check_sweep.py") + " " +
               quote(out.string()) + " 4 3");
  BOOST_TEST(py.code == 0, py.output);
  auto dump = sh("h5dump -A " + quote((out / "sweep.h5").string()));
  BOOST_TEST(dump.code == 0, dump.output);
  BOOST_TEST(dump.output.find("summary") != std::string::npos);
  for (auto& e : fs::directory_iterator(out / "runs")) {
    if (e.path().extension() != ".h5") continue;
    auto one = sh("h5dump -d /metrics/test_accuracy " + quote(e.path().string()));
    BOOST_TEST(one.code == 0, one.output);
    BOOST_TEST(one.output.find("DATASPACE  SIMPLE { ( 3 ) / ( H5S_UNLIMITED ) }") != std::string::npos, one.output);
  }
}

// A completed run is trusted only when its file is intact and is the file of that run: a file
// replaced by another run's, or with bytes changed, is reported by `modlab verify`, moved aside
// (never deleted) by the next `modlab run`, and the run is done again.
BOOST_AUTO_TEST_CASE(a_results_folder_cannot_lie) {
  TempDir d("lie");
  write(d.path / "fx.toml", kSweep);
  const fs::path out = d.path / "out";
  const std::string run = "run " + quote((d.path / "fx.toml").string()) + " --jobs 2 --out " + quote(out.string()) + " " + plug();
  BOOST_TEST_REQUIRE(run_modlab(run).code == 0);
  auto v = run_modlab("verify " + quote(out.string()));
  BOOST_TEST(v.code == 0, v.output);
  BOOST_TEST(v.output.find("4 run files, 0 with a problem") != std::string::npos, v.output);
  const auto rows = modlab::runner::read_sweep_index(out.string());
  const std::string a = rows[0].run_id, b = rows[1].run_id, c = rows[2].run_id;
  const auto runs = out / "runs";
  fs::copy_file(runs / (b + ".h5"), runs / (a + ".h5"), fs::copy_options::overwrite_existing);
  {
    std::fstream f(runs / (c + ".h5"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(runs / (c + ".h5")) / 2));
    f.write(std::string(64, '\x5a').data(), 64);
  }
  v = run_modlab("verify " + quote(out.string()));
  BOOST_TEST(v.code == 1, v.output);
  BOOST_TEST(v.output.find(a + ".h5: it is the file of run " + b + ", not " + a) != std::string::npos, v.output);
  BOOST_TEST(v.output.find(c + ".h5: its contents changed after it was written") != std::string::npos, v.output);
  BOOST_TEST(v.output.find("4 run files, 2 with a problem") != std::string::npos, v.output);

  auto again = run_modlab(run);
  BOOST_TEST(again.code == 0, again.output);
  BOOST_TEST(again.output.find("run " + a + ": its file cannot be trusted (it is the file of run " + b) != std::string::npos,
             again.output);
  BOOST_TEST(again.output.find("2 already completed, 2 to run") != std::string::npos, again.output);
  std::size_t aside = 0;
  for (const auto& e : fs::directory_iterator(runs)) aside += e.path().filename().string().find(".h5.rejected-") != std::string::npos;
  BOOST_TEST(aside == 2u);  // kept, not deleted
  for (const auto& [id, s] : by_id(out)) BOOST_TEST(s.status == "completed", id);
  BOOST_TEST(run_modlab("verify " + quote(out.string())).code == 0);

  // Another sweep never replaces this folder's index.
  std::string other = kSweep;
  other.replace(other.find("name = \"fx\""), 11, "name = \"other\"");
  write(d.path / "other.toml", other);
  auto refused = run_modlab("run " + quote((d.path / "other.toml").string()) + " --out " + quote(out.string()) + " " + plug());
  BOOST_TEST(refused.code == 2, refused.output);
  BOOST_TEST(refused.output.find("holds the results of sweep 'fx', not 'other'") != std::string::npos, refused.output);
  BOOST_TEST(modlab::runner::read_sweep_index(out.string()).size() == 4u);
}

// Two runners of one sweep on one folder split the runs (a lock per run) and leave the results a
// lone runner leaves.
BOOST_AUTO_TEST_CASE(two_runners_on_one_folder_share_the_work) {
  TempDir d("two");
  std::string sweep = kSweep;
  sweep.replace(sweep.find("plugin = \"fixture_mlp\""), 22, "plugin = \"fixture_mlp\"\nsleep_ms = 10");
  sweep.replace(sweep.find("seeds = [0, 1]"), 14, "seeds = [0, 1, 2]");
  write(d.path / "two.toml", sweep);
  const fs::path out = d.path / "out", lone = d.path / "lone";
  std::vector<pid_t> pids;
  for (const char* log : {"a.log", "b.log"})
    pids.push_back(start_modlab({"run", (d.path / "two.toml").string(), "--jobs", "1", "--out", out.string(),
                                 "--plugin-path", fixture_plugins()},
                                (d.path / log).string()));
  for (pid_t p : pids) BOOST_TEST(wait_exit(p) == 0);
  const std::string logs = slurp(d.path / "a.log") + slurp(d.path / "b.log");
  std::size_t ran = 0;
  for (std::size_t at = logs.find("completed in"); at != std::string::npos; at = logs.find("completed in", at + 1)) ++ran;
  BOOST_TEST(ran == 6u, logs);  // every run once, by one of the two
  BOOST_TEST(logs.find("FAILED") == std::string::npos, logs);
  BOOST_TEST(run_modlab("run " + quote((d.path / "two.toml").string()) + " --out " + quote(lone.string()) + " " + plug()).code == 0);
  const auto shared = by_id(out), alone = by_id(lone);
  BOOST_TEST_REQUIRE(shared.size() == 6u);
  for (const auto& [id, s] : alone) {
    BOOST_TEST_REQUIRE(shared.count(id) == 1u, id);
    BOOST_TEST(shared.at(id).status == "completed", id);
    BOOST_TEST(shared.at(id).final_metrics.at("test_accuracy") == s.final_metrics.at("test_accuracy"), id);
  }
  BOOST_TEST(run_modlab("verify " + quote(out.string())).code == 0);
}

// `modlab slurm`'s job script: array size, CPUs, the `modlab run --shard` line each task runs
// (executed here with printf standing in for modlab, so quoting is checked by bash itself), and
// the task / jobs arithmetic with its errors. The real Slurm test is python/tests/test_slurm.py.
#define BOOST_TEST_MODULE slurm
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/slurm.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

using namespace modlab::runner;
namespace fs = std::filesystem;

namespace {

SlurmJob job() {
  SlurmJob j;
  j.sweep_name = "grid";
  j.exe = "/opt/modlab/bin/modlab";
  j.sweep_file = "/home/me/my sweeps/grid.toml";
  j.out_dir = "/scratch/results/grid";
  j.run_args = {"--set", "model.name=it's", "--plugin-path", "/p"};
  j.runs = 10;
  j.tasks = 4;
  j.cpus_per_task = 2;
  j.jobs = 2;
  return j;
}

/// What the script's last line passes to modlab, one [argument] per line: the script runs with
/// SLURM_ARRAY_TASK_ID=task (and `env`), a stand-in executable printing its arguments as modlab.
std::string arguments_passed(SlurmJob j, int task, const std::string& env = "") {
  const modlab_test::TempDir temp("slurm");
  const fs::path& dir = temp.path;
  j.exe = (dir / "print-args").string();
  std::ofstream(j.exe) << "#!/bin/sh\nprintf '[%s]\\n' \"$@\"\n";
  fs::permissions(j.exe, fs::perms::owner_all);
  std::ofstream(dir / "job.sh") << slurm_script(j);
  FILE* p = popen((env + " SLURM_ARRAY_TASK_ID=" + std::to_string(task) + " bash " + (dir / "job.sh").string() + " 2>&1").c_str(), "r");
  std::string out;
  char buf[512];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  return out;
}

std::string error_of(int runs, int requested) {
  try {
    slurm_task_count(runs, requested);
  } catch (const modlab::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(script_asks_for_the_array_and_cpus) {
  const std::string s = slurm_script(job());
  BOOST_TEST(s.rfind("#!/bin/bash\n", 0) == 0);
  BOOST_TEST(s.find("#SBATCH --array=0-3\n") != std::string::npos);
  BOOST_TEST(s.find("#SBATCH --cpus-per-task=2\n") != std::string::npos);
  BOOST_TEST(s.find("#SBATCH --job-name=modlab-grid\n") != std::string::npos);
  BOOST_TEST(s.find("#SBATCH --output=/scratch/results/grid/slurm/%A_%a.out\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(each_task_runs_its_shard_with_every_argument_intact) {
  const std::string out = arguments_passed(job(), 3, "SLURM_CPUS_PER_TASK=2");
  BOOST_TEST(out == "[run]\n[/home/me/my sweeps/grid.toml]\n[--out]\n[/scratch/results/grid]\n[--shard]\n[3/4]\n"
                    "[--jobs]\n[2]\n[--threads]\n[2]\n[--set]\n[model.name=it's]\n[--plugin-path]\n[/p]\n");
}

BOOST_AUTO_TEST_CASE(threads_default_to_the_cpus_asked_for_outside_slurm) {
  SlurmJob j = job();
  j.cpus_per_task = 3;
  BOOST_TEST(arguments_passed(j, 0).find("[--threads]\n[3]\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(shell_quote_survives_quotes_and_spaces) {
  BOOST_TEST(shell_quote("a b") == "'a b'");
  BOOST_TEST(shell_quote("it's") == "'it'\\''s'");
  BOOST_TEST(shell_quote("") == "''");
}

BOOST_AUTO_TEST_CASE(task_count_defaults_to_one_per_run_and_checks_requests) {
  BOOST_TEST(slurm_task_count(6, 0) == 6);
  BOOST_TEST(slurm_task_count(5000, 0) == 1000);
  BOOST_TEST(slurm_task_count(6, 2) == 2);
  BOOST_TEST(error_of(6, 7).find("--tasks 7: the sweep has only 6 runs") != std::string::npos);
  BOOST_TEST(error_of(6, -1).find("--tasks: expected 0") != std::string::npos);
  BOOST_TEST(error_of(0, 0).find("no runs") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(jobs_fill_the_cpus_but_not_beyond_a_shard) {
  BOOST_TEST(slurm_jobs_per_task(10, 4, 2, 0) == 2);  // shards of 3 and 2 runs, 2 CPUs
  BOOST_TEST(slurm_jobs_per_task(10, 10, 8, 0) == 1); // one run per task
  BOOST_TEST(slurm_jobs_per_task(10, 2, 8, 0) == 5);
  BOOST_TEST(slurm_jobs_per_task(10, 2, 8, 3) == 3);
  BOOST_CHECK_THROW(slurm_jobs_per_task(10, 2, 0, 0), modlab::ConfigError);
}

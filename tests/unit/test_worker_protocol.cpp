// The lines between the scheduler and its workers, the named codes a run ends with, and the
// default number of threads.
#define BOOST_TEST_MODULE worker_protocol
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"

#include <modlab/runner/exit_codes.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/worker_protocol.hpp>

#include <sched.h>

#include <filesystem>
#include <fstream>

#include <string>
#include <vector>

using namespace modlab::runner;
using namespace modlab::runner::protocol;

BOOST_AUTO_TEST_CASE(run_commands_round_trip) {
  RunCommand c{"a1b2c3", 7, 42, "/out/runs/a1b2c3.toml"};
  const std::string line = format_run_command(c);
  BOOST_TEST(line == "run a1b2c3 7 42 /out/runs/a1b2c3.toml\n");
  auto back = parse_run_command(line.substr(0, line.size() - 1));
  BOOST_TEST_REQUIRE(back.has_value());
  BOOST_TEST(back->run_id == c.run_id);
  BOOST_TEST(back->index == 7);
  BOOST_TEST(back->seed == 42);
  BOOST_TEST(back->spec_file == c.spec_file);
  BOOST_TEST(!parse_run_command("walk a1b2c3 7 42 x").has_value());
  BOOST_TEST(!parse_run_command("run a1b2c3 seven 42 x").has_value());
}

BOOST_AUTO_TEST_CASE(population_commands_are_a_header_and_one_run_line_per_member) {
  const std::vector<RunCommand> members{{"a1", 0, 1, "/out/runs/a1.toml"}, {"b2", 1, 2, "/out/runs/b2.toml"}};
  BOOST_TEST(format_population_command(members) == "population 2\nrun a1 0 1 /out/runs/a1.toml\nrun b2 1 2 /out/runs/b2.toml\n");
  BOOST_TEST(parse_population_header("population 2").value_or(0) == 2u);
  BOOST_TEST(!parse_population_header("population 0").has_value());
  BOOST_TEST(!parse_population_header("population").has_value());
  BOOST_TEST(!parse_population_header("run a1 0 1 /x.toml").has_value());
  BOOST_TEST(!parse_run_command("population 2").has_value());
}

BOOST_AUTO_TEST_CASE(progress_and_done_lines_round_trip) {
  Progress p{"pretrain", 3, 10, 1, 2, 0.1234567, 480};
  const std::string line = format_progress(p);
  BOOST_TEST(line == "progress pretrain 1 2 3 10 0.123457 480\n");
  auto back = parse_worker_line(line.substr(0, line.size() - 1));
  BOOST_TEST_REQUIRE(back.has_value());
  BOOST_TEST((back->kind == WorkerLine::Kind::Progress));
  BOOST_TEST(back->progress.phase == "pretrain");
  BOOST_TEST(back->progress.epoch == 3);
  BOOST_TEST(back->progress.phases == 2);
  BOOST_TEST(back->progress.step == 480);

  BOOST_TEST(format_done(WorkerCode::Failed) == "done 3\n");
  auto done = parse_worker_line("done 130");
  BOOST_TEST_REQUIRE(done.has_value());
  BOOST_TEST((done->kind == WorkerLine::Kind::Done));
  BOOST_TEST(done->code == static_cast<int>(WorkerCode::Interrupted));
  BOOST_TEST(!parse_worker_line("progress half a line").has_value());
  BOOST_TEST(!parse_worker_line("hello").has_value());
}

BOOST_AUTO_TEST_CASE(run_outcomes_and_exit_codes) {
  BOOST_TEST(static_cast<int>(code_of(RunStatus::Completed)) == 0);
  BOOST_TEST(static_cast<int>(code_of(RunStatus::Failed)) == 3);
  BOOST_TEST(static_cast<int>(code_of(RunStatus::Interrupted)) == 130);
  BOOST_TEST(exit_status(ExitCode::Ok) == 0);
  BOOST_TEST(exit_status(ExitCode::RunsFailed) == 1);
  BOOST_TEST(exit_status(ExitCode::BadInput) == 2);
  BOOST_TEST(exit_status(ExitCode::Interrupted) == 130);
  const std::string help = exit_codes_help();
  for (const char* code : {"  0 ", "  1 ", "  2 ", "  130 "}) BOOST_TEST(help.find(code) != std::string::npos, code);
}

// --threads 0 takes the CPUs the process may use (taskset, Slurm, a container), not the machine's.
BOOST_AUTO_TEST_CASE(default_threads_follow_the_affinity_mask_and_the_cgroup_quota) {
  cpu_set_t saved;
  BOOST_TEST_REQUIRE(sched_getaffinity(0, sizeof saved, &saved) == 0);
  int first = 0;
  while (!CPU_ISSET(first, &saved)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  BOOST_TEST_REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  const int n = modlab::runner::default_threads();
  sched_setaffinity(0, sizeof saved, &saved);
  BOOST_TEST(n == 1);

  const modlab_test::TempDir temp("cpu_max");
  const auto& dir = temp.path;
  auto limit = [&](const std::string& text) {
    std::ofstream((dir / "cpu.max").string()) << text;
    return modlab::runner::cgroup_cpu_limit((dir / "cpu.max").string());
  };
  BOOST_TEST(limit("max 100000\n") == 0);
  BOOST_TEST(limit("200000 100000\n") == 2);
  BOOST_TEST(limit("150000 100000\n") == 2);  // 1.5 CPUs: rounded up
  BOOST_TEST(limit("50000 100000\n") == 1);
  BOOST_TEST(limit("garbage") == 0);
  BOOST_TEST(modlab::runner::cgroup_cpu_limit((dir / "absent").string()) == 0);
}

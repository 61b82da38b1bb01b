#pragma once
// The protocol between the scheduler and its `modlab _worker` processes, in one place.
//
//   scheduler → worker, on the worker's stdin, one line per run:
//       run <run_id> <index> <seed> <spec file>
//     or, for runs trained together as one population (execute_population), a header and one
//     run line per member:
//       population <n>
//       run <run_id> <index> <seed> <spec file>      (n times)
//     EOF on stdin ends the worker.
//   worker → scheduler, on fd 3:
//       progress <phase> <phase_index> <phases> <epoch> <epochs> <loss> <step>   (at most every 0.2 s)
//       done <code>                                                               (once per run,
//                                                                                  members in order)
//       unbatched          (instead of the done lines of a population whose model cannot train as
//                           one: nothing ran; the scheduler hands its members out one by one)
//     where <code> is a WorkerCode.
//   The worker's stdout/stderr go to the current run's log (runs/<id>.log).
//   A worker that dies instead fails only the run it was on; the scheduler reads the signal.
#include <modlab/runner/trainer.hpp>

#include <optional>
#include <string>
#include <vector>

namespace modlab::runner::protocol {

/// Outcome of one run as a worker reports it (`done <code>`), and the worker's own exit status.
enum class WorkerCode : int {
  Completed = 0,
  BadCommand = 2,     ///< the worker could not parse a command line (exit status, not a run's code)
  Failed = 3,         ///< the run failed; the reason is in its run file
  Interrupted = 130,  ///< the run checkpointed and stopped on SIGINT/SIGTERM
};

/// File descriptor a worker reports on.
inline constexpr int kProgressFd = 3;

/// One run handed to a worker.
struct RunCommand {
  std::string run_id;
  std::int64_t index = 0;
  std::int64_t seed = 0;
  std::string spec_file;
};

/// A line the worker sent: progress of its run, or the end of it.
struct WorkerLine {
  enum class Kind { Progress, Done, Unbatched } kind = Kind::Progress;
  Progress progress;  ///< Kind::Progress
  int code = 0;       ///< Kind::Done: a WorkerCode value
};

std::string format_run_command(const RunCommand& command);
/// The header and the member lines of a population.
std::string format_population_command(const std::vector<RunCommand>& members);
/// The member count of a `population <n>` header, or empty.
std::optional<std::size_t> parse_population_header(const std::string& line);
/// Empty when `line` is not a run command.
std::optional<RunCommand> parse_run_command(const std::string& line);

std::string format_progress(const Progress& progress);
std::string format_done(WorkerCode code);
/// The answer to a population that cannot train as one: its runs were not started.
std::string format_unbatched();
/// Empty when `line` is neither a progress nor a done line.
std::optional<WorkerLine> parse_worker_line(const std::string& line);

/// The worker code of a run's outcome.
WorkerCode code_of(RunStatus status);

}  // namespace modlab::runner::protocol

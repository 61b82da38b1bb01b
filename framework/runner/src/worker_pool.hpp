#pragma once
// The scheduler's worker processes: spawning `modlab _worker` (fork + exec), handing each a line,
// reading what they report, and reaping them. Knows nothing of sweeps or the status line.
#include <modlab/runner/worker_protocol.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace modlab::runner {

struct RunSpec;

/// One worker process. It runs one run at a time, handed to it as one line on its stdin, and asks
/// for the next when done, so LibTorch and the plugins load once per worker rather than per run.
struct Worker {
  pid_t pid = -1;
  int progress_fd = -1;          ///< worker → scheduler: progress and done lines
  int command_fd = -1;           ///< scheduler → worker: one run per line; -1 once closed
  const RunSpec* run = nullptr;  ///< null while idle
  std::vector<const RunSpec*> queued;  ///< the rest of a population, in member order, after `run`
  std::string buffer;            ///< a partial line read from progress_fd
  Progress last;
  bool has_progress = false;
  std::chrono::steady_clock::time_point start;
};

class WorkerPool {
 public:
  /// `args`: the worker's command line (argv[0] = the modlab executable); `log_path`: where a
  /// worker's output goes until it opens its first run's log.
  WorkerPool(std::vector<std::string> args, std::string log_path);
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool();

  /// Starts a worker; it dies with this process (PR_SET_PDEATHSIG).
  Worker& spawn();
  /// Sends one command line; a worker that cannot take it is killed (and reaped as failed).
  void send(Worker& worker, const std::string& line);
  /// Closes the worker's stdin: it exits after its current run.
  void close_input(Worker& worker);
  void signal_all(int sig);

  std::map<pid_t, Worker>& workers() { return workers_; }
  bool empty() const { return workers_.empty(); }
  std::size_t size() const { return workers_.size(); }

  using LineHandler = std::function<void(Worker&, const std::string&)>;
  using ExitHandler = std::function<void(Worker&, int status)>;
  /// Waits up to `timeout_ms` for output and hands every complete line to `on_line`.
  void poll(int timeout_ms, const LineHandler& on_line);
  /// Removes the workers that exited, after handing their last lines to `on_line`; `on_exit` gets
  /// the exit status, or −signal for a worker killed by a signal.
  void reap(const LineHandler& on_line, const ExitHandler& on_exit);

 private:
  void drain(Worker& worker, const LineHandler& on_line);

  std::vector<std::string> args_;
  std::string log_path_;
  std::map<pid_t, Worker> workers_;
};

}  // namespace modlab::runner

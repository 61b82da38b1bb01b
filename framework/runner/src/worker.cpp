// `modlab _worker`: loads LibTorch and the plugins once, then runs the runs the scheduler hands it,
// one at a time, reporting on fd 3 (worker_protocol.hpp).
#include "interrupts.hpp"
#include <modlab/runner/worker_protocol.hpp>

#include <modlab/runner/registry.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <functional>
#include <map>
#include <memory>

namespace modlab::runner {

namespace {

struct WorkerArgs {
  std::map<std::string, std::string> named;  // --sweep-name, --sweep-dir, --out, --device, --threads
  std::vector<std::string> plugin_path;
};

WorkerArgs parse_args(const std::vector<std::string>& args) {
  WorkerArgs a;
  for (std::size_t i = 0; i + 1 < args.size(); i += 2) {
    if (args[i] == "--plugin-path") a.plugin_path.push_back(args[i + 1]);
    else a.named[args[i].substr(2)] = args[i + 1];
  }
  return a;
}

// Sends each run's stdout and stderr to its own log.
void redirect_output(const std::string& log) {
  int logfd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0) return;
  std::fflush(stdout);
  std::cerr.flush();
  dup2(logfd, 1);
  dup2(logfd, 2);
  close(logfd);
}

class Reporter {
 public:
  Reporter() : out_(fdopen(protocol::kProgressFd, "w")) {}
  void send(const std::string& line) {
    if (!out_) return;
    std::fputs(line.c_str(), out_);
    std::fflush(out_);
  }
  // Progress lines at most every 0.2 s (and at each phase's last epoch): a short run has hundreds
  // of sub-millisecond epochs, and a line per epoch would wake the scheduler for each.
  std::function<void(const Progress&)> progress() {
    auto last = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now() -
                                                                       std::chrono::hours(1));
    return [this, last](const Progress& p) {
      const auto now = std::chrono::steady_clock::now();
      if (p.epoch < p.epochs && now - *last < std::chrono::milliseconds(200)) return;
      *last = now;
      send(protocol::format_progress(p));
    };
  }

 private:
  FILE* out_;
};

RunRequest request_of(const protocol::RunCommand& c, const WorkerArgs& a, int threads) {
  RunRequest req;
  req.run_id = c.run_id;
  req.index = c.index;
  req.seed = c.seed;
  req.sweep_name = a.named.at("sweep-name");
  req.sweep_dir = a.named.at("sweep-dir");
  req.out_dir = a.named.at("out");
  req.device = torch::Device(a.named.at("device"));
  req.threads = threads;
  req.stop = &interrupts::stop_flag();
  req.logger = [](const std::string& m) { std::cerr << m << std::endl; };
  return req;
}

/// A run log's last line: how the run ended.
void log_outcome(std::ostream& log, const RunOutcome& outcome) {
  switch (outcome.status) {
    case RunStatus::Completed: log << "completed" << std::endl; break;
    case RunStatus::Interrupted: log << "interrupted" << std::endl; break;
    case RunStatus::Failed: log << "failed: " << outcome.error << std::endl; break;
  }
}

RunOutcome run_one(const Registry& registry, RunRequest& req, const std::string& spec_file) {
  std::cerr << "run " << req.run_id << " (seed " << req.seed << ", " << req.threads << " threads, "
            << req.device.str() << ", worker " << getpid() << ")" << std::endl;
  RunOutcome outcome;
  try {
    req.config = std::make_shared<const Value>(parse_toml_file(spec_file));
    outcome = execute_run(registry, req);
  } catch (const std::exception& e) {
    outcome = RunOutcome{RunStatus::Failed, e.what()};
  }
  log_outcome(std::cerr, outcome);
  return outcome;
}

/// One run line, or a population header and its member lines (worker_protocol.hpp).
bool read_commands(const std::string& first, std::vector<protocol::RunCommand>& out) {
  if (auto c = protocol::parse_run_command(first)) {
    out.push_back(*c);
    return true;
  }
  const auto n = protocol::parse_population_header(first);
  if (!n) return false;
  std::string line;
  for (std::size_t i = 0; i < *n; ++i) {
    if (!std::getline(std::cin, line)) return false;
    auto c = protocol::parse_run_command(line);
    if (!c) return false;
    out.push_back(*c);
  }
  return true;
}

/// A population's members: each logs to its own run log; progress is the first member's.
std::vector<RunOutcome> run_population(const Registry& registry, const std::vector<protocol::RunCommand>& commands,
                                       const WorkerArgs& a, int threads, Reporter& reporter) {
  std::vector<RunRequest> requests;
  std::vector<std::shared_ptr<std::ofstream>> logs;
  try {
    for (const auto& c : commands) {
      requests.push_back(request_of(c, a, threads));
      requests.back().config = std::make_shared<const Value>(parse_toml_file(c.spec_file));
      auto log = std::make_shared<std::ofstream>(RunPaths::of(a.named.at("out"), c.run_id).log, std::ios::app);
      *log << "run " << c.run_id << " (seed " << c.seed << ", population of " << commands.size() << ", " << threads
           << " threads, worker " << getpid() << ")" << std::endl;
      requests.back().logger = [log](const std::string& m) { *log << m << std::endl; };
      logs.push_back(log);
    }
    requests.front().on_progress = reporter.progress();
    auto outcomes = execute_population(registry, requests, /*alone_if_not_batchable=*/false);
    for (std::size_t i = 0; i < outcomes.size(); ++i) log_outcome(*logs[i], outcomes[i]);  // none: handed back
    return outcomes;
  } catch (const std::exception& e) {
    std::cerr << "population failed to start: " << e.what() << std::endl;
    const RunOutcome failed{RunStatus::Failed, e.what()};
    for (const auto& log : logs) log_outcome(*log, failed);
    return std::vector<RunOutcome>(commands.size(), failed);
  }
}

}  // namespace

int worker_main(const std::vector<std::string>& args) {
  const WorkerArgs a = parse_args(args);
  interrupts::install();
  signal(SIGPIPE, SIG_IGN);
  Registry registry;
  registry.load_directories(plugin_search_path(a.plugin_path));
  const int threads = std::stoi(a.named.at("threads"));
  torch::set_num_threads(threads);
  Reporter reporter;
  std::string line;
  while (!interrupts::stop_requested() && std::getline(std::cin, line)) {
    std::vector<protocol::RunCommand> commands;
    if (!read_commands(line, commands)) {
      std::cerr << "worker: bad command line: " << line << std::endl;
      return static_cast<int>(protocol::WorkerCode::BadCommand);
    }
    redirect_output(RunPaths::of(a.named.at("out"), commands.front().run_id).log);
    if (commands.size() == 1) {
      RunRequest req = request_of(commands.front(), a, threads);
      req.on_progress = reporter.progress();
      RunOutcome outcome = run_one(registry, req, commands.front().spec_file);
      reporter.send(protocol::format_done(protocol::code_of(outcome.status)));
    } else {
      const auto outcomes = run_population(registry, commands, a, threads, reporter);
      if (outcomes.empty()) reporter.send(protocol::format_unbatched());  // the scheduler spreads them out
      for (const auto& o : outcomes) reporter.send(protocol::format_done(protocol::code_of(o.status)));
    }
  }
  return static_cast<int>(interrupts::stop_requested() ? protocol::WorkerCode::Interrupted
                                                        : protocol::WorkerCode::Completed);
}

}  // namespace modlab::runner

// Sweep scheduling. Each run executes in a fresh `modlab _worker` process (fork + exec, never a
// bare fork: LibTorch's thread pools do not survive fork), so a crash, abort or OOM kill takes
// down one run, not the sweep. Workers report progress as text lines on fd 3.
#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <torch/torch.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <cstdio>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace modlab::runner {

namespace {
volatile std::sig_atomic_t g_signals = 0;
std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_signals = g_signals + 1;
  g_stop.store(true);
}

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::string signal_text(int sig) {
  const char* name = sigabbrev_np(sig);
  std::string s = "killed by signal " + std::to_string(sig);
  if (name) s += std::string(" (SIG") + name + ")";
  return s;
}

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& p, const std::string& text) {
  std::string tmp = p + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f) throw OutputError("cannot write " + tmp);
  }
  fs::rename(tmp, p);
}

std::string last_lines(const std::string& path, std::size_t n) {
  std::string text = read_file(path);
  std::vector<std::string> lines;
  std::stringstream ss(text);
  std::string l;
  while (std::getline(ss, l))
    if (!l.empty()) lines.push_back(l);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) out += (out.empty() ? "" : " | ") + lines[i];
  return out;
}

std::string hms(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}
}  // namespace

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

void preflight(const Sweep& sweep, const Registry& registry, const SweepOptions& o) {
  for (const auto& r : sweep.runs)
    validate_run_config(*r.config, registry, "run #" + std::to_string(r.index) + " (" + r.run_id + ")");
  if (o.jobs < 1) throw ConfigError("--jobs: expected a positive number, found " + std::to_string(o.jobs));
  if (o.shard_count < 1 || o.shard_index < 0 || o.shard_index >= o.shard_count)
    throw ConfigError("--shard: expected i/n with 0 <= i < n");
  std::error_code ec;
  fs::path out(o.out_dir);
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw OutputError("output path " + o.out_dir + " exists and is not a folder");
  for (fs::path p = out.parent_path(); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p, ec)) {
      if (!fs::is_directory(p, ec)) throw OutputError("output path " + o.out_dir + ": " + p.string() + " is a file");
      break;
    }
    if (p == p.parent_path()) break;
  }
  if (fs::exists(out / "runs", ec) && !fs::is_directory(out / "runs", ec))
    throw OutputError("output path " + (out / "runs").string() + " exists and is not a folder");
  if (o.device.rfind("cuda", 0) == 0 && !torch::cuda::is_available())
    throw ConfigError("--device " + o.device + ": CUDA is not available in this build or on this machine");
}

namespace {

// What the index says about one run, from the files on disk.
RunSummary summarize(const RunSpec& r, const std::string& out_dir) {
  RunPaths p = RunPaths::of(out_dir, r.run_id);
  RunSummary s;
  if (auto read = read_run_summary(p.h5)) s = *read;
  else if (fs::exists(p.h5 + ".partial") || fs::exists(p.checkpoint)) s.status = "interrupted";
  else s.status = "pending";
  // a worker that died without writing its file leaves the reason here
  if (s.status != "completed" && fs::exists(p.h5 + ".error")) {
    s.status = "failed";
    s.error = read_file(p.h5 + ".error");
  }
  s.run_id = r.run_id;
  s.index = r.index;
  s.seed = r.seed;
  s.file = fs::exists(p.h5) ? "runs/" + r.run_id + ".h5" : "";
  s.params.clear();
  for (const auto& [k, v] : r.varied) s.params[k] = v.literal();
  return s;
}

}  // namespace

void write_index(const Sweep& sweep, const std::string& out_dir) {
  std::vector<RunSummary> rows;
  for (const auto& r : sweep.runs) rows.push_back(summarize(r, out_dir));
  write_sweep_index(out_dir, sweep.name, sweep.file, sweep.text, sweep.varied_keys, rows);
}

namespace {

// A worker process. It runs one run at a time, handed to it as one line on its stdin, and asks
// for the next when done, so LibTorch and the plugins load once per worker rather than per run.
struct Worker {
  pid_t pid = -1;
  int progress_fd = -1;  // worker → scheduler: progress and done lines
  int command_fd = -1;   // scheduler → worker: one run per line
  const RunSpec* run = nullptr;  // null while idle
  std::string buffer;
  Progress last;
  bool has_progress = false;
  std::chrono::steady_clock::time_point start;
};

pid_t spawn(const std::vector<std::string>& args, const std::string& log_path, int& progress_fd, int& command_fd) {
  int prog[2], cmd[2];
  if (pipe2(prog, O_CLOEXEC) != 0 || pipe2(cmd, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int logfd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0) throw OutputError("cannot open " + log_path + ": " + std::strerror(errno));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // child: only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the scheduler
    if (getppid() != parent) _exit(127);
    dup2(cmd[0], 0);
    dup2(prog[1], 3);
    dup2(logfd, 1);
    dup2(logfd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(prog[1]);
  close(cmd[0]);
  close(logfd);
  progress_fd = prog[0];
  command_fd = cmd[1];
  fcntl(progress_fd, F_SETFL, O_NONBLOCK);
  return pid;
}

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t k = write(fd, text.data() + done, text.size() - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    done += static_cast<std::size_t>(k);
  }
  return true;
}

}  // namespace

int run_sweep(const Sweep& sweep, const Registry& registry, const SweepOptions& o) {
  preflight(sweep, registry, o);
  const std::string out = o.out_dir;
  fs::create_directories(fs::path(out) / "runs");

  // The index is kept in memory and one row replaced per finished run, so writing it stays
  // linear in the number of runs over a whole sweep.
  std::vector<RunSummary> index;
  std::map<std::string, std::size_t> row_of;
  std::vector<const RunSpec*> todo;
  std::size_t skipped = 0, in_shard = 0;
  for (const auto& r : sweep.runs) {
    row_of[r.run_id] = index.size();
    index.push_back(summarize(r, out));
    if (r.index % o.shard_count != o.shard_index) continue;
    ++in_shard;
    if (index.back().status == "completed") {
      ++skipped;
      continue;
    }
    todo.push_back(&r);
  }
  auto update_index = [&](const RunSpec& r) {
    index[row_of.at(r.run_id)] = summarize(r, out);
    write_sweep_index(out, sweep.name, sweep.file, sweep.text, sweep.varied_keys, index);
  };

  const bool tty = isatty(STDERR_FILENO);
  std::cerr << "sweep " << sweep.name << ": " << sweep.runs.size() << " runs";
  if (o.shard_count > 1) std::cerr << " (" << in_shard << " in shard " << o.shard_index << "/" << o.shard_count << ")";
  std::cerr << ", " << skipped << " already completed, " << todo.size() << " to run, " << o.jobs
            << " at a time -> " << out << "\n";

  int total_threads = o.threads > 0 ? o.threads : default_threads();
  int nworkers = std::max(1, std::min<int>(o.jobs, static_cast<int>(todo.size())));
  int per_run = std::max(1, total_threads / nworkers);
  std::string exe = o.exe.empty() ? fs::read_symlink("/proc/self/exe").string() : o.exe;

  install_handlers();
  g_stop.store(false);
  g_signals = 0;
  std::map<pid_t, Worker> workers;
  std::size_t next = 0, done = 0, failed = 0, interrupted = 0;
  auto t0 = std::chrono::steady_clock::now();
  bool killed = false, told = false;
  std::string status_line;

  auto clear_status = [&] {
    if (tty && !status_line.empty()) {
      std::cerr << "\r\033[K";
      status_line.clear();
    }
  };
  auto print = [&](const std::string& line) {
    clear_status();
    std::cerr << line << "\n";
  };
  auto draw_status = [&] {
    if (!tty) return;
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double frac_done = static_cast<double>(done);
    std::ostringstream os;
    os << "[" << done << "/" << todo.size() << "]";
    for (const auto& [pid, w] : workers) {
      if (!w.run) continue;
      double f = 0;
      if (w.has_progress && w.last.epochs > 0)
        f = (static_cast<double>(w.last.phase_index) + static_cast<double>(w.last.epoch) / static_cast<double>(w.last.epochs)) /
            static_cast<double>(std::max<std::int64_t>(1, w.last.phases));
      frac_done += f;
      os << "  run " << (w.run->index + 1) << "/" << sweep.runs.size() << " " << w.run->run_id.substr(0, 6);
      if (w.has_progress)
        os << " " << (w.last.phases > 1 ? w.last.phase + " " : "") << "epoch " << w.last.epoch << "/" << w.last.epochs
           << " loss " << std::setprecision(4) << w.last.loss;
    }
    double eta = frac_done > 0 ? elapsed * (static_cast<double>(todo.size()) - frac_done) / frac_done : -1;
    os << "  ETA " << hms(eta);
    status_line = os.str();
    std::cerr << "\r\033[K" << status_line.substr(0, 200) << std::flush;
  };

  auto new_worker = [&]() -> Worker& {
    std::vector<std::string> args = {exe, "_worker", "--sweep-name", sweep.name, "--sweep-dir", sweep.dir, "--out", out,
                                     "--device", o.device, "--threads", std::to_string(per_run)};
    for (const auto& d : o.plugin_path) {
      args.push_back("--plugin-path");
      args.push_back(d);
    }
    Worker w;
    w.pid = spawn(args, (fs::path(out) / "runs" / "workers.log").string(), w.progress_fd, w.command_fd);
    return workers[w.pid] = w;
  };

  auto assign = [&](Worker& w, const RunSpec& r) {
    RunPaths p = RunPaths::of(out, r.run_id);
    std::error_code ec;
    fs::remove(p.h5 + ".error", ec);
    write_file_atomic(p.spec, canonical_text(*r.config));
    w.run = &r;
    w.has_progress = false;
    w.start = std::chrono::steady_clock::now();
    std::string line = "run " + r.run_id + " " + std::to_string(r.index) + " " + std::to_string(r.seed) + " " + p.spec + "\n";
    if (!write_all(w.command_fd, line)) kill(w.pid, SIGKILL);  // reaped below; the run is reported failed
    if (!tty || o.verbose) print("start run " + std::to_string(r.index + 1) + "/" + std::to_string(sweep.runs.size()) + " " + r.run_id);
  };

  // Records the end of `w`'s run: `code` is the worker's exit code for it, or -signal when it died.
  auto finish_run = [&](Worker& w, int code) {
    const RunSpec& r = *w.run;
    w.run = nullptr;
    RunPaths p = RunPaths::of(out, r.run_id);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - w.start).count();
    std::string line = "run " + std::to_string(r.index + 1) + "/" + std::to_string(sweep.runs.size()) + " " + r.run_id;
    ++done;
    if (code == 0) {
      auto s = read_run_summary(p.h5);
      std::string extra;
      if (s)
        for (const char* m : {"test_accuracy", "val_accuracy", "train_accuracy"})
          if (s->final_metrics.count(m)) {
            extra = std::string(" ") + m + " " + std::to_string(s->final_metrics.at(m));
            break;
          }
      print(line + " completed in " + hms(secs) + extra);
    } else if (code == 130 || (g_stop.load() && code < 0)) {
      ++interrupted;
      print(line + " interrupted (resumes on the next run of this sweep)");
    } else {
      ++failed;
      std::string reason;
      if (code < 0) reason = "worker " + signal_text(-code);
      else if (code == 3) {
        auto s = read_run_summary(p.h5);
        reason = s ? s->error : "failed";
      } else reason = "worker exited with code " + std::to_string(code);
      if (code != 3) {
        std::string tail = last_lines(p.log, 2);
        if (!tail.empty()) reason += "; log: " + tail;
        try {
          write_file_atomic(p.h5 + ".error", reason);
        } catch (const std::exception&) {
        }
      }
      print(line + " FAILED: " + reason + " (log: " + p.log + ")");
    }
    try {
      update_index(r);
    } catch (const std::exception& e) {
      print(std::string("warning: could not update sweep.h5: ") + e.what());
    }
  };

  auto drain = [&](Worker& w) {
    char buf[4096];
    while (true) {
      ssize_t k = read(w.progress_fd, buf, sizeof buf);
      if (k <= 0) break;
      w.buffer.append(buf, static_cast<std::size_t>(k));
    }
    std::size_t nl;
    while ((nl = w.buffer.find('\n')) != std::string::npos) {
      std::string line = w.buffer.substr(0, nl);
      w.buffer.erase(0, nl + 1);
      std::istringstream is(line);
      std::string tag;
      is >> tag;
      Progress p;
      int code = 0;
      if (tag == "progress" && (is >> p.phase >> p.phase_index >> p.phases >> p.epoch >> p.epochs >> p.loss >> p.step)) {
        w.last = p;
        w.has_progress = true;
        if (!tty && o.verbose && w.run)
          print("  " + w.run->run_id + " " + p.phase + " epoch " + std::to_string(p.epoch) + "/" +
                std::to_string(p.epochs) + " loss " + std::to_string(p.loss));
      } else if (tag == "done" && (is >> code) && w.run) {
        finish_run(w, code);
      }
    }
  };

  while (true) {
    if (g_signals > 0 && !killed) {
      if (!told) {
        print("interrupt: stopping; finished runs are kept, running ones checkpoint and stop (Ctrl-C again to kill)");
        told = true;
        for (auto& [pid, w] : workers) kill(pid, SIGINT);
      }
      if (g_signals > 1) {
        for (auto& [pid, w] : workers) kill(pid, SIGKILL);
        killed = true;
      }
    }
    // hand out runs: idle workers first, then new ones up to --jobs; close idle workers when nothing is left
    bool more = !g_stop.load() && next < todo.size();
    for (auto& [pid, w] : workers) {
      if (w.run || w.command_fd < 0) continue;
      if (more) {
        assign(w, *todo[next++]);
        more = next < todo.size();
      } else {
        close(w.command_fd);  // EOF: the worker exits
        w.command_fd = -1;
      }
    }
    while (more && static_cast<int>(workers.size()) < o.jobs) {
      assign(new_worker(), *todo[next++]);
      more = next < todo.size();
    }
    if (workers.empty()) break;

    std::vector<pollfd> pfds;
    for (auto& [pid, w] : workers) pfds.push_back(pollfd{w.progress_fd, POLLIN, 0});
    poll(pfds.data(), pfds.size(), 200);
    for (auto& [pid, w] : workers) drain(w);

    int st = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
      auto it = workers.find(pid);
      if (it == workers.end()) continue;
      Worker& w = it->second;
      drain(w);
      if (w.run) finish_run(w, WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st) == 0 ? 1 : WEXITSTATUS(st));
      close(w.progress_fd);
      if (w.command_fd >= 0) close(w.command_fd);
      workers.erase(it);
    }
    draw_status();
  }
  clear_status();
  write_index(sweep, out);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "done in " << hms(elapsed) << ": " << (done - failed - interrupted) << " completed, " << failed
            << " failed, " << interrupted << " interrupted, " << skipped << " skipped. Results: " << out
            << "/sweep.h5 (modlab show " << out << ")\n";
  if (g_stop.load()) return 130;
  return failed ? 1 : 0;
}

int worker_main(const std::vector<std::string>& args) {
  std::map<std::string, std::string> a;
  std::vector<std::string> plugin_path;
  for (std::size_t i = 0; i + 1 < args.size(); i += 2) {
    if (args[i] == "--plugin-path") plugin_path.push_back(args[i + 1]);
    else a[args[i].substr(2)] = args[i + 1];
  }
  install_handlers();
  signal(SIGPIPE, SIG_IGN);
  Registry registry;
  registry.load_directories(plugin_search_path(plugin_path));
  const int threads = std::stoi(a.at("threads"));
  torch::set_num_threads(threads);
  FILE* progress = fdopen(3, "w");
  auto report = [progress](const std::string& line) {
    if (!progress) return;
    std::fputs(line.c_str(), progress);
    std::fflush(progress);
  };
  // One run per line on stdin: "run <run_id> <index> <seed> <spec file>"; EOF ends the worker.
  std::string line;
  while (!g_stop.load() && std::getline(std::cin, line)) {
    std::istringstream is(line);
    std::string tag, spec;
    RunRequest req;
    if (!(is >> tag >> req.run_id >> req.index >> req.seed >> spec) || tag != "run") {
      std::cerr << "worker: bad command line: " << line << std::endl;
      return 2;
    }
    RunPaths paths = RunPaths::of(a.at("out"), req.run_id);
    // each run's output goes to its own log
    int logfd = open(paths.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd >= 0) {
      std::fflush(stdout);
      std::cerr.flush();
      dup2(logfd, 1);
      dup2(logfd, 2);
      close(logfd);
    }
    req.sweep_name = a.at("sweep-name");
    req.sweep_dir = a.at("sweep-dir");
    req.out_dir = a.at("out");
    req.device = torch::Device(a.at("device"));
    req.threads = threads;
    req.stop = &g_stop;
    // Progress lines at most every 0.2 s (and at each phase's last epoch): a short run has hundreds
    // of sub-millisecond epochs, and a line per epoch would wake the scheduler for each.
    auto last_report = std::chrono::steady_clock::now() - std::chrono::hours(1);
    req.on_progress = [&report, &last_report](const Progress& p) {
      const auto now = std::chrono::steady_clock::now();
      if (p.epoch < p.epochs && now - last_report < std::chrono::milliseconds(200)) return;
      last_report = now;
      std::ostringstream os;
      os << "progress " << p.phase << " " << p.phase_index << " " << p.phases << " " << p.epoch << " " << p.epochs << " "
         << std::setprecision(6) << p.loss << " " << p.step << "\n";
      report(os.str());
    };
    req.logger = [](const std::string& m) { std::cerr << m << std::endl; };
    std::cerr << "run " << req.run_id << " (seed " << req.seed << ", " << req.threads << " threads, "
              << req.device.str() << ", worker " << getpid() << ")" << std::endl;
    RunOutcome outcome;
    try {
      req.config = std::make_shared<const Value>(parse_toml_file(spec));
      outcome = execute_run(registry, req);
    } catch (const std::exception& e) {
      outcome = RunOutcome{RunStatus::Failed, e.what()};
    }
    int code = 3;
    switch (outcome.status) {
      case RunStatus::Completed: std::cerr << "completed" << std::endl; code = 0; break;
      case RunStatus::Interrupted: std::cerr << "interrupted" << std::endl; code = 130; break;
      case RunStatus::Failed: std::cerr << "failed: " << outcome.error << std::endl; code = 3; break;
    }
    report("done " + std::to_string(code) + "\n");
  }
  return g_stop.load() ? 130 : 0;
}

}  // namespace modlab::runner

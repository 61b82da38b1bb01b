// Sweep scheduling. Each run executes in a `modlab _worker` process (worker_pool.cpp), so a crash,
// abort or OOM kill takes down one run, not the sweep. This file decides which runs to run, hands
// them out, records how each ended, and keeps the sweep index current; the worker protocol, the
// pool of processes and the status line are in files of their own.
#include "file_lock.hpp"
#include "interrupts.hpp"
#include "status_line.hpp"
#include "worker_pool.hpp"
#include <modlab/runner/worker_protocol.hpp>

#include <modlab/errors.hpp>
#include <modlab/runner/exit_codes.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/scheduler.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>
#include <modlab/runner/verify.hpp>


#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace modlab::runner {

namespace {

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

std::string signal_text(int sig) {
  const char* name = sigabbrev_np(sig);
  std::string s = "killed by signal " + std::to_string(sig);
  if (name) s += std::string(" (SIG") + name + ")";
  return s;
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

}  // namespace

std::int64_t population_of(const RunSpec& r) {
  const Config root(r.config, "");
  if (!root.has("run")) return 1;
  const Config run = root.sub("run");
  const auto p = run.has("population") ? run.get<std::int64_t>("population") : 1;
  return p == 0 ? kAutoPopulationLimit : p;
}

namespace {

/// Whether `key` ("model.x", "dataset.x.y") is a key of `plugin_keys` declared per_member.
bool declared_per_member(const std::string& key, const std::string& table, const std::vector<KeySpec>& plugin_keys) {
  if (key.rfind(table + ".", 0) != 0) return false;
  const std::string name = key.substr(table.size() + 1);
  for (const auto& k : plugin_keys)
    if (k.per_member && (name == k.name || name.rfind(k.name + ".", 0) == 0)) return true;
  return false;
}

}  // namespace

bool member_key(const RunSpec& run, const std::string& key, const Registry& registry) {
  if (key == "run.seed" || key == "train.lr" || key == "train.weight_decay" || key == "train.lr_groups" ||
      key.rfind("train.lr_groups.", 0) == 0)
    return true;
  const Config root(run.config, "");
  for (const std::string table : {"model", "dataset"}) {
    if (!root.has(table) || !root.sub(table).has("plugin")) continue;
    const auto plugin = root.sub(table).get<std::string>("plugin");
    const bool model = table == "model";
    if (model ? !registry.has_model(plugin) : !registry.has_dataset(plugin)) continue;
    if (declared_per_member(key, table, model ? registry.model(plugin).keys : registry.dataset(plugin).keys)) return true;
  }
  return false;
}

std::vector<std::vector<const RunSpec*>> population_groups(const std::vector<const RunSpec*>& todo, const Registry& registry) {
  std::vector<std::vector<const RunSpec*>> groups;
  std::map<std::string, std::size_t> open;  // group key → index of its group still filling
  for (const RunSpec* r : todo) {
    const auto cap = population_of(*r);
    std::string key = std::to_string(cap);
    for (const auto& [k, v] : r->varied)
      if (!member_key(*r, k, registry)) key += "\n" + k + "=" + v.literal();
    auto it = open.find(key);
    if (cap > 1 && it != open.end() && static_cast<std::int64_t>(groups[it->second].size()) < cap) {
      groups[it->second].push_back(r);
      continue;
    }
    groups.push_back({r});
    if (cap > 1) open[key] = groups.size() - 1;
  }
  return groups;
}

int cgroup_cpu_limit(const std::string& cpu_max) {
  std::ifstream in(cpu_max);
  std::string quota;
  long long period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  const long long q = std::atoll(quota.c_str());
  return q > 0 ? static_cast<int>((q + period - 1) / period) : 0;
}

int default_threads() {
  // The CPUs this process may run on (taskset, Slurm's --cpus-per-task, a container's cpuset),
  // not every core of the machine; then a cgroup v2 CPU quota, if one is lower.
  int n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  const int quota = cgroup_cpu_limit("/sys/fs/cgroup/cpu.max");
  if (quota > 0 && quota < n) n = quota;
  return n > 0 ? n : 1;
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

namespace {
std::string index_lock_path(const std::string& out_dir) { return (fs::path(out_dir) / "sweep.h5.lock").string(); }
}  // namespace

void write_index(const Sweep& sweep, const std::string& out_dir) {
  FileLock lock(index_lock_path(out_dir), /*wait=*/true);
  std::vector<RunSummary> rows;
  for (const auto& r : sweep.runs) rows.push_back(summarize(r, out_dir));
  write_sweep_index(out_dir, sweep.name, sweep.file, sweep.text, sweep.varied_keys, rows);
}

namespace {

using protocol::WorkerCode;

// One `modlab run` of a sweep: the runs still to do, the workers running them, what is printed.
class SweepRun {
 public:
  SweepRun(const Sweep& sweep, const Registry& registry, const SweepOptions& o)
      : sweep_(sweep), registry_(registry), o_(o), out_(o.out_dir), status_(isatty(STDERR_FILENO) != 0) {}

  int run() {
    plan();
    announce();
    WorkerPool pool(worker_args(), (fs::path(out_) / "runs" / "workers.log").string());
    interrupts::install();
    t0_ = std::chrono::steady_clock::now();
    while (true) {
      handle_interrupts(pool);
      hand_out(pool);
      if (pool.empty()) break;
      show_started_runs();
      auto on_line = [this](Worker& w, const std::string& line) { on_worker_line(w, line); };
      pool.poll(200, on_line);
      pool.reap(on_line, [this](Worker& w, int status) {
        // a worker that exits while it holds a run failed it, even with status 0
        while (w.run) finish_run(w, status < 0 ? status : status == 0 ? 1 : status);
      });
      write_due_index();
      draw_status(pool);
    }
    status_.clear();
    write_index(sweep_, out_);
    print_summary();
    if (interrupts::stop_requested()) return exit_status(ExitCode::Interrupted);
    return exit_status(failed_ ? ExitCode::RunsFailed : ExitCode::Ok);
  }

 private:
  // The index is kept in memory and one row replaced per finished run, so writing it stays
  // linear in the number of runs over a whole sweep.
  void plan() {
    for (const auto& r : sweep_.runs) {
      row_of_[r.run_id] = index_.size();
      reject_if_untrusted(r);
      index_.push_back(summarize(r, out_));
      if (!o_.in_shard(r.index)) continue;
      ++in_shard_;
      if (index_.back().status == "completed") {
        ++skipped_;
        continue;
      }
      todo_.push_back(&r);
    }
    groups_ = population_groups(todo_, registry_);
    int total_threads = o_.threads > 0 ? o_.threads : default_threads();
    // Workers: one per group up to --jobs, each with its share of the threads; a population handed
    // back runs its members on those same workers (more of them would oversubscribe the threads).
    workers_ = std::max(1, std::min<int>(o_.jobs, static_cast<int>(groups_.size())));
    per_run_threads_ = std::max(1, total_threads / workers_);
  }

  // A run file that fails its checksum or belongs to another run is moved aside, so the run is
  // done again; the user is told which file and why.
  void reject_if_untrusted(const RunSpec& r) {
    const std::string h5 = RunPaths::of(out_, r.run_id).h5;
    std::error_code ec;
    if (!fs::exists(h5, ec)) return;
    const std::string problem = run_file_problem(h5, r.run_id);
    if (problem.empty()) return;
    std::string aside;
    try {
      aside = move_aside(h5);
    } catch (const OutputError&) {
      if (!fs::exists(h5, ec)) return;  // another runner of this folder moved it first
      throw;
    }
    status_.print("run " + r.run_id + ": its file cannot be trusted (" + problem + "); moved to " + aside +
                  ", the run is done again");
  }

  // The next runs this runner takes: the members of the next population group that no other
  // runner holds (their locks) and that none completed since plan(); empty when none is left.
  std::vector<const RunSpec*> next_runs() {
    if (!again_.empty()) {  // handed back by a population, already locked
      const RunSpec* r = again_.front();
      again_.erase(again_.begin());
      return {r};
    }
    while (next_ < groups_.size()) {
      std::vector<const RunSpec*> taken;
      for (const RunSpec* r : groups_[next_]) if (take(*r)) taken.push_back(r);
      ++next_;
      if (!taken.empty()) return taken;
    }
    return {};
  }

  bool take(const RunSpec& r) {
    FileLock lock((fs::path(out_) / "runs" / (r.run_id + ".lock")).string(), /*wait=*/false);
    if (!lock.held()) {
      ++elsewhere_;
      return false;
    }
    const auto done = read_run_summary(RunPaths::of(out_, r.run_id).h5);
    if (done && done->status == "completed" && run_file_problem(RunPaths::of(out_, r.run_id).h5, r.run_id).empty()) {
      ++elsewhere_;
      index_[row_of_.at(r.run_id)] = summarize(r, out_);
      return false;
    }
    locks_.emplace(r.run_id, std::move(lock));
    return true;
  }

  void announce() const {
    std::cerr << "sweep " << sweep_.name << ": " << sweep_.runs.size() << " runs";
    if (o_.shard_count > 1)
      std::cerr << " (" << in_shard_ << " in shard " << o_.shard_index << "/" << o_.shard_count << ")";
    std::cerr << ", " << skipped_ << " already completed, " << todo_.size() << " to run, " << o_.jobs
              << " at a time -> " << out_ << "\n";
  }

  std::vector<std::string> worker_args() const {
    std::string exe = o_.exe.empty() ? fs::read_symlink("/proc/self/exe").string() : o_.exe;
    std::vector<std::string> args = {exe,         "_worker", "--sweep-name", sweep_.name, "--sweep-dir",
                                     sweep_.dir,  "--out",   out_,           "--device",  o_.device,
                                     "--threads", std::to_string(per_run_threads_)};
    for (const auto& d : o_.plugin_path) {
      args.push_back("--plugin-path");
      args.push_back(d);
    }
    return args;
  }

  // First signal: stop handing out runs, ask the workers to checkpoint and stop. Second: kill them.
  void handle_interrupts(WorkerPool& pool) {
    if (interrupts::count() == 0 || killed_) return;
    if (!told_) {
      status_.print(
          "interrupt: stopping; finished runs are kept, running ones checkpoint and stop (Ctrl-C again to kill)");
      told_ = true;
      pool.signal_all(SIGINT);
    }
    if (interrupts::count() > 1) {
      pool.signal_all(SIGKILL);
      killed_ = true;
    }
  }

  // Idle workers get the next runs, then new workers up to --jobs; idle workers are closed when
  // nothing is left.
  void hand_out(WorkerPool& pool) {
    const bool stopping = interrupts::stop_requested();
    for (auto& [pid, w] : pool.workers()) {
      if (w.run || w.command_fd < 0) continue;
      const auto runs = stopping ? std::vector<const RunSpec*>{} : next_runs();
      if (!runs.empty()) assign(pool, w, runs);
      else pool.close_input(w);
    }
    while (!stopping && static_cast<int>(pool.size()) < workers_) {
      const auto runs = next_runs();
      if (runs.empty()) break;
      assign(pool, pool.spawn(), runs);
    }
  }

  void assign(WorkerPool& pool, Worker& w, const std::vector<const RunSpec*>& runs) {
    std::vector<protocol::RunCommand> commands;
    for (const RunSpec* r : runs) {
      RunPaths p = RunPaths::of(out_, r->run_id);
      std::error_code ec;
      fs::remove(p.h5 + ".error", ec);
      write_file_atomic(p.spec, canonical_text(*r->config));
      commands.push_back({r->run_id, r->index, r->seed, p.spec});
      if (!status_.tty() || o_.verbose)
        status_.print("start run " + std::to_string(r->index + 1) + "/" + std::to_string(sweep_.runs.size()) + " " +
                      r->run_id + (runs.size() > 1 ? " (population of " + std::to_string(runs.size()) + ")" : ""));
    }
    w.run = runs.front();
    w.queued.assign(runs.begin() + 1, runs.end());
    w.has_progress = false;
    started_unlisted_ = true;
    w.start = std::chrono::steady_clock::now();
    pool.send(w, runs.size() == 1 ? protocol::format_run_command(commands.front())
                                  : protocol::format_population_command(commands));
  }

  void on_worker_line(Worker& w, const std::string& text) {
    auto line = protocol::parse_worker_line(text);
    if (!line) return;
    if (line->kind == protocol::WorkerLine::Kind::Done) {
      if (w.run) finish_run(w, line->code);
      return;
    }
    if (line->kind == protocol::WorkerLine::Kind::Unbatched) {
      give_back(w);
      return;
    }
    const Progress& p = line->progress;
    w.last = p;
    w.has_progress = true;
    if (!status_.tty() && o_.verbose && w.run)
      status_.print("  " + w.run->run_id + " " + p.phase + " epoch " + std::to_string(p.epoch) + "/" +
                    std::to_string(p.epochs) + " loss " + std::to_string(p.loss));
  }

  // Records the end of `w`'s run: `code` is the worker's code for it (WorkerCode), another exit
  // status of the worker, or −signal when it died.
  void finish_run(Worker& w, int code) {
    const RunSpec& r = *w.run;
    w.run = nullptr;
    if (!w.queued.empty()) {  // the next member of the worker's population
      w.run = w.queued.front();
      w.queued.erase(w.queued.begin());
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - w.start).count();
    std::string line = "run " + std::to_string(r.index + 1) + "/" + std::to_string(sweep_.runs.size()) + " " + r.run_id;
    ++done_;
    if (code == static_cast<int>(WorkerCode::Completed)) {
      status_.print(line + " completed in " + hms(secs) + headline_metric(r));
    } else if (code == static_cast<int>(WorkerCode::Interrupted) || (interrupts::stop_requested() && code < 0)) {
      ++interrupted_;
      status_.print(line + " interrupted (resumes on the next run of this sweep)");
    } else {
      ++failed_;
      RunPaths p = RunPaths::of(out_, r.run_id);
      status_.print(line + " FAILED: " + failure_reason(r, code) + " (log: " + p.log + ")");
    }
    locks_.erase(r.run_id);
    try {
      index_[row_of_.at(r.run_id)] = summarize(r, out_);
      index_due_ = true;  // written once for all the runs that end together (a population's members)
    } catch (const std::exception& e) {
      status_.print(std::string("warning: could not update sweep.h5: ") + e.what());
    }
  }

  // A population whose model cannot train as one ran nothing: its runs (still locked by this
  // runner) go out again one at a time, to whichever workers are free, first.
  void give_back(Worker& w) {
    if (!w.run) return;
    std::vector<const RunSpec*> runs{w.run};
    runs.insert(runs.end(), w.queued.begin(), w.queued.end());
    w.run = nullptr;
    w.queued.clear();
    status_.print("population of " + std::to_string(runs.size()) + " cannot train as one (its run logs say why); its runs go one at a time");
    again_.insert(again_.begin(), runs.begin(), runs.end());
  }

  void write_due_index() {
    if (!index_due_) return;
    index_due_ = false;
    try {
      update_index();
    } catch (const std::exception& e) {
      status_.print(std::string("warning: could not update sweep.h5: ") + e.what());
    }
  }

  // Rewrites sweep.h5 under its lock. Rows not completed in memory are read again from disk,
  // since another runner of this folder may have finished them (a stat or two per row); the runs
  // this runner is running are listed as "running".
  void update_index() {
    FileLock lock(index_lock_path(out_), /*wait=*/true);
    for (std::size_t i = 0; i < index_.size(); ++i) {
      if (index_[i].status != "completed") index_[i] = summarize(sweep_.runs[i], out_);
      if (locks_.count(sweep_.runs[i].run_id)) index_[i].status = "running";
    }
    write_sweep_index(out_, sweep_.name, sweep_.file, sweep_.text, sweep_.varied_keys, index_);
    last_index_write_ = std::chrono::steady_clock::now();
    started_unlisted_ = false;
  }

  // The index lists runs as they start (so `modlab show` works from the sweep's first second),
  // at most once a second: a sweep of many short runs would otherwise rewrite it twice per run.
  void show_started_runs() {
    if (!started_unlisted_ || std::chrono::steady_clock::now() - last_index_write_ < std::chrono::seconds(1)) return;
    try {
      update_index();
    } catch (const std::exception& e) {
      started_unlisted_ = false;
      status_.print(std::string("warning: could not update sweep.h5: ") + e.what());
    }
  }

  std::string headline_metric(const RunSpec& r) const {
    auto s = read_run_summary(RunPaths::of(out_, r.run_id).h5);
    if (s)
      for (const char* m : {"test_accuracy", "val_accuracy", "train_accuracy"})
        if (s->final_metrics.count(m)) return std::string(" ") + m + " " + std::to_string(s->final_metrics.at(m));
    return "";
  }

  // A run that failed inside the trainer has its reason in the run file; a worker that died or
  // exited otherwise did not write one, so the reason (with the log's last lines) goes to
  // runs/<id>.h5.error, which the index reads.
  std::string failure_reason(const RunSpec& r, int code) const {
    RunPaths p = RunPaths::of(out_, r.run_id);
    if (code == static_cast<int>(WorkerCode::Failed)) {
      auto s = read_run_summary(p.h5);
      return s ? s->error : "failed";
    }
    std::string reason = code < 0 ? "worker " + signal_text(-code) : "worker exited with code " + std::to_string(code);
    std::string tail = last_lines(p.log, 2);
    if (!tail.empty()) reason += "; log: " + tail;
    try {
      write_file_atomic(p.h5 + ".error", reason);
    } catch (const std::exception&) {
    }
    return reason;
  }

  void draw_status(WorkerPool& pool) {
    if (!status_.tty()) return;
    std::vector<ActiveRun> running;
    for (const auto& [pid, w] : pool.workers())
      if (w.run) running.push_back(ActiveRun{w.run->index, w.run->run_id, w.has_progress, w.last});
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    status_.show(status_text(done_, todo_.size(), sweep_.runs.size(), running, elapsed));
  }

  void print_summary() const {
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::cerr << "done in " << hms(elapsed) << ": " << (done_ - failed_ - interrupted_) << " completed, " << failed_
              << " failed, " << interrupted_ << " interrupted, " << skipped_ << " skipped. Results: " << out_
              << "/sweep.h5 (modlab show " << out_ << ")\n";
    if (elsewhere_ > 0)
      std::cerr << elsewhere_ << " run(s) were left to another runner of this folder, which held or had completed them\n";
  }

  const Sweep& sweep_;
  const Registry& registry_;
  const SweepOptions& o_;
  const std::string out_;
  StatusLine status_;
  std::vector<RunSummary> index_;
  std::map<std::string, std::size_t> row_of_;
  std::vector<const RunSpec*> todo_;
  std::vector<std::vector<const RunSpec*>> groups_;  ///< todo_ as populations (one run each without)
  bool index_due_ = false;  ///< a run ended since the index was last written
  std::vector<const RunSpec*> again_;  ///< runs of populations that could not batch, to hand out alone
  std::size_t skipped_ = 0, in_shard_ = 0, next_ = 0, done_ = 0, failed_ = 0, interrupted_ = 0, elsewhere_ = 0;
  std::map<std::string, FileLock> locks_;  ///< run id → its lock, while this runner runs it
  int workers_ = 1, per_run_threads_ = 1;
  bool killed_ = false, told_ = false;
  bool started_unlisted_ = false;  ///< a run started since sweep.h5 was last written
  std::chrono::steady_clock::time_point last_index_write_{};
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

namespace {
/// A results folder holds one sweep: its index is never replaced by another sweep's.
void check_folder_belongs_to(const Sweep& sweep, const std::string& out_dir) {
  const auto held = read_sweep_name(out_dir);
  if (held && *held != sweep.name)
    throw OutputError("output folder " + out_dir + " holds the results of sweep '" + *held + "', not '" + sweep.name +
                      "': give this sweep its own --out (a folder keeps one sweep; rerunning the same sweep, even "
                      "edited, resumes it there)");
}
}  // namespace

int run_sweep(const Sweep& sweep, const Registry& registry, const SweepOptions& o) {
  preflight(sweep, registry, o);
  check_folder_belongs_to(sweep, o.out_dir);
  check_model_datasets(sweep, registry, o);
  fs::create_directories(fs::path(o.out_dir) / "runs");
  return SweepRun(sweep, registry, o).run();
}

}  // namespace modlab::runner

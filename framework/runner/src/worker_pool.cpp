// Worker processes: fork + exec, never a bare fork (LibTorch's thread pools do not survive fork).
#include "worker_pool.hpp"

#include <modlab/errors.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace modlab::runner {

namespace {

pid_t spawn_process(const std::vector<std::string>& args, const std::string& log_path, int& progress_fd,
                    int& command_fd) {
  int prog[2], cmd[2];
  if (pipe2(prog, O_CLOEXEC) != 0 || pipe2(cmd, O_CLOEXEC) != 0)
    throw Error(std::string("pipe: ") + std::strerror(errno));
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
    dup2(prog[1], protocol::kProgressFd);
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

WorkerPool::WorkerPool(std::vector<std::string> args, std::string log_path)
    : args_(std::move(args)), log_path_(std::move(log_path)) {}

WorkerPool::~WorkerPool() {
  for (auto& [pid, w] : workers_) {
    if (w.progress_fd >= 0) close(w.progress_fd);
    if (w.command_fd >= 0) close(w.command_fd);
  }
}

Worker& WorkerPool::spawn() {
  Worker w;
  w.pid = spawn_process(args_, log_path_, w.progress_fd, w.command_fd);
  return workers_[w.pid] = w;
}

void WorkerPool::send(Worker& w, const std::string& line) {
  if (!write_all(w.command_fd, line)) kill(w.pid, SIGKILL);  // reaped later; its run is reported failed
}

void WorkerPool::close_input(Worker& w) {
  if (w.command_fd < 0) return;
  close(w.command_fd);  // EOF: the worker exits
  w.command_fd = -1;
}

void WorkerPool::signal_all(int sig) {
  for (auto& [pid, w] : workers_) kill(pid, sig);
}

void WorkerPool::drain(Worker& w, const LineHandler& on_line) {
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
    on_line(w, line);
  }
}

void WorkerPool::poll(int timeout_ms, const LineHandler& on_line) {
  std::vector<pollfd> pfds;
  for (auto& [pid, w] : workers_) pfds.push_back(pollfd{w.progress_fd, POLLIN, 0});
  ::poll(pfds.data(), pfds.size(), timeout_ms);
  for (auto& [pid, w] : workers_) drain(w, on_line);
}

void WorkerPool::reap(const LineHandler& on_line, const ExitHandler& on_exit) {
  int st = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    auto it = workers_.find(pid);
    if (it == workers_.end()) continue;
    Worker& w = it->second;
    drain(w, on_line);
    on_exit(w, WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st));
    close(w.progress_fd);
    if (w.command_fd >= 0) close(w.command_fd);
    workers_.erase(it);
  }
}

}  // namespace modlab::runner

// Helpers for end-to-end tests that drive the real `modlab` executable.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "../temp_dir.hpp"

namespace e2e {

namespace fs = std::filesystem;

inline std::string exe() {
  const char* e = std::getenv("MODLAB_EXE");
  return e ? e : "modlab";
}

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Result {
  int code = -1;
  std::string output;  // stdout + stderr
};

/// Runs a shell command line, capturing stdout and stderr together.
inline Result sh(const std::string& cmd) {
  Result r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

/// Runs modlab with arguments (already quoted where needed).
inline Result run_modlab(const std::string& args) { return sh(quote(exe()) + " " + args); }

/// Starts modlab in its own process group, output to `log`; returns the pid (= group id).
inline pid_t start_modlab(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    dup2(fileno(stderr), 1);
    std::vector<char*> argv;
    std::string e = exe();
    argv.push_back(const_cast<char*>(e.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

inline int wait_exit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

using modlab_test::TempDir;

/// Polls `cond` every 5 ms for up to `seconds`.
inline bool wait_for(const std::function<bool()>& cond, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

/// Files in `dir` whose names end with `suffix` (0 when `dir` does not exist).
inline std::size_t count_files(const fs::path& dir, const std::string& suffix) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it) {
    const auto s = it->path().filename().string();
    n += s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  return n;
}

inline std::string fixture_plugins() { return std::string(MODLAB_FIXTURE_PLUGIN_DIR) + "/basic"; }

inline bool has_python_h5py() { return sh("/usr/bin/python3 -c 'import h5py'").code == 0; }

}  // namespace e2e

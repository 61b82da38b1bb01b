// Running the modlab executable from a benchmark: quoting, where it is, wall and CPU time of the
// processes a command starts, the machine's load.
#pragma once

#include "bench_util.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

namespace bench {

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline std::string self_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  return std::filesystem::path(std::string(buf, static_cast<std::size_t>(n))).parent_path().string();
}

inline std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// User + system CPU seconds of every finished child process (and their waited-for descendants):
/// unlike wall time, it does not grow when other users load the machine.
inline double children_cpu() {
  rusage u{};
  getrusage(RUSAGE_CHILDREN, &u);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

/// Runs `cmd` and returns (output, wall seconds, CPU seconds of the processes it started).
struct Timed {
  std::string out;
  int code = 0;
  double wall = 0, cpu = 0;
};
inline Timed timed(const std::string& cmd) {
  Timed t;
  const double c0 = children_cpu();
  const auto t0 = std::chrono::steady_clock::now();
  t.out = bench::capture(cmd, &t.code);
  t.wall = seconds_since(t0);
  t.cpu = children_cpu() - c0;
  return t;
}


/// The completed and failed counts of `modlab run`'s last line ("done in …: N completed, M failed"),
/// or false when `out` has no such line.
inline bool sweep_counts(const std::string& out, int& completed, int& failed) {
  static const std::regex done_re(R"(done in [0-9:]+: ([0-9]+) completed, ([0-9]+) failed)");
  std::smatch m;
  if (!std::regex_search(out, m, done_re)) return false;
  completed = std::stoi(m[1]);
  failed = std::stoi(m[2]);
  return true;
}

}  // namespace bench

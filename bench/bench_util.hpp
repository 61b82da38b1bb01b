// Shared helpers for benchmarks: which BLAS LibTorch resolved, tables, running the Python references.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

/// The path of the first library mapped into this process whose path contains one of `parts`, or "".
inline std::string mapped_library(const std::vector<std::string>& parts) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto p = line.find('/');
    if (p == std::string::npos) continue;
    const std::string path = line.substr(p);
    for (const auto& part : parts)
      if (path.find(part) != std::string::npos) return path;
  }
  return "";
}

/// The BLAS library mapped into this process (libblas.so.3 may be OpenBLAS or the slow reference).
inline std::string active_blas() {
  const std::string path = mapped_library({"blas", "mkl"});
  if (path.empty()) return "none mapped";
  char buf[4096];
  const std::string alt = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu";
  const ssize_t n = readlink(alt.c_str(), buf, sizeof buf - 1);
  if (n > 0) return path + " (libblas.so.3 -> " + std::string(buf, static_cast<std::size_t>(n)) + ")";
  return path;
}

/// The allocator serving malloc in this process: modlab's executables link tcmalloc when it is
/// installed (framework/cmake/modlab.cmake), else glibc's malloc, which the trainer tunes with
/// mallopt (framework/runner/src/trainer.cpp).
inline std::string active_allocator() {
  const std::string tc = mapped_library({"libtcmalloc"});
  return tc.empty() ? "glibc malloc (mallopt: mmap threshold 32 MiB, trim threshold 1 GiB)" : "tcmalloc " + tc;
}

/// An environment prefix for a shell command that gives a Python process the allocator set-up of
/// this one: the same tcmalloc preloaded, or glibc with the trainer's mallopt values as tunables.
inline std::string python_allocator_env() {
  const std::string tc = mapped_library({"libtcmalloc"});
  if (!tc.empty()) return "LD_PRELOAD=" + tc + " ";
  return "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824 ";
}

/// `v` with `digits` decimals.
inline std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

/// The options of the training-step benchmarks that race a Python reference.
struct StepOptions {
  int threads = 1, steps = 300, rounds = 3;
  bool python = true;  ///< false with --skip-python
};

/// Reads --threads N, --steps N, --rounds N and --skip-python over `defaults`.
inline StepOptions step_options(int argc, char** argv, StepOptions o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--skip-python") o.python = false;
    if (i + 1 < argc && a == "--threads") o.threads = std::stoi(argv[i + 1]);
    if (i + 1 < argc && a == "--steps") o.steps = std::stoi(argv[i + 1]);
    if (i + 1 < argc && a == "--rounds") o.rounds = std::stoi(argv[i + 1]);
  }
  return o;
}

/// Runs a shell command and returns its stdout.
inline std::string capture(const std::string& cmd, int* code = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (code) *code = st;
  return out;
}

/// Prints a Markdown table.
inline void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w(head.size());
  for (std::size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::cout << "|";
    for (std::size_t i = 0; i < w.size(); ++i) std::cout << " " << std::left << std::setw(static_cast<int>(w[i])) << (i < r.size() ? r[i] : "") << " |";
    std::cout << "\n";
  };
  line(head);
  std::cout << "|";
  for (auto x : w) std::cout << std::string(x + 2, '-') << "|";
  std::cout << "\n";
  for (const auto& r : rows) line(r);
}

inline std::string num(double v, int prec = 3) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(prec) << v;
  return os.str();
}

}  // namespace bench

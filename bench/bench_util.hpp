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

/// The BLAS library mapped into this process (libblas.so.3 may be OpenBLAS or the slow reference).
inline std::string active_blas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto p = line.find('/');
    if (p == std::string::npos) continue;
    std::string path = line.substr(p);
    if (path.find("blas") != std::string::npos || path.find("mkl") != std::string::npos) {
      char buf[4096];
      ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
      std::string real = path;
      if (n > 0) real = std::string(buf, static_cast<std::size_t>(n));
      std::string fs = "/etc/alternatives/libblas.so.3-x86_64-linux-gnu";
      n = readlink(fs.c_str(), buf, sizeof buf - 1);
      if (n > 0) return path + " (libblas.so.3 -> " + std::string(buf, static_cast<std::size_t>(n)) + ")";
      return real;
    }
  }
  return "none mapped";
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

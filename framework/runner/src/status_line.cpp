#include "status_line.hpp"

#include <modlab/runner/show.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace modlab::runner {

std::string hms(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

namespace {
// Fraction of a run done, from its last progress line.
double fraction_done(const ActiveRun& r) {
  if (!r.has_progress || r.last.epochs <= 0) return 0.0;
  return (static_cast<double>(r.last.phase_index) +
          static_cast<double>(r.last.epoch) / static_cast<double>(r.last.epochs)) /
         static_cast<double>(std::max<std::int64_t>(1, r.last.phases));
}
}  // namespace

std::string status_text(std::size_t done, std::size_t todo, std::size_t runs_in_sweep,
                        const std::vector<ActiveRun>& running, double elapsed) {
  double frac_done = static_cast<double>(done);
  std::ostringstream os;
  os << "[" << done << "/" << todo << "]";
  for (const auto& r : running) {
    frac_done += fraction_done(r);
    os << "  run " << (r.index + 1) << "/" << runs_in_sweep << " " << r.run_id.substr(0, 6);
    if (r.has_progress)
      os << " " << (r.last.phases > 1 ? r.last.phase + " " : "") << "epoch " << r.last.epoch << "/" << r.last.epochs
         << " loss " << std::setprecision(4) << r.last.loss;
  }
  double eta = frac_done > 0 ? elapsed * (static_cast<double>(todo) - frac_done) / frac_done : -1;
  os << "  ETA " << hms(eta);
  return os.str();
}

void StatusLine::clear() {
  if (tty_ && !shown_.empty()) {
    std::cerr << "\r\033[K";
    shown_.clear();
  }
}

void StatusLine::print(const std::string& line) {
  clear();
  std::cerr << line << "\n";
}

void StatusLine::show(const std::string& text) {
  if (!tty_) return;
  shown_ = text;
  // One terminal line, or a redraw leaves the wrapped rest behind on every update.
  const std::size_t width = terminal_width(STDERR_FILENO);
  std::cerr << "\r\033[K" << shown_.substr(0, width > 1 ? width - 1 : width) << std::flush;
}

}  // namespace modlab::runner

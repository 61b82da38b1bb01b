#pragma once
// What a running sweep prints on stderr: one line per event, and on a terminal a status line
// (runs done, each running run's epoch and loss, ETA) redrawn in place below them.
#include <modlab/runner/trainer.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace modlab::runner {

/// "m:ss" or "h:mm:ss"; "?" for a negative or absurd value.
std::string hms(double seconds);

/// A run in progress, as the status line shows it.
struct ActiveRun {
  std::int64_t index = 0;  ///< in the sweep, from 0
  std::string run_id;
  bool has_progress = false;
  Progress last;
};

/// "[done/todo]  run i/n id epoch e/E loss l …  ETA h:mm:ss"; the ETA extrapolates the elapsed time
/// over the fraction of the runs done, counting the running ones by their epochs.
std::string status_text(std::size_t done, std::size_t todo, std::size_t runs_in_sweep,
                        const std::vector<ActiveRun>& running, double elapsed_s);

class StatusLine {
 public:
  explicit StatusLine(bool tty) : tty_(tty) {}
  bool tty() const { return tty_; }
  /// Prints one event line (above the status line, which is redrawn later).
  void print(const std::string& line);
  /// Redraws the status line (only on a terminal).
  void show(const std::string& text);
  void clear();

 private:
  bool tty_;
  std::string shown_;
};

}  // namespace modlab::runner

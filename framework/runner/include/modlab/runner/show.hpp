#pragma once
// `modlab show`: a results folder's summary as a table, one row per run or per group of runs
// (mean ± std over seeds), sorted, with chosen columns, aligned to the terminal or as CSV.
#include <modlab/runner/h5.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace modlab::runner {

struct TextTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

struct ShowOptions {
  std::vector<std::string> metric_filters;  ///< substrings selecting metric columns; empty = all
  /// Group runs by these varied keys (an empty list: by every varied key but run.seed, i.e.
  /// average over seeds); nullopt: one row per run.
  std::optional<std::vector<std::string>> group_by;
  std::string sort;                   ///< column to sort by ("" = sweep order)
  bool reverse = false;               ///< sort descending
  std::vector<std::string> columns;   ///< columns to show, in this order (empty = all)
  bool csv = false;
  std::size_t width = 0;              ///< fit an aligned table to this many columns (0 = no limit)
};

/// The metric columns of `rows` that `filters` select (fit_* losses left out), sorted by name.
std::vector<std::string> shown_metrics(const std::vector<RunSummary>& rows, const std::vector<std::string>& filters);

/// One row per run: #, run_id, status, the varied keys, the metrics (4 significant digits).
TextTable run_table(const std::vector<RunSummary>& rows, const std::vector<std::string>& varied,
                    const std::vector<std::string>& metrics);

/// One row per distinct value of the `keys` (in order of first appearance): the keys, `runs`
/// (completed / all), then each metric as "mean ± std" (sample std; the mean alone over one run)
/// of the completed runs. ConfigError naming an unknown key.
TextTable grouped_table(const std::vector<RunSummary>& rows, const std::vector<std::string>& varied,
                        const std::vector<std::string>& keys, const std::vector<std::string>& metrics);

/// Sorts by a column (numbers by value, then text; empty cells last), keeps only `columns` and
/// renders as CSV or aligned; an aligned table wider than `width` drops its last columns and says
/// how many. ConfigError naming an unknown column, with the closest one.
std::string render(TextTable t, const ShowOptions& o);

/// The summary of the results folder `dir` as `modlab show` prints it.
std::string show_summary(const std::string& dir, const ShowOptions& o);

/// Columns of the terminal on file descriptor `fd`; COLUMNS, else 80, when it is not a terminal.
std::size_t terminal_width(int fd);

}  // namespace modlab::runner

#pragma once
// modlab's HDF5 output: a small RAII layer over the HDF5 C API (h5_raii.hpp) and the two file
// kinds modlab writes, documented in docs/output-format.md:
//   runs/<run_id>.h5  one file per run (written as <run_id>.h5.partial, SWMR while training)
//   sweep.h5          index of a sweep: external links to every run + a summary table

#include <modlab/recorder.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace modlab::runner {

inline constexpr int kSchemaVersion = 1;

/// Everything a run file holds that is not a tensor: the in-memory history the writer mirrors to
/// disk. Saved inside checkpoints so a resumed run can rebuild its .partial file exactly.
struct RunHistory {
  std::vector<std::int64_t> epoch;             ///< one entry per metrics row
  std::vector<std::int64_t> step;              ///< optimizer steps at that row
  std::vector<std::string> phase;              ///< phase name of that row
  std::map<std::string, std::vector<double>> metrics;  ///< name → one value per row (NaN = not logged)
  /// tensors appended per row: name → (dims, list of tensors)
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<torch::Tensor>>> appended;
  std::map<std::string, std::string> notes;
};

/// Writes one run file. Created as `<final_path>.partial`; `finish` writes the closing attributes
/// and renames it to `final_path`. After each `flush` the file is in SWMR mode, so h5py can read it
/// live (`h5py.File(p, "r", libver="latest", swmr=True)`). HDF5 cannot create objects or attributes
/// under SWMR, so a new metric or tensor name, a note or an attribute closes and reopens the file
/// normally until the next `flush`. Metric names may not contain '/'; tensor names may ('a/b' nests
/// groups under tensors/). Errors are OutputError naming the file and object. Not thread-safe.
class RunWriter : public Recorder {
 public:
  /// `attributes` are root attributes written at creation (run_id, config, seed, plugin names ...).
  /// Any stale `.partial` at that path is replaced. When `history` is given (resume), its rows are
  /// written first.
  RunWriter(std::string final_path, std::map<std::string, std::string> attributes,
            std::map<std::string, std::int64_t> int_attributes, const RunHistory* history = nullptr);
  ~RunWriter() override;  ///< closes without renaming (the .partial stays) if finish was not called

  /// Starts a new metrics row; scalars until the next begin_row land in it. Rows are kept in memory
  /// and written by flush (and finish, and the destructor).
  void begin_row(std::int64_t epoch, std::int64_t step, const std::string& phase);
  /// Makes everything written so far visible to readers (H5Fflush).
  void flush();

  // Recorder
  void scalar(const std::string& name, double value) override;
  void tensor(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& dims = {}) override;
  void append(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& dims = {}) override;
  void note(const std::string& name, const std::string& value) override;
  void table(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& rows,
             const std::vector<std::string>& columns) override;

  /// Sets/overwrites a root string attribute (leaves SWMR mode until the next flush).
  void set_attribute(const std::string& name, const std::string& value);
  /// Writes status ("completed", "failed", "interrupted"), error and end_time into a compact copy
  /// of the file (metric columns gzip-compressed; the live file cannot compress them, see
  /// docs/output-format.md) and renames it to the final path, removing the .partial. For
  /// "interrupted" the copy replaces the `.partial` instead. Later calls throw OutputError.
  void finish(const std::string& status, const std::string& error = "");

  const RunHistory& history() const;
  const std::string& partial_path() const;
  const std::string& final_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Writes the checksum of a finished run file into its 512-byte HDF5 user block (which HDF5 tools
/// skip): the text "modlab run file checksum 1", the CRC-32 of every byte after the block and their
/// count. RunWriter::finish seals every file it writes. OutputError when the file cannot be written.
void seal_run_file(const std::string& path);
/// "" when the file's bytes still match its seal; "no checksum" when it has none (written before
/// run files were sealed); otherwise what is wrong (truncated, changed, unreadable).
std::string run_file_checksum_problem(const std::string& path);
/// "crc32 <8 hex digits> bytes <n>" of a whole file: what runs record of each plugin they load.
/// OutputError when it cannot be read.
std::string file_checksum(const std::string& path);

/// What `sweep.h5` and `modlab show` list for a run.
struct RunSummary {
  std::string run_id;
  std::int64_t index = 0;
  std::int64_t seed = 0;
  std::string status;  ///< completed / failed / interrupted / pending / running
  std::string error;
  std::string file;    ///< path of the run file relative to the sweep folder ("" if none)
  std::map<std::string, std::string> params;  ///< varied config keys → TOML literal
  std::map<std::string, double> final_metrics;  ///< last non-NaN value of each metric
  std::string config;  ///< resolved config (TOML text) from a run file; not stored in sweep.h5
};

/// Reads a run file's root attributes (run_id, seed, index, status, error, config) and final
/// metrics; `file` is set to `path`. Opens read-only, in SWMR-read mode if the file is being written.
/// nullopt if the file does not exist or cannot be read (a crashed .partial), or if its bytes no
/// longer match its seal: damaged bytes are never handed to HDF5, whose reader can crash on them.
/// `checksum_verified`: the caller has just checked the seal (run_file_checksum_problem), so it is
/// not read twice.
std::optional<RunSummary> read_run_summary(const std::string& path, bool checksum_verified = false);

/// A labelled table a model recorded (Recorder::table).
struct RunTable {
  std::string name;  ///< below tensors/tables/, e.g. "valid/accuracy"
  std::vector<std::string> rows, columns;
  std::vector<double> values;  ///< row-major [rows, columns]
};

/// Every table under `tensors/tables/` of a run file, sorted by name (empty when it has none).
/// Throws OutputError when the file cannot be read or a table is malformed.
std::vector<RunTable> read_run_tables(const std::string& path);

/// Writes `<dir>/sweep.h5` (via a temp file and rename): root attributes (schema_version, sweep name,
/// sweep file, sweep TOML text, modlab version, updated time), `runs/<run_id>` external links to each
/// run file that exists, and `summary`, a compound table with one row per run: run_id, index, seed,
/// status, error, one column per varied key (string), one float64 column per final metric.
void write_sweep_index(const std::string& dir, const std::string& sweep_name, const std::string& sweep_file,
                       const std::string& sweep_text, const std::vector<std::string>& varied_keys,
                       const std::vector<RunSummary>& runs);

/// The `sweep_name` attribute of `<dir>/sweep.h5`; nullopt when there is no readable index.
std::optional<std::string> read_sweep_name(const std::string& dir);

/// Reads the summary table of `<dir>/sweep.h5` back (for `modlab show`); NaN metric cells are left
/// out of `final_metrics`. Throws OutputError if the index is missing or unreadable.
std::vector<RunSummary> read_sweep_index(const std::string& dir, std::vector<std::string>* varied_keys = nullptr);

}  // namespace modlab::runner

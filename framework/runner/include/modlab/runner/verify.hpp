#pragma once
// Trusting a results folder: a run file is reused only when its bytes match the checksum written
// when it was finished and it is the file of the run its name says (run id and config). Used by
// `modlab run` before it skips a run as done, and by `modlab verify DIR`.

#include <ostream>
#include <string>

namespace modlab::runner {

/// Why the run file at `path` cannot be trusted as run `run_id`, or "" when it can: its seal does
/// not match its bytes, HDF5 cannot read it, or its run_id attribute or config belong to another run.
/// A file without a seal (written before run files were sealed) is judged on the rest.
std::string run_file_problem(const std::string& path, const std::string& run_id);

/// Renames a run file that cannot be trusted to `<path>.rejected-<UTC time>` (never deletes it)
/// and returns the new path; OutputError naming both paths when the rename fails.
std::string move_aside(const std::string& path);

/// `modlab verify DIR`: checks every run file in DIR/runs (run_file_problem, with the id its name
/// gives) and that DIR/sweep.h5 can be read; prints one line per file to `out`. Returns the number
/// of files with a problem.
int verify_folder(const std::string& dir, std::ostream& out);

}  // namespace modlab::runner

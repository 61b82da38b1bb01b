#pragma once
// The exit codes of the `modlab` executable, named once: `main` returns them, `modlab --help`
// and the docs list them, scripts and job arrays branch on them.

namespace modlab::runner {

enum class ExitCode : int {
  Ok = 0,            ///< every run completed (or the command succeeded)
  RunsFailed = 1,    ///< the sweep ran, and at least one run failed (the others are kept)
  BadInput = 2,      ///< bad command line, sweep file, config or output folder: nothing ran
  Interrupted = 130, ///< stopped by SIGINT/SIGTERM (Ctrl-C); rerunning resumes (128 + SIGINT, as shells do)
};

/// The process exit status of `code`.
constexpr int exit_status(ExitCode code) { return static_cast<int>(code); }

/// The lines `modlab --help` prints about exit codes.
inline const char* exit_codes_help() {
  return "exit codes:\n"
         "  0    every run completed (or the command succeeded)\n"
         "  1    some runs failed (the others completed and are kept; `modlab show` lists why)\n"
         "  2    bad input: command line, sweep file, config keys/values or output folder; nothing ran\n"
         "  130  interrupted (Ctrl-C / SIGTERM); running runs checkpointed, rerun to resume\n";
}

}  // namespace modlab::runner

#pragma once
// `modlab slurm`: a sweep as one Slurm job array. Array task i runs `modlab run --shard i/N` into
// the shared output folder; each run is taken under its own lock and sweep.h5 is rewritten under
// its lock, so the tasks never write the same file at once, and submitting again resumes.

#include <string>
#include <vector>

namespace modlab::runner {

/// What the job script runs and asks Slurm for.
struct SlurmJob {
  std::string sweep_name;
  std::string exe;                    ///< absolute path of the modlab executable
  std::string sweep_file;             ///< absolute path of the sweep file
  std::string out_dir;                ///< absolute output folder (shared by all array tasks)
  std::vector<std::string> run_args;  ///< further `modlab run` arguments (--set, --plugin-path, --device)
  int runs = 0;                       ///< runs in the sweep
  int tasks = 0;                      ///< array tasks (shards), 1 ≤ tasks ≤ runs
  int cpus_per_task = 1;
  int jobs = 1;                       ///< runs at once inside one task (≤ cpus_per_task)
};

/// Array tasks for `runs` runs when `--tasks` gave `requested` (0 = one per run, at most
/// `max_tasks`); ConfigError when the request is out of range.
int slurm_task_count(int runs, int requested, int max_tasks = 1000);
/// Runs at once inside one task: `requested`, or (0) as many as the task has CPUs, never more than
/// the runs of the largest shard.
int slurm_jobs_per_task(int runs, int tasks, int cpus_per_task, int requested);

/// The sbatch script: #SBATCH lines (job name, array 0..tasks-1, CPUs per task, output files in
/// OUT/slurm/) and the `modlab run --shard $SLURM_ARRAY_TASK_ID/tasks` line, every argument quoted.
std::string slurm_script(const SlurmJob& job);

/// Writes the script to OUT/slurm/<sweep>.sbatch and submits it with `sbatch --parsable
/// [sbatch_args] script`; returns the job id (also kept in OUT/slurm/job_id). Error when sbatch is
/// missing or refuses, or when the job recorded for OUT is still queued or running (unless force).
std::string submit_slurm_job(const SlurmJob& job, const std::vector<std::string>& sbatch_args, bool force);

/// `arg` quoted for bash (single quotes; a ' inside becomes '\'').
std::string shell_quote(const std::string& arg);

}  // namespace modlab::runner

// `modlab slurm`: the job script of a sweep's job array, and its submission with sbatch.
#include <modlab/errors.hpp>
#include <modlab/runner/slurm.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace modlab::runner {

int slurm_task_count(int runs, int requested, int max_tasks) {
  if (runs < 1) throw ConfigError("slurm: the sweep has no runs");
  if (requested < 0) throw ConfigError("--tasks: expected 0 (one per run) or a positive number, found " + std::to_string(requested));
  if (requested > runs)
    throw ConfigError("--tasks " + std::to_string(requested) + ": the sweep has only " + std::to_string(runs) +
                      " runs (a task without runs would do nothing)");
  if (requested > max_tasks)
    throw ConfigError("--tasks " + std::to_string(requested) + ": more than " + std::to_string(max_tasks) +
                      " array tasks (Slurm's default MaxArraySize is 1001)");
  return requested > 0 ? requested : std::min(runs, max_tasks);
}

int slurm_jobs_per_task(int runs, int tasks, int cpus_per_task, int requested) {
  if (cpus_per_task < 1) throw ConfigError("--cpus-per-task: expected a positive number, found " + std::to_string(cpus_per_task));
  if (requested < 0) throw ConfigError("--jobs: expected 0 (one per CPU of a task) or a positive number, found " + std::to_string(requested));
  const int largest_shard = (runs + tasks - 1) / tasks;
  return std::max(1, std::min(requested > 0 ? requested : cpus_per_task, largest_shard));
}

std::string shell_quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string slurm_script(const SlurmJob& job) {
  const std::string logs = (fs::path(job.out_dir) / "slurm").string();
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# Sweep '" << job.sweep_name << "': " << job.runs << " runs in " << job.tasks << " array tasks; task i runs\n"
    << "# the runs whose index % " << job.tasks << " == i. Written by `modlab slurm`; submitting it again resumes\n"
    << "# (completed runs are skipped, runs another task holds are left to it).\n"
    << "#SBATCH --job-name=" << "modlab-" << job.sweep_name << "\n"
    << "#SBATCH --array=0-" << job.tasks - 1 << "\n"
    << "#SBATCH --cpus-per-task=" << job.cpus_per_task << "\n"
    << "#SBATCH --output=" << logs << "/%A_%a.out\n"
    << "set -euo pipefail\n"
    << "threads=${SLURM_CPUS_PER_TASK:-" << job.cpus_per_task << "}\n"
    << "exec " << shell_quote(job.exe) << " run " << shell_quote(job.sweep_file) << " --out " << shell_quote(job.out_dir)
    << " \\\n  --shard \"${SLURM_ARRAY_TASK_ID}/" << job.tasks << "\" --jobs " << job.jobs << " --threads \"$threads\"";
  for (const auto& a : job.run_args) s << " " << shell_quote(a);
  s << "\n";
  return s.str();
}

namespace {

/// Runs argv (no shell), returning its exit status and its stdout and stderr together.
int run_program(const std::vector<std::string>& argv, std::string& output) {
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + shell_quote(a);
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) throw Error("cannot start " + argv.front());
  std::array<char, 4096> buf{};
  output.clear();
  for (std::size_t n; (n = fread(buf.data(), 1, buf.size(), pipe)) > 0;) output.append(buf.data(), n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

/// The job id a previous `modlab slurm` recorded in OUT/slurm/job_id, if that job is still queued
/// or running.
std::string active_job(const fs::path& id_file) {
  std::ifstream in(id_file);
  std::string id;
  if (!(in >> id)) return "";
  std::string out;
  if (run_program({"squeue", "--noheader", "--jobs", id, "--format", "%i"}, out) != 0) return "";
  return trimmed(out).empty() ? "" : id;
}

}  // namespace

std::string submit_slurm_job(const SlurmJob& job, const std::vector<std::string>& sbatch_args, bool force) {
  const fs::path dir = fs::path(job.out_dir) / "slurm";
  std::string found;
  if (run_program({"sh", "-c", "command -v sbatch"}, found) != 0)
    throw Error("sbatch is not on PATH: `modlab slurm` submits with Slurm's sbatch (Debian: slurm-client); "
                "--dry-run prints the job script without submitting it");
  if (const std::string id = active_job(dir / "job_id"); !id.empty() && !force)
    throw Error("job " + id + " of this output folder (" + job.out_dir + ") is still queued or running; it runs " +
                "this sweep already (--force submits another, whose tasks share the work with it)");
  fs::create_directories(dir);
  const fs::path script = dir / (job.sweep_name + ".sbatch");
  std::ofstream(script) << slurm_script(job);
  std::vector<std::string> argv = {"sbatch", "--parsable"};
  argv.insert(argv.end(), sbatch_args.begin(), sbatch_args.end());
  argv.push_back(script.string());
  std::string out;
  if (run_program(argv, out) != 0) throw Error("sbatch refused the job script " + script.string() + ":\n" + trimmed(out));
  const std::string text = trimmed(out);  // sbatch's warnings, if any, come before the id
  const auto nl = text.rfind('\n');
  const std::string line = nl == std::string::npos ? text : text.substr(nl + 1);
  const std::string id = line.substr(0, line.find(';'));  // --parsable: "<id>" or "<id>;<cluster>"
  std::ofstream(dir / "job_id") << id << "\n";
  return id;
}

}  // namespace modlab::runner

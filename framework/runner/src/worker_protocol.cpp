// Formatting and parsing of the scheduler ↔ worker lines (worker_protocol.hpp has the format).
#include <modlab/runner/worker_protocol.hpp>

#include <iomanip>
#include <sstream>

namespace modlab::runner::protocol {

std::string format_run_command(const RunCommand& c) {
  return "run " + c.run_id + " " + std::to_string(c.index) + " " + std::to_string(c.seed) + " " + c.spec_file + "\n";
}

std::string format_population_command(const std::vector<RunCommand>& members) {
  std::string out = "population " + std::to_string(members.size()) + "\n";
  for (const auto& m : members) out += format_run_command(m);
  return out;
}

std::optional<std::size_t> parse_population_header(const std::string& line) {
  std::istringstream is(line);
  std::string tag;
  std::size_t n = 0;
  if (!(is >> tag >> n) || tag != "population" || n < 1) return std::nullopt;
  return n;
}

std::optional<RunCommand> parse_run_command(const std::string& line) {
  std::istringstream is(line);
  std::string tag;
  RunCommand c;
  if (!(is >> tag >> c.run_id >> c.index >> c.seed >> c.spec_file) || tag != "run") return std::nullopt;
  return c;
}

std::string format_progress(const Progress& p) {
  std::ostringstream os;
  os << "progress " << p.phase << " " << p.phase_index << " " << p.phases << " " << p.epoch << " " << p.epochs << " "
     << std::setprecision(6) << p.loss << " " << p.step << "\n";
  return os.str();
}

std::string format_done(WorkerCode code) { return "done " + std::to_string(static_cast<int>(code)) + "\n"; }

std::string format_unbatched() { return "unbatched\n"; }

std::optional<WorkerLine> parse_worker_line(const std::string& line) {
  std::istringstream is(line);
  std::string tag;
  is >> tag;
  WorkerLine w;
  if (tag == "progress") {
    Progress& p = w.progress;
    if (!(is >> p.phase >> p.phase_index >> p.phases >> p.epoch >> p.epochs >> p.loss >> p.step)) return std::nullopt;
    w.kind = WorkerLine::Kind::Progress;
    return w;
  }
  if (tag == "done" && (is >> w.code)) {
    w.kind = WorkerLine::Kind::Done;
    return w;
  }
  if (tag == "unbatched") {
    w.kind = WorkerLine::Kind::Unbatched;
    return w;
  }
  return std::nullopt;
}

WorkerCode code_of(RunStatus status) {
  switch (status) {
    case RunStatus::Completed: return WorkerCode::Completed;
    case RunStatus::Interrupted: return WorkerCode::Interrupted;
    case RunStatus::Failed: break;
  }
  return WorkerCode::Failed;
}

}  // namespace modlab::runner::protocol

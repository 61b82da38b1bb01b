// Checking run files before they are trusted (see verify.hpp).
#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/verify.hpp>

#include <ctime>
#include <filesystem>
#include <set>

namespace fs = std::filesystem;

namespace modlab::runner {

std::string run_file_problem(const std::string& path, const std::string& run_id) {
  const std::string sum = run_file_checksum_problem(path);
  if (!sum.empty() && sum != "no checksum") return sum;
  const auto s = read_run_summary(path, /*checksum_verified=*/true);
  if (!s) return "HDF5 cannot read it";
  if (s->run_id != run_id) return "it is the file of run " + (s->run_id.empty() ? "(none)" : s->run_id) + ", not " + run_id;
  try {
    const std::string of_config = run_id_of(parse_toml(s->config, path + " (config attribute)"));
    if (of_config != run_id) return "its config is that of run " + of_config + ", not " + run_id;
  } catch (const std::exception&) {
    return "its config attribute cannot be parsed";
  }
  return "";
}

std::string move_aside(const std::string& path) {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
  std::string target = path + ".rejected-" + stamp;
  for (int i = 1; fs::exists(target); ++i) target = path + ".rejected-" + stamp + "-" + std::to_string(i);
  std::error_code ec;
  fs::rename(path, target, ec);
  if (ec) throw OutputError("cannot move '" + path + "' aside to '" + target + "': " + ec.message());
  return target;
}

int verify_folder(const std::string& dir, std::ostream& out) {
  const fs::path runs = fs::path(dir) / "runs";
  if (!fs::is_directory(runs)) throw OutputError(dir + ": no runs/ folder here (is it a sweep's output folder?)");
  std::set<fs::path> files;
  for (const auto& e : fs::directory_iterator(runs))
    if (e.path().extension() == ".h5" && e.is_regular_file()) files.insert(e.path());
  int bad = 0, unsealed = 0;
  for (const auto& f : files) {
    const std::string id = f.stem().string();
    std::string problem = run_file_problem(f.string(), id);
    if (problem.empty() && run_file_checksum_problem(f.string()) == "no checksum") {
      ++unsealed;
      out << f.string() << ": ok (no checksum: written before run files were sealed; identity checked)\n";
      continue;
    }
    if (!problem.empty()) ++bad;
    out << f.string() << ": " << (problem.empty() ? "ok" : problem) << "\n";
  }
  const fs::path index = fs::path(dir) / "sweep.h5";
  if (fs::exists(index)) {
    try {
      read_sweep_index(dir);
      out << index.string() << ": ok\n";
    } catch (const std::exception& e) {
      ++bad;
      out << index.string() << ": " << e.what() << "\n";
    }
  }
  out << files.size() << " run files, " << bad << " with a problem" << (unsealed ? ", " + std::to_string(unsealed) + " without a checksum" : "")
      << "\n";
  return bad;
}

}  // namespace modlab::runner

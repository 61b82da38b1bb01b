#include "provenance.hpp"

#include <modlab/runner/sweep.hpp>

#include <torch/version.h>

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace modlab::runner {

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string git_revision() {
  // Read .git/HEAD of the source tree directly: no subprocess, works without git installed.
  try {
    fs::path git = fs::path(MODLAB_SOURCE_DIR) / ".git";
    std::ifstream head((git / "HEAD").string());
    std::string line;
    if (!std::getline(head, line)) return "unknown";
    if (line.rfind("ref: ", 0) != 0) return line;
    std::string ref = line.substr(5);
    std::ifstream r((git / ref).string());
    std::string sha;
    if (std::getline(r, sha)) return sha;
    std::ifstream packed((git / "packed-refs").string());
    while (std::getline(packed, line))
      if (line.size() > 41 && line.compare(41, std::string::npos, ref) == 0) return line.substr(0, 40);
  } catch (...) {
  }
  return "unknown";
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

RunAttributes run_attributes(const RunRequest& req, const Registry& registry, const std::string& dplug,
                             const std::string& mplug) {
  const auto& downer = registry.owner_of_dataset(dplug);
  const auto& mowner = registry.owner_of_model(mplug);
  RunAttributes a;
  a.text = {
      {"run_id", req.run_id},
      {"sweep", req.sweep_name},
      {"config", canonical_text(*req.config)},
      {"dataset_plugin", dplug},
      {"dataset_plugin_version", downer.info->version},
      {"model_plugin", mplug},
      {"model_plugin_version", mowner.info->version},
      {"git_revision", git_revision()},
      {"modlab_version", MODLAB_VERSION},
      {"torch_version", TORCH_VERSION},
      {"host", host_name()},
      {"device", req.device.str()},
      {"start_time", now_iso()},
      {"status", "running"},
      {"error", ""},
  };
  a.integers = {{"seed", req.seed}, {"index", req.index}, {"threads", req.threads}};
  return a;
}

}  // namespace modlab::runner

#include "provenance.hpp"

#include <modlab/runner/h5.hpp>
#include <modlab/runner/sweep.hpp>

#include <torch/version.h>

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>

namespace modlab::runner {

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The modlab executable links the definition generated at build time
// (framework/cmake/git_revision.cmake); this weak one serves everything else.
__attribute__((weak)) const char* build_git_revision() { return "unknown"; }

std::string git_revision() { return build_git_revision(); }

/// A plugin's checksum, read once per process: a worker runs many runs with the same plugins.
std::string plugin_checksum(const std::string& file) {
  static std::mutex m;
  static std::map<std::string, std::string> known;
  std::lock_guard<std::mutex> lock(m);
  auto it = known.find(file);
  if (it == known.end()) it = known.emplace(file, file_checksum(file)).first;
  return it->second;
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
      {"dataset_plugin_file", std::filesystem::absolute(downer.file).string()},
      {"dataset_plugin_checksum", plugin_checksum(downer.file)},
      {"model_plugin", mplug},
      {"model_plugin_version", mowner.info->version},
      {"model_plugin_file", std::filesystem::absolute(mowner.file).string()},
      {"model_plugin_checksum", plugin_checksum(mowner.file)},
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

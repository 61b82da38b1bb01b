#pragma once
// What a run file records about where and with what it ran: source revision, host, versions of
// modlab, LibTorch and the two plugins, the resolved config, start time.
#include <modlab/runner/registry.hpp>
#include <modlab/runner/trainer.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace modlab::runner {

/// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
std::string now_iso();
/// Commit of the source tree modlab was built from ("unknown" without a .git).
std::string git_revision();
std::string host_name();

/// The run file's attributes.
struct RunAttributes {
  std::map<std::string, std::string> text;
  std::map<std::string, std::int64_t> integers;
};

/// Attributes of a run about to start (status "running"), for `dataset_plugin` / `model_plugin`.
RunAttributes run_attributes(const RunRequest& request, const Registry& registry, const std::string& dataset_plugin,
                             const std::string& model_plugin);

}  // namespace modlab::runner

#include <modlab/errors.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/weights.hpp>

#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace modlab::runner {

RunHost::RunHost(const Registry& registry, HostOptions options) : registry_(registry), options_(std::move(options)) {}
RunHost::~RunHost() = default;

std::shared_ptr<Model> RunHost::create_model(const std::string& plugin, const Config& config, const DatasetSpec& spec) {
  const auto& entry = registry_.model(plugin);
  validate_model_table(config, entry.keys, registry_);
  std::shared_ptr<Model> m;
  try {
    m = entry.factory(config, spec, *this);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw PluginError("model plugin '" + plugin + "' (" + registry_.owner_of_model(plugin).file +
                ") failed to build: " + e.what());
  }
  if (!m) throw PluginError("model plugin '" + plugin + "' returned no model");
  return m;
}

std::shared_ptr<Dataset> RunHost::create_dataset(const std::string& plugin, const Config& config) {
  const auto& entry = registry_.dataset(plugin);
  validate_keys(config, entry.keys, {"plugin"});
  std::shared_ptr<Dataset> d;
  try {
    d = entry.factory(config, *this);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw PluginError("dataset plugin '" + plugin + "' (" + registry_.owner_of_dataset(plugin).file +
                ") failed to build: " + e.what());
  }
  if (!d) throw PluginError("dataset plugin '" + plugin + "' returned no dataset");
  return d;
}

std::string RunHost::resolve_path(const std::string& path) const {
  fs::path p(path);
  if (p.is_absolute()) return p.string();
  return (fs::path(options_.sweep_dir) / p).lexically_normal().string();
}

std::string RunHost::model_weights_of(const std::string& run_ref) const {
  // "<results dir>/<run_id>" relative to the sweep file, or a bare run id in this sweep's output.
  fs::path ref(run_ref);
  fs::path dir = ref.has_parent_path() ? fs::path(resolve_path(ref.parent_path().string())) : fs::path(options_.results_dir);
  std::string id = ref.filename().string();
  if (id == "same-seed") {
    // The one completed run of that folder with this run's seed (a staged experiment run per seed).
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir / "runs", ec)) {
      if (e.path().extension() != ".h5") continue;
      auto s = read_run_summary(e.path().string());
      if (s && s->status == "completed" && static_cast<std::uint64_t>(s->seed) == options_.seed) found.push_back(s->run_id);
    }
    if (found.empty())
      throw ConfigError("run '" + run_ref + "': no completed run with seed " + std::to_string(options_.seed) + " in " +
                        (dir / "runs").string());
    if (found.size() > 1)
      throw ConfigError("run '" + run_ref + "': " + std::to_string(found.size()) + " completed runs with seed " +
                        std::to_string(options_.seed) + " in " + dir.string() + " (" + found[0] + ", " + found[1] +
                        (found.size() > 2 ? ", ..." : "") + "); refer to one by its run id");
    id = found.front();
  }
  fs::path run_file = dir / "runs" / (id + ".h5");
  auto summary = read_run_summary(run_file.string());
  if (!summary) throw ConfigError("run '" + run_ref + "': no finished run file at " + run_file.string());
  if (summary->status != "completed")
    throw ConfigError("run '" + run_ref + "' did not complete (status " + summary->status + ")");
  fs::path weights = dir / "runs" / (id + ".weights.pt");
  if (!fs::exists(weights)) throw ConfigError("run '" + run_ref + "': weights file missing: " + weights.string());
  return weights.string();
}

void RunHost::load_weights(torch::nn::Module& module, const std::string& run_ref, const std::string& part) const {
  const std::string file = model_weights_of(run_ref);
  load_weights_into(module, read_weights_file(file), part, "run '" + run_ref + "' (" + file + ")");
}

void RunHost::log(const std::string& message) {
  if (options_.logger) options_.logger(message);
  else std::cerr << message << "\n";
}

}  // namespace modlab::runner

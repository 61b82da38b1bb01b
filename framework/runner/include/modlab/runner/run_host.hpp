#pragma once
// The Host implementation the trainer hands to plugins.

#include <modlab/host.hpp>
#include <modlab/runner/registry.hpp>

#include <functional>
#include <string>

namespace modlab::runner {

struct HostOptions {
  torch::Device device = torch::kCPU;
  std::uint64_t seed = 0;
  int threads = 1;
  std::string run_dir = ".";      ///< folder for this run's side files
  std::string sweep_dir = ".";    ///< folder of the sweep file (relative paths in it resolve here)
  std::string results_dir = ".";  ///< output folder of the sweep (holds runs/ and shared/)
  std::shared_ptr<const Value> config;  ///< the run's resolved config (identity of shared files); may be null
  std::function<void(const std::string&)> logger;  ///< null: stderr
  /// Preflight builds models only to ask for their phases and parameter groups: share() then
  /// touches no file and answers "not ready", so nothing is written or locked.
  bool inspect_only = false;
};

class RunHost : public Host {
 public:
  RunHost(const Registry& registry, HostOptions options);
  ~RunHost() override;
  std::shared_ptr<Model> create_model(const std::string& plugin, const Config& config, const DatasetSpec& spec) override;
  std::shared_ptr<Dataset> create_dataset(const std::string& plugin, const Config& config) override;
  torch::Device device() const override { return options_.device; }
  std::uint64_t seed() const override { return options_.seed; }
  int num_threads() const override { return options_.threads; }
  std::string run_dir() const override { return options_.run_dir; }
  std::string resolve_path(const std::string& path) const override;
  std::string model_weights_of(const std::string& run_ref) const override;
  void load_weights(torch::nn::Module& module, const std::string& run_ref, const std::string& part) const override;
  void log(const std::string& message) override;
  std::unique_ptr<SharedFile> share(const std::string& name, const std::vector<std::string>& config_keys,
                                    const std::string& extra) override;

 private:
  const Registry& registry_;
  HostOptions options_;
};

}  // namespace modlab::runner

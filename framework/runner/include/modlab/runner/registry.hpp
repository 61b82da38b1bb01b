#pragma once
// Plugin loading (Boost.DLL) and the registry of model and dataset factories.

#include <modlab/plugin.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab::runner {

/// One loaded shared object and what it registered.
struct LoadedPlugin {
  std::string file;
  const PluginInfo* info = nullptr;
  std::vector<std::string> models;
  std::vector<std::string> datasets;
};

/// Model and dataset factories from every loaded plugin. Plugins are never unloaded.
class Registry : public Registrar {
 public:
  Registry();
  ~Registry() override;
  /// Loads one plugin file; PluginLoadError naming the file, field, expected and found.
  void load_file(const std::string& path);
  /// Loads every *.so in each existing folder, in order (missing folders are skipped).
  void load_directories(const std::vector<std::string>& dirs);

  bool has_model(const std::string& name) const;
  bool has_dataset(const std::string& name) const;
  /// ConfigError "unknown model plugin 'x' (known: a, b)" when absent.
  const ModelEntry& model(const std::string& name) const;
  const DatasetEntry& dataset(const std::string& name) const;
  std::vector<std::string> model_names() const;
  std::vector<std::string> dataset_names() const;
  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  /// The plugin (file and info) that registered a model / dataset name.
  const LoadedPlugin& owner_of_model(const std::string& name) const;
  const LoadedPlugin& owner_of_dataset(const std::string& name) const;

  void add_model(ModelEntry entry) override;
  void add_dataset(DatasetEntry entry) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<LoadedPlugin> plugins_;
  std::map<std::string, ModelEntry> models_;
  std::map<std::string, DatasetEntry> datasets_;
  std::map<std::string, std::size_t> model_owner_, dataset_owner_;
  LoadedPlugin* current_ = nullptr;
};

/// The plugin search path: `extra` (from --plugin-path) first, then MODLAB_PLUGIN_PATH (':'-separated),
/// then the plugin folder of this build (or of the installed host).
std::vector<std::string> plugin_search_path(const std::vector<std::string>& extra = {});

/// A process-wide registry loaded from plugin_search_path() on first use (for tests and tools).
Registry& default_registry();

}  // namespace modlab::runner

#pragma once
/// @file plugin.hpp
/// The plugin ABI. A plugin shared object exports one C symbol, `modlab_plugin_entry`, returning
/// a pointer to a constant `PluginInfo`. Use the `MODLAB_PLUGIN` macro; never write it by hand.
///
/// ABI rules: bump `kAbiVersion` whenever `PluginInfo`, `Registrar`, an entry struct or a virtual
/// signature anywhere in the SDK changes.

#include <modlab/export.hpp>
#include <modlab/config.hpp>
#include <modlab/dataset.hpp>
#include <modlab/host.hpp>
#include <modlab/model.hpp>
#include <modlab/options.hpp>

#include <torch/version.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab {

/// Version of the binary interface between host and plugins. 2 (SDK 2): Host::load_weights; the
/// error types ArgumentError, PluginError, NonFiniteLoss; KeySpec carries choices, bounds and
/// model tables; ModelEntry::variants; Model::unmaskable_parameters; modlab::nn folds K into the batch.
/// 3: TaskKind::MultiClass, DatasetSpec::subtasks, Batch::subtask_targets, Phase::settings and
/// Phase::train_split, SubsetSplit, Recorder::table.
/// 4: Host::share and SharedFile (files made once per results folder), Phase::defaults,
/// ModelEntry::check.
/// 5: Split::lengths (length bucketing).
/// 7: KeySpec::per_member (keys a population's members may differ in).
inline constexpr std::uint32_t kAbiVersion = 7;

/// Name of the exported entry symbol.
inline constexpr const char* kEntrySymbol = "modlab_plugin_entry";

/// What kinds of factories a plugin registers (bit mask).
enum PluginKind : std::uint32_t { kModelPlugin = 1u, kDatasetPlugin = 2u };

/// Builds a model for a dataset. `config` is the run's `[model]` table.
using ModelFactory = std::shared_ptr<Model> (*)(const Config& config, const DatasetSpec& spec, Host& host);
/// Builds a dataset. `config` is the run's `[dataset]` table.
using DatasetFactory = std::shared_ptr<Dataset> (*)(const Config& config, Host& host);
/// Checks that a model table can be built for a dataset; throws ConfigError (through Config::fail,
/// naming the key) when it cannot. Must not build the model.
using ModelCheck = void (*)(const Config& config, const DatasetSpec& spec);

/// One model a plugin offers.
struct MODLAB_API ModelEntry {
  std::string name;         ///< what `[model] plugin = "..."` names
  std::string description;  ///< one line
  std::vector<KeySpec> keys;
  ModelFactory factory = nullptr;
  /// `[model]` tables (TOML text, without `plugin`) of the model's network variants, e.g.
  /// `expert = "mnist_cnn"`: the contract tests build each of them besides the defaults, so every
  /// variant is checked (maskability, folded overrides, gradients).
  std::vector<std::string> variants;
  /// Optional: what the model needs of its dataset (image size, group ids ...). `modlab run` builds
  /// each distinct dataset of such runs once before the first run starts and calls this, so that a
  /// model that cannot use its dataset stops the sweep with one error instead of failing every run.
  ModelCheck check = nullptr;
};

/// One dataset a plugin offers.
struct MODLAB_API DatasetEntry {
  std::string name;
  std::string description;
  std::vector<KeySpec> keys;
  DatasetFactory factory = nullptr;
};

/// Handed to a plugin's register function; one plugin may register several entries.
class MODLAB_API Registrar {
 public:
  virtual ~Registrar();
  virtual void add_model(ModelEntry entry) = 0;
  virtual void add_dataset(DatasetEntry entry) = 0;
};

/// Constant description of a plugin, checked field by field by the loader.
/// Standard layout; the first two fields never move.
struct MODLAB_API PluginInfo {
  std::uint32_t abi_version;   ///< kAbiVersion the plugin was built with
  std::uint32_t struct_size;   ///< sizeof(PluginInfo) the plugin was built with
  const char* name;            ///< plugin (shared object) name
  std::uint32_t kind;          ///< PluginKind bits
  const char* version;         ///< plugin version, e.g. "1.0.0"
  const char* description;     ///< one line
  std::uint32_t torch_major;   ///< LibTorch major.minor the plugin was built against
  std::uint32_t torch_minor;
  std::int32_t cxx11_abi;      ///< _GLIBCXX_USE_CXX11_ABI of the plugin build
  void (*register_plugin)(Registrar&);
};

}  // namespace modlab

#if defined(_WIN32)
#define MODLAB_EXPORT __declspec(dllexport)
#else
#define MODLAB_EXPORT __attribute__((visibility("default")))
#endif

#ifndef _GLIBCXX_USE_CXX11_ABI
#define MODLAB_CXX11_ABI_VALUE 0
#else
#define MODLAB_CXX11_ABI_VALUE _GLIBCXX_USE_CXX11_ABI
#endif

/// Declares the plugin. Put once in one source file of the plugin, at namespace scope:
///   MODLAB_PLUGIN("moe", modlab::kModelPlugin, "1.0.0", "gated mixtures of experts", register_moe)
/// where `void register_moe(modlab::Registrar&)` adds the entries.
#define MODLAB_PLUGIN(NAME, KIND, VERSION, DESCRIPTION, REGISTER_FN)                              \
  extern "C" MODLAB_EXPORT const ::modlab::PluginInfo* modlab_plugin_entry() {                   \
    static const ::modlab::PluginInfo info{::modlab::kAbiVersion,                                \
                                           static_cast<std::uint32_t>(sizeof(::modlab::PluginInfo)), \
                                           NAME,                                                 \
                                           KIND,                                                 \
                                           VERSION,                                              \
                                           DESCRIPTION,                                          \
                                           TORCH_VERSION_MAJOR,                                  \
                                           TORCH_VERSION_MINOR,                                  \
                                           MODLAB_CXX11_ABI_VALUE,                               \
                                           &REGISTER_FN};                                        \
    return &info;                                                                                \
  }

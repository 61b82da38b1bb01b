// Plugin loading. Each plugin is opened with RTLD_NOW (so a missing symbol fails at load, not
// mid-run) and its PluginInfo is checked field by field before anything in it runs. Libraries are
// never closed: LibTorch's operator and type registries do not survive dlclose.
#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab_internal/closest_match.hpp>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace fs = std::filesystem;

namespace modlab::runner {

struct Registry::Impl {
  std::set<std::string> loaded_files;  // canonical paths
};

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() = default;

namespace {
// Kept alive for the whole process on purpose (see file comment).
std::vector<boost::dll::shared_library>& keep_alive() {
  static auto* libs = new std::vector<boost::dll::shared_library>();
  return *libs;
}

template <class A, class B>
void check_field(const std::string& file, const char* field, const A& expected, const B& found) {
  if (!(expected == found))
    throw PluginLoadError(file + ": field " + field + ": expected " + std::to_string(expected) + ", found " +
                          std::to_string(found));
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}
}  // namespace

void Registry::load_file(const std::string& path) {
  std::error_code ec;
  std::string canon = fs::weakly_canonical(path, ec).string();
  if (ec) canon = path;
  if (impl_->loaded_files.count(canon)) return;

  boost::dll::shared_library lib;
  boost::system::error_code lec;
  lib.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, lec);
  if (lec) {
    char magic[4] = {};
    std::ifstream(path, std::ios::binary).read(magic, 4);
    if (std::string(magic, 4) != "\x7f" "ELF")
      throw PluginLoadError(path + ": not a shared library (a plugin folder holds only modlab plugins)");
    throw PluginLoadError(path + ": cannot load: " + lec.message());
  }
  if (!lib.has(kEntrySymbol))
    throw PluginLoadError(path + ": no entry symbol '" + std::string(kEntrySymbol) +
                          "' (not a modlab plugin; declare it with MODLAB_PLUGIN)");
  auto entry = lib.get<const PluginInfo*()>(kEntrySymbol);
  const PluginInfo* info = entry();
  if (!info) throw PluginLoadError(path + ": entry symbol returned no PluginInfo");
  // The first two fields are stable across ABI versions, so they are safe to read first.
  check_field(path, "abi_version", kAbiVersion, info->abi_version);
  check_field(path, "struct_size", static_cast<std::uint32_t>(sizeof(PluginInfo)), info->struct_size);
  check_field(path, "torch_major", static_cast<std::uint32_t>(TORCH_VERSION_MAJOR), info->torch_major);
  check_field(path, "torch_minor", static_cast<std::uint32_t>(TORCH_VERSION_MINOR), info->torch_minor);
  check_field(path, "cxx11_abi", static_cast<std::int32_t>(MODLAB_CXX11_ABI_VALUE), info->cxx11_abi);
  if (!info->name || !*info->name) throw PluginLoadError(path + ": field name: expected a plugin name, found none");
  if (!info->register_plugin)
    throw PluginLoadError(path + ": field register_plugin: expected a function, found null");
  if ((info->kind & (kModelPlugin | kDatasetPlugin)) == 0 || (info->kind & ~(kModelPlugin | kDatasetPlugin)) != 0)
    throw PluginLoadError(path + ": field kind: expected model (1), dataset (2) or both (3), found " +
                          std::to_string(info->kind));

  // A plugin of the same name from an earlier search folder shadows this one.
  for (const auto& p : plugins_)
    if (std::string(p.info->name) == info->name) return;

  // Register into staging maps first, so a failing plugin leaves the registry untouched.
  auto saved_models = models_;
  auto saved_datasets = datasets_;
  auto saved_mo = model_owner_;
  auto saved_do = dataset_owner_;
  plugins_.push_back(LoadedPlugin{path, info, {}, {}});
  current_ = &plugins_.back();
  try {
    info->register_plugin(*this);
  } catch (const std::exception& e) {
    current_ = nullptr;
    plugins_.pop_back();
    models_ = std::move(saved_models);
    datasets_ = std::move(saved_datasets);
    model_owner_ = std::move(saved_mo);
    dataset_owner_ = std::move(saved_do);
    if (dynamic_cast<const PluginLoadError*>(&e)) throw;
    throw PluginLoadError(path + ": register_plugin failed: " + e.what());
  }
  current_ = nullptr;
  impl_->loaded_files.insert(canon);
  keep_alive().push_back(std::move(lib));
}

void Registry::load_directories(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) {
    std::error_code ec;
    if (fs::is_regular_file(d, ec) && fs::path(d).extension() == ".so") {
      load_file(d);  // one plugin named by its file
      continue;
    }
    if (!fs::is_directory(d, ec)) continue;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.is_regular_file() && e.path().extension() == ".so") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());  // deterministic order
    for (const auto& f : files) load_file(f);
  }
}

void Registry::add_model(ModelEntry entry) {
  if (!current_) throw PluginLoadError("add_model called outside register_plugin");
  if (entry.name.empty() || !entry.factory)
    throw PluginLoadError(current_->file + ": a model entry needs a name and a factory");
  auto it = model_owner_.find(entry.name);
  if (it != model_owner_.end())
    throw PluginLoadError("model '" + entry.name + "' is registered twice: by " + plugins_[it->second].file +
                          " and by " + current_->file);
  model_owner_[entry.name] = static_cast<std::size_t>(current_ - plugins_.data());
  current_->models.push_back(entry.name);
  models_[entry.name] = std::move(entry);
}

void Registry::add_dataset(DatasetEntry entry) {
  if (!current_) throw PluginLoadError("add_dataset called outside register_plugin");
  if (entry.name.empty() || !entry.factory)
    throw PluginLoadError(current_->file + ": a dataset entry needs a name and a factory");
  auto it = dataset_owner_.find(entry.name);
  if (it != dataset_owner_.end())
    throw PluginLoadError("dataset '" + entry.name + "' is registered twice: by " + plugins_[it->second].file +
                          " and by " + current_->file);
  dataset_owner_[entry.name] = static_cast<std::size_t>(current_ - plugins_.data());
  current_->datasets.push_back(entry.name);
  datasets_[entry.name] = std::move(entry);
}

bool Registry::has_model(const std::string& n) const { return models_.count(n) > 0; }
bool Registry::has_dataset(const std::string& n) const { return datasets_.count(n) > 0; }

const ModelEntry& Registry::model(const std::string& n) const {
  auto it = models_.find(n);
  if (it == models_.end()) {
    std::string msg = "unknown model plugin '" + n + "'";
    auto near = closest_match(n, model_names());
    if (!near.empty()) msg += " (did you mean '" + near + "'?)";
    throw ConfigError(msg + "; known models: " + join(model_names()));
  }
  return it->second;
}

const DatasetEntry& Registry::dataset(const std::string& n) const {
  auto it = datasets_.find(n);
  if (it == datasets_.end()) {
    std::string msg = "unknown dataset plugin '" + n + "'";
    auto near = closest_match(n, dataset_names());
    if (!near.empty()) msg += " (did you mean '" + near + "'?)";
    throw ConfigError(msg + "; known datasets: " + join(dataset_names()));
  }
  return it->second;
}

std::vector<std::string> Registry::model_names() const {
  std::vector<std::string> out;
  for (const auto& kv : models_) out.push_back(kv.first);
  return out;
}
std::vector<std::string> Registry::dataset_names() const {
  std::vector<std::string> out;
  for (const auto& kv : datasets_) out.push_back(kv.first);
  return out;
}

const LoadedPlugin& Registry::owner_of_model(const std::string& n) const {
  model(n);
  return plugins_[model_owner_.at(n)];
}
const LoadedPlugin& Registry::owner_of_dataset(const std::string& n) const {
  dataset(n);
  return plugins_[dataset_owner_.at(n)];
}

std::vector<std::string> plugin_search_path(const std::vector<std::string>& extra) {
  std::vector<std::string> dirs = extra;
  if (const char* env = std::getenv("MODLAB_PLUGIN_PATH")) {
    std::string s = env;
    std::size_t start = 0;
    while (start <= s.size()) {
      auto colon = s.find(':', start);
      std::string part = s.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (!part.empty()) dirs.push_back(part);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  // Relative to the executable, so a build tree or an install prefix can move: <dir>/bin/modlab
  // finds <dir>/plugins (a build tree) and <prefix>/<libdir>/modlab/plugins (installed).
  boost::system::error_code ec;
  auto exe = boost::dll::program_location(ec);
  if (!ec) {
    fs::path prefix = fs::path(exe.string()).parent_path().parent_path();
    dirs.push_back((prefix / "plugins").string());
    dirs.push_back((prefix / MODLAB_PLUGIN_INSTALL_SUBDIR).string());
  }
  // Drop repeats (keep the first), so one folder is not scanned twice.
  std::vector<std::string> unique;
  std::set<std::string> seen;
  for (const auto& d : dirs) {
    std::error_code fec;
    std::string key = fs::weakly_canonical(d, fec).string();
    if (seen.insert(fec ? d : key).second) unique.push_back(d);
  }
  return unique;
}

Registry& default_registry() {
  static Registry* reg = [] {
    auto* r = new Registry();
    r->load_directories(plugin_search_path());
    return r;
  }();
  return *reg;
}

}  // namespace modlab::runner

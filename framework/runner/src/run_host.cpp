#include <modlab/errors.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/h5.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/weights.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
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

namespace {

/// A shared file guarded by an flock on `<file>.lock`: ready when the file exists, else this
/// process holds the lock until it publishes or is destroyed.
class LockedSharedFile : public SharedFile {
 public:
  LockedSharedFile(fs::path file, const std::function<void(const std::string&)>& log) : file_(std::move(file)) {
    if (fs::exists(file_)) return;  // published files never change: no lock needed to read one
    fs::create_directories(file_.parent_path());
    const std::string lock = file_.string() + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw OutputError("cannot open lock file " + lock + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      log("waiting for another run that is making " + file_.string());
      while (::flock(fd_, LOCK_EX) != 0)
        if (errno != EINTR) throw OutputError("cannot lock " + lock + ": " + std::strerror(errno));
    }
    if (fs::exists(file_)) release();  // made while we waited
  }
  ~LockedSharedFile() override {
    if (fd_ < 0) return;
    std::error_code ec;
    fs::remove(temp(), ec);
    release();
  }
  bool ready() const override { return fd_ < 0; }
  std::string path() const override { return ready() ? file_.string() : temp(); }
  void publish() override {
    if (ready()) throw ArgumentError("SharedFile::publish: " + file_.string() + " is already published");
    if (!fs::exists(temp())) throw OutputError("SharedFile::publish: nothing was written to " + temp());
    fs::rename(temp(), file_);
    release();
  }

 private:
  std::string temp() const { return file_.string() + ".partial"; }
  void release() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    fd_ = -1;
  }
  fs::path file_;
  int fd_ = -1;
};

/// What share() gives a model built only to be inspected: never ready, never written.
class InspectedSharedFile : public SharedFile {
 public:
  explicit InspectedSharedFile(std::string name) : name_(std::move(name)) {}
  bool ready() const override { return false; }
  std::string path() const override { return "/dev/null"; }
  void publish() override { throw ArgumentError("SharedFile::publish: '" + name_ + "' belongs to a model built for preflight"); }

 private:
  std::string name_;
};

/// Canonical text of the value at dotted `key` of `root`, or "<absent>".
std::string value_text(const Value* root, const std::string& key) {
  const Value* v = root;
  std::size_t start = 0;
  while (v && start <= key.size()) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v->type() != ValueType::Table) return "<absent>";
    auto it = v->as_table().find(part);
    v = it == v->as_table().end() ? nullptr : &it->second;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return v ? canonical_text(*v) : "<absent>";
}

}  // namespace

std::unique_ptr<SharedFile> RunHost::share(const std::string& name, const std::vector<std::string>& config_keys,
                                           const std::string& extra) {
  for (char ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-')
      throw ArgumentError("Host::share: name '" + name + "' may hold only letters, digits, '_' and '-'");
  if (options_.inspect_only) return std::make_unique<InspectedSharedFile>(name);
  std::string identity = name + "\nseed = " + std::to_string(options_.seed) + "\n";
  for (const auto& k : config_keys) identity += "[" + k + "]\n" + value_text(options_.config.get(), k) + "\n";
  identity += "[extra]\n" + extra;
  const fs::path file = fs::path(options_.results_dir) / "shared" / (name + "-" + sha256_hex(identity).substr(0, 16));
  auto shared = std::make_unique<LockedSharedFile>(file, [this](const std::string& m) { log(m); });
  if (!shared->ready()) {
    std::ofstream(file.string() + ".identity") << identity;  // what the file is, for a reader of the folder
  }
  return shared;
}

void RunHost::log(const std::string& message) {
  if (options_.logger) options_.logger(message);
  else std::cerr << message << "\n";
}

}  // namespace modlab::runner

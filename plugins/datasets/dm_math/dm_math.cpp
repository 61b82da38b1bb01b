// The `dm_math` dataset plugin: DeepMind Mathematics (mathematics_dataset v1.0) as sequence
// batches, read once into a compact token cache that later runs memory-map (masked_analyzer §4.3 f).
#include "build.hpp"
#include "corpus.hpp"
#include "release.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

namespace fs = std::filesystem;

namespace modlab::dm_math {
namespace {

/// The `[dataset]` table.
struct Settings {
  std::string root;
  std::vector<std::string> modules = {"arithmetic__add_or_sub"};
  std::vector<std::string> difficulties = {"train-easy", "train-medium", "train-hard"};
  std::int64_t test_size = 10000;
  std::int64_t test_seed = 1234;
  std::string subtasks = "difficulties";
  bool cache = true;
  std::string cache_dir;
  std::int64_t max_per_file = 0;
};

const Options<Settings>& dm_math_options() {
  using S = Settings;
  static const auto o =
      Options<S>()
          .key("root", &S::root, "the release: a folder in the v1.0 layout or the .tar.gz (\"\": search, README)")
          .key("modules", &S::modules, "training modules, by name or glob (\"arithmetic__*\")")
          .key("difficulties", &S::difficulties, "training difficulties read")
          .choices({"train-easy", "train-medium", "train-hard"})
          .key("test_size", &S::test_size, "test items held out of each training difficulty").at_least(0)
          .key("test_seed", &S::test_seed, "seed of numpy's RandomState choosing them").in_range(0, 4294967295.0)
          .key("subtasks", &S::subtasks, "sub-tasks (and groups): one per difficulty, one per module, or none")
          .choices({"difficulties", "modules", "none"})
          .key("cache", &S::cache, "keep the token cache and memory-map it in later runs")
          .key("cache_dir", &S::cache_dir, "cache folder (\"\": $XDG_CACHE_HOME/modlab/dm_math or ~/.cache/modlab/dm_math)")
          .key("max_per_file", &S::max_per_file, "read only the first N pairs of each file (0 = all)").at_least(0);
  return o;
}

// Where `root = ""` looks, in order.
std::vector<fs::path> search_places(Host& host) {
  std::vector<fs::path> bases;
  if (const char* d = std::getenv("MODLAB_DATA_DIR")) bases.emplace_back(fs::path(d) / "dm_math");
  bases.emplace_back("data/dm_math");
  bases.emplace_back("../shared/data/dm_math");
  for (const char* rel : {"data/dm_math", "../data/dm_math", "../../shared/data/dm_math"})
    bases.emplace_back(host.resolve_path(rel));
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg) bases.emplace_back(fs::path(xdg) / "modlab/dm_math");
  else if (home) bases.emplace_back(fs::path(home) / ".cache/modlab/dm_math");
  std::vector<fs::path> out;
  for (const auto& b : bases) {
    out.push_back(b / "mathematics_dataset-v1.0");
    out.push_back(b / "mathematics_dataset-v1.0.tar.gz");
  }
  return out;
}

std::string find_root(const Config& c, const Settings& s, Host& host) {
  if (!s.root.empty()) return host.resolve_path(s.root);
  std::string looked;
  for (const auto& p : search_places(host)) {
    std::error_code ec;
    if (fs::exists(p, ec)) return p.string();
    looked += "\n  " + p.string();
  }
  throw DataError("dm_math: no mathematics_dataset-v1.0 folder or .tar.gz found; looked in:" + looked +
                  "\nDownload mathematics_dataset-v1.0.tar.gz (https://console.cloud.google.com/storage/browser/"
                  "mathematics-dataset) and set dataset.root to it or to its unpacked folder.");
}

std::string cache_folder(const Settings& s, Host& host) {
  if (!s.cache_dir.empty()) return host.resolve_path(s.cache_dir);
  if (const char* xdg = std::getenv("XDG_CACHE_HOME")) return (fs::path(xdg) / "modlab/dm_math").string();
  const char* home = std::getenv("HOME");
  return (fs::path(home ? home : ".") / ".cache/modlab/dm_math").string();
}

/// What the cache depends on: the release's files and the options that select and split them.
std::string cache_key(const Release& r, const Settings& s) {
  std::ostringstream o;
  o << "format 3\n" << r.identity() << "modules";
  for (const auto& m : s.modules) o << " " << m;
  o << "\ndifficulties";
  for (const auto& d : s.difficulties) o << " " << d;
  o << "\ntest " << s.test_size << " " << s.test_seed << "\nmax_per_file " << s.max_per_file << "\n";
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a(o.str())));
  return hex;
}

std::shared_ptr<const Corpus> load(const Config& c, const Settings& s, Host& host, std::string& note) {
  const auto t0 = std::chrono::steady_clock::now();
  auto release = Release::open(find_root(c, s, host));
  const std::string file = (fs::path(cache_folder(s, host)) / ("dm_math_" + cache_key(*release, s) + ".cache")).string();
  if (s.cache && fs::exists(file)) {
    auto mapped = map_cache(file);
    note = "mapped " + file;
    host.log("dm_math: mapped the cache " + file + " in " +
             std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()) + " s");
    return mapped;
  }
  Selection sel{s.modules, s.difficulties, s.test_size, static_cast<std::uint32_t>(s.test_seed), s.max_per_file};
  BuildReport report;
  std::shared_ptr<BuiltCorpus> built = build_corpus(*release, sel, report);
  if (!report.unknown.empty()) {
    std::string known;
    for (const auto& k : report.known) known += (known.empty() ? "" : ", ") + k;
    c.fail("modules", "'" + report.unknown.front() + "' matches no module of " + release->path() + " (it has: " + known + ")");
  }
  host.log("dm_math: read " + release->path() + " (" + std::to_string(built->size()) + " pairs, " +
           std::to_string(report.duplicates) + " duplicated questions dropped) in " +
           std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()) + " s");
  note = "built from " + release->path();
  if (!s.cache) return built;
  write_cache(file, *built);
  note += ", cached in " + file;
  return map_cache(file);
}

class CorpusSplit : public Split {
 public:
  CorpusSplit(std::shared_ptr<const Corpus> c, std::vector<Range> parts, std::vector<std::int64_t> part_groups, bool by_module)
      : c_(std::move(c)), parts_(std::move(parts)), groups_(std::move(part_groups)), by_module_(by_module) {
    for (const auto& p : parts_) size_ += p.count;
  }
  std::int64_t size() const override { return size_; }
  Batch get(const torch::Tensor& indices, bool) const override {
    const auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
    auto groups = torch::empty({idx.numel()}, torch::kLong);
    const auto abs = absolute(idx, groups.data_ptr<std::int64_t>());
    SequenceBatch s = gather(*c_, abs);
    Batch b;
    b.inputs = s.questions;
    b.lengths = s.question_lengths;
    b.targets = s.answers;
    b.target_lengths = s.answer_lengths;
    b.groups = by_module_ ? s.modules : groups;
    b.indices = idx;
    return b;
  }
  /// Question plus answer tokens, from the index alone.
  torch::Tensor lengths(const torch::Tensor& indices) const override {
    const auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
    const auto abs = absolute(idx, nullptr);
    auto out = torch::empty({idx.numel()}, torch::kLong);
    for (std::size_t i = 0; i < abs.size(); ++i) out.data_ptr<std::int64_t>()[i] = c_->entries()[abs[i]].length;
    return out;
  }

 private:
  /// Example numbers of the corpus for split indices `idx`; their groups into `groups` if given.
  std::vector<std::int64_t> absolute(const torch::Tensor& idx, std::int64_t* groups) const {
    std::vector<std::int64_t> abs(static_cast<std::size_t>(idx.numel()));
    for (std::int64_t i = 0; i < idx.numel(); ++i) {
      std::int64_t k = idx.data_ptr<std::int64_t>()[i];
      std::size_t part = 0;
      if (k < 0 || k >= size_) throw ArgumentError("dm_math: example " + std::to_string(k) + " out of range");
      while (k >= parts_[part].count) k -= parts_[part++].count;
      abs[static_cast<std::size_t>(i)] = parts_[part].first + k;
      if (groups) groups[i] = groups_[part];
    }
    return abs;
  }

  std::shared_ptr<const Corpus> c_;
  std::vector<Range> parts_;
  std::vector<std::int64_t> groups_;
  bool by_module_;
  std::int64_t size_ = 0;
};

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
  return out;
}

/// The spec of `c`: sequence task, vocabulary, groups and sub-tasks as `s.subtasks` says.
DatasetSpec spec_of(const Settings& s, const Corpus& c, const std::vector<std::string>& group_names) {
  DatasetSpec spec;
  spec.name = "dm_math/" + joined(s.modules, ",");
  spec.task = TaskKind::Sequence;
  const auto [lq, la] = c.longest();
  spec.input_shape = {lq};
  spec.vocabulary = {"<pad>", "<start>", "<end>"};
  for (char ch : c.vocabulary) spec.vocabulary.emplace_back(1, ch);
  spec.pad_token = kPad;
  spec.info["start_token"] = std::to_string(kStart);
  spec.info["end_token"] = std::to_string(kEnd);
  spec.info["max_question_length"] = std::to_string(lq);
  spec.info["max_answer_length"] = std::to_string(la + 1);  // with the end token
  spec.info["modules"] = joined(c.modules, ",");
  for (const auto& r : c.splits) spec.info[r.name + "_size"] = std::to_string(r.count);
  if (s.subtasks == "modules") {
    spec.group_kind = "module";
    spec.group_names = c.modules;
    for (std::size_t m = 0; m < c.modules.size(); ++m)
      spec.subtasks.push_back(SubTask{c.modules[m], "questions of module " + c.modules[m], {static_cast<std::int64_t>(m)}, {}, {}, {}, ""});
  } else {
    spec.group_kind = "difficulty";
    spec.group_names = group_names;
  }
  if (s.subtasks == "difficulties")
    for (std::size_t d = 0; d < s.difficulties.size(); ++d) {
      const auto name = short_difficulty(s.difficulties[d]);
      if (c.split("train_" + name))
        spec.subtasks.push_back(SubTask{name, "the " + s.difficulties[d] + " training questions", {static_cast<std::int64_t>(d)},
                                        {}, {}, {}, "train_" + name});
    }
  return spec;
}

std::shared_ptr<Dataset> build_dataset(const Settings& s, std::shared_ptr<const Corpus> c, const std::string& note) {
  // Group ids: the training difficulties in order, then interpolate and extrapolate.
  std::vector<std::string> group_names;
  for (const auto& d : s.difficulties) group_names.push_back(short_difficulty(d));
  group_names.insert(group_names.end(), {"interpolate", "extrapolate"});
  auto group_of = [&](const std::string& name) {
    const auto g = name.substr(name.find('_') + 1);
    const auto it = std::find(group_names.begin(), group_names.end(), name.rfind("train_", 0) == 0 || name.rfind("test_", 0) == 0 ? g : name);
    return static_cast<std::int64_t>(it - group_names.begin());
  };
  const bool by_module = s.subtasks == "modules";
  std::map<std::string, std::shared_ptr<const Split>> splits;
  std::vector<Range> train;
  std::vector<std::int64_t> train_groups;
  DatasetSpec spec = spec_of(s, *c, group_names);
  spec.splits = {"train"};
  std::vector<std::string> subtask_splits;
  for (const auto& r : c->splits) {
    splits[r.name] = std::make_shared<CorpusSplit>(c, std::vector<Range>{r}, std::vector<std::int64_t>{group_of(r.name)}, by_module);
    if (r.name.rfind("train_", 0) == 0) {
      train.push_back(r);
      train_groups.push_back(group_of(r.name));
      subtask_splits.push_back(r.name);
    } else {
      spec.splits.push_back(r.name);
    }
  }
  splits["train"] = std::make_shared<CorpusSplit>(c, train, train_groups, by_module);
  spec.splits.insert(spec.splits.end(), subtask_splits.begin(), subtask_splits.end());
  spec.info["source"] = note;
  return std::make_shared<TensorDataset>(spec, splits);
}

std::shared_ptr<Dataset> make(const Config& c, Host& host) {
  const Settings s = dm_math_options().parse(c);
  if (s.modules.empty()) c.fail("modules", "expected at least one module name");
  if (s.difficulties.empty()) c.fail("difficulties", "expected at least one training difficulty");
  std::string note;
  auto corpus = load(c, s, host, note);
  return build_dataset(s, corpus, note);
}

void register_plugin(Registrar& r) {
  DatasetEntry e;
  e.name = "dm_math";
  e.description = "DeepMind Mathematics (v1.0 folder or .tar.gz) as question/answer token sequences, cached";
  e.keys = dm_math_options().specs();
  e.factory = &make;
  r.add_dataset(std::move(e));
}

}  // namespace
}  // namespace modlab::dm_math

MODLAB_PLUGIN("dm_math", modlab::kDatasetPlugin, "1.0.0", "DeepMind Mathematics question/answer sequences",
              modlab::dm_math::register_plugin)

#include "build.hpp"

#include "../toy/numpy_random.hpp"

#include <modlab/errors.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <unordered_set>

namespace modlab::dm_math {

std::string short_difficulty(const std::string& folder) {
  return folder.rfind("train-", 0) == 0 ? folder.substr(6) : folder;
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

namespace {

bool matches(const std::string& pattern, const std::string& name) { return fnmatch(pattern.c_str(), name.c_str(), 0) == 0; }

struct Example {
  std::string question, answer;
  std::uint16_t module;
};

/// Reads the selected files and groups their pairs by folder, duplicates dropped.
class Collector {
 public:
  Collector(const Selection& sel, BuildReport& report) : sel_(sel), report_(report) {}

  bool wanted(const TextFile& t) {
    if (t.folder != "extrapolate") known_.insert(t.module);
    if (t.folder == "extrapolate") return base_of(t.module) != nullptr;
    if (t.folder.rfind("train-", 0) == 0 &&
        std::find(sel_.difficulties.begin(), sel_.difficulties.end(), t.folder) == sel_.difficulties.end())
      return false;
    return std::any_of(sel_.modules.begin(), sel_.modules.end(), [&](const auto& p) { return matches(p, t.module); });
  }

  void add(const TextFile& t, const std::string& text) {
    const Pairs pairs = parse_pairs(t, text);
    const std::string module = t.folder == "extrapolate" ? *base_of(t.module) : t.module;
    const auto id = module_id(module);
    const bool train = t.folder.rfind("train-", 0) == 0;
    auto& out = by_folder[t.folder];
    std::size_t n = pairs.questions.size();
    if (sel_.max_per_file > 0) n = std::min<std::size_t>(n, static_cast<std::size_t>(sel_.max_per_file));
    for (std::size_t i = 0; i < n; ++i) {
      const bool fresh = seen_.insert(fnv1a(pairs.questions[i])).second;
      if (train && !fresh) {
        ++report_.duplicates;
        continue;
      }
      out.push_back({pairs.questions[i], pairs.answers[i], id});
    }
  }

  /// Patterns that matched no module, and every module name seen.
  void finish() {
    report_.known.assign(known_.begin(), known_.end());
    for (const auto& p : sel_.modules)
      if (std::none_of(known_.begin(), known_.end(), [&](const auto& m) { return matches(p, m); }))
        report_.unknown.push_back(p);
  }

  std::map<std::string, std::vector<Example>> by_folder;
  std::vector<std::string> modules;

 private:
  /// The selected training module an extrapolate file extends (longest name prefix), or nullptr.
  const std::string* base_of(const std::string& name) {
    const std::string* best = nullptr;
    for (const auto& m : known_)
      if (name.size() > m.size() && name.compare(0, m.size(), m) == 0 && name[m.size()] == '_' &&
          std::any_of(sel_.modules.begin(), sel_.modules.end(), [&](const auto& p) { return matches(p, m); }) &&
          (!best || m.size() > best->size()))
        best = &m;
    return best;
  }
  std::uint16_t module_id(const std::string& m) {
    auto it = std::find(modules.begin(), modules.end(), m);
    if (it != modules.end()) return static_cast<std::uint16_t>(it - modules.begin());
    modules.push_back(m);
    return static_cast<std::uint16_t>(modules.size() - 1);
  }
  const Selection& sel_;
  BuildReport& report_;
  std::set<std::string> known_;
  std::unordered_set<std::uint64_t> seen_;
};

/// Held-out test items of one training difficulty: the first `size` of numpy's
/// RandomState(seed).permutation(n), in file order; the rest train.
std::pair<std::vector<Example>, std::vector<Example>> hold_out(std::vector<Example> all, std::int64_t size,
                                                              std::uint32_t seed, const std::string& folder) {
  const auto n = static_cast<std::int64_t>(all.size());
  if (size >= n)
    throw DataError("dm_math: test_size " + std::to_string(size) + " takes every one of the " + std::to_string(n) +
                    " examples of " + folder + " (nothing left to train on)");
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
  toy::NumpyRandomState(seed).shuffle(perm);
  std::vector<bool> test(static_cast<std::size_t>(n), false);
  for (std::int64_t i = 0; i < size; ++i) test[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])] = true;
  std::pair<std::vector<Example>, std::vector<Example>> out;
  for (std::int64_t i = 0; i < n; ++i) (test[static_cast<std::size_t>(i)] ? out.second : out.first).push_back(std::move(all[static_cast<std::size_t>(i)]));
  return out;
}

void append(BuiltCorpus& c, const std::string& name, const std::vector<Example>& xs, const std::array<std::int16_t, 256>& id) {
  if (xs.empty()) return;
  c.splits.push_back(Range{name, c.size(), static_cast<std::int64_t>(xs.size())});
  for (const auto& x : xs) {
    const auto offset = c.stream.size();
    for (unsigned char ch : x.question) c.stream.push_back(static_cast<std::uint8_t>(id[ch]));
    for (unsigned char ch : x.answer) c.stream.push_back(static_cast<std::uint8_t>(id[ch]));
    c.index.push_back(Entry{static_cast<std::uint64_t>(offset), static_cast<std::uint32_t>(x.question.size() + x.answer.size()),
                            static_cast<std::uint16_t>(x.question.size()), x.module});
  }
}

}  // namespace

std::unique_ptr<BuiltCorpus> build_corpus(const Release& release, const Selection& sel, BuildReport& report) {
  Collector col(sel, report);
  release.read([&](const TextFile& t) { return col.wanted(t); },
               [&](const TextFile& t, const std::string& text) { col.add(t, text); });
  col.finish();
  if (!report.unknown.empty()) return nullptr;
  auto c = std::make_unique<BuiltCorpus>();
  c->modules = col.modules;
  std::array<bool, 256> used{};
  for (const auto& [folder, xs] : col.by_folder)
    for (const auto& x : xs) {
      for (unsigned char ch : x.question) used[ch] = true;
      for (unsigned char ch : x.answer) used[ch] = true;
    }
  std::array<std::int16_t, 256> id{};
  for (int ch = 0; ch < 256; ++ch)
    if (used[static_cast<std::size_t>(ch)]) {
      id[static_cast<std::size_t>(ch)] = static_cast<std::int16_t>(kFirstChar + static_cast<std::int64_t>(c->vocabulary.size()));
      c->vocabulary.push_back(static_cast<char>(ch));
    }
  std::vector<std::pair<std::string, std::vector<Example>>> tests;
  for (const auto& d : sel.difficulties) {
    auto [train, test] = hold_out(std::move(col.by_folder[d]), sel.test_size, sel.test_seed, d);
    append(*c, "train_" + short_difficulty(d), train, id);
    tests.emplace_back("test_" + short_difficulty(d), std::move(test));
  }
  for (const auto& [name, xs] : tests) append(*c, name, xs, id);
  for (const char* f : {"interpolate", "extrapolate"}) append(*c, f, col.by_folder[f], id);
  return c;
}

}  // namespace modlab::dm_math

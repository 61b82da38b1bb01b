#pragma once
// Building the corpus of a dm_math dataset from the release's text: parse, drop duplicated
// questions, hold out test items per training difficulty, tokenise.

#include "corpus.hpp"
#include "release.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab::dm_math {

struct Selection {
  std::vector<std::string> modules;      ///< names or globs of training modules
  std::vector<std::string> difficulties; ///< train-easy, train-medium, train-hard (a subset)
  std::int64_t test_size = 10000;        ///< held out of each training difficulty
  std::uint32_t test_seed = 1234;
  std::int64_t max_per_file = 0;         ///< 0 = every pair
};

/// The corpus of `sel` read from `release`. Splits: train_easy … (what is left of each training
/// difficulty), test_easy … (its held-out items), interpolate, extrapolate (of the selected modules;
/// extrapolate files belong to the module whose name is their longest prefix). `unknown` receives
/// each pattern of `sel.modules` that matched no module, `known` every module name the release has.
struct BuildReport {
  std::vector<std::string> unknown, known;
  std::int64_t duplicates = 0;
};
std::unique_ptr<BuiltCorpus> build_corpus(const Release& release, const Selection& sel, BuildReport& report);

/// 64-bit FNV-1a: stable across builds (question identity, cache names).
std::uint64_t fnv1a(const std::string& s);

/// "train-easy" → "easy".
std::string short_difficulty(const std::string& folder);

}  // namespace modlab::dm_math

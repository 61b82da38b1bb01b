// The dm_math token cache as a reader finds it on disk: header, vocabulary, module and split
// tables, offset index and token stream, mapped and then sliced into batches. Whatever the bytes,
// map_cache either rejects the file or returns a corpus every batch of which can be gathered.
#include "fuzz_util.hpp"

#include "corpus.hpp"

#include <algorithm>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static modlab::fuzz::ScratchFile scratch(".cache");
  const std::string& path = scratch.write(data, size);
  modlab::fuzz::expect_only_modlab_errors([&] {
    const auto corpus = modlab::dm_math::map_cache(path);
    const std::int64_t n = corpus->size();
    for (const auto& r : corpus->splits)
      if (r.first < 0 || r.count < 0 || r.first + r.count > n) std::abort();
    (void)corpus->longest();
    std::vector<std::int64_t> some;
    for (std::int64_t i = 0; i < n && some.size() < 16; i += 1 + n / 16) some.push_back(i);
    if (!some.empty()) {
      const auto b = modlab::dm_math::gather(*corpus, some);
      if (b.questions.size(0) != static_cast<std::int64_t>(some.size())) std::abort();
    }
  });
  return 0;
}

// DeepMind Mathematics question/answer files: alternating lines, CRLF, printable ASCII. The input
// is one file's text.
#include "fuzz_util.hpp"

#include "release.hpp"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const modlab::dm_math::TextFile file{"train-easy", "arithmetic__add_or_sub", "train-easy/arithmetic__add_or_sub.txt"};
  const std::string text(reinterpret_cast<const char*>(data), size);
  modlab::fuzz::expect_only_modlab_errors([&] {
    const auto pairs = modlab::dm_math::parse_pairs(file, text);
    if (pairs.questions.size() != pairs.answers.size()) std::abort();
    for (std::size_t i = 0; i < pairs.questions.size(); ++i)
      if (pairs.questions[i].empty() || pairs.answers[i].empty()) std::abort();
  });
  return 0;
}

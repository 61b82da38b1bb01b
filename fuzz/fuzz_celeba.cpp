// CelebA annotation files: the attribute table and the partition list. The input is the text,
// parsed as both.
#include "fuzz_util.hpp"

#include "annotations.hpp"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  modlab::fuzz::expect_only_modlab_errors([&] {
    const auto t = modlab::celeba::parse_attributes("list_attr_celeba.txt", text);
    if (t.values.size() != t.rows() * t.names.size() || t.lines.size() != t.rows()) std::abort();
    for (auto v : t.values)
      if (v > 1) std::abort();
  });
  modlab::fuzz::expect_only_modlab_errors([&] {
    const auto p = modlab::celeba::parse_partition("list_eval_partition.txt", text);
    if (p.counts[0] + p.counts[1] + p.counts[2] != static_cast<std::int64_t>(p.of.size())) std::abort();
  });
  return 0;
}

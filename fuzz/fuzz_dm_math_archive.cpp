// The DeepMind Mathematics release as a .tar.gz, read in place: gzip stream, tar headers, member
// names, then each member's pairs. The input is the archive's bytes.
#include "fuzz_util.hpp"

#include "release.hpp"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static modlab::fuzz::ScratchFile scratch(".tar.gz");
  const std::string& path = scratch.write(data, size);
  modlab::fuzz::expect_only_modlab_errors([&] {
    const auto release = modlab::dm_math::Release::open(path);
    (void)release->identity();
    release->read([](const modlab::dm_math::TextFile&) { return true; },
                  [](const modlab::dm_math::TextFile& f, const std::string& text) {
                    if (f.folder.empty() || f.module.empty()) std::abort();
                    (void)modlab::dm_math::parse_pairs(f, text);
                  });
  });
  return 0;
}

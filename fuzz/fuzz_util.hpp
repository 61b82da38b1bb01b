#pragma once
// Shared by the fuzz targets: the rule for exceptions and a scratch file for readers that take a path.
//
// A parser may reject its input only with a modlab::Error (the classified errors users see, with a
// file and a line); anything else escaping it (std::out_of_range, std::length_error, a LibTorch
// c10::Error, ...) is a bug and aborts, so libFuzzer reports it with the input that caused it.

#include <modlab/errors.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace modlab::fuzz {

template <class Fn>
void expect_only_modlab_errors(Fn&& fn) {
  try {
    fn();
  } catch (const modlab::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: unclassified exception: %s\n", e.what());
    std::abort();
  }
}

/// A per-process scratch file (in $TMPDIR, default /dev/shm when it exists) holding the input.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& suffix) {
    const char* dir = std::getenv("TMPDIR");
    std::string d = dir && *dir ? dir : (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    path_ = d + "/modlab-fuzz-" + std::to_string(::getpid()) + suffix;
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
      std::perror(path_.c_str());
      std::abort();
    }
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace modlab::fuzz

#pragma once
// Removing a folder tree without std::filesystem::remove_all. PyTorch's own libtorch.so (the pip
// wheels of PyTorch 2, which a CUDA build links against) exports a copy of libstdc++'s
// std::filesystem; an executable whose remove_all resolves to that copy crashes in it (a call
// through a null pointer, seen with PyTorch 2.11). The host never removes trees; tests and
// benchmarks clean up through this.
#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

namespace modlab::runner {

/// Removes `path` and everything under it, if it exists; symbolic links are removed, never
/// followed. False if something could not be removed.
inline bool remove_tree(const std::filesystem::path& path) {
  auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) { return std::remove(p) == 0 ? 0 : -1; };
  errno = 0;
  const int r = nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
  return r == 0 || (r == -1 && errno == ENOENT);
}

}  // namespace modlab::runner

// The temporary folder of a test: a fresh, empty folder under the system's temporary directory,
// unique per process and object, removed with everything under it when the object goes — kept
// when MODLAB_KEEP_TEST_FILES is set, to look at what a failing test wrote.
#pragma once

#include <modlab/runner/remove_tree.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace modlab_test {

struct TempDir {
  std::filesystem::path path;

  /// `tag` names the folder (modlab_<tag>_<pid>_<n>) so that a kept one can be found.
  explicit TempDir(const std::string& tag = "test") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("modlab_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    modlab::runner::remove_tree(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    if (std::getenv("MODLAB_KEEP_TEST_FILES")) return;
    std::error_code ec;  // a test may have taken the owner's rights away to provoke an error
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    modlab::runner::remove_tree(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string str() const { return path.string(); }
  /// The path of `name` inside, as a string.
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

}  // namespace modlab_test

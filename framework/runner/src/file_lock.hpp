#pragma once
// Advisory locks (flock) on files in a results folder: one per run while a runner works on it, and
// one on the index while it is rewritten, so that two runners of a sweep (or the shards of a Slurm
// array on one filesystem) share the work instead of colliding. A lock ends with its process, so
// kill -9 never leaves a run locked. The lock files themselves stay (removing them would race).

#include <modlab/errors.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace modlab::runner {

class FileLock {
 public:
  /// Locks `path` (created if missing): waits for it when `wait`, else fails at once when another
  /// process holds it (held() is then false). OutputError when the file cannot be opened.
  FileLock(const std::string& path, bool wait) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ < 0) throw OutputError("cannot open the lock file '" + path + "': " + std::strerror(errno));
    int rc;
    do rc = ::flock(fd_, LOCK_EX | (wait ? 0 : LOCK_NB));
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      const int err = errno;
      ::close(fd_);
      fd_ = -1;
      if (err != EWOULDBLOCK) throw OutputError("cannot lock '" + path + "': " + std::strerror(err));
    }
  }
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileLock& operator=(FileLock&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
  }
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace modlab::runner

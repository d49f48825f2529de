// "One daemon per TPM": an exclusive flock on a file in the lock dir named after the underlying TPM's identity
// (Driver::identity(): the sysfs device behind /dev/tpmN, the swtpm endpoint, the MMIO base), in the spirit of
// the TTY lock-file convention. The file holds the holder's pid so a loser can name it.
#pragma once

#include <string>

#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::daemon {

class TpmLock {
 public:
  // EBUSY naming the holder's pid when another process holds the lock. The file name is made from the
  // canonical identity (canonical_identity()) in the canonical lock dir; the file is opened without following
  // a symlink (ELOOP) and must be a regular file (EINVAL).
  static Result<TpmLock> acquire(const std::string& lock_dir, const std::string& identity);

  const std::string& path() const { return path_; }

 private:
  TpmLock(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;  // the flock lives as long as this fd
  std::string path_;
};

// The lock file name for `identity`: characters outside [A-Za-z0-9._-] become '_'.
std::string lock_file_name(const std::string& identity);

}  // namespace tpmrmd::daemon

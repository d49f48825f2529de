#include "daemon/tpm_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/canonical_path.h"

namespace tpmrmd::daemon {

std::string lock_file_name(const std::string& identity) {
  std::string name = "tpm-";
  for (char c : identity) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '-' || c == '_';
    name += plain ? c : '_';
  }
  if (name.size() > 200) name.resize(200);
  return name + ".lock";
}

Result<TpmLock> TpmLock::acquire(const std::string& lock_dir, const std::string& identity) {
  if (::mkdir(lock_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return make_error(errno, "cannot create lock dir " + lock_dir + ": " + std::strerror(errno));
  }
  // One TPM, one lock file, however the lock dir or the TPM's endpoint was spelled.
  const std::string key = canonical_identity(identity);
  std::string path = canonical_path(lock_dir) + "/" + lock_file_name(key);
  // A symlink planted in a shared lock dir must not make a root daemon truncate and write a file elsewhere.
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0644));
  if (!fd) {
    const int err = errno;
    if (err == ELOOP) return make_error(err, "refusing lock file " + path + ": it is a symbolic link");
    return make_error(err, "cannot open lock file " + path + ": " + std::strerror(err));
  }
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return make_error(EINVAL, "refusing lock file " + path + ": not a regular file");
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) return make_error(err, "cannot lock " + path + ": " + std::strerror(err));
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "unknown";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return make_error(EBUSY, "TPM " + key + " is already served by another tpmrmd (pid " + holder +
                                 ", lock " + path + ")");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
    return make_error(errno, "cannot write pid to " + path + ": " + std::strerror(errno));
  }
  return TpmLock(std::move(fd), std::move(path));
}

}  // namespace tpmrmd::daemon

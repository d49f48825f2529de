#include "chip/drivers/device_driver.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>

#include "chip/drivers/stream_io.h"

namespace tpmrmd::chip {
namespace {

constexpr std::size_t kMaxResponse = 4096;  // the kernel's TPM_BUFSIZE

// The sysfs device behind a character node, so two names of one TPM lock the same key.
std::string sysfs_identity(const struct stat& st, const std::string& path) {
  std::string link = "/sys/dev/char/" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) +
                     "/device";
  char real[PATH_MAX];
  if (::realpath(link.c_str(), real)) return std::string("device:") + real;
  return "device:" + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)) + ":" + path;
}

}  // namespace

Result<std::unique_ptr<DeviceDriver>> DeviceDriver::open(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    return make_error(err, "cannot open TPM device " + path + ": " + std::strerror(err));
  }
  if (!S_ISCHR(st.st_mode)) return make_error(ENOTTY, path + " is not a character device");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    if (err == EBUSY) {
      return make_error(EBUSY, "device busy: another process holds " + path +
                                   " (the raw TPM node allows one open at a time)");
    }
    return make_error(err, "cannot open TPM device " + path + ": " + std::strerror(err));
  }
  return std::unique_ptr<DeviceDriver>(new DeviceDriver(path, sysfs_identity(st, path), std::move(fd)));
}

Result<Bytes> DeviceDriver::exchange(ByteSpan command, std::chrono::milliseconds timeout) {
  if (!alive_) return make_error(EIO, "device " + path_ + " is no longer usable");
  ssize_t n;
  do {
    n = ::write(fd_.get(), command.data(), command.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    if (err == ENODEV || err == EIO) alive_ = false;
    return make_error(err, "write to " + path_ + " failed: " + std::strerror(err));
  }
  if (static_cast<std::size_t>(n) != command.size()) return make_error(EIO, "short write to " + path_);
  // The kernel answers with the whole response in one read.
  Bytes response(kMaxResponse);
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, left > 0 ? static_cast<int>(left) : 0);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      // The kernel's own deadline and cancel will end the command; the node stays out of step until then.
      alive_ = false;
      return make_error(ETIME, "no response from " + path_ + " before the deadline");
    }
    break;
  }
  do {
    n = ::read(fd_.get(), response.data(), response.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = errno;
    if (err == ENODEV || err == EIO) alive_ = false;
    return make_error(err, "read from " + path_ + " failed: " + std::strerror(err));
  }
  response.resize(static_cast<std::size_t>(n));
  return response;
}

}  // namespace tpmrmd::chip

// Driver for a kernel TPM character device (/dev/tpmN): one write per command, one read per response. The
// kernel enforces its own command durations; the deadline here bounds how long we wait for the read.
#pragma once

#include <memory>
#include <string>

#include "chip/driver.h"
#include "util/unique_fd.h"

namespace tpmrmd::chip {

class DeviceDriver final : public Driver {
 public:
  // EBUSY (another process holds the node; /dev/tpmN is single-open) and ENOENT get messages that say so.
  static Result<std::unique_ptr<DeviceDriver>> open(const std::string& path);

  std::string description() const override { return "device " + path_; }
  std::string identity() const override { return identity_; }
  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override;
  bool alive() const override { return alive_; }

 private:
  DeviceDriver(std::string path, std::string identity, UniqueFd fd)
      : path_(std::move(path)), identity_(std::move(identity)), fd_(std::move(fd)) {}

  std::string path_;
  std::string identity_;
  UniqueFd fd_;
  bool alive_ = true;
};

}  // namespace tpmrmd::chip

// Client of swtpm's control channel (the protocol of swtpm's tpm_ioctl.h): big-endian u32 command, u32 result first
// in every reply.
#pragma once

#include <cstdint>
#include <string>

#include "util/bytes.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::chip {

struct SwtpmEndpoint {
  enum class Kind { kUnix, kTcp } kind = Kind::kUnix;
  std::string path;  // kUnix
  std::string host;  // kTcp
  std::uint16_t port = 0;

  std::string to_string() const;  // "unix:/path" or "tcp:host:port"
};

// CMD_GET_CAPABILITY bits (swtpm's PTM_CAP_*): bit n-1 says control command n is supported.
inline constexpr std::uint32_t kSwtpmCapInit = 1u << 0;
inline constexpr std::uint32_t kSwtpmCapShutdown = 1u << 1;
inline constexpr std::uint32_t kSwtpmCapSetLocality = 1u << 3;
inline constexpr std::uint32_t kSwtpmCapCancelTpmCmd = 1u << 5;

class SwtpmControl {
 public:
  explicit SwtpmControl(SwtpmEndpoint endpoint) : endpoint_(std::move(endpoint)) {}

  const SwtpmEndpoint& endpoint() const { return endpoint_; }

  Result<std::uint32_t> get_capability();       // CMD_GET_CAPABILITY: PTM_CAP_* bits
  Result<void> init(bool delete_volatile = false);  // CMD_INIT
  Result<void> cancel();                         // CMD_CANCEL_TPM_CMD
  Result<void> set_locality(std::uint8_t locality);  // CMD_SET_LOCALITY

 private:
  // Sends one request in one write and reads the u32 result plus `reply_size` more bytes on success.
  // Error replies are exactly 4 bytes; a non-zero result is returned as EIO naming the swtpm code.
  Result<void> request(std::uint32_t command, ByteSpan payload, std::uint8_t* reply, std::size_t reply_size);

  SwtpmEndpoint endpoint_;
  UniqueFd fd_;  // connected lazily, reconnected after a failure
};

}  // namespace tpmrmd::chip

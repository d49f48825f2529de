// Blocking stream I/O with deadlines, shared by the socket and device drivers.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "util/bytes.h"
#include "util/coarse_clock.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::chip {

using Clock = CoarseClock;  // deadlines only (util/coarse_clock.h)

Result<UniqueFd> connect_unix(const std::string& path);
Result<UniqueFd> connect_tcp(const std::string& host, std::uint16_t port);

// Writes all of `bytes` (retrying short writes and EINTR; never raises SIGPIPE). EPIPE when the peer is gone.
Result<void> write_all(int fd, ByteSpan bytes);

// Reads exactly out.size() bytes before `deadline`: ETIME when it passes, EPIPE on end of stream.
Result<void> read_exact(int fd, std::span<std::uint8_t> out, Clock::time_point deadline);

// Reads one whole TPM response (header, then the size it declares, at most `max_size`) before `deadline`.
// EIO for a declared size below 10 or above `max_size`.
Result<Bytes> read_tpm_response(int fd, Clock::time_point deadline, std::size_t max_size);

}  // namespace tpmrmd::chip

// Whole-buffer reads and writes on a stream socket: the framing every socket protocol here is built on.
#pragma once

#include <cstdint>
#include <optional>

#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::socket {

// Reads exactly data.size() bytes. An orderly close before the first byte is ENODATA (the peer is done);
// a close inside the buffer is EPIPE (a truncated frame).
Result<void> read_exact(int fd, std::span<std::uint8_t> data);

// Writes all of `data` without raising SIGPIPE.
Result<void> write_all(int fd, ByteSpan data);

// A big-endian 32-bit word, the unit of the swtpm control and mssim protocols.
Result<std::uint32_t> read_u32(int fd);
void append_u32(Bytes& out, std::uint32_t value);

}  // namespace tpmrmd::socket

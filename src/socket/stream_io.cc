#include "socket/stream_io.h"

#include <sys/socket.h>

#include <cerrno>

namespace tpmrmd::socket {

Result<void> read_exact(int fd, std::span<std::uint8_t> data) {
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::recv(fd, data.data() + got, data.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(errno, "recv");
    }
    if (n == 0) return make_error(got == 0 ? ENODATA : EPIPE, got == 0 ? "peer closed" : "truncated frame");
    got += static_cast<std::size_t>(n);
  }
  return {};
}

Result<void> write_all(int fd, ByteSpan data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(errno, "send");
    }
    sent += static_cast<std::size_t>(n);
  }
  return {};
}

Result<std::uint32_t> read_u32(int fd) {
  std::uint8_t b[4];
  if (auto r = read_exact(fd, b); !r) return r.error();
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
}

void append_u32(Bytes& out, std::uint32_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 24));
  out.push_back(static_cast<std::uint8_t>(value >> 16));
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

}  // namespace tpmrmd::socket

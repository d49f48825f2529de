#include "chip/drivers/stream_io.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "tpm/header.h"

namespace tpmrmd::chip {

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return make_error(ENAMETOOLONG, "socket path too long: " + path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return make_error(errno, "socket() failed");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    return make_error(err, "cannot connect to " + path + ": " + std::strerror(err));
  }
  return fd;
}

Result<UniqueFd> connect_tcp(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
    return make_error(EHOSTUNREACH, "cannot resolve '" + host + "': " + ::gai_strerror(rc));
  }
  int err = ECONNREFUSED;
  for (addrinfo* ai = list; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) continue;
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
      ::freeaddrinfo(list);
      return fd;
    }
    err = errno;
  }
  ::freeaddrinfo(list);
  return make_error(err, "cannot connect to " + host + ":" + service + ": " + std::strerror(err));
}

Result<void> write_all(int fd, ByteSpan bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    // send() with MSG_NOSIGNAL on sockets; plain write() on character devices.
    ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return make_error(err == ECONNRESET ? EPIPE : err, std::string("write failed: ") + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Result<void> read_exact(int fd, std::span<std::uint8_t> out, Clock::time_point deadline) {
  std::size_t done = 0;
  while (done < out.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left < 0) left = 0;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return make_error(errno, "poll failed");
    }
    if (rc == 0) return make_error(ETIME, "no response before the deadline");
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      int err = errno;
      return make_error(err == ECONNRESET ? EPIPE : err, std::string("read failed: ") + std::strerror(err));
    }
    if (n == 0) return make_error(EPIPE, "peer closed the connection");
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Result<Bytes> read_tpm_response(int fd, Clock::time_point deadline, std::size_t max_size) {
  Bytes response(tpm::kHeaderSize);
  if (auto r = read_exact(fd, response, deadline); !r) return r.error();
  auto header = tpm::parse_response_header(response);
  if (header->size < tpm::kHeaderSize || header->size > max_size) {
    return make_error(EIO, "response declares " + std::to_string(header->size) + " bytes (allowed 10.." +
                               std::to_string(max_size) + ")");
  }
  response.resize(header->size);
  auto rest = std::span<std::uint8_t>(response).subspan(tpm::kHeaderSize);
  if (auto r = read_exact(fd, rest, deadline); !r) return r.error();
  return response;
}

}  // namespace tpmrmd::chip

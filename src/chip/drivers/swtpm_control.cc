#include "chip/drivers/swtpm_control.h"

#include <cerrno>
#include <chrono>

#include "chip/drivers/stream_io.h"
#include "tpm/endian.h"

namespace tpmrmd::chip {
namespace {

constexpr std::uint32_t kCmdGetCapability = 0x01;
constexpr std::uint32_t kCmdInit = 0x02;
constexpr std::uint32_t kCmdSetLocality = 0x05;
constexpr std::uint32_t kCmdCancelTpmCmd = 0x09;
// swtpm waits up to 500 ms for a request; give its reply a little more.
constexpr std::chrono::milliseconds kReplyTimeout{2000};

}  // namespace

std::string SwtpmEndpoint::to_string() const {
  return kind == Kind::kUnix ? "unix:" + path : "tcp:" + host + ":" + std::to_string(port);
}

Result<void> SwtpmControl::request(std::uint32_t command, ByteSpan payload, std::uint8_t* reply,
                                   std::size_t reply_size) {
  if (!fd_) {
    auto fd = endpoint_.kind == SwtpmEndpoint::Kind::kUnix ? connect_unix(endpoint_.path)
                                                           : connect_tcp(endpoint_.host, endpoint_.port);
    if (!fd) return make_error(fd.error().code, "swtpm control channel: " + fd.error().message);
    fd_ = std::move(*fd);
  }
  Bytes message(4);
  tpm::store_u32(message, 0, command);
  message.insert(message.end(), payload.begin(), payload.end());

  auto fail = [this](const Error& e) {
    fd_.reset();  // the stream may be out of step now; reconnect next time
    return make_error(e.code, "swtpm control channel: " + e.message);
  };
  if (auto w = write_all(fd_.get(), message); !w) return fail(w.error());
  auto deadline = Clock::now() + kReplyTimeout;
  std::uint8_t result_bytes[4];
  if (auto r = read_exact(fd_.get(), result_bytes, deadline); !r) return fail(r.error());
  if (std::uint32_t result = tpm::load_u32(result_bytes, 0); result != 0) {
    return make_error(EIO, "swtpm control command " + std::to_string(command) + " failed with result " +
                               std::to_string(result));
  }
  if (reply_size > 0) {
    if (auto r = read_exact(fd_.get(), std::span(reply, reply_size), deadline); !r) return fail(r.error());
  }
  return {};
}

Result<std::uint32_t> SwtpmControl::get_capability() {
  std::uint8_t caps[4];
  if (auto r = request(kCmdGetCapability, {}, caps, sizeof caps); !r) return r.error();
  return tpm::load_u32(caps, 0);
}

Result<void> SwtpmControl::init(bool delete_volatile) {
  std::uint8_t flags[4] = {0, 0, 0, static_cast<std::uint8_t>(delete_volatile ? 1 : 0)};
  return request(kCmdInit, flags, nullptr, 0);
}

Result<void> SwtpmControl::cancel() { return request(kCmdCancelTpmCmd, {}, nullptr, 0); }

Result<void> SwtpmControl::set_locality(std::uint8_t locality) {
  std::uint8_t payload[1] = {locality};
  return request(kCmdSetLocality, payload, nullptr, 0);
}

}  // namespace tpmrmd::chip

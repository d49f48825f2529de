#include "socket/swtpm_control_session.h"

#include <spdlog/spdlog.h>

#include "socket/peer.h"
#include "socket/stream_io.h"

namespace tpmrmd::socket {
namespace {

using namespace swtpm_ctrl;

Result<void> answer(int fd, std::uint32_t result, ByteSpan payload = {}) {
  Bytes out;
  append_u32(out, result);
  out.insert(out.end(), payload.begin(), payload.end());
  return write_all(fd, out);
}

// The TPM-wide controls with a fixed (or no) parameter block: refused, the connection kept.
bool refused_control(std::uint32_t code) {
  switch (code) {
    case kShutdown:
    case kGetTpmEstablished:
    case kHashStart:
    case kHashEnd:
    case kStoreVolatile:
    case kStop:
    case kGetConfig:
    case kSetDataFd:
      return true;
    default:
      return false;
  }
}

}  // namespace

void serve_swtpm_control(int fd, CancelRegistry& cancels) {
  auto client = unix_peer(fd);
  if (!client) return spdlog::warn("event=socket-refused protocol=swtpm-ctrl error=\"{}\"", describe(client.error()));
  for (;;) {
    auto code = read_u32(fd);
    if (!code) return;
    Result<void> sent;
    if (*code == kGetCapability) {
      Bytes caps;
      append_u32(caps, kCapSetLocality | kCapCancelTpmCmd);
      sent = answer(fd, kSuccess, caps);
    } else if (*code == kSetLocality) {
      std::uint8_t locality = 0;
      if (!read_exact(fd, std::span(&locality, 1))) return;
      if (locality != 0) {
        spdlog::info("event=socket-locality-refused pid={} uid={} locality={}", client->pid, client->uid, locality);
      }
      sent = answer(fd, locality == 0 ? kSuccess : kBadLocality);
    } else if (*code == kCancelTpmCmd) {
      const std::size_t n = cancels.cancel(client->pid, client->uid);
      spdlog::debug("event=socket-cancel pid={} uid={} commands={}", client->pid, client->uid, n);
      sent = answer(fd, kSuccess);
    } else if (*code == kInit || *code == kResetTpmEstablished) {
      std::uint8_t param[4];  // init flags; the locality whose established bit is to be reset (one byte, padded)
      if (!read_exact(fd, std::span(param, *code == kInit ? 4 : 1))) return;
      spdlog::info("event=socket-control-refused pid={} uid={} command=0x{:02x}", client->pid, client->uid, *code);
      sent = answer(fd, kDisabledCmd);
    } else if (refused_control(*code)) {
      spdlog::info("event=socket-control-refused pid={} uid={} command=0x{:02x}", client->pid, client->uid, *code);
      sent = answer(fd, kDisabledCmd);
    } else {
      spdlog::info("event=socket-control-unknown pid={} uid={} command=0x{:08x}", client->pid, client->uid, *code);
      (void)answer(fd, kBadOrdinal);
      return;
    }
    if (!sent) return;
  }
}

}  // namespace tpmrmd::socket

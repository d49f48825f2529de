#include "socket/mssim_platform_session.h"

#include <spdlog/spdlog.h>

#include "socket/mssim_protocol.h"
#include "socket/peer.h"
#include "socket/stream_io.h"

namespace tpmrmd::socket {

void serve_mssim_platform(int fd, CancelRegistry& cancels, bool unix_socket) {
  rm::ClientInfo client = tcp_peer(fd);
  if (unix_socket) {
    auto peer = unix_peer(fd);
    if (!peer) return spdlog::warn("event=socket-refused protocol=mssim-platform error=\"{}\"", describe(peer.error()));
    client = std::move(*peer);
  }
  for (;;) {
    auto code = read_u32(fd);
    if (!code) return;
    std::uint32_t result = mssim::kDone;
    switch (*code) {
      case mssim::kPowerOn:
      case mssim::kPowerOff:
      case mssim::kNvOn:
      case mssim::kNvOff:
      case mssim::kKeyCacheOn:
      case mssim::kKeyCacheOff:
      case mssim::kCancelOff:
        break;
      case mssim::kCancelOn:
        if (client.pid > 0) cancels.cancel(client.pid, client.uid);
        break;
      case mssim::kPhysPresOn:
      case mssim::kPhysPresOff:
      case mssim::kHashStart:
      case mssim::kHashEnd:
      case mssim::kReset:
      case mssim::kRestart:
      case mssim::kTestFailureMode:
        spdlog::info("event=socket-platform-refused pid={} uid={} code={}", client.pid, client.uid, *code);
        result = mssim::kRefused;
        break;
      case mssim::kSessionEnd:
      case mssim::kStop:
        return;
      default:
        spdlog::info("event=socket-platform-unknown pid={} uid={} code={}", client.pid, client.uid, *code);
        return;
    }
    Bytes out;
    append_u32(out, result);
    if (!write_all(fd, out)) return;
  }
}

}  // namespace tpmrmd::socket

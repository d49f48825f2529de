#include "socket/mssim_command_session.h"

#include <spdlog/spdlog.h>
#include <tss2/tss2_tpm2_types.h>

#include "rm/audit_log.h"
#include "socket/command_runner.h"
#include "socket/mssim_protocol.h"
#include "socket/peer.h"
#include "socket/stream_io.h"
#include "tpm/header.h"

namespace tpmrmd::socket {

void serve_mssim_command(int fd, MssimContext& context) {
  rm::ClientInfo client;
  if (context.unix_socket) {
    auto peer = unix_peer(fd);
    if (!peer) return spdlog::warn("event=socket-refused protocol=mssim error=\"{}\"", describe(peer.error()));
    client = std::move(*peer);
  } else {
    client = tcp_peer(fd);
  }
  auto connection = context.opener(client);
  if (!connection) {
    spdlog::warn("event=socket-open-failed protocol=mssim pid={} uid={} comm=\"{}\" error=\"{}\"", client.pid,
                 client.uid, rm::log_quoted(client.comm), describe(connection.error()));
    return;
  }
  for (;;) {
    auto code = read_u32(fd);
    if (!code) break;
    if (*code == mssim::kSessionEnd) break;
    if (*code != mssim::kSendCommand) {
      spdlog::info("event=socket-request-refused protocol=mssim pid={} uid={} code={}", client.pid, client.uid, *code);
      break;
    }
    std::uint8_t locality = 0;
    if (!read_exact(fd, std::span(&locality, 1))) break;
    auto size = read_u32(fd);
    if (!size) break;
    if (*size < tpm::kHeaderSize || *size > context.max_command) {
      spdlog::info("event=socket-frame-refused protocol=mssim pid={} size={} max={}", client.pid, *size,
                   context.max_command);
      break;
    }
    Bytes command(*size);
    if (!read_exact(fd, command)) {
      spdlog::info("event=socket-frame-truncated protocol=mssim pid={}", client.pid);
      break;
    }
    Result<Bytes> response = tpm::make_rc_response(TPM2_RC_LOCALITY);
    if (locality == 0) {
      response = run_command(*connection, command, &context.cancels, client.pid, client.uid);
    } else {
      spdlog::info("event=socket-locality-refused protocol=mssim pid={} uid={} locality={}", client.pid, client.uid,
                   locality);
    }
    if (!response) {
      auto answer = errno_response(response.error().code);
      if (!answer) {
        spdlog::info("event=socket-backend-gone protocol=mssim pid={}", client.pid);
        break;
      }
      response = std::move(*answer);
    }
    Bytes out;
    out.reserve(response->size() + 8);
    append_u32(out, static_cast<std::uint32_t>(response->size()));
    out.insert(out.end(), response->begin(), response->end());
    append_u32(out, 0);
    if (!write_all(fd, out)) break;
  }
  (*connection)->close();
}

}  // namespace tpmrmd::socket

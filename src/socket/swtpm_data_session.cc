#include "socket/swtpm_data_session.h"

#include <spdlog/spdlog.h>

#include <array>

#include "rm/audit_log.h"
#include "socket/command_runner.h"
#include "socket/peer.h"
#include "socket/stream_io.h"
#include "tpm/header.h"

namespace tpmrmd::socket {

void serve_swtpm_data(int fd, SwtpmDataContext& context) {
  auto client = unix_peer(fd);
  if (!client) return spdlog::warn("event=socket-refused protocol=swtpm error=\"{}\"", describe(client.error()));
  auto space = context.spaces.acquire(*client, peer_pidfd(fd, client->pid));
  if (!space) {
    spdlog::warn("event=socket-open-failed protocol=swtpm pid={} uid={} comm=\"{}\" error=\"{}\"", client->pid,
                 client->uid, rm::log_quoted(client->comm), describe(space.error()));
    return;
  }
  for (;;) {
    Bytes command(tpm::kHeaderSize);
    if (auto r = read_exact(fd, command); !r) {
      if (r.error().code != ENODATA) spdlog::info("event=socket-frame-truncated protocol=swtpm pid={}", client->pid);
      break;
    }
    const std::uint32_t size = (std::uint32_t{command[2]} << 24) | (std::uint32_t{command[3]} << 16) |
                               (std::uint32_t{command[4]} << 8) | command[5];
    if (size < tpm::kHeaderSize || size > context.max_command) {
      spdlog::info("event=socket-frame-refused protocol=swtpm pid={} size={} max={}", client->pid, size,
                   context.max_command);
      break;
    }
    command.resize(size);
    if (auto r = read_exact(fd, std::span(command).subspan(tpm::kHeaderSize)); !r) {
      spdlog::info("event=socket-frame-truncated protocol=swtpm pid={}", client->pid);
      break;
    }
    Result<Bytes> response = make_error(ENODEV, "");
    {
      std::lock_guard turn((*space)->turn);
      response = run_command((*space)->connection, command, &context.cancels, client->pid, client->uid);
    }
    if (!response) {
      auto answer = errno_response(response.error().code);
      if (!answer) {
        spdlog::info("event=socket-backend-gone protocol=swtpm pid={}", client->pid);
        context.spaces.forget(*space);
        break;
      }
      response = std::move(*answer);
    }
    if (!write_all(fd, *response)) break;
  }
  if ((*space)->per_connection) (*space)->connection->close();
}

}  // namespace tpmrmd::socket

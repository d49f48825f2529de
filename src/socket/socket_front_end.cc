#include "socket/socket_front_end.h"

#include <spdlog/spdlog.h>

#include "socket/mssim_platform_session.h"
#include "socket/swtpm_control_session.h"

namespace tpmrmd::socket {

SocketFrontEnd::SocketFrontEnd(SocketFrontEndOptions options, ConnectionOpener opener)
    : options_(std::move(options)),
      spaces_(opener),
      pool_(options_.max_sessions),
      swtpm_context_{spaces_, cancels_, options_.max_command},
      mssim_context_{std::move(opener), cancels_, options_.max_command,
                     options_.mssim && options_.mssim->kind == Endpoint::Kind::kUnix} {}

Result<std::unique_ptr<SocketFrontEnd>> SocketFrontEnd::start(SocketFrontEndOptions options, ConnectionOpener opener) {
  if (options.swtpm && options.swtpm->kind != Endpoint::Kind::kUnix) {
    return make_error(EINVAL, "the swtpm protocol is served on a unix socket only: its TCTI connects once per "
                              "command, and only a unix peer's process can tie those connections together");
  }
  std::unique_ptr<SocketFrontEnd> front(new SocketFrontEnd(std::move(options), std::move(opener)));
  const SocketFrontEndOptions& o = front->options_;
  using Serve = std::function<void(int)>;
  std::vector<std::pair<Endpoint, Serve>> plan;
  SocketFrontEnd* self = front.get();
  if (o.swtpm) {
    plan.emplace_back(*o.swtpm, [self](int fd) { serve_swtpm_data(fd, self->swtpm_context_); });
    plan.emplace_back(o.swtpm->companion(), [self](int fd) { serve_swtpm_control(fd, self->cancels_); });
  }
  if (o.mssim) {
    const bool unix_socket = o.mssim->kind == Endpoint::Kind::kUnix;
    plan.emplace_back(*o.mssim, [self](int fd) { serve_mssim_command(fd, self->mssim_context_); });
    plan.emplace_back(o.mssim->companion(),
                      [self, unix_socket](int fd) { serve_mssim_platform(fd, self->cancels_, unix_socket); });
  }
  // Every socket exists before any accepts: a failure part-way leaves none behind (the listeners' destructors
  // remove what was made).
  for (auto& [endpoint, serve] : plan) {
    auto listener = Listener::open({.endpoint = endpoint, .mode = o.mode, .group = o.group});
    if (!listener) return listener.error();
    front->listeners_.push_back(std::move(*listener));
  }
  for (std::size_t i = 0; i < plan.size(); ++i) {
    Listener& listener = *front->listeners_[i];
    const bool tcp = listener.endpoint().kind == Endpoint::Kind::kTcp;
    listener.start([self, serve = plan[i].second](UniqueFd fd) { self->pool_.spawn(std::move(fd), serve); });
    if (tcp) {
      spdlog::warn("event=socket-tcp socket={} warning=\"TCP has no peer credentials: every TCP client is uid {} "
                   "(nobody), under its per-uid quotas and the command policy's everyone class, and anyone who can "
                   "reach the port can use the TPM\"",
                   listener.endpoint().describe(), 65534);
      if (!listener.endpoint().loopback()) {
        spdlog::warn("event=socket-tcp-exposed socket={} warning=\"bound beyond loopback: TPM traffic (auth values, "
                     "keys) travels unencrypted\"",
                     listener.endpoint().describe());
      }
    }
    spdlog::info("event=socket-listening socket={} mode=0{:o} group={}", listener.endpoint().describe(),
                 tcp ? 0 : o.mode & 0777, o.group ? std::to_string(*o.group) : "none");
  }
  return front;
}

SocketFrontEnd::~SocketFrontEnd() { stop(); }

void SocketFrontEnd::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& listener : listeners_) listener->stop();
  pool_.stop();
  spaces_.stop();
  listeners_.clear();
}

}  // namespace tpmrmd::socket

#include "daemon/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "daemon/daemon_status.h"
#include "daemon/metrics_text.h"
#include "daemon/status_json.h"
#include "util/unix_socket_path.h"

namespace tpmrmd::daemon {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxRequest = 4096;

json error_response(const std::string& message) { return {{"ok", false}, {"error", message}}; }

}  // namespace

ControlServer::ControlServer(ControlServerOptions options, ControlHooks hooks)
    : options_(std::move(options)), hooks_(std::move(hooks)), started_at_(std::chrono::system_clock::now()) {}

Result<std::unique_ptr<ControlServer>> ControlServer::start(ControlServerOptions options, ControlHooks hooks) {
  auto addr = unix_address(options.path);
  if (!addr) return addr.error();
  if (auto r = clear_stale_socket(options.path, *addr); !r) return r.error();
  std::unique_ptr<ControlServer> server(new ControlServer(std::move(options), std::move(hooks)));
  const std::string& path = server->options_.path;
  server->listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!server->listen_) return make_error(errno, "socket");
  {
    // Never reachable by anyone else between bind() and the chown/chmod below.
    const mode_t old = ::umask(0177);
    const int bound = ::bind(server->listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
    const int bind_errno = errno;
    ::umask(old);
    if (bound != 0) return make_error(bind_errno, "bind " + path);
  }
  auto fail = [&](const std::string& what) {
    const int e = errno;
    ::unlink(path.c_str());
    return make_error(e, what + " " + path);
  };
  if (server->options_.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *server->options_.group) != 0) {
    return fail("chown");
  }
  if (::chmod(path.c_str(), 0660) != 0) return fail("chmod");
  if (::listen(server->listen_.get(), 16) != 0) return fail("listen");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return fail("pipe");
  server->stop_read_.reset(pipe_fds[0]);
  server->stop_write_.reset(pipe_fds[1]);
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  spdlog::info("event=control-socket path={} mode=0660 group={}", path,
               server->options_.group ? std::to_string(*server->options_.group) : "none");
  return server;
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const char byte = 0;
    if (::write(stop_write_.get(), &byte, 1) != 1) { /* the thread sees the pipe closed below at worst */ }
    thread_.join();
  }
  listen_.reset();
  if (::unlink(options_.path.c_str()) != 0 && errno != ENOENT) {
    // After --runas in a root-owned directory: the next start replaces the dead socket.
    spdlog::info("event=control-socket-left path={} error=\"{}\"", options_.path, std::strerror(errno));
  }
}

void ControlServer::run() {
  for (;;) {
    pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("event=control-socket-failed error=\"poll: {}\"", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) continue;
    try {
      serve(client.get());
    } catch (const std::exception& e) {
      spdlog::warn("event=control-request-failed error=\"{}\"", e.what());
    }
  }
}

void ControlServer::serve(int fd) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(options_.io_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((options_.io_timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ucred cred{};
  socklen_t len = sizeof cred;
  std::string response;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    response = error_response("the peer's credentials could not be read").dump();
  } else {
    ControlPeer peer{cred.pid, cred.uid, cred.gid, process_groups(cred.pid).value_or(std::vector<gid_t>{})};
    std::string request;
    char buf[512];
    while (request.find('\n') == std::string::npos && request.size() < kMaxRequest) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<std::size_t>(n));
    }
    if (auto nl = request.find('\n'); nl != std::string::npos) request.resize(nl);
    response = handle(request, peer);
  }
  response += '\n';
  for (std::size_t off = 0; off < response.size();) {
    const ssize_t n = ::send(fd, response.data() + off, response.size() - off, MSG_NOSIGNAL);  // a gone client is no signal
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

std::string ControlServer::handle(const std::string& request, const ControlPeer& peer) {
  json req = json::parse(request, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("verb") || !req["verb"].is_string()) {
    return error_response("a request is one JSON object with a string \"verb\", e.g. {\"verb\":\"status\"}").dump();
  }
  const std::string verb = req["verb"].get<std::string>();
  static const char* const kVerbs[] = {"status", "clients", "metrics", "flush-abandoned", "log-level"};
  if (std::find(std::begin(kVerbs), std::end(kVerbs), verb) == std::end(kVerbs)) {
    return error_response("unknown verb '" + verb + "' (status, clients, metrics, flush-abandoned, log-level)").dump();
  }
  if (auto refused = refuse_verb(peer, control_access(peer, options_.group), verb)) {
    spdlog::warn("event=control-refused verb={} pid={} uid={}", verb, peer.pid, peer.uid);
    return error_response(*refused).dump();
  }
  json result;
  if (verb == "status" || verb == "clients" || verb == "metrics") {
    DaemonStatus status{::getpid(), std::chrono::system_clock::now(), started_at_,
                        hooks_.snapshot ? hooks_.snapshot() : std::nullopt};
    if (status.backend && !status.backend->responsive) {
      return error_response("the RM worker did not answer in time: busy with one long TPM command, or stuck "
                            "(the service watchdog acts on the latter); try again").dump();
    }
    if (verb == "status") {
      result = status_json(status);
    } else if (verb == "clients") {
      result = clients_json(status);
    } else {
      result = {{"text", metrics_text(status)}};
    }
  } else if (verb == "flush-abandoned") {
    const std::size_t flushed = hooks_.flush_abandoned ? hooks_.flush_abandoned() : 0;
    spdlog::info("event=abandoned-flushed count={} by_uid={}", flushed, peer.uid);
    result = {{"flushed", flushed}};
  } else {  // log-level
    const std::string level = req.value("level", "");
    const auto parsed = spdlog::level::from_str(level);
    // from_str answers "off" for anything it does not know: only a real name is taken.
    if (parsed == spdlog::level::off && level != "off") {
      return error_response("log-level needs \"level\": trace, debug, info, warn, error, critical or off").dump();
    }
    const auto old = spdlog::get_level();
    spdlog::set_level(parsed);
    spdlog::warn("event=log-level-changed from={} to={} by_uid={}", spdlog::level::to_string_view(old).data(),
                 level, peer.uid);
    result = {{"level", level}, {"previous", std::string(spdlog::level::to_string_view(old).data())}};
  }
  return json{{"ok", true}, {"verb", verb}, {"result", std::move(result)}}.dump();
}

}  // namespace tpmrmd::daemon

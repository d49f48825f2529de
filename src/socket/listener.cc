#include "socket/listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "util/unix_socket_path.h"

namespace tpmrmd::socket {
namespace {

constexpr int kBacklog = 64;

}  // namespace

std::thread spawn_quiet_thread(std::function<void()> body) {
  sigset_t quiet, old;
  sigemptyset(&quiet);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&quiet, sig);
  // The new thread inherits the mask in force when it is created: no window in which it could take one.
  pthread_sigmask(SIG_BLOCK, &quiet, &old);
  std::thread thread(std::move(body));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return thread;
}

Result<std::unique_ptr<Listener>> Listener::open(ListenerOptions options) {
  std::unique_ptr<Listener> listener(new Listener(std::move(options)));
  auto bound = listener->options_.endpoint.kind == Endpoint::Kind::kUnix ? listener->bind_unix() : listener->bind_tcp();
  if (!bound) return bound.error();
  if (::listen(listener->listen_.get(), kBacklog) != 0) return make_error(errno, "listen " + listener->endpoint().describe());
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return make_error(errno, "pipe");
  listener->stop_read_.reset(pipe_fds[0]);
  listener->stop_write_.reset(pipe_fds[1]);
  return listener;
}

Result<void> Listener::bind_unix() {
  const std::string& path = options_.endpoint.path;
  auto addr = unix_address(path);
  if (!addr) return addr.error();
  if (auto r = clear_stale_socket(path, *addr); !r) return r.error();
  listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_) return make_error(errno, "socket");
  {
    // Nobody may connect between bind() and the chown/chmod below.
    const mode_t old = ::umask(0177);
    const int bound = ::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
    const int bind_errno = errno;
    ::umask(old);
    if (bound != 0) return make_error(bind_errno, "bind " + path);
  }
  bound_file_ = true;
  if (options_.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *options_.group) != 0) {
    return make_error(errno, "chown " + path);
  }
  if (::chmod(path.c_str(), options_.mode & 0777) != 0) return make_error(errno, "chmod " + path);
  return {};
}

Result<void> Listener::bind_tcp() {
  const Endpoint& e = options_.endpoint;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(e.port);
  if (int rc = ::getaddrinfo(e.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return make_error(EINVAL, "resolving '" + e.host + "': " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  int last_errno = EADDRNOTAVAIL;
  for (const addrinfo* ai = found; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) { last_errno = errno; continue; }
    const int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) { last_errno = errno; continue; }
    listen_ = std::move(fd);
    return {};
  }
  return make_error(last_errno, "bind " + e.describe());
}

Listener::~Listener() { stop(); }

void Listener::start(Accept on_accept) {
  thread_ = spawn_quiet_thread([this, on_accept = std::move(on_accept)] { run(on_accept); });
}

void Listener::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const char byte = 0;
    if (::write(stop_write_.get(), &byte, 1) != 1) { /* the thread sees the pipe closed below at worst */ }
    thread_.join();
  }
  listen_.reset();
  if (bound_file_ && ::unlink(options_.endpoint.path.c_str()) != 0 && errno != ENOENT) {
    // After --runas in a root-owned directory: the next start replaces the dead socket.
    spdlog::info("event=socket-left path={} error=\"{}\"", options_.endpoint.path, std::strerror(errno));
  }
}

void Listener::run(const Accept& on_accept) {
  for (;;) {
    pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("event=socket-accept-failed socket={} error=\"poll: {}\"", endpoint().describe(), std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd client(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) {
      // EMFILE and the like: back off briefly instead of spinning on a pending connection.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) ::poll(nullptr, 0, 100);
      continue;
    }
    on_accept(std::move(client));
  }
}

}  // namespace tpmrmd::socket

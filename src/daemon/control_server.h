// The control socket: a unix stream socket on which tpmrmctl asks for status, clients and metrics, and root
// flushes abandoned sessions or changes the log level. One JSON request line ({"verb":"status"}) gets one
// JSON response line ({"ok":true,"result":...} or {"ok":false,"error":"..."}).
//
// Authorization is per connection from SO_PEERCRED (control_access.h). Requests are served one at a time on
// the server's own thread, which reaches the RM only through its hooks (Supervisor::snapshot(), which takes
// the snapshot on the RM's worker thread), never RM memory.
//
// The socket file is 0660 root:<group> (the node's group when one is given). It is created by start(), which
// the daemon calls while still root: the lock dir it lives in by default (/run/tpmrmd) is root's, where the
// dropped --runas user could neither create it nor, later, remove it. The listening descriptor survives the
// privilege drop (accept() needs no permission on the file). stop() removes the file; if the dropped daemon may
// not (a root-owned directory), the dead socket is left and the next start replaces it (a socket nobody
// answers on is stale; a live one is another daemon's and is refused).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "daemon/control_access.h"
#include "daemon/supervisor.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::daemon {

struct ControlServerOptions {
  std::string path;
  std::optional<gid_t> group{};  // the node's group: the socket's group and the read-only class
  std::chrono::milliseconds io_timeout{2000};  // a client that sends nothing (or reads nothing) is dropped
};

struct ControlHooks {
  std::function<std::optional<BackendSnapshot>()> snapshot;
  std::function<std::size_t()> flush_abandoned;
};

class ControlServer {
 public:
  // Binds and listens, then serves on a thread of its own.
  static Result<std::unique_ptr<ControlServer>> start(ControlServerOptions options, ControlHooks hooks);
  ~ControlServer();  // stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Joins the thread (a request being served is finished first) and removes the socket file. Idempotent.
  void stop();

  const std::string& path() const { return options_.path; }

  // One request line to one response line (no newline), without the socket: the server's core, for tests too.
  std::string handle(const std::string& request, const ControlPeer& peer);

 private:
  ControlServer(ControlServerOptions options, ControlHooks hooks);
  void run();
  void serve(int fd);

  ControlServerOptions options_;
  ControlHooks hooks_;
  std::chrono::system_clock::time_point started_at_;
  UniqueFd listen_;
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace tpmrmd::daemon

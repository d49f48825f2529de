// A listening stream socket and the thread that accepts on it.
//
// A unix socket file is created while the daemon is still root (before --runas), with the device node's mode
// and group, never reachable with looser permissions in between; a stale one (nobody answers on it) is
// replaced, a live one is another daemon's and refused, anything that is not a socket is left alone. The
// listening descriptor survives the privilege drop. stop() removes the file (when the dropped daemon may).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "socket/endpoint.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::socket {

struct ListenerOptions {
  Endpoint endpoint;
  mode_t mode = 0660;           // unix only
  std::optional<gid_t> group;   // unix only
};

class Listener {
 public:
  using Accept = std::function<void(UniqueFd client)>;

  // Binds and listens; accepting starts with start().
  static Result<std::unique_ptr<Listener>> open(ListenerOptions options);
  ~Listener();  // stop()
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Accepts on a thread of its own, handing each connection to `on_accept` (which must not block).
  void start(Accept on_accept);
  // Joins the accept thread, closes the socket and removes its file. Idempotent.
  void stop();

  const Endpoint& endpoint() const { return options_.endpoint; }

 private:
  explicit Listener(ListenerOptions options) : options_(std::move(options)) {}
  Result<void> bind_unix();
  Result<void> bind_tcp();
  void run(const Accept& on_accept);

  ListenerOptions options_;
  UniqueFd listen_;
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  std::thread thread_;
  bool bound_file_ = false;
  bool stopped_ = false;
};

// Starts `body` on a new thread that does not take the daemon's termination signals (they belong to the
// thread that waits for them, libfuse's or main's), nor SIGPIPE.
std::thread spawn_quiet_thread(std::function<void()> body);

}  // namespace tpmrmd::socket

// RM spaces per client process, for the swtpm protocol.
//
// tpm2-tss's swtpm: TCTI connects the data socket anew for every command and closes it after the response, so
// a socket connection is far too short-lived to be a space: the objects a tool creates would be flushed
// between its own commands. What lives as long as a TCTI context is the client process. A unix socket names
// it (SO_PEERCRED's pid, pinned by a pidfd so that a reused pid is never mistaken for it): each process gets
// one Connection — one RM space, as one open() of the device node is — from its first connection on, and the
// space is closed (its objects and sessions flushed, as a closed fd's are) once the process has exited.
// A process seen with another uid (after setuid) gets another space. A peer whose process cannot be pinned
// (no pid visible in our namespace) gets a space per connection.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "device/connection.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::socket {

using ConnectionOpener = std::function<Result<std::shared_ptr<device::Connection>>(const rm::ClientInfo&)>;

class ProcessSpaces {
 public:
  struct Space {
    std::shared_ptr<device::Connection> connection;
    std::mutex turn;  // one command at a time, as concurrent TCTI contexts of one process take turns
    bool per_connection = false;  // not shared: the caller closes it with its socket
  };

  explicit ProcessSpaces(ConnectionOpener opener);
  ~ProcessSpaces();  // stop()
  ProcessSpaces(const ProcessSpaces&) = delete;
  ProcessSpaces& operator=(const ProcessSpaces&) = delete;

  // The space of `client`'s process, opened on its first connection; `pidfd` pins the process (invalid: a
  // per-connection space). Fails as the opener fails (EMFILE at the RM's limits, ENODEV without a backend).
  Result<std::shared_ptr<Space>> acquire(const rm::ClientInfo& client, UniqueFd pidfd);

  // The space's backend is gone: closed and forgotten, so the process's next connection opens a new one.
  void forget(const std::shared_ptr<Space>& space);

  // Closes every space (flushing what it held) and joins the reaper. Idempotent.
  void stop();

  std::size_t size();

 private:
  struct Key {
    pid_t pid;
    uid_t uid;
    auto operator<=>(const Key&) const = default;
  };
  struct Entry {
    std::shared_ptr<Space> space;
    UniqueFd pidfd;
  };
  void reap();
  void wake();

  ConnectionOpener opener_;
  std::mutex mutex_;
  std::map<Key, Entry> spaces_;
  bool stopping_ = false;
  UniqueFd wake_read_;
  UniqueFd wake_write_;
  std::thread reaper_;
};

}  // namespace tpmrmd::socket

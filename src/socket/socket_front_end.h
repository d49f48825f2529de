// The socket front-end: for hosts (and containers) without CUSE, the RM served on stream sockets in the two
// protocols tpm2-tss's TCTIs speak to TPM simulators, beside or instead of the CUSE node, on the same backend.
//
//   swtpm  (--socket PATH)  unix only: data socket PATH, control channel PATH.ctrl; a space per client process
//   mssim  (--mssim PATH | HOST:PORT)  command socket and platform socket (PATH.ctrl, or PORT+1); a space per
//                                      command connection
//
// TCP carries no peer credentials: every TCP client is the anonymous uid/gid (peer.h), and start() warns.
// Unix sockets get the node's mode and group. Threads: one per accepted connection (session_pool.h), one per
// listener, one reaping the spaces of exited processes; none of them takes the termination signals.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <vector>

#include "socket/cancel_registry.h"
#include "socket/endpoint.h"
#include "socket/listener.h"
#include "socket/process_spaces.h"
#include "socket/session_pool.h"
#include "socket/swtpm_data_session.h"
#include "socket/mssim_command_session.h"

namespace tpmrmd::socket {

struct SocketFrontEndOptions {
  std::optional<Endpoint> swtpm;  // unix only
  std::optional<Endpoint> mssim;
  mode_t mode = 0660;
  std::optional<gid_t> group;
  std::size_t max_command = 4096;
  std::size_t max_sessions = 1024;  // accepted connections at once, over all sockets
};

class SocketFrontEnd {
 public:
  // Creates every socket (all or none) and starts accepting. Call while still root, before --runas.
  static Result<std::unique_ptr<SocketFrontEnd>> start(SocketFrontEndOptions options, ConnectionOpener opener);
  ~SocketFrontEnd();  // stop()
  SocketFrontEnd(const SocketFrontEnd&) = delete;
  SocketFrontEnd& operator=(const SocketFrontEnd&) = delete;

  // Stops accepting and removes the socket files, ends every session, closes every space (flushing what its
  // client held in the TPM, as closing an fd does). Idempotent. Call before the backend is shut down.
  void stop();

  // Spaces of swtpm client processes still open (tests).
  std::size_t process_spaces() { return spaces_.size(); }

 private:
  SocketFrontEnd(SocketFrontEndOptions options, ConnectionOpener opener);

  SocketFrontEndOptions options_;
  CancelRegistry cancels_;
  ProcessSpaces spaces_;
  SessionPool pool_;
  SwtpmDataContext swtpm_context_;
  MssimContext mssim_context_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool stopped_ = false;
};

}  // namespace tpmrmd::socket

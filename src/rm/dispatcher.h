// The RM's thread-safe front door, shared by every front-end (CUSE device, a future socket server, tests).
//
// One thread at a time holds the ResourceManager and, through it, the Chip's transmit path: a TPM worker
// thread, or a front-end thread whose blocking command found the TPM idle (submit_blocking). Front-ends
// enqueue work and get completions; only submit_blocking may keep its caller for the length of a TPM command.
// Completions run on the RM's holder and must not block; they must not call back into the Dispatcher
// synchronously waiting for a result (enqueueing more work is fine).
//
// Fairness: between uids, by TPM time: a uid is charged the time its commands kept the TPM busy (evictions
// and loads the RM did for them included), and the uid that has used the least runs next, so a uid with many
// connections sending slow commands delays another uid's command by about one of its own. Within a uid,
// connections take turns one command each. The WorkerDispatcher's FairQueue is the policy.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rm/counters.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::rm {

using ConnectionId = std::uint64_t;

// Who opened a connection: the credentials per-user limits and the command policy are decided on, and what
// the audit trail names. A constructor rather than an aggregate, so ClientInfo{uid, gid, pid} stays valid (and
// -Wmissing-field-initializers quiet) as fields are added.
struct ClientInfo {
  ClientInfo(uid_t uid_ = 0, gid_t gid_ = 0, pid_t pid_ = 0, std::vector<gid_t> groups_ = {}, std::string comm_ = {})
      : uid(uid_), gid(gid_), pid(pid_), groups(std::move(groups_)), comm(std::move(comm_)) {}

  uid_t uid = 0;
  gid_t gid = 0;  // primary
  pid_t pid = 0;
  std::vector<gid_t> groups;  // supplementary, as the opener had them at open()
  std::string comm;           // /proc/PID/comm at open(), for log lines; empty if unknown

  bool in_group(gid_t group) const;  // primary or supplementary
};

class Dispatcher {
 public:
  using Completion = std::function<void(Result<Bytes>)>;

  virtual ~Dispatcher() = default;

  // Creates a connection (its RM space). Never touches the TPM. Fails with EMFILE when the global connection
  // limit is reached and ENODEV when the backend is gone.
  virtual Result<ConnectionId> open(const ClientInfo& client) = 0;

  // Queues one whole command for `id`. `completion` is called exactly once, on the RM's holder, with the
  // response bytes (possibly an RM-layer rc response such as 0x000B0143) or an errno error: EINVAL (malformed
  // command, unknown virtual handle), ENODEV (backend gone), ECANCELED (connection closed before it ran).
  virtual void submit(ConnectionId id, Bytes command, Completion completion) = 0;

  // submit() for a caller that waits for the completion anyway (a blocking write): a dispatcher may run the
  // command on the calling thread, completion included, before returning, when nothing else is queued or
  // running. The default queues it.
  virtual void submit_blocking(ConnectionId id, Bytes command, Completion completion) {
    submit(id, std::move(command), std::move(completion));
  }

  // Closes the connection: queued commands complete with ECANCELED, everything the connection held in the TPM
  // is flushed (client-saved sessions excepted; see docs/). Asynchronous; safe to call from any thread, once.
  virtual void close(ConnectionId id) = 0;

  // The client gave up on `id`'s queued commands (its write was interrupted): those not yet running complete
  // with ECANCELED, still on the worker thread; a running one completes normally. Cancelling is only a saving
  // (the caller discards whatever arrives), so a dispatcher that cannot cancel may let the commands run.
  virtual void cancel(ConnectionId) {}

  // Synchronous convenience for tests and tools: submit and wait. Must not be called on the worker thread.
  Result<Bytes> execute(ConnectionId id, Bytes command);

  // Snapshot of the RM's counters (taken on the worker thread).
  virtual Counters counters() = 0;
};

}  // namespace tpmrmd::rm

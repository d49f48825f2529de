// The RM core: turns each client command into what the shared TPM needs, and each response into what that
// client may see. Single-threaded: only the Dispatcher's worker thread calls it.
//
// A command goes through three steps, the way the kernel's RM prepares a space, transmits and commits it:
// Admission (parse, ownership, quota; nothing is changed if it refuses), Residency (make what it names
// resident, then send it with its virtual handles rewritten, relieving the TPM's resource warnings and
// resending), and the response mapping here (new objects get virtual handles, new sessions join the
// connection, ended ones are forgotten). See docs/rm.md.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <chrono>
#include <map>
#include <set>

#include "rm/admission.h"
#include "rm/audit_log.h"
#include "rm/counters.h"
#include "rm/dispatcher.h"
#include "rm/residency.h"
#include "rm/rm_error.h"
#include "rm/rm_options.h"
#include "rm/snapshot.h"
#include "rm/space.h"
#include "rm/tpm_port.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::rm {

class ResourceManager {
 public:
  // Talks to the TPM only for options.leftovers (reading, and perhaps flushing, what it already holds).
  ResourceManager(TpmPort& tpm, RmOptions options = {});
  ~ResourceManager();  // shutdown()
  ResourceManager(const ResourceManager&) = delete;
  ResourceManager& operator=(const ResourceManager&) = delete;

  // EMFILE at the connection limit, ENODEV when the TPM is gone. Never touches the TPM.
  Result<ConnectionId> open(const ClientInfo& client);
  // The same with an id chosen by the caller (the Dispatcher hands out ids before the worker sees them);
  // EEXIST if `id` is in use.
  Result<void> open(ConnectionId id, const ClientInfo& client);
  // One whole client command. Returns the response (the TPM's, or one the RM built) or an errno error.
  Result<Bytes> execute(ConnectionId id, ByteSpan command);
  // Flushes everything the connection held except sessions it saved itself, which become abandoned.
  void close(ConnectionId id);
  // Closes every connection and flushes abandoned sessions: the TPM is left as the RM found it.
  void shutdown();

  Counters counters() const;
  // Counters plus slot use, what the RM knows of the TPM and the policy in force.
  Snapshot snapshot() const;
  // Flushes every abandoned session (client-saved sessions whose connection closed); returns how many.
  std::size_t flush_abandoned();
  std::size_t connection_count() const { return spaces_.size(); }
  std::size_t abandoned_sessions() const { return residency_.sessions().abandoned_count(); }
  const RmOptions& options() const { return options_; }
  // Read-only views for invariant checkers (tests, fuzz targets): where every context lives, and each open
  // connection's virtual handles.
  const Residency& residency() const { return residency_; }
  const std::map<ConnectionId, Space>& spaces() const { return spaces_; }

 private:
  Space* find_space(ConnectionId id);
  // One client command, unaccounted; execute() wraps it with the per-command accounting.
  Result<Bytes> execute_command(Space& space, ByteSpan command);
  void account(Space& space, ByteSpan command, const Result<Bytes>& result, bool refused,
               std::chrono::nanoseconds took);
  // What the client gets for an RM error: an rc response or an errno, per kind and error mode.
  Result<Bytes> answer(Space& space, const RmError& error);

  // Passes `result` through, writing it to the audit trail if the command is privileged.
  Result<Bytes> audited(const Space& space, const Plan& plan, Result<Bytes> result);

  // One handler per route.
  Result<Bytes> run(Space& space, const Plan& plan, ByteSpan command);
  Result<Bytes> flush_for_client(const Plan& plan, ByteSpan command);
  Result<Bytes> save_session_for_client(const Plan& plan, ByteSpan command);
  Result<Bytes> load_for_client(Space& space, Plan& plan, ByteSpan command);

  // After a successful TPM response: virtual handles for new objects, new sessions joined, ended ones forgotten.
  // A response the RM cannot account for (a created handle missing or of the wrong type) is an error.
  RmResult<void> map_response(Space& space, const Plan& plan, ByteSpan command, Bytes& response);
  // A command whose success would have ended what it names (see ends_what_it_names) failed: unverified.
  void ending_refused(TPM2_CC code);
  RmResult<void> map_new_handle(Space& space, const Plan& plan, ByteSpan command, Bytes& response);
  void erase_object(ObjectId id);

  TpmPort& tpm_;
  RmOptions options_;
  Counters counters_;
  Residency residency_;
  AuditLog audit_;
  WarnThrottle refusal_warnings_;  // per uid
  Admission admission_;
  std::map<ConnectionId, Space> spaces_;
  std::map<uid_t, std::set<ConnectionId>> uid_connections_;
  ConnectionId next_connection_ = 1;
};

}  // namespace tpmrmd::rm

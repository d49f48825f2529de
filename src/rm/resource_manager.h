// The RM core: turns each client command into what the shared TPM needs, and each response into what that
// client may see. Single-threaded: only the Dispatcher's worker thread calls it.
//
// Residency is lazy: a command makes resident only the objects and sessions it names; they stay loaded after
// it while the TPM has room. When room is needed (known from HR_TRANSIENT_MIN / HR_LOADED_MIN, or signalled
// by OBJECT_MEMORY / SESSION_MEMORY / *_HANDLES), the least recently used contexts of any connection that the
// current command does not name are saved (and objects flushed), and the command retried, bounded. Saved
// sessions are re-saved oldest first before the context gap reaches the TPM's limit. See docs/rm.md.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <variant>

#include "rm/command.h"
#include "rm/counters.h"
#include "rm/dispatcher.h"
#include "rm/object_table.h"
#include "rm/rm_options.h"
#include "rm/session_table.h"
#include "rm/space.h"
#include "rm/tpm_port.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::rm {

class ResourceManager {
 public:
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
  std::size_t connection_count() const { return spaces_.size(); }
  std::size_t resident_objects() const { return objects_.resident_count(); }
  std::size_t resident_sessions() const { return sessions_.resident_count(); }
  std::size_t abandoned_sessions() const { return sessions_.abandoned_count(); }
  std::size_t saved_sessions() const { return sessions_.size() - sessions_.resident_count(); }
  const RmOptions& options() const { return options_; }

 private:
  enum class Creates { kNothing, kObject, kSession };
  struct Plan {
    std::vector<std::pair<std::size_t, ObjectId>> object_refs;  // handle index -> object
    std::set<ObjectId> objects;                                 // distinct objects named (pinned)
    std::set<TPM2_HANDLE> sessions;                             // live sessions named (pinned)
    Creates creates = Creates::kNothing;
    bool rewrite_properties = false;
  };
  // An RM-detected failure, or a transport failure (which is passed on as is and is not a refusal).
  struct Failure {
    Refusal refusal;
    bool transport = false;
  };
  enum class SaveOutcome { kSaved, kGone, kGap, kFailed, kTransport };
  struct LoadResult {
    TPM2_RC rc;
    TPM2_HANDLE handle;  // valid when rc is TPM2_RC_SUCCESS
  };
  // A transport or framing failure ends the caller's attempt; a TPM rc is the caller's to judge.
  using LoadOutcome = std::variant<Failure, LoadResult>;

  Space* find_space(ConnectionId id);
  Result<Bytes> refuse(Space& space, const Refusal& refusal);
  Result<Bytes> fail(Space& space, const Failure& failure);

  std::optional<Refusal> plan_references(const Space& space, const ParsedCommand& cmd, Plan& plan) const;
  std::optional<Refusal> check_quota(const Space& space, Creates creates) const;

  Result<Bytes> run(Space& space, const ParsedCommand& cmd, ByteSpan command, Plan& plan);
  Result<Bytes> flush_for_client(Space& space, const ParsedCommand& cmd, ByteSpan command, Plan& plan);
  Result<Bytes> save_session_for_client(Space& space, const ParsedCommand& cmd, ByteSpan command, Plan& plan);
  Result<Bytes> load_for_client(Space& space, const ParsedCommand& cmd, ByteSpan command, Plan& plan);
  std::optional<Bytes> answer_handles_capability(const Space& space, const ParsedCommand& cmd, ByteSpan command,
                                                 Plan& plan) const;
  void post_process(Space& space, const ParsedCommand& cmd, ByteSpan command, const Plan& plan, Bytes& response);
  std::optional<std::uint32_t> virtual_property(const Space& space, TPM2_PT property) const;

  // Residency.
  std::optional<Failure> make_resident(const Plan& plan);
  LoadOutcome send_context_load(ByteSpan context);
  std::optional<Failure> load_object(ObjectId id, const Plan& plan);
  std::optional<Failure> load_session(TPM2_HANDLE handle, const Plan& plan);
  bool evict_object(const std::set<ObjectId>& pinned);
  bool evict_session(const std::set<TPM2_HANDLE>& pinned);
  SaveOutcome save_session(TPM2_HANDLE handle);
  bool flush_oldest_abandoned();
  void enforce_abandoned_bound();

  // Context gap.
  void note_session_sequence(std::uint64_t sequence);
  void regap_if_near_gap(const std::set<TPM2_HANDLE>& pinned);
  bool regap(TPM2_HANDLE handle, const std::set<TPM2_HANDLE>& pinned);
  bool regap_oldest(const std::set<TPM2_HANDLE>& pinned);

  void erase_object(ObjectId id);
  void forget_session(TPM2_HANDLE handle);
  Result<Bytes> send(ByteSpan command, std::uint64_t Counters::*counter);
  bool send_flush(TPM2_HANDLE handle);

  TpmPort& tpm_;
  RmOptions options_;
  std::size_t object_capacity_;
  std::size_t session_capacity_;
  std::map<ConnectionId, Space> spaces_;
  ObjectTable objects_;
  SessionTable sessions_;
  Counters counters_;
  ConnectionId next_connection_ = 1;
  std::uint64_t clock_ = 0;             // one tick per client command; orders LRU and abandonment
  std::uint64_t last_sequence_ = 0;     // highest session context sequence seen
  bool regapping_ = false;
};

}  // namespace tpmrmd::rm

// Residency: where every context the RM manages lives right now (loaded in a TPM slot, or saved as a blob the
// RM holds) and the RM's own TPM traffic that moves it: ContextLoad, ContextSave, FlushContext.
//
// Lazy: a command makes resident only what it names, and contexts stay loaded after it while the TPM has room.
// Room is known from HR_TRANSIENT_MIN / HR_LOADED_MIN, or signalled by the TPM's OBJECT_MEMORY /
// SESSION_MEMORY / *_HANDLES warnings; it is made by evicting the least recently used contexts, of any
// connection, that the current command does not pin. Saved sessions are re-saved oldest first before the
// context gap reaches the TPM's limit (re-gapping). Client-saved sessions of closed connections ("abandoned")
// are kept within a bound and flushed oldest first when the TPM runs out of session handles.
//
// Who may name what is not decided here (see Admission); residency only keeps the TPM's slots and the RM's
// tables in step. Single-threaded, like the ResourceManager that owns it.
#pragma once

#include <spdlog/common.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <set>
#include <string_view>

#include "rm/counters.h"
#include "rm/object_table.h"
#include "rm/rm_error.h"
#include "rm/rm_options.h"
#include "rm/session_table.h"
#include "rm/tpm_handles.h"
#include "rm/tpm_port.h"
#include "util/bytes.h"

namespace tpmrmd::rm {

// What the current command names: never evicted while it runs.
struct Pins {
  std::set<ObjectId> objects;
  std::set<TPM2_HANDLE> sessions;  // live sessions only
};

// What a command will add to the TPM if it succeeds: room is made for it before it is sent.
enum class Creates { kNothing, kObject, kSession };

// The TPM says the context or handle does not exist (any more): REFERENCE_H0..H6, HANDLE, INTEGRITY.
bool is_gone(TPM2_RC rc);

class Residency {
 public:
  // `tpm`, `options` and `counters` must outlive the residency.
  Residency(TpmPort& tpm, const RmOptions& options, Counters& counters);

  ObjectTable& objects() { return objects_; }
  const ObjectTable& objects() const { return objects_; }
  SessionTable& sessions() { return sessions_; }
  const SessionTable& sessions() const { return sessions_; }

  // One tick per client command: orders LRU eviction and abandonment.
  std::uint64_t tick() { return ++clock_; }
  std::uint64_t now() const { return clock_; }

  // Loads what `pins` names and is not loaded, first evicting others so that the TPM has room for it and for
  // what the command `creates`. An object whose context no longer loads is marked dead; a session is forgotten.
  RmResult<void> make_resident(const Pins& pins, Creates creates);

  // Before a command that may flush transients without the RM knowing which (a hierarchy disabled or its proof
  // changed): evicts every resident object of every connection that `pins` does not name, so that nothing the
  // RM believes loaded can be dropped behind it. Refused (nothing sent for the command) if one cannot be
  // evicted.
  RmResult<void> evict_all_but(const Pins& pins);

  // Records that the TPM has put object `id` in slot `physical`. The TPM hands out free slots only, so another
  // entry the RM believed there is stale (its object was dropped behind the RM): it is no longer resident,
  // it stays reloadable if its context is current (the TPM's integrity check decides whether it still loads)
  // and is dead otherwise. Logged and counted as a physical collision; never resolves to the new object.
  void place(ObjectId id, TPM2_HANDLE physical);

  // The TPM answered a client command with `rc`. If it is a resource warning the RM can relieve (object or
  // session memory, session handles, context gap), does so and returns true: the command is worth resending.
  // `regapped` limits the re-gap to once per command.
  bool relieve(TPM2_RC rc, const Pins& pins, bool& regapped);

  // Sends a command on behalf of `counter`'s kind of traffic. A transport error while the TPM is still there
  // (a deadline, a response that never came or made no sense) leaves unknown what the command did: the RM's
  // picture is then unverified.
  Result<Bytes> send(ByteSpan command, std::uint64_t Counters::*counter);

  // True from a transport error (or a response the RM could not account for) until reconcile() succeeded.
  // Nothing may be sent for a client before that.
  bool unverified() const { return unverified_; }
  // `level`: a warning where something went wrong; debug where only a TPM that lies could have made it so.
  void mark_unverified(std::string_view why, spdlog::level::level_enum level = spdlog::level::warn);
  // Makes the RM's picture the TPM's, read with GetCapability(HANDLES), the TPM being right: an object it no
  // longer holds is not resident (reloadable if its context is current, lost otherwise); a session it no longer
  // knows is forgotten, one it loaded behind the RM is loaded, one it saved behind the RM (whose context the RM
  // never got, so nobody could load it again) is flushed and forgotten; handles it holds that no entry names
  // are flushed unless they are foreign.
  RmResult<void> reconcile();
  // Before serving anyone: reads what the TPM already holds and flushes it (kFlush) or keeps it as foreign
  // (kKeep): never flushed, and its slots not counted as the RM's to use. Logged either way.
  RmResult<void> take_over(Leftovers policy);
  const TpmHandles& foreign() const { return foreign_; }
  // The slots the RM plans with, and the highest session context sequence seen (for status output).
  std::size_t object_capacity() const { return object_capacity_; }
  std::size_t session_capacity() const { return session_capacity_; }
  std::uint64_t last_sequence() const { return last_sequence_; }
  // FlushContext(handle) on the RM's behalf; false (and a warning) if the TPM refused it.
  bool flush(TPM2_HANDLE handle);

  // Records a ContextSave the client asked for: the session is saved now, and `context` is also the client's
  // token for it. Re-gaps if that save brought the gap near the limit.
  void record_client_save(TPM2_HANDLE handle, Bytes context);
  // Re-gaps the oldest saved session once (TPM_RC_CONTEXT_GAP on a client's own save); false if it can't.
  bool regap_oldest(const std::set<TPM2_HANDLE>& pinned);

  // Ends an object: FlushContext if it is loaded and the TPM is up, then drop it from the table.
  void release_object(ObjectId id, bool tpm_up);
  // Ends a session at its owner's close: a client-saved one becomes abandoned (kept for a later ContextLoad
  // of its token), any other is flushed and forgotten.
  void release_session(TPM2_HANDLE handle, bool tpm_up);
  // Flushes abandoned sessions beyond the bound, oldest first.
  void enforce_abandoned_bound();
  // Flushes every abandoned session (the RM is shutting down).
  void flush_abandoned(bool tpm_up);

 private:
  struct Loaded {
    TPM2_RC rc = TPM2_RC_SUCCESS;
    TPM2_HANDLE handle = 0;  // valid when rc is TPM2_RC_SUCCESS
  };
  // ContextLoad of `context`: a transport or framing failure is an error, any TPM rc the caller's to judge.
  RmResult<Loaded> send_context_load(ByteSpan context);
  RmResult<void> load_object(ObjectId id, const Pins& pins);
  RmResult<void> load_session(TPM2_HANDLE handle, const Pins& pins);
  // Frees one slot, saving first if the RM's context is not current; false if nothing could be evicted.
  bool evict_object(const std::set<ObjectId>& pinned);
  bool evict_session(const std::set<TPM2_HANDLE>& pinned);
  // ContextSave of a loaded session (which also unloads it). On success the entry holds the new context.
  RmResult<TPM2_RC> save_session(TPM2_HANDLE handle);
  void store_saved_context(SessionEntry& session, Bytes context);
  bool flush_oldest_abandoned();
  // The slots the RM plans with: the TPM's guaranteed minimum less foreign handles and the reserve, at least 1.
  void plan_capacity();
  void regap_if_near_gap(const std::set<TPM2_HANDLE>& pinned);
  bool regap(TPM2_HANDLE handle, const std::set<TPM2_HANDLE>& pinned);
  // Counts one eviction ("object" or "session") and warns, rate-limited, when they come as a storm.
  void note_eviction(const char* kind);

  TpmPort& tpm_;
  const RmOptions& options_;
  Counters& counters_;
  std::size_t object_capacity_;
  std::size_t session_capacity_;
  TpmHandles foreign_;
  bool unverified_ = false;
  ObjectTable objects_;
  SessionTable sessions_;
  std::uint64_t clock_ = 0;
  std::uint64_t last_sequence_ = 0;  // highest session context sequence seen
  WarnThrottle storm_warnings_;
  WarnThrottle regap_warnings_;
};

}  // namespace tpmrmd::rm

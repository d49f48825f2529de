// Every TPM session the RM knows, across connections: who owns it, whether it is loaded, the context the RM
// holds while it is not, and the token a client got when it saved the session itself.
//
// Session handles are not virtualised (a session's name is its handle, and HMACs cover names), so the table
// is keyed by the TPM's handle. Ownership is what isolates connections: a connection may only name sessions
// it owns. A session whose owner closed after saving it is "abandoned": it stays saved in the TPM, owned by
// nobody, until a connection presents its token in a ContextLoad or the bound on abandoned sessions evicts it.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "rm/dispatcher.h"
#include "util/bytes.h"

namespace tpmrmd::rm {

struct SessionEntry {
  std::optional<ConnectionId> owner;  // nullopt: abandoned. Changed only through SessionTable::set_owner
  bool resident = true;               // loaded in a TPM session slot
  Bytes context;                      // the RM's current saved context (valid while !resident)
  std::uint64_t sequence = 0;         // context sequence of `context`: what the context gap is measured on
  std::optional<Bytes> client_token;  // set while client-saved: the TPMS_CONTEXT bytes the client holds
  std::uint64_t last_use = 0;
  std::uint64_t abandoned_at = 0;
  std::uint64_t unevictable_tick = 0;

  bool client_saved() const { return client_token.has_value(); }
  // Usable by its owner in handle and authorization areas (not handed to the client as a blob).
  bool live() const { return !client_saved(); }
};

// Also indexes sessions by owner, so a connection's sessions are found without walking every entry.
class SessionTable {
 public:
  // Adds (or replaces: the TPM reuses handles of ended sessions) the entry for `handle`.
  void put(TPM2_HANDLE handle, SessionEntry entry);
  SessionEntry* find(TPM2_HANDLE handle);
  const SessionEntry* find(TPM2_HANDLE handle) const;
  void erase(TPM2_HANDLE handle);
  // Moves the session to `owner` (nullopt: abandoned). The handle must exist.
  void set_owner(TPM2_HANDLE handle, std::optional<ConnectionId> owner);
  // The sessions `id` owns, live or client-saved.
  const std::set<TPM2_HANDLE>& owned(ConnectionId id) const;

  std::size_t resident_count() const;
  std::optional<TPM2_HANDLE> lru_victim(const std::set<TPM2_HANDLE>& pinned, std::uint64_t tick) const;
  // The saved session with the lowest sequence number: the one the context gap is closing in on.
  std::optional<TPM2_HANDLE> oldest_saved() const;
  // The entry in the TPM's session slot of `handle`, whatever its type: HMAC and policy sessions share one index
  // space, so a policy session may take the slot of an HMAC session that ended, and conversely.
  std::optional<TPM2_HANDLE> find_slot(TPM2_HANDLE handle) const;
  // The client-saved session whose token equals `blob`, if any.
  std::optional<TPM2_HANDLE> find_by_token(ByteSpan blob) const;
  std::vector<TPM2_HANDLE> abandoned_oldest_first() const;
  std::size_t abandoned_count() const;

  const std::map<TPM2_HANDLE, SessionEntry>& entries() const { return entries_; }
  std::size_t size() const { return entries_.size(); }

 private:
  std::map<TPM2_HANDLE, SessionEntry> entries_;
  std::map<ConnectionId, std::set<TPM2_HANDLE>> by_owner_;
};

}  // namespace tpmrmd::rm

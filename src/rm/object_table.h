// Every transient object the RM manages, across connections, and where each one lives right now: loaded in a
// TPM slot (resident) or saved as a context blob the RM holds.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>

#include "rm/dispatcher.h"
#include "rm/virtual_handle_table.h"
#include "util/bytes.h"

namespace tpmrmd::rm {

struct ObjectEntry {
  ConnectionId owner = 0;
  TPM2_HANDLE vhandle = 0;
  // Set while resident. Changed only through ObjectTable::set_physical, which keeps the slot index exact.
  std::optional<TPM2_HANDLE> physical;
  Bytes context;                        // last TPMS_CONTEXT the RM saved or loaded; empty if never saved
  // The saved context still describes the loaded object, so eviction can skip ContextSave. True after a
  // load; stays true across commands for ordinary objects (their TPM state never changes), false for
  // sequence objects once a command touched them.
  bool context_current = false;
  bool dead = false;          // its context can no longer be loaded (e.g. the TPM was reset)
  std::uint64_t last_use = 0;  // RM clock tick of the last command that referenced it
  std::uint64_t unevictable_tick = 0;  // save failed during this tick: don't pick it again in it

  bool resident() const { return physical.has_value(); }
};

// Also indexes resident objects by physical handle: at most one entry per TPM slot, found without a scan.
class ObjectTable {
 public:
  // An entry added with `physical` set takes that slot from any entry holding it (see set_physical).
  ObjectId add(ObjectEntry entry);
  ObjectEntry* find(ObjectId id);
  const ObjectEntry* find(ObjectId id) const;
  void erase(ObjectId id);

  // Moves `id` to slot `physical` (nullopt: not loaded). If another entry held that slot it loses it, and its
  // id is returned: the caller decides what that stale mapping means for its owner.
  std::optional<ObjectId> set_physical(ObjectId id, std::optional<TPM2_HANDLE> physical);
  // The entry the RM believes resident in `physical`.
  std::optional<ObjectId> find_physical(TPM2_HANDLE physical) const;

  std::size_t resident_count() const { return by_physical_.size(); }
  // Least recently used resident object not in `pinned` and not marked unevictable during `tick`.
  std::optional<ObjectId> lru_victim(const std::set<ObjectId>& pinned, std::uint64_t tick) const;

  const std::map<ObjectId, ObjectEntry>& entries() const { return entries_; }
  std::size_t size() const { return entries_.size(); }

 private:
  std::map<ObjectId, ObjectEntry> entries_;
  std::map<TPM2_HANDLE, ObjectId> by_physical_;
  ObjectId next_id_ = 1;
};

}  // namespace tpmrmd::rm

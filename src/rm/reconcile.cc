// The RM's picture against the TPM's own handle lists: at start-up (what an earlier or another user left) and
// whenever the RM could not see what a command did.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <vector>

#include "rm/handles.h"
#include "rm/residency.h"

namespace tpmrmd::rm {

RmResult<void> Residency::take_over(Leftovers policy) {
  if (policy == Leftovers::kUntouched) return {};
  auto found = read_tpm_handles(tpm_);
  if (!found) return found.error();
  if (found->size() == 0) return {};
  if (policy == Leftovers::kFlush) {
    std::size_t flushed = 0;
    for (TPM2_HANDLE h : found->objects) flushed += flush(h) ? 1 : 0;
    for (const auto* range : {&found->loaded_sessions, &found->saved_sessions}) {
      for (const auto& [index, h] : *range) flushed += flush(h) ? 1 : 0;
    }
    counters_.leftovers_flushed += flushed;
    spdlog::warn("event=leftovers-flushed flushed={} objects={} loaded_sessions={} saved_sessions={}", flushed, found->objects.size(), found->loaded_sessions.size(), found->saved_sessions.size());
    return {};
  }
  foreign_ = std::move(*found);
  plan_capacity();
  spdlog::warn(
      "event=leftovers-kept objects={} loaded_sessions={} saved_sessions={} object_slots={} session_slots={}",
      foreign_.objects.size(), foreign_.loaded_sessions.size(), foreign_.saved_sessions.size(), object_capacity_,
      session_capacity_);
  return {};
}

RmResult<void> Residency::reconcile() {
  auto tpm = read_tpm_handles(tpm_);
  if (!tpm) return tpm.error();
  ++counters_.reconciliations;
  std::size_t corrected = 0;

  std::vector<ObjectId> vanished;
  for (const auto& [id, o] : objects_.entries()) {
    if (o.resident() && !tpm->objects.count(*o.physical)) vanished.push_back(id);
  }
  for (ObjectId id : vanished) {
    ObjectEntry* o = objects_.find(id);
    const TPM2_HANDLE physical = *o->physical;
    objects_.set_physical(id, std::nullopt);
    if (!o->context_current || o->context.empty()) o->dead = true;
    spdlog::warn("event=reconcile-object-vanished conn={} vhandle=0x{:08x} handle=0x{:08x} object={}", o->owner,
                 o->vhandle, physical, o->dead ? "lost" : "reloadable");
    ++corrected;
  }
  for (TPM2_HANDLE h : tpm->objects) {
    if (objects_.find_physical(h) || foreign_.objects.count(h)) continue;
    spdlog::warn("event=reconcile-orphan-flushed kind=object handle=0x{:08x}", h);
    flush(h);
    ++corrected;
  }

  std::vector<TPM2_HANDLE> known;
  for (const auto& [h, s] : sessions_.entries()) known.push_back(h);
  for (TPM2_HANDLE h : known) {
    SessionEntry* s = sessions_.find(h);
    const bool loaded = tpm->loaded_sessions.count(session_index(h)) > 0;
    const bool saved = tpm->saved_sessions.count(session_index(h)) > 0;
    if (loaded == s->resident && (loaded || saved)) continue;
    ++corrected;
    if (!loaded && !saved) {
      spdlog::warn("event=reconcile-session-vanished session=0x{:08x} action=forget", h);
      sessions_.erase(h);
    } else if (loaded) {
      s->resident = true;  // a ContextLoad went through after all
    } else {
      spdlog::error("event=reconcile-session-saved-unseen session=0x{:08x} action=flush", h);
      flush(h);
      sessions_.erase(h);
      tpm->saved_sessions.erase(session_index(h));
    }
  }
  std::set<std::uint32_t> known_indexes;
  for (const auto& [h, s] : sessions_.entries()) known_indexes.insert(session_index(h));
  for (const auto* range : {&tpm->loaded_sessions, &tpm->saved_sessions}) {
    for (const auto& [index, h] : *range) {
      if (known_indexes.count(index) || foreign_.has_session(h)) continue;
      spdlog::warn("event=reconcile-orphan-flushed kind=session handle=0x{:08x}", h);
      flush(h);
      ++corrected;
    }
  }
  unverified_ = false;
  counters_.reconciled_entries += corrected;
  if (corrected) spdlog::warn("event=reconciled corrected={}", corrected);
  return {};
}

}  // namespace tpmrmd::rm

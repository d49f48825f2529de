#include "rm/session_table.h"

#include <algorithm>

#include "rm/handles.h"

namespace tpmrmd::rm {

void SessionTable::put(TPM2_HANDLE handle, SessionEntry entry) {
  erase(handle);
  if (entry.owner) by_owner_[*entry.owner].insert(handle);
  entries_.emplace(handle, std::move(entry));
}

SessionEntry* SessionTable::find(TPM2_HANDLE handle) {
  auto it = entries_.find(handle);
  return it == entries_.end() ? nullptr : &it->second;
}

const SessionEntry* SessionTable::find(TPM2_HANDLE handle) const {
  auto it = entries_.find(handle);
  return it == entries_.end() ? nullptr : &it->second;
}

void SessionTable::erase(TPM2_HANDLE handle) {
  auto it = entries_.find(handle);
  if (it == entries_.end()) return;
  set_owner(handle, std::nullopt);
  entries_.erase(it);
}

void SessionTable::set_owner(TPM2_HANDLE handle, std::optional<ConnectionId> owner) {
  SessionEntry& e = entries_.at(handle);
  if (e.owner) {
    auto it = by_owner_.find(*e.owner);
    it->second.erase(handle);
    if (it->second.empty()) by_owner_.erase(it);
  }
  e.owner = owner;
  if (owner) by_owner_[*owner].insert(handle);
}

const std::set<TPM2_HANDLE>& SessionTable::owned(ConnectionId id) const {
  static const std::set<TPM2_HANDLE> kNone;
  auto it = by_owner_.find(id);
  return it == by_owner_.end() ? kNone : it->second;
}

std::size_t SessionTable::resident_count() const {
  return std::count_if(entries_.begin(), entries_.end(), [](const auto& kv) { return kv.second.resident; });
}

std::optional<TPM2_HANDLE> SessionTable::lru_victim(const std::set<TPM2_HANDLE>& pinned, std::uint64_t tick) const {
  std::optional<TPM2_HANDLE> best;
  std::uint64_t best_use = 0;
  for (const auto& [h, e] : entries_) {
    if (!e.resident || pinned.count(h) || e.unevictable_tick == tick) continue;
    if (!best || e.last_use < best_use) {
      best = h;
      best_use = e.last_use;
    }
  }
  return best;
}

std::optional<TPM2_HANDLE> SessionTable::oldest_saved() const {
  std::optional<TPM2_HANDLE> best;
  std::uint64_t best_seq = 0;
  for (const auto& [h, e] : entries_) {
    if (e.resident) continue;
    if (!best || e.sequence < best_seq) {
      best = h;
      best_seq = e.sequence;
    }
  }
  return best;
}

std::optional<TPM2_HANDLE> SessionTable::find_slot(TPM2_HANDLE handle) const {
  for (const auto& [h, e] : entries_) {
    if (session_index(h) == session_index(handle)) return h;
  }
  return std::nullopt;
}

std::optional<TPM2_HANDLE> SessionTable::find_by_token(ByteSpan blob) const {
  for (const auto& [h, e] : entries_) {
    if (e.client_token && std::equal(e.client_token->begin(), e.client_token->end(), blob.begin(), blob.end())) {
      return h;
    }
  }
  return std::nullopt;
}

std::vector<TPM2_HANDLE> SessionTable::abandoned_oldest_first() const {
  std::vector<std::pair<std::uint64_t, TPM2_HANDLE>> v;
  for (const auto& [h, e] : entries_) {
    if (!e.owner) v.emplace_back(e.abandoned_at, h);
  }
  std::sort(v.begin(), v.end());
  std::vector<TPM2_HANDLE> out;
  for (auto& [t, h] : v) out.push_back(h);
  return out;
}

std::size_t SessionTable::abandoned_count() const {
  return std::count_if(entries_.begin(), entries_.end(), [](const auto& kv) { return !kv.second.owner; });
}

}  // namespace tpmrmd::rm

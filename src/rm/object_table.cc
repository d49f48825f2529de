#include "rm/object_table.h"

namespace tpmrmd::rm {

ObjectId ObjectTable::add(ObjectEntry entry) {
  ObjectId id = next_id_++;
  const std::optional<TPM2_HANDLE> physical = entry.physical;
  entry.physical.reset();
  entries_.emplace(id, std::move(entry));
  if (physical) set_physical(id, physical);
  return id;
}

ObjectEntry* ObjectTable::find(ObjectId id) {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

const ObjectEntry* ObjectTable::find(ObjectId id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

void ObjectTable::erase(ObjectId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (it->second.physical) by_physical_.erase(*it->second.physical);
  entries_.erase(it);
}

std::optional<ObjectId> ObjectTable::set_physical(ObjectId id, std::optional<TPM2_HANDLE> physical) {
  ObjectEntry& entry = entries_.at(id);
  if (entry.physical == physical) return std::nullopt;
  if (entry.physical) by_physical_.erase(*entry.physical);
  entry.physical = physical;
  if (!physical) return std::nullopt;
  auto [it, inserted] = by_physical_.try_emplace(*physical, id);
  if (inserted) return std::nullopt;
  const ObjectId displaced = it->second;
  entries_.at(displaced).physical.reset();
  it->second = id;
  return displaced;
}

std::optional<ObjectId> ObjectTable::find_physical(TPM2_HANDLE physical) const {
  auto it = by_physical_.find(physical);
  if (it == by_physical_.end()) return std::nullopt;
  return it->second;
}

std::optional<ObjectId> ObjectTable::lru_victim(const std::set<ObjectId>& pinned, std::uint64_t tick) const {
  std::optional<ObjectId> best;
  std::uint64_t best_use = 0;
  // Resident objects only: as few as the TPM has slots, however many the RM holds saved.
  for (const auto& [physical, id] : by_physical_) {
    const ObjectEntry& e = entries_.at(id);
    if (pinned.count(id) || e.unevictable_tick == tick) continue;
    if (!best || e.last_use < best_use) {
      best = id;
      best_use = e.last_use;
    }
  }
  return best;
}

}  // namespace tpmrmd::rm

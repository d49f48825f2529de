#include "rm/object_table.h"

namespace tpmrmd::rm {

ObjectId ObjectTable::add(ObjectEntry entry) {
  ObjectId id = next_id_++;
  entries_.emplace(id, std::move(entry));
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

void ObjectTable::erase(ObjectId id) { entries_.erase(id); }

std::size_t ObjectTable::resident_count() const {
  std::size_t n = 0;
  for (const auto& [id, e] : entries_) n += e.resident() ? 1 : 0;
  return n;
}

std::optional<ObjectId> ObjectTable::lru_victim(const std::set<ObjectId>& pinned, std::uint64_t tick) const {
  std::optional<ObjectId> best;
  std::uint64_t best_use = 0;
  for (const auto& [id, e] : entries_) {
    if (!e.resident() || pinned.count(id) || e.unevictable_tick == tick) continue;
    if (!best || e.last_use < best_use) {
      best = id;
      best_use = e.last_use;
    }
  }
  return best;
}

}  // namespace tpmrmd::rm

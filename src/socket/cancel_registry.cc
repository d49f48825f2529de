#include "socket/cancel_registry.h"

#include <vector>

namespace tpmrmd::socket {

CancelRegistry::Entry CancelRegistry::add(pid_t pid, uid_t uid, std::weak_ptr<device::Connection> connection,
                                          std::uint64_t ticket) {
  if (pid <= 0 || ticket == 0) return {};
  std::lock_guard lock(mutex_);
  const std::uint64_t key = ++next_;
  items_.emplace(key, Item{pid, uid, std::move(connection), ticket});
  return Entry(this, key);
}

std::size_t CancelRegistry::cancel(pid_t pid, uid_t uid) {
  std::vector<std::pair<std::shared_ptr<device::Connection>, std::uint64_t>> targets;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [key, item] : items_) {
      if (item.pid != pid || item.uid != uid) continue;
      if (auto c = item.connection.lock()) targets.emplace_back(std::move(c), item.ticket);
    }
  }
  // Outside the lock: interrupt() may complete the write, whose waiter then drops its Entry.
  for (auto& [connection, ticket] : targets) connection->interrupt(ticket);
  return targets.size();
}

void CancelRegistry::remove(std::uint64_t key) {
  std::lock_guard lock(mutex_);
  items_.erase(key);
}

}  // namespace tpmrmd::socket

#include "socket/process_spaces.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <system_error>
#include <vector>

#include "socket/listener.h"

namespace tpmrmd::socket {
namespace {

bool exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR));
}

}  // namespace

ProcessSpaces::ProcessSpaces(ConnectionOpener opener) : opener_(std::move(opener)) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  wake_read_.reset(fds[0]);
  wake_write_.reset(fds[1]);
  reaper_ = spawn_quiet_thread([this] { reap(); });
}

ProcessSpaces::~ProcessSpaces() { stop(); }

void ProcessSpaces::wake() {
  const char byte = 0;
  if (::write(wake_write_.get(), &byte, 1) != 1) { /* full: the reaper is awake already */ }
}

Result<std::shared_ptr<ProcessSpaces::Space>> ProcessSpaces::acquire(const rm::ClientInfo& client, UniqueFd pidfd) {
  if (!pidfd) {
    auto connection = opener_(client);
    if (!connection) return connection.error();
    auto space = std::make_shared<Space>();
    space->connection = std::move(*connection);
    space->per_connection = true;
    return space;
  }
  const Key key{client.pid, client.uid};
  std::shared_ptr<Space> stale;
  std::lock_guard lock(mutex_);
  if (stopping_) return make_error(ENODEV, "the socket front-end is stopping");
  if (auto it = spaces_.find(key); it != spaces_.end()) {
    // Not yet reaped but exited: this peer is a new process that got the same pid.
    if (!exited(it->second.pidfd.get())) return it->second.space;
    stale = std::move(it->second.space);
    spaces_.erase(it);
    stale->connection->close();
  }
  auto connection = opener_(client);
  if (!connection) return connection.error();
  auto space = std::make_shared<Space>();
  space->connection = std::move(*connection);
  spaces_.emplace(key, Entry{space, std::move(pidfd)});
  wake();
  return space;
}

void ProcessSpaces::forget(const std::shared_ptr<Space>& space) {
  space->connection->close();
  std::lock_guard lock(mutex_);
  for (auto it = spaces_.begin(); it != spaces_.end(); ++it) {
    if (it->second.space == space) {
      spaces_.erase(it);
      wake();
      return;
    }
  }
}

void ProcessSpaces::reap() {
  for (;;) {
    std::vector<pollfd> fds{{wake_read_.get(), POLLIN, 0}};
    std::vector<Key> keys;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      for (const auto& [key, entry] : spaces_) {
        fds.push_back({entry.pidfd.get(), POLLIN, 0});
        keys.push_back(key);
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) {
      spdlog::error("event=socket-reaper-failed error=\"poll: {}\"", std::strerror(errno));
      return;
    }
    if (fds[0].revents) {
      char buf[64];
      while (::read(wake_read_.get(), buf, sizeof buf) > 0) {
      }
    }
    std::vector<std::shared_ptr<Space>> ended;
    {
      std::lock_guard lock(mutex_);
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!fds[i].revents) continue;
        auto it = spaces_.find(keys[i - 1]);
        // The entry may have been replaced since the poll began: its own pidfd decides.
        if (it == spaces_.end() || !exited(it->second.pidfd.get())) continue;
        ended.push_back(std::move(it->second.space));
        spaces_.erase(it);
      }
    }
    // Outside the lock: closing is asynchronous but takes the connection's own lock.
    for (auto& space : ended) space->connection->close();
  }
}

void ProcessSpaces::stop() {
  std::map<Key, Entry> spaces;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !reaper_.joinable()) return;
    stopping_ = true;
    spaces.swap(spaces_);
  }
  wake();
  if (reaper_.joinable()) reaper_.join();
  for (auto& [key, entry] : spaces) entry.space->connection->close();
}

std::size_t ProcessSpaces::size() {
  std::lock_guard lock(mutex_);
  return spaces_.size();
}

}  // namespace tpmrmd::socket

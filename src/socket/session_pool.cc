#include "socket/session_pool.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "socket/listener.h"

namespace tpmrmd::socket {

SessionPool::~SessionPool() { stop(); }

void SessionPool::reap_locked() {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

bool SessionPool::spawn(UniqueFd fd, std::function<void(int)> serve) {
  std::lock_guard lock(mutex_);
  reap_locked();
  if (stopping_) return false;
  if (sessions_.size() >= max_) {
    spdlog::warn("event=socket-session-refused reason=\"{} socket sessions already running\"", max_);
    return false;
  }
  auto session = std::make_unique<Session>();
  session->fd = std::move(fd);
  Session* s = session.get();
  s->thread = spawn_quiet_thread([s, serve = std::move(serve)] {
    try {
      serve(s->fd.get());
    } catch (const std::exception& e) {
      spdlog::warn("event=socket-session-failed error=\"{}\"", e.what());
    }
    // The descriptor is closed by the reaper, after the join: stop() may still shut it down until then.
    ::shutdown(s->fd.get(), SHUT_RDWR);
    s->done.store(true);
  });
  sessions_.push_back(std::move(session));
  return true;
}

void SessionPool::stop() {
  std::list<std::unique_ptr<Session>> sessions;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& s : sessions_) ::shutdown(s->fd.get(), SHUT_RDWR);
    sessions.swap(sessions_);
  }
  for (auto& s : sessions) s->thread.join();
}

std::size_t SessionPool::running() {
  std::lock_guard lock(mutex_);
  reap_locked();
  return sessions_.size();
}

}  // namespace tpmrmd::socket

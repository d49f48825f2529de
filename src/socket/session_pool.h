// The threads of a socket front-end's accepted connections: one each, for the connection's whole life, so that
// every session is straight-line blocking code (read a frame, wait for the TPM, send the answer).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "util/unique_fd.h"

namespace tpmrmd::socket {

class SessionPool {
 public:
  explicit SessionPool(std::size_t max_sessions) : max_(max_sessions) {}
  ~SessionPool();  // stop()
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // Runs serve(fd) on a thread of its own and closes `fd` after it returns. False (and `fd` closed at once)
  // when max_sessions are running or the pool is stopping.
  bool spawn(UniqueFd fd, std::function<void(int fd)> serve);

  // Shuts every connection down (a session blocked reading sees EOF; one waiting for the TPM finishes that
  // command first) and joins them all. Idempotent; spawn() refuses afterwards.
  void stop();

  std::size_t running();

 private:
  struct Session {
    UniqueFd fd;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void reap_locked();

  const std::size_t max_;
  std::mutex mutex_;
  bool stopping_ = false;
  std::list<std::unique_ptr<Session>> sessions_;
};

}  // namespace tpmrmd::socket

// A deadline for start-up steps that happen on another thread (the CUSE node's set-up): `on_expiry` runs, on
// the watchdog's own thread, unless cancel() came first.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace tpmrmd::daemon {

class NodeWatchdog {
 public:
  NodeWatchdog(std::chrono::seconds limit, std::function<void()> on_expiry)
      : thread_([this, limit, on_expiry = std::move(on_expiry)] {
          std::unique_lock lock(mutex_);
          if (wake_.wait_for(lock, limit, [this] { return done_; })) return;
          expired_ = true;
          lock.unlock();
          on_expiry();
        }) {}
  ~NodeWatchdog() { finish(); }
  // False if it had already expired (on_expiry has run or is running).
  bool cancel() {
    {
      std::lock_guard lock(mutex_);
      if (expired_) return false;
      done_ = true;
    }
    wake_.notify_all();
    return true;
  }
  // Cancels and joins; true if it had expired.
  bool finish() {
    const bool in_time = cancel();
    if (thread_.joinable()) thread_.join();
    return !in_time;
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  bool expired_ = false;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace tpmrmd::daemon

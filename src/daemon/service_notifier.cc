#include "daemon/service_notifier.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if TPMRMD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace tpmrmd::daemon {

ServiceNotifier::ServiceNotifier(std::chrono::milliseconds status_interval) : status_interval_(status_interval) {
#if TPMRMD_HAVE_SYSTEMD
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  std::uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) watchdog_ = std::chrono::microseconds(usec);
#endif
}

ServiceNotifier::~ServiceNotifier() { stopping(); }

std::chrono::milliseconds ServiceNotifier::tick() const {
  auto tick = status_interval_;
  if (watchdog_) {
    tick = std::min(tick, std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_ / 2));
  }
  return std::max(tick, std::chrono::milliseconds(10));
}

void ServiceNotifier::notify(const std::string& message) const {
#if TPMRMD_HAVE_SYSTEMD
  if (!enabled_) return;
  if (int rc = sd_notify(0, message.c_str()); rc < 0) {
    spdlog::warn("event=notify-failed message=\"{}\" error=\"{}\"", message.substr(0, message.find('\n')),
                 std::strerror(-rc));
  }
#else
  (void)message;
#endif
}

void ServiceNotifier::ready(const std::string& status, ProbeFn probe) {
  if (!enabled_) return;
  std::lock_guard lock(mutex_);
  if (ready_ || stopped_) return;
  ready_ = true;
  notify("READY=1\nSTATUS=" + status);
  spdlog::info("event=notified-ready watchdog_ms={}",
               watchdog_ ? std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_).count() : 0);
  probe_ = std::move(probe);
  if (probe_) thread_ = std::thread([this] { loop(); });
}

void ServiceNotifier::loop() {
  std::unique_lock lock(mutex_);
  bool was_healthy = true;
  while (!wake_.wait_for(lock, tick(), [this] { return stopped_; })) {
    lock.unlock();
    const Probe probe = probe_();
    notify("STATUS=" + probe.status);
    if (watchdog_ && probe.healthy) notify("WATCHDOG=1");
    if (watchdog_ && probe.healthy != was_healthy) {
      if (probe.healthy) {
        spdlog::info("event=watchdog-resumed status=\"{}\"", probe.status);
      } else {
        spdlog::warn("event=watchdog-withheld status=\"{}\"", probe.status);
      }
    }
    was_healthy = probe.healthy;
    lock.lock();
  }
}

void ServiceNotifier::stopping() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  notify("STOPPING=1\nSTATUS=stopping");
}

}  // namespace tpmrmd::daemon

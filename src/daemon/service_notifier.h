// The service manager's readiness protocol (sd_notify(3)): READY=1 once the node serves, a periodic one-line
// STATUS=, WATCHDOG=1 only while a health probe says the daemon works, STOPPING=1 at shutdown. Without
// NOTIFY_SOCKET in the environment (not started by systemd with Type=notify), or built without libsystemd,
// every call does nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace tpmrmd::daemon {

class ServiceNotifier {
 public:
  // What the periodic thread reports: the STATUS= line, and whether to send the watchdog's keep-alive.
  struct Probe {
    std::string status;
    bool healthy = false;
  };
  using ProbeFn = std::function<Probe()>;

  // `status_interval`: how often STATUS= is refreshed; with the watchdog on (WatchdogSec=, WATCHDOG_USEC) the
  // probe runs at least every half watchdog interval.
  explicit ServiceNotifier(std::chrono::milliseconds status_interval = std::chrono::seconds(5));
  // stopping(), if it was not sent.
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // NOTIFY_SOCKET is set (and libsystemd present).
  bool enabled() const { return enabled_; }
  // The watchdog interval the service manager asked for (WatchdogSec=), if any.
  std::optional<std::chrono::microseconds> watchdog() const { return watchdog_; }

  // READY=1 with `status`, then starts the periodic thread running `probe`. Once.
  void ready(const std::string& status, ProbeFn probe);
  // Joins the periodic thread, then STOPPING=1. Idempotent; the probe is never called afterwards.
  void stopping();

  // How often the probe runs: the status interval, at most half the watchdog interval.
  std::chrono::milliseconds tick() const;

 private:
  void notify(const std::string& message) const;
  void loop();

  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
  const std::chrono::milliseconds status_interval_;
  ProbeFn probe_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool ready_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace tpmrmd::daemon

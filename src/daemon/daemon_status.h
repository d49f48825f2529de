// What the control server renders: the daemon's own facts and a snapshot of the current backend. A plain value
// assembled on the control server's thread from Supervisor::snapshot().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>

#include "daemon/supervisor.h"

namespace tpmrmd::daemon {

struct DaemonStatus {
  pid_t pid = 0;
  std::chrono::system_clock::time_point now{};
  std::chrono::system_clock::time_point started_at{};
  std::optional<BackendSnapshot> backend;  // nullopt between a loss and the next registration
};

}  // namespace tpmrmd::daemon

// The JSON the control socket answers `status` and `clients` with (tpmrmctl renders its tables from it).
#pragma once

#include <nlohmann/json.hpp>

#include "daemon/daemon_status.h"

namespace tpmrmd::daemon {

// Daemon, backend, TPM identity, slot use, connections, RM counters (refusals by reason, commands by code and
// rc class, the latency histograms) and the policy in force.
nlohmann::json status_json(const DaemonStatus& status);

// {"clients": [ one object per connection ]}: pid, uid, comm, opened_at, commands, refusals, objects,
// sessions, tpm_time_seconds, last_command, last_rc.
nlohmann::json clients_json(const DaemonStatus& status);

// Seconds since the epoch as RFC 3339 UTC ("2024-05-01T12:00:00Z").
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace tpmrmd::daemon

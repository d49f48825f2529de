// The Prometheus text exposition format (0.0.4) of a DaemonStatus: `tpmrmctl metrics`, for a node exporter's
// textfile collector or any scraper that runs the CLI. Every metric has its HELP and TYPE lines before its
// samples; histograms are cumulative `_bucket{le=...}` ending in +Inf, then `_sum` and `_count`.
// The RM's counters belong to a backend generation: they start again from zero after a re-registration,
// which Prometheus treats as a counter reset (tpmrmd_backend_generation tells them apart).
#pragma once

#include <string>

#include "daemon/daemon_status.h"

namespace tpmrmd::daemon {

std::string metrics_text(const DaemonStatus& status);

// A label value escaped as the format requires (backslash, double quote, newline).
std::string escape_label_value(const std::string& value);

}  // namespace tpmrmd::daemon

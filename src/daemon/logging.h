// Where the daemon's log lines go. Under journald (stderr is a journal stream: JOURNAL_STREAM names it) the
// journal's own sink replaces stderr, so lines keep their priority and are not stored twice. The audit trail
// ("audit" logger, rm/audit_log.h) also goes to the journal whenever its socket exists, under the identifier
// tpmrmd-audit (`journalctl -t tpmrmd-audit`), even when the daemon's other lines go to a terminal. spdlog's
// systemd sink gives every line its priority: trace and debug LOG_DEBUG, info LOG_INFO, warn LOG_WARNING, error
// LOG_ERR, critical LOG_CRIT.
#pragma once

#include <spdlog/common.h>

namespace tpmrmd::daemon {

void setup_logging(spdlog::level::level_enum level);

}  // namespace tpmrmd::daemon

// The audit trail: every command the policy refuses, and every privileged command (privileged_commands())
// that runs, with who sent it and what came of it. Lines go to the spdlog logger named "audit" (the daemon
// gives it the journal), or the default logger when there is none, and are rate-limited per uid.
//
//   event=audit outcome=refused conn=3 uid=1000 pid=812 comm="tpm2_clear" class=other cc=0x00000126
//       command=Clear rc=0x000b0143
//   event=audit outcome=ran conn=4 uid=0 pid=815 comm="tpm2_clear" class=root cc=0x00000126 command=Clear
//       rc=0x00000000
//   event=audit-suppressed uid=1000 lines=37      (before the next line of uid 1000 that is logged)
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "rm/audit_rate_limit.h"
#include "rm/command_policy.h"
#include "rm/dispatcher.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::rm {

inline constexpr std::string_view kAuditLoggerName = "audit";

class AuditLog {
 public:
  using Clock = std::function<AuditRateLimiter::Clock::time_point()>;

  explicit AuditLog(AuditLimits limits, Clock clock = AuditRateLimiter::Clock::now)
      : limiter_(limits), clock_(std::move(clock)) {}

  // A command the policy refused; `rc` is what the client got.
  void refused(ConnectionId id, const ClientInfo& client, CallerClass caller, TPM2_CC code, TPM2_RC rc);
  // A privileged command that ran: the TPM's rc, or the errno the client got instead.
  void ran(ConnectionId id, const ClientInfo& client, CallerClass caller, TPM2_CC code, const Result<Bytes>& outcome);

  std::uint64_t lines() const { return lines_; }
  std::uint64_t suppressed() const { return suppressed_; }

 private:
  void write(const ClientInfo& client, bool warn, std::string line);

  AuditRateLimiter limiter_;
  Clock clock_;
  std::uint64_t lines_ = 0;
  std::uint64_t suppressed_ = 0;
};

// `text` safe to put between double quotes in a log line: a client chooses its own comm (prctl), so quotes,
// backslashes and control bytes are escaped as \xNN rather than let it forge fields or lines.
std::string log_quoted(std::string_view text);

}  // namespace tpmrmd::rm

#include "rm/audit_log.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "tpm/cc_names.h"
#include "tpm/responses.h"

namespace tpmrmd::rm {
namespace {

std::shared_ptr<spdlog::logger> audit_logger() {
  auto logger = spdlog::get(std::string(kAuditLoggerName));
  return logger ? logger : spdlog::default_logger();
}

std::string who(ConnectionId id, const ClientInfo& client, CallerClass caller, TPM2_CC code) {
  return fmt::format("conn={} uid={} pid={} comm=\"{}\" class={} cc=0x{:08x} command={}", id, client.uid,
                     client.pid, log_quoted(client.comm), caller_class_name(caller), code, tpm::cc_label(code));
}

}  // namespace

std::string log_quoted(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void AuditLog::refused(ConnectionId id, const ClientInfo& client, CallerClass caller, TPM2_CC code, TPM2_RC rc) {
  write(client, true, fmt::format("event=audit outcome=refused {} rc=0x{:08x}", who(id, client, caller, code), rc));
}

void AuditLog::ran(ConnectionId id, const ClientInfo& client, CallerClass caller, TPM2_CC code,
                   const Result<Bytes>& outcome) {
  std::string result;
  if (!outcome) {
    result = fmt::format("errno={} error=\"{}\"", outcome.error().code, log_quoted(outcome.error().message));
  } else if (auto rc = tpm::response_code(*outcome)) {
    result = fmt::format("rc=0x{:08x}", *rc);
  } else {
    result = "rc=unreadable";
  }
  write(client, false, fmt::format("event=audit outcome=ran {} {}", who(id, client, caller, code), result));
}

void AuditLog::write(const ClientInfo& client, bool warn, std::string line) {
  const auto verdict = limiter_.admit(client.uid, clock_());
  if (!verdict.log) {
    ++suppressed_;
    return;
  }
  auto logger = audit_logger();
  if (verdict.suppressed_before > 0) {
    logger->warn("event=audit-suppressed uid={} lines={}", client.uid, verdict.suppressed_before);
  }
  logger->log(warn ? spdlog::level::warn : spdlog::level::info, "{}", line);
  ++lines_;
}

}  // namespace tpmrmd::rm

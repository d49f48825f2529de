#include "daemon/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if TPMRMD_HAVE_SYSTEMD
#include <spdlog/sinks/systemd_sink.h>
#endif

#include "rm/audit_log.h"

namespace tpmrmd::daemon {
namespace {

constexpr const char* kPattern = "%Y-%m-%dT%H:%M:%S.%e %l %v";
constexpr const char* kJournalSocket = "/run/systemd/journal/socket";

// systemd sets JOURNAL_STREAM to "DEV:INO" of the stream it connected; it is inherited by children whose
// stderr may point elsewhere, so it only counts if it names our stderr.
bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (!env || !*env) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) == env;
}

}  // namespace

void setup_logging(spdlog::level::level_enum level) {
  std::vector<spdlog::sink_ptr> main_sinks;
  std::vector<spdlog::sink_ptr> audit_sinks;
#if TPMRMD_HAVE_SYSTEMD
  const bool journal = stderr_is_journal();
  const bool journal_socket = ::access(kJournalSocket, W_OK) == 0;
  if (journal) {
    main_sinks.push_back(std::make_shared<spdlog::sinks::systemd_sink_mt>("tpmrmd"));
  }
  if (journal || journal_socket) {
    audit_sinks.push_back(std::make_shared<spdlog::sinks::systemd_sink_mt>("tpmrmd-audit"));
  }
#else
  const bool journal = false;
#endif
  if (!journal) {
    auto stderr_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    stderr_sink->set_pattern(kPattern);
    main_sinks.push_back(stderr_sink);
    audit_sinks.push_back(stderr_sink);
  }
  auto main_logger = std::make_shared<spdlog::logger>("tpmrmd", main_sinks.begin(), main_sinks.end());
  auto audit_logger = std::make_shared<spdlog::logger>(std::string(rm::kAuditLoggerName), audit_sinks.begin(),
                                                       audit_sinks.end());
  main_logger->set_level(level);
  // The audit trail is not debugging output: it is kept at any --log-level below "off".
  audit_logger->set_level(level == spdlog::level::off ? level : spdlog::level::info);
  spdlog::set_default_logger(main_logger);
  spdlog::register_logger(audit_logger);
}

}  // namespace tpmrmd::daemon

// What the RM counts, for status output, metrics, tests and benchmarks.
//
// The per-command path only increments: fixed arrays, a map node the first time a command code is seen, and the
// connection's own counters (found with the space the command already looked up). Who the connection belongs
// to (pid, uid, comm) is copied from its ClientInfo when a snapshot is taken, not per command.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "rm/latency_histogram.h"

namespace tpmrmd::rm {

// How a client command ended.
enum class RcClass : std::uint8_t {
  kSuccess = 0,  // TPM_RC_SUCCESS (from the TPM or the RM)
  kWarning,      // a TPM warning (format-zero rc with TPM_RC_WARN), e.g. TPM_RC_RETRY, TPM_RC_OBJECT_MEMORY
  kError,        // any other TPM error rc, and transport failures (ENODEV, ETIME, EIO) that reach the client
  kRefusal,      // answered by the RM itself (an errno or an RM-layer rc 0x000B....)
};
inline constexpr std::size_t kRcClasses = 4;
std::string_view rc_class_name(RcClass c);  // "success", "warning", "error", "rm-refusal"
// The class of a TPM response code (never kRefusal: that is known from who answered, not from the rc).
RcClass classify_rc(std::uint32_t rc);

// Why the RM refused a command, from its RmError's rc.
enum class RefusalReason : std::uint8_t {
  kPolicy = 0,     // TPM_RC_COMMAND_CODE: the command policy, or a code the TPM does not implement
  kObjectLimit,    // OBJECT_MEMORY: a per-connection or per-uid object quota, or no slot could be freed
  kSessionLimit,   // SESSION_MEMORY: likewise for sessions
  kMalformed,      // COMMAND_SIZE, AUTHSIZE, TAG: framing
  kHandle,         // HANDLE, REFERENCE_*: a handle the connection does not own or that is gone
  kBusy,           // RETRY: the TPM's state could not be settled, or the RM was busy
  kFailure,        // FAILURE: the RM could not account for the TPM's state
  kOther,
};
inline constexpr std::size_t kRefusalReasons = 8;
std::string_view refusal_reason_name(RefusalReason r);  // "policy", "object-limit", ...
RefusalReason refusal_reason(std::uint32_t rm_rc);

struct ConnectionCounters {
  std::uint64_t commands = 0;  // client commands executed (answered by the TPM or by the RM)
  std::uint64_t refusals = 0;  // commands the RM answered itself with an error rc or errno
  std::uint32_t objects = 0;   // live virtual transient handles
  std::uint32_t sessions = 0;  // sessions owned
  // Who opened it (copied from its ClientInfo at snapshot time) and when.
  pid_t pid = 0;
  uid_t uid = 0;
  std::string comm;
  std::chrono::system_clock::time_point opened_at{};
  std::chrono::nanoseconds tpm_time{0};  // time the RM (and the TPM) spent on its commands
  std::optional<std::uint32_t> last_cc;  // the last command's code, once one ran
  std::uint32_t last_rc = 0;             // its response code (an RM-layer rc, or 0 with last_errno set)
  int last_errno = 0;                    // the errno it was answered with instead of a response, if any
};

// Per command code: how many ended in each RcClass.
using RcClassCounts = std::array<std::uint64_t, kRcClasses>;

struct Counters {
  std::uint64_t client_commands = 0;  // TPM commands sent on behalf of a client command
  std::uint64_t context_loads = 0;    // TPM2_ContextLoad issued by the RM
  std::uint64_t context_saves = 0;    // TPM2_ContextSave issued by the RM
  std::uint64_t flushes = 0;          // TPM2_FlushContext issued by the RM
  std::uint64_t evictions = 0;        // contexts saved+flushed to make room (drift evictions included)
  // Objects evicted before a command that may flush transients behind the RM (TPMA_CC extensive, or flushed
  // without naming a transient), so that no slot the RM believes occupied can be emptied by it.
  std::uint64_t drift_evictions = 0;
  // The TPM put an object in a slot (or gave a session handle) the RM believed another's: the older entry was stale.
  std::uint64_t physical_collisions = 0;
  // Comparisons of the RM's picture with the TPM's handle lists after a command's outcome went unseen, and the
  // entries they corrected.
  std::uint64_t reconciliations = 0;
  std::uint64_t reconciled_entries = 0;
  std::uint64_t leftovers_flushed = 0;  // handles an earlier user left in the TPM, flushed at start-up
  std::uint64_t regaps = 0;           // saved sessions reloaded+resaved to close a context gap
  std::uint64_t refusals = 0;         // client commands refused by the RM
  std::uint64_t connections_open = 0;
  std::uint64_t connections_opened = 0;  // since start-up
  std::map<std::uint64_t, ConnectionCounters> per_connection;  // keyed by ConnectionId

  // Client commands by command code (unparseable ones under code 0) and how they ended.
  std::map<std::uint32_t, RcClassCounts> by_command;
  std::array<std::uint64_t, kRefusalReasons> refusals_by_reason{};
  LatencyHistogram tpm_time;         // per client command: time in the RM and the TPM (what the uid is charged)
  LatencyHistogram command_latency;  // per client command: queued to answered (the dispatcher's; queueing included)

  std::uint64_t tpm_commands() const { return client_commands + context_loads + context_saves + flushes; }
};

}  // namespace tpmrmd::rm

// The RM's limits and policies. Every limit is honoured exactly (no hidden ceiling, no off-by-one).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>

#include "rm/audit_rate_limit.h"
#include "rm/command_policy.h"

namespace tpmrmd::rm {

// What the RM does with handles it finds in the TPM before it serves anyone (a crashed earlier run's objects and
// sessions, or another user's on a shared TPM).
enum class Leftovers {
  kUntouched,  // don't look (tests and embedders that manage the TPM themselves)
  kFlush,      // a TPM the daemon owns alone: flush them, as tpm2-abrmd's --flush-all does
  kKeep,       // a shared TPM: leave them alone and plan with the slots that remain
};

struct RmOptions {
  // Per connection. Far above the kernel's 3 + 3 and tpm2-abrmd's 27 + 4: objects cost the TPM nothing while
  // saved; sessions each hold one of the TPM's active-session slots (64 on swtpm) until flushed.
  std::uint32_t max_objects_per_connection = 1024;
  std::uint32_t max_sessions_per_connection = 32;
  std::uint32_t max_connections = 1024;
  // Connections one uid may hold at once, so that one uid can't take every connection and lock the others
  // (root included) out with EMFILE. 0 = half of max_connections.
  std::uint32_t max_connections_per_uid = 0;
  // Transient objects one uid may hold at once, over all its connections. Each costs the RM one saved context
  // (at most the TPM's context size, a few KiB), so this also bounds the memory one uid can make the RM hold.
  // 0 = no per-uid limit (only max_objects_per_connection).
  std::uint32_t max_objects_per_uid = 4096;
  // Root is held to the per-uid caps (connections, objects) unless this is set. Never to the session share
  // or to fair scheduling: those protect everyone's use of the TPM itself.
  bool root_exempt_from_uid_caps = false;
  // Sessions one uid may hold at once, over all its connections: each takes one of the TPM's active-session
  // slots (ACTIVE_SESSIONS_MAX, 64 on swtpm) until flushed, so without a share one uid could deny sessions to
  // every other. 0 = half of the TPM's ACTIVE_SESSIONS_MAX. Root is held to it too.
  std::uint32_t max_sessions_per_uid = 0;
  // Client-saved sessions kept after their connection closed, for a later connection to ContextLoad. Oldest
  // are flushed first when this is exceeded or when the TPM runs out of session handles.
  std::uint32_t max_abandoned_sessions = 16;
  // Re-save the oldest saved session once the context gap comes within this many saves of the TPM's limit.
  // 0 turns proactive re-gapping off (then only TPM_RC_CONTEXT_GAP triggers it).
  std::uint32_t regap_margin = 64;
  // How the RM reports errors it finds in a client command: false = errno, as the kernel does; true = a 10-byte
  // response whose rc carries the RM layer bits (0x000B0000 | TPM rc).
  bool rc_mode = false;
  Leftovers leftovers = Leftovers::kUntouched;
  // TPM slots kept free between commands for other users of a shared TPM (the kernel's own /dev/tpmrm0, trusted
  // keys): the RM plans with HR_TRANSIENT_MIN / HR_LOADED_MIN minus these (and minus foreign handles it found),
  // never fewer than one. Costs the RM's users evictions; what others still take is met by evicting on
  // OBJECT_MEMORY / SESSION_MEMORY and retrying, as with any such warning.
  std::uint32_t reserve_object_slots = 0;
  std::uint32_t reserve_session_slots = 0;
  // Which commands each caller class may run; refused ones get 0x000B0143 in both error modes, as the kernel
  // answers a command it refuses. The default allows everything (docs/rm.md, "Command policy").
  CommandPolicy policy;
  // Rate limit of the audit trail (refused and privileged commands), per uid.
  AuditLimits audit;
  // Warnings about floods, each at most once per interval: an eviction storm (this many evictions within the
  // window), re-gaps, and refusals at a limit (per uid).
  WarnLimits eviction_storm{.threshold = 32, .window = std::chrono::milliseconds(1000),
                            .interval = std::chrono::milliseconds(10000)};
  WarnLimits regap_warnings{.threshold = 1, .window = std::chrono::milliseconds(1000),
                            .interval = std::chrono::milliseconds(10000)};
  WarnLimits refusal_warnings{.threshold = 1, .window = std::chrono::milliseconds(1000),
                              .interval = std::chrono::milliseconds(10000)};
};

// The per-uid connection limit in force for `uid` (0: none).
inline std::uint32_t connections_per_uid(const RmOptions& options, uid_t uid) {
  if (uid == 0 && options.root_exempt_from_uid_caps) return 0;
  if (options.max_connections_per_uid) return options.max_connections_per_uid;
  return options.max_connections > 1 ? options.max_connections / 2 : options.max_connections;
}

// The per-uid object limit in force for `uid` (0: none).
inline std::uint32_t objects_per_uid(const RmOptions& options, uid_t uid) {
  return uid == 0 && options.root_exempt_from_uid_caps ? 0 : options.max_objects_per_uid;
}

}  // namespace tpmrmd::rm

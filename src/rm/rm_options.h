// The RM's limits and policies. Every limit is honoured exactly (no hidden ceiling, no off-by-one).
#pragma once

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
  // Connections one uid may hold at once (tpm2-abrmd#453); 0 = no per-uid limit, only max_connections.
  std::uint32_t max_connections_per_uid = 0;
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
  // Which commands each caller class may run; refused ones get 0x000B0143 in both error modes, as the kernel
  // answers a command it refuses. The default allows everything (docs/rm.md, "Command policy").
  CommandPolicy policy;
  // Rate limit of the audit trail (refused and privileged commands), per uid.
  AuditLimits audit;
};

}  // namespace tpmrmd::rm

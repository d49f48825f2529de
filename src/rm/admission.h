// Admission: decides, before anything reaches the TPM, whether a connection's command may run and what it
// needs: the framing is valid, every transient handle is one of the connection's virtual handles, every
// session it names is a live session it owns, and what it would create fits the connection's quota. It also
// answers what the RM answers from its own tables (GetCapability of the virtualised handle ranges, the
// rewritten TPM properties). It applies the command policy first, writing what it refuses to the audit trail.
// Otherwise read-only: it changes neither the tables nor the TPM, so a refused command has changed nothing.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <algorithm>
#include <map>
#include <set>

#include "rm/audit_log.h"
#include "rm/capability_view.h"
#include "rm/command.h"
#include "rm/residency.h"
#include "rm/rm_error.h"
#include "rm/rm_options.h"
#include "rm/space.h"
#include "tpm/command_attributes.h"
#include "util/bytes.h"

namespace tpmrmd::rm {

// How the RM handles an admitted command.
enum class Route {
  kTpm,                 // rewritten and sent to the TPM
  kFlush,               // FlushContext of one of the connection's transients or sessions
  kSaveSession,         // ContextSave of one of its live sessions (virtualised)
  kLoadContext,         // ContextLoad: a known session token is answered by the RM, other blobs go to the TPM
  kHandlesCapability,   // GetCapability(HANDLES) of a virtualised range, answered by the RM
  kPowerCycle,          // Startup / Shutdown: the daemon owns the TPM's power cycle; answered by the RM
};

struct Plan {
  ParsedCommand cmd;
  Route route = Route::kTpm;
  std::vector<std::pair<std::size_t, ObjectId>> object_refs;  // handle-area index -> object
  Pins pins;                                                 // distinct objects and live sessions named
  Creates creates = Creates::kNothing;
  bool rewrite_properties = false;  // GetCapability(TPM_PROPERTIES): the answer gets the connection's view
  CapabilityQuery query;            // kHandlesCapability
  CallerClass caller = CallerClass::kOther;  // the command policy's class of the connection's opener
};

class Admission {
 public:
  // `spaces` and `uid_connections` (the RM's index of open connections by uid) are for per-uid limits.
  Admission(const RmOptions& options, const Residency& residency, const std::map<ConnectionId, Space>& spaces,
            const std::map<uid_t, std::set<ConnectionId>>& uid_connections, std::uint32_t active_sessions_max,
            AuditLog& audit)
      : options_(options), residency_(residency), spaces_(spaces), uid_connections_(uid_connections), audit_(audit),
        sessions_per_uid_(options.max_sessions_per_uid ? options.max_sessions_per_uid
                                                       : std::max<std::uint32_t>(1, active_sessions_max / 2)) {}

  // Parses and checks `command` for `space`. A refusal says exactly what was wrong.
  RmResult<Plan> admit(const Space& space, ByteSpan command, const tpm::CommandTable& table) const;
  // Whether `space` may create one more of `creates` (0x000B0902 / 0x000B0903 otherwise).
  RmResult<void> check_quota(const Space& space, Creates creates) const;

  // The RM's answer to GetCapability(HANDLES) of a virtualised range: only the connection's own handles.
  Bytes answer_handles(const Space& space, const CapabilityQuery& query) const;
  // The value a TPM property has in the connection's view, or nullopt to pass the TPM's through.
  std::optional<std::uint32_t> virtual_property(const Space& space, TPM2_PT property) const;

 private:
  // The command policy's verdict for the connection's opener: 0x000B0143 in both modes, as the kernel answers
  // a command it refuses (and an unknown command code).
  RmResult<void> check_policy(const Space& space, Plan& plan) const;
  RmResult<void> check_references(const Space& space, Plan& plan) const;
  // Sets the plan's route (and what the route needs) from the command code and its parameters.
  void route(Plan& plan, ByteSpan command) const;

  // What a uid holds over all its connections: a walk over its connections, not over every entry.
  std::size_t uid_sessions(uid_t uid) const;
  std::size_t uid_objects(uid_t uid) const;

  const RmOptions& options_;
  const Residency& residency_;
  const std::map<ConnectionId, Space>& spaces_;
  const std::map<uid_t, std::set<ConnectionId>>& uid_connections_;
  AuditLog& audit_;
  const std::uint32_t sessions_per_uid_;
};

}  // namespace tpmrmd::rm

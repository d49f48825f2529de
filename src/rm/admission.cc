#include "rm/admission.h"

#include <fmt/format.h>

#include <algorithm>

#include "rm/handles.h"
#include "tpm/cc_names.h"

namespace tpmrmd::rm {
namespace {

std::uint32_t saturating_sub(std::uint32_t a, std::size_t b) {
  return a > b ? static_cast<std::uint32_t>(a - b) : 0;
}

// FlushContext and ContextSave are virtualised only in their plain form; anything else (sessions on them,
// trailing bytes) goes to the TPM, which answers it with its own rc.
bool plain(const ParsedCommand& cmd, ByteSpan command) {
  return cmd.tag == TPM2_ST_NO_SESSIONS && cmd.parameter_offset == command.size();
}

}  // namespace

RmResult<Plan> Admission::admit(const Space& space, ByteSpan command, const tpm::CommandTable& table) const {
  auto parsed = parse_command(command, table);
  if (!parsed) return parsed.error();
  Plan plan;
  plan.cmd = std::move(*parsed);
  if (auto allowed = check_policy(space, plan); !allowed) return allowed.error();
  if (auto checked = check_references(space, plan); !checked) return checked.error();
  route(plan, command);
  if (plan.route == Route::kTpm && plan.cmd.attributes.returns_handle()) {
    plan.creates = plan.cmd.code == TPM2_CC_StartAuthSession ? Creates::kSession : Creates::kObject;
    if (auto quota = check_quota(space, plan.creates); !quota) return quota.error();
  }
  return plan;
}

RmResult<void> Admission::check_policy(const Space& space, Plan& plan) const {
  const TPM2_CC code = plan.cmd.code;
  const PolicyDecision decision = options_.policy.decide(space.client, code);
  plan.caller = decision.caller;
  if (decision.allowed) return {};
  audit_.refused(space.id, space.client, decision.caller, code, kRmCommandCode);
  return RmError::answered(kRmCommandCode,
                           fmt::format("command {} is not allowed to uid {} (class {}) by the command policy",
                                       tpm::cc_label(code), space.client.uid, caller_class_name(decision.caller)));
}

RmResult<void> Admission::check_references(const Space& space, Plan& plan) const {
  const ParsedCommand& cmd = plan.cmd;
  const ObjectTable& objects = residency_.objects();
  const SessionTable& sessions = residency_.sessions();
  for (std::size_t i = 0; i < cmd.handles.size(); ++i) {
    const TPM2_HANDLE h = cmd.handles[i];
    const TPM2_RC position = TPM2_RC_1 * static_cast<TPM2_RC>(i + 1);
    if (is_transient(h)) {
      auto id = space.objects.find(h);
      if (!id) {
        return RmError::refused(EINVAL, kRmLayer | TPM2_RC_HANDLE | position,
                                fmt::format("unknown virtual handle 0x{:08x} at handle {}", h, i + 1));
      }
      if (objects.find(*id)->dead && cmd.code != TPM2_CC_FlushContext) {
        return RmError::refused(
            EINVAL, kRmLayer | TPM2_RC_HANDLE | position,
            fmt::format("the object behind 0x{:08x} can no longer be loaded (its context was lost)", h));
      }
      plan.object_refs.emplace_back(i, *id);
      plan.pins.objects.insert(*id);
    } else if (is_session(h)) {
      const SessionEntry* s = sessions.find(h);
      const bool own = s && s->owner == space.id;
      // A client may flush a session it saved itself, as it could on a bare TPM.
      if (!own || (!s->live() && cmd.code != TPM2_CC_FlushContext)) {
        return RmError::refused(
            EINVAL, kRmLayer | TPM2_RC_HANDLE | position,
            fmt::format("session 0x{:08x} at handle {} is not a live session of this connection", h, i + 1));
      }
      if (s->live()) plan.pins.sessions.insert(h);
    }
  }
  for (std::size_t k = 0; k < cmd.auths.size(); ++k) {
    const TPM2_HANDLE h = cmd.auths[k].handle;
    if (!is_session(h)) continue;
    const SessionEntry* s = sessions.find(h);
    if (!s || s->owner != space.id || !s->live()) {
      return RmError::refused(
          EINVAL, kRmLayer | (TPM2_RC_REFERENCE_S0 + static_cast<TPM2_RC>(k)),
          fmt::format("session 0x{:08x} in authorization slot {} is not a live session of this connection", h,
                      k + 1));
    }
    plan.pins.sessions.insert(h);
  }
  return {};
}

void Admission::route(Plan& plan, ByteSpan command) const {
  const ParsedCommand& cmd = plan.cmd;
  switch (cmd.code) {
    case TPM2_CC_FlushContext:
      if (plain(cmd, command) && (is_transient(cmd.handles[0]) || is_session(cmd.handles[0]))) {
        plan.route = Route::kFlush;
      }
      return;
    case TPM2_CC_ContextSave:
      if (is_session(cmd.handles[0]) && plain(cmd, command)) plan.route = Route::kSaveSession;
      return;
    case TPM2_CC_ContextLoad:
      plan.route = Route::kLoadContext;
      return;
    case TPM2_CC_Startup:
    case TPM2_CC_Shutdown:
      plan.route = Route::kPowerCycle;
      return;
    case TPM2_CC_GetCapability: {
      auto query = parse_capability_query(command.subspan(cmd.parameter_offset));
      if (!query) return;  // malformed: the TPM answers it
      if (query->capability == TPM2_CAP_TPM_PROPERTIES) {
        plan.rewrite_properties = true;
      } else if (query->capability == TPM2_CAP_HANDLES && is_virtualised_handle_range(query->property)) {
        plan.route = Route::kHandlesCapability;
        plan.query = *query;
      }
      return;
    }
    default:
      return;
  }
}

RmResult<void> Admission::check_quota(const Space& space, Creates creates) const {
  if (creates == Creates::kObject && space.objects.size() >= options_.max_objects_per_connection) {
    return RmError::answered(kRmObjectMemory,
                             fmt::format("connection holds {} objects, the limit", space.objects.size()));
  }
  if (creates == Creates::kObject) {
    const std::uint32_t limit = objects_per_uid(options_, space.client.uid);
    if (const std::size_t held = limit ? uid_objects(space.client.uid) : 0; limit && held >= limit) {
      return RmError::answered(kRmObjectMemory, fmt::format("uid {} (pid {}) holds {} objects, the per-uid limit",
                                                            space.client.uid, space.client.pid, held));
    }
  }
  if (creates != Creates::kSession) return {};
  const std::size_t sessions = residency_.sessions().owned(space.id).size();
  if (sessions >= options_.max_sessions_per_connection) {
    return RmError::answered(kRmSessionMemory, fmt::format("connection holds {} sessions, the limit", sessions));
  }
  if (const std::size_t held = uid_sessions(space.client.uid); held >= sessions_per_uid_) {
    return RmError::answered(kRmSessionMemory,
                             fmt::format("uid {} (pid {}) holds {} sessions, its share of the TPM's active sessions",
                                         space.client.uid, space.client.pid, held));
  }
  return {};
}

std::size_t Admission::uid_sessions(uid_t uid) const {
  auto it = uid_connections_.find(uid);
  if (it == uid_connections_.end()) return 0;
  std::size_t n = 0;
  for (ConnectionId c : it->second) n += residency_.sessions().owned(c).size();
  return n;
}

std::size_t Admission::uid_objects(uid_t uid) const {
  auto it = uid_connections_.find(uid);
  if (it == uid_connections_.end()) return 0;
  std::size_t n = 0;
  for (ConnectionId c : it->second) {
    if (auto s = spaces_.find(c); s != spaces_.end()) n += s->second.objects.size();
  }
  return n;
}

Bytes Admission::answer_handles(const Space& space, const CapabilityQuery& query) const {
  std::vector<TPM2_HANDLE> remaining;
  if (is_transient(query.property)) {
    remaining = space.objects.handles_from(query.property);
  } else {
    // Loaded range: sessions the client can use; saved range: sessions it saved itself. HMAC and policy
    // sessions share one index space, which is what the TPM iterates.
    const bool loaded_range = handle_type(query.property) == TPM2_HT_LOADED_SESSION;
    for (TPM2_HANDLE h : residency_.sessions().owned(space.id)) {
      if (residency_.sessions().find(h)->live() != loaded_range) continue;
      if (session_index(h) >= session_index(query.property)) remaining.push_back(h);
    }
    std::sort(remaining.begin(), remaining.end(),
              [](TPM2_HANDLE a, TPM2_HANDLE b) { return session_index(a) < session_index(b); });
  }
  return make_handles_response(remaining, query.count);
}

std::optional<std::uint32_t> Admission::virtual_property(const Space& space, TPM2_PT property) const {
  const auto& owned = residency_.sessions().owned(space.id);
  std::size_t live = 0;
  for (TPM2_HANDLE h : owned) live += residency_.sessions().find(h)->live() ? 1 : 0;
  switch (property) {
    case TPM2_PT_CONTEXT_GAP_MAX:
      return 0xFFFFFFFFu;  // the RM closes gaps itself
    case TPM2_PT_HR_TRANSIENT_AVAIL:
      return saturating_sub(options_.max_objects_per_connection, space.objects.size());
    case TPM2_PT_HR_LOADED:
      return static_cast<std::uint32_t>(live);
    case TPM2_PT_HR_LOADED_AVAIL:
    case TPM2_PT_HR_ACTIVE_AVAIL:
      return saturating_sub(options_.max_sessions_per_connection, owned.size());
    case TPM2_PT_HR_ACTIVE:
      return static_cast<std::uint32_t>(owned.size());
    default:
      return std::nullopt;
  }
}

}  // namespace tpmrmd::rm

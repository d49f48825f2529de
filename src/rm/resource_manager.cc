#include "rm/resource_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "rm/capability_view.h"
#include "rm/handles.h"
#include "tpm/commands.h"
#include "tpm/endian.h"
#include "tpm/header.h"
#include "tpm/responses.h"

namespace tpmrmd::rm {

using tpm::context_from_save_response;
using tpm::handle_from_response;
using tpm::make_context_load;
using tpm::make_context_load_response;
using tpm::make_context_save;
using tpm::make_context_save_response;
using tpm::make_flush_context;
using tpm::make_success_response;
using tpm::parse_context;
using tpm::rc_base;
using tpm::response_code;
namespace {

constexpr TPM2_HANDLE kSequenceObjectMarker = 0x80000001u;  // savedHandle of a sequence object's context

bool is_object_memory(TPM2_RC rc) {
  return rc == TPM2_RC_OBJECT_MEMORY || rc == TPM2_RC_OBJECT_HANDLES || rc == TPM2_RC_MEMORY;
}

// The TPM says the context or handle does not exist (any more).
bool is_gone(TPM2_RC rc) {
  const TPM2_RC base = rc_base(rc);
  return (rc >= TPM2_RC_REFERENCE_H0 && rc <= TPM2_RC_REFERENCE_H0 + 6) || base == TPM2_RC_HANDLE ||
         base == TPM2_RC_INTEGRITY;
}

std::uint32_t saturating_sub(std::uint32_t a, std::size_t b) {
  return a > b ? static_cast<std::uint32_t>(a - b) : 0;
}

}  // namespace

ResourceManager::ResourceManager(TpmPort& tpm, RmOptions options)
    : tpm_(tpm),
      options_(options),
      object_capacity_(std::max<std::uint32_t>(1, tpm.info().hr_transient_min)),
      session_capacity_(std::max<std::uint32_t>(1, tpm.info().hr_loaded_min)) {}

ResourceManager::~ResourceManager() { shutdown(); }

Result<ConnectionId> ResourceManager::open(const ClientInfo& client) {
  while (spaces_.count(next_connection_)) ++next_connection_;
  ConnectionId id = next_connection_++;
  auto opened = open(id, client);
  if (!opened) return opened.error();
  return id;
}

Result<void> ResourceManager::open(ConnectionId id, const ClientInfo& client) {
  if (!tpm_.available()) return make_error(ENODEV, "TPM backend is gone");
  if (spaces_.size() >= options_.max_connections) {
    return make_error(EMFILE, fmt::format("connection limit of {} reached", options_.max_connections));
  }
  if (spaces_.count(id)) return make_error(EEXIST, fmt::format("connection {} is already open", id));
  Space space;
  space.id = id;
  space.client = client;
  spaces_.emplace(id, std::move(space));
  return {};
}

Space* ResourceManager::find_space(ConnectionId id) {
  auto it = spaces_.find(id);
  return it == spaces_.end() ? nullptr : &it->second;
}

Result<Bytes> ResourceManager::refuse(Space& space, const Refusal& refusal) {
  ++space.counters.refusals;
  ++counters_.refusals;
  spdlog::debug("rm: connection {} refused: {}", space.id, refusal.message);
  if (refusal.error == 0 || options_.rc_mode) return tpm::make_rc_response(refusal.rc);
  return make_error(refusal.error, refusal.message);
}

Result<Bytes> ResourceManager::fail(Space& space, const Failure& failure) {
  if (failure.transport) return make_error(failure.refusal.error, failure.refusal.message);
  return refuse(space, failure.refusal);
}

Result<Bytes> ResourceManager::send(ByteSpan command, std::uint64_t Counters::*counter) {
  ++(counters_.*counter);
  return tpm_.transmit(command);
}

bool ResourceManager::send_flush(TPM2_HANDLE handle) {
  auto resp = send(make_flush_context(handle), &Counters::flushes);
  if (!resp) return false;
  auto rc = response_code(*resp);
  if (!rc || *rc != TPM2_RC_SUCCESS) {
    spdlog::warn("rm: FlushContext(0x{:08x}) answered rc 0x{:x}", handle, rc ? *rc : 0);
    return false;
  }
  return true;
}

Result<Bytes> ResourceManager::execute(ConnectionId id, ByteSpan command) {
  Space* space = find_space(id);
  if (!space) return make_error(EBADF, fmt::format("connection {} is not open", id));
  ++space->counters.commands;
  if (!tpm_.available()) return make_error(ENODEV, "TPM backend is gone");
  ++clock_;

  auto parsed = parse_command(command, tpm_.info().commands);
  if (auto* refusal = std::get_if<Refusal>(&parsed)) return refuse(*space, *refusal);
  const ParsedCommand& cmd = std::get<ParsedCommand>(parsed);

  Plan plan;
  if (auto refusal = plan_references(*space, cmd, plan)) return refuse(*space, *refusal);

  switch (cmd.code) {
    case TPM2_CC_FlushContext:
      return flush_for_client(*space, cmd, command, plan);
    case TPM2_CC_ContextSave:
      if (is_session(cmd.handles[0])) return save_session_for_client(*space, cmd, command, plan);
      break;
    case TPM2_CC_ContextLoad:
      return load_for_client(*space, cmd, command, plan);
    case TPM2_CC_GetCapability:
      if (auto answer = answer_handles_capability(*space, cmd, command, plan)) return std::move(*answer);
      break;
    default:
      break;
  }
  if (cmd.attributes.returns_handle()) {
    plan.creates = cmd.code == TPM2_CC_StartAuthSession ? Creates::kSession : Creates::kObject;
  }
  if (auto refusal = check_quota(*space, plan.creates)) return refuse(*space, *refusal);
  return run(*space, cmd, command, plan);
}

std::optional<Refusal> ResourceManager::plan_references(const Space& space, const ParsedCommand& cmd,
                                                        Plan& plan) const {
  for (std::size_t i = 0; i < cmd.handles.size(); ++i) {
    const TPM2_HANDLE h = cmd.handles[i];
    const TPM2_RC position = TPM2_RC_1 * static_cast<TPM2_RC>(i + 1);
    if (is_transient(h)) {
      auto id = space.objects.find(h);
      if (!id) {
        return Refusal{EINVAL, kRmLayer | TPM2_RC_HANDLE | position,
                       fmt::format("unknown virtual handle 0x{:08x} at handle {}", h, i + 1)};
      }
      const ObjectEntry* o = objects_.find(*id);
      if (o->dead && cmd.code != TPM2_CC_FlushContext) {
        return Refusal{EINVAL, kRmLayer | TPM2_RC_HANDLE | position,
                       fmt::format("the object behind 0x{:08x} can no longer be loaded (its context was lost)", h)};
      }
      plan.object_refs.emplace_back(i, *id);
      plan.objects.insert(*id);
    } else if (is_session(h)) {
      const SessionEntry* s = sessions_.find(h);
      const bool own = s && s->owner == space.id;
      // A client may flush a session it saved itself, as it could on a bare TPM.
      if (!own || (!s->live() && cmd.code != TPM2_CC_FlushContext)) {
        return Refusal{EINVAL, kRmLayer | TPM2_RC_HANDLE | position,
                       fmt::format("session 0x{:08x} at handle {} is not a live session of this connection", h,
                                   i + 1)};
      }
      if (s->live()) plan.sessions.insert(h);
    }
  }
  for (std::size_t k = 0; k < cmd.auths.size(); ++k) {
    const TPM2_HANDLE h = cmd.auths[k].handle;
    if (!is_session(h)) continue;
    const SessionEntry* s = sessions_.find(h);
    if (!s || s->owner != space.id || !s->live()) {
      return Refusal{EINVAL, kRmLayer | (TPM2_RC_REFERENCE_S0 + static_cast<TPM2_RC>(k)),
                     fmt::format("session 0x{:08x} in authorization slot {} is not a live session of this "
                                 "connection",
                                 h, k + 1)};
    }
    plan.sessions.insert(h);
  }
  return std::nullopt;
}

std::optional<Refusal> ResourceManager::check_quota(const Space& space, Creates creates) const {
  if (creates == Creates::kObject && space.objects.size() >= options_.max_objects_per_connection) {
    return Refusal{0, kRmObjectMemory,
                   fmt::format("connection holds {} objects, the limit", space.objects.size())};
  }
  if (creates == Creates::kSession && space.sessions.size() >= options_.max_sessions_per_connection) {
    return Refusal{0, kRmSessionMemory,
                   fmt::format("connection holds {} sessions, the limit", space.sessions.size())};
  }
  return std::nullopt;
}

Result<Bytes> ResourceManager::run(Space& space, const ParsedCommand& cmd, ByteSpan command, Plan& plan) {
  Bytes out(command.begin(), command.end());
  const std::size_t bound = objects_.size() + sessions_.size() + 2;
  bool regapped = false;
  std::optional<Bytes> response;
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    if (auto failure = make_resident(plan)) return fail(space, *failure);
    for (const auto& [index, id] : plan.object_refs) {
      tpm::store_u32(out, ParsedCommand::handle_offset(index), *objects_.find(id)->physical);
    }
    auto resp = send(out, &Counters::client_commands);
    if (!resp) return resp.error();
    response = std::move(*resp);
    auto rc = response_code(*response);
    if (!rc) return rc.error();
    if (is_object_memory(*rc) && evict_object(plan.objects)) continue;
    if (*rc == TPM2_RC_MEMORY && evict_session(plan.sessions)) continue;  // shared object/session memory
    if (*rc == TPM2_RC_SESSION_MEMORY && evict_session(plan.sessions)) continue;
    if (*rc == TPM2_RC_SESSION_HANDLES && flush_oldest_abandoned()) continue;
    if (*rc == TPM2_RC_CONTEXT_GAP && !regapped) {
      regapped = true;
      if (regap_oldest(plan.sessions)) continue;
    }
    break;
  }
  for (ObjectId id : plan.objects) {
    if (ObjectEntry* o = objects_.find(id)) o->last_use = clock_;
  }
  for (TPM2_HANDLE h : plan.sessions) {
    if (SessionEntry* s = sessions_.find(h)) s->last_use = clock_;
  }
  post_process(space, cmd, command, plan, *response);
  return std::move(*response);
}

void ResourceManager::post_process(Space& space, const ParsedCommand& cmd, ByteSpan command, const Plan& plan,
                                   Bytes& response) {
  auto rc = response_code(response);
  if (!rc || *rc != TPM2_RC_SUCCESS) return;

  if (cmd.attributes.flushes()) {
    // TPMA_CC.flushed: the TPM ended every transient the command named (e.g. SequenceComplete).
    for (ObjectId id : plan.objects) erase_object(id);
  } else {
    for (ObjectId id : plan.objects) {
      ObjectEntry* o = objects_.find(id);
      if (!o) continue;
      auto header = parse_context(o->context);
      if (!header || header->saved_handle == kSequenceObjectMarker) o->context_current = false;
    }
  }
  for (const AuthEntry& auth : cmd.auths) {
    // continueSession clear: the TPM ended the session with this successful command.
    if (is_session(auth.handle) && !auth.continue_session()) forget_session(auth.handle);
  }
  if (cmd.attributes.returns_handle() && response.size() >= tpm::kHeaderSize + 4) {
    const TPM2_HANDLE h = tpm::load_u32(response, tpm::kHeaderSize);
    if (is_transient(h)) {
      ObjectEntry entry;
      entry.owner = space.id;
      entry.physical = h;
      entry.last_use = clock_;
      if (cmd.code == TPM2_CC_ContextLoad) {
        // The client's blob is exactly what is now loaded, so evicting it needs no ContextSave.
        entry.context.assign(command.begin() + static_cast<std::ptrdiff_t>(cmd.parameter_offset), command.end());
        entry.context_current = parse_context(entry.context).has_value();
      }
      ObjectId id = objects_.add(std::move(entry));
      auto vh = space.objects.allocate(id);
      if (!vh) {
        // Unreachable with any sane object limit; keep the TPM clean and say so rather than abort.
        spdlog::error("rm: connection {} has no free virtual handle; flushing 0x{:08x}", space.id, h);
        send_flush(h);
        objects_.erase(id);
        return;
      }
      objects_.find(id)->vhandle = *vh;
      tpm::store_u32(response, tpm::kHeaderSize, *vh);
    } else if (is_session(h)) {
      if (sessions_.find(h)) forget_session(h);  // a stale entry: the TPM reused the handle
      SessionEntry entry;
      entry.owner = space.id;
      entry.resident = true;
      entry.last_use = clock_;
      sessions_.put(h, std::move(entry));
      space.sessions.insert(h);
    }
  }
  if (plan.rewrite_properties) {
    rewrite_properties(response, [&](TPM2_PT p) { return virtual_property(space, p); });
  }
}

std::optional<std::uint32_t> ResourceManager::virtual_property(const Space& space, TPM2_PT property) const {
  std::size_t live = 0;
  for (TPM2_HANDLE h : space.sessions) {
    const SessionEntry* s = sessions_.find(h);
    live += s && s->live() ? 1 : 0;
  }
  switch (property) {
    case TPM2_PT_CONTEXT_GAP_MAX:
      return 0xFFFFFFFFu;  // the RM closes gaps itself
    case TPM2_PT_HR_TRANSIENT_AVAIL:
      return saturating_sub(options_.max_objects_per_connection, space.objects.size());
    case TPM2_PT_HR_LOADED:
      return static_cast<std::uint32_t>(live);
    case TPM2_PT_HR_LOADED_AVAIL:
    case TPM2_PT_HR_ACTIVE_AVAIL:
      return saturating_sub(options_.max_sessions_per_connection, space.sessions.size());
    case TPM2_PT_HR_ACTIVE:
      return static_cast<std::uint32_t>(space.sessions.size());
    default:
      return std::nullopt;
  }
}

Result<Bytes> ResourceManager::flush_for_client(Space& space, const ParsedCommand& cmd, ByteSpan command,
                                                Plan& plan) {
  const TPM2_HANDLE h = cmd.handles[0];
  const bool plain = cmd.tag == TPM2_ST_NO_SESSIONS && cmd.parameter_offset == command.size();
  if (!plain || (!is_transient(h) && !is_session(h))) return run(space, cmd, command, plan);

  if (is_transient(h)) {
    const ObjectId id = plan.objects.begin() == plan.objects.end() ? 0 : *plan.objects.begin();
    ObjectEntry* o = objects_.find(id);
    if (!o->resident()) {
      // Saved or dead: the TPM holds nothing for it; dropping the RM's blob is the whole flush.
      erase_object(id);
      return make_success_response();
    }
    Bytes out(command.begin(), command.end());
    tpm::store_u32(out, ParsedCommand::handle_offset(0), *o->physical);
    auto resp = send(out, &Counters::client_commands);
    if (!resp) return resp.error();
    auto rc = response_code(*resp);
    if (rc && *rc == TPM2_RC_SUCCESS) erase_object(id);
    return resp;
  }

  // A session, live or client-saved, of this connection: the TPM flushes loaded and saved sessions alike.
  auto resp = send(command, &Counters::client_commands);
  if (!resp) return resp.error();
  auto rc = response_code(*resp);
  if (rc && (*rc == TPM2_RC_SUCCESS || is_gone(*rc))) {
    forget_session(h);
    if (*rc != TPM2_RC_SUCCESS) return make_success_response();  // it was already gone: flushed either way
  }
  return resp;
}

Result<Bytes> ResourceManager::save_session_for_client(Space& space, const ParsedCommand& cmd, ByteSpan command,
                                                       Plan& plan) {
  const TPM2_HANDLE h = cmd.handles[0];
  if (cmd.tag != TPM2_ST_NO_SESSIONS || cmd.parameter_offset != command.size()) {
    return run(space, cmd, command, plan);  // the TPM rejects it with its own rc
  }
  SessionEntry* s = sessions_.find(h);
  if (!s->resident) {
    // Already saved by the RM: that context is as good as a fresh one and costs the TPM nothing.
    s->client_token = s->context;
    return make_context_save_response(s->context);
  }
  Result<Bytes> resp = make_error(EIO, "unreachable");
  for (int attempt = 0; attempt < 2; ++attempt) {
    resp = send(command, &Counters::client_commands);
    if (!resp) return resp.error();
    auto rc = response_code(*resp);
    if (rc && *rc == TPM2_RC_CONTEXT_GAP && attempt == 0 && regap_oldest({h})) continue;
    break;
  }
  auto rc = response_code(*resp);
  if (!rc || *rc != TPM2_RC_SUCCESS) return resp;
  auto context = context_from_save_response(*resp);
  if (!context) return resp;  // never drop a response the TPM produced
  auto header = parse_context(*context);
  s = sessions_.find(h);
  s->resident = false;
  s->context = *context;
  s->sequence = header->sequence;
  s->client_token = *context;
  s->last_use = clock_;
  note_session_sequence(header->sequence);
  regap_if_near_gap({});
  return resp;
}

Result<Bytes> ResourceManager::load_for_client(Space& space, const ParsedCommand& cmd, ByteSpan command,
                                               Plan& plan) {
  ByteSpan blob = command.subspan(cmd.parameter_offset);
  auto header = parse_context(blob);
  if (cmd.tag == TPM2_ST_NO_SESSIONS && header && is_session(header->saved_handle)) {
    if (auto h = sessions_.find_by_token(blob)) {
      // A session some connection saved (possibly one that has closed since): holding the blob is the
      // capability, as with the kernel and tpm2-abrmd. The TPM is not involved; the RM still holds it.
      SessionEntry* s = sessions_.find(*h);
      if (s->owner != space.id) {
        if (auto refusal = check_quota(space, Creates::kSession)) return refuse(space, *refusal);
        if (s->owner) {
          if (Space* previous = find_space(*s->owner)) previous->sessions.erase(*h);
        }
        s->owner = space.id;
        space.sessions.insert(*h);
      }
      s->client_token.reset();
      s->last_use = clock_;
      return make_context_load_response(*h);
    }
    plan.creates = Creates::kSession;
  } else {
    plan.creates = Creates::kObject;
  }
  if (auto refusal = check_quota(space, plan.creates)) return refuse(space, *refusal);
  return run(space, cmd, command, plan);
}

std::optional<Bytes> ResourceManager::answer_handles_capability(const Space& space, const ParsedCommand& cmd,
                                                                ByteSpan command, Plan& plan) const {
  auto query = parse_capability_query(command.subspan(cmd.parameter_offset));
  if (!query) return std::nullopt;
  if (query->capability == TPM2_CAP_TPM_PROPERTIES) {
    plan.rewrite_properties = true;
    return std::nullopt;
  }
  if (query->capability != TPM2_CAP_HANDLES || !is_virtualised_handle_range(query->property)) {
    return std::nullopt;
  }
  std::vector<TPM2_HANDLE> remaining;
  if (is_transient(query->property)) {
    remaining = space.objects.handles_from(query->property);
  } else {
    // Loaded range: sessions the client can use; saved range: sessions it saved itself. HMAC and policy
    // sessions share one index space, which is what the TPM iterates.
    const bool loaded_range = handle_type(query->property) == TPM2_HT_LOADED_SESSION;
    for (TPM2_HANDLE h : space.sessions) {
      const SessionEntry* s = sessions_.find(h);
      if (!s || s->live() != loaded_range) continue;
      if (session_index(h) >= session_index(query->property)) remaining.push_back(h);
    }
    std::sort(remaining.begin(), remaining.end(),
              [](TPM2_HANDLE a, TPM2_HANDLE b) { return session_index(a) < session_index(b); });
  }
  return make_handles_response(remaining, query->count);
}

std::optional<ResourceManager::Failure> ResourceManager::make_resident(const Plan& plan) {
  std::size_t need_objects = plan.creates == Creates::kObject ? 1 : 0;
  for (ObjectId id : plan.objects) need_objects += objects_.find(id)->resident() ? 0 : 1;
  while (objects_.resident_count() + need_objects > object_capacity_ && evict_object(plan.objects)) {
  }
  std::size_t need_sessions = plan.creates == Creates::kSession ? 1 : 0;
  for (TPM2_HANDLE h : plan.sessions) need_sessions += sessions_.find(h)->resident ? 0 : 1;
  while (sessions_.resident_count() + need_sessions > session_capacity_ && evict_session(plan.sessions)) {
  }
  for (ObjectId id : plan.objects) {
    if (objects_.find(id)->resident()) continue;
    if (auto failure = load_object(id, plan)) return failure;
  }
  for (TPM2_HANDLE h : plan.sessions) {
    const SessionEntry* s = sessions_.find(h);
    if (!s) {
      return Failure{Refusal{EINVAL, kRmLayer | TPM2_RC_REFERENCE_S0,
                             fmt::format("session 0x{:08x} ended while making room", h)}};
    }
    if (s->resident) continue;
    if (auto failure = load_session(h, plan)) return failure;
  }
  return std::nullopt;
}

ResourceManager::LoadOutcome ResourceManager::send_context_load(ByteSpan context) {
  auto resp = send(make_context_load(context), &Counters::context_loads);
  if (!resp) return Failure{Refusal{resp.error().code, 0, resp.error().message}, true};
  auto rc = response_code(*resp);
  if (!rc) return Failure{Refusal{EIO, 0, rc.error().message}, true};
  if (*rc != TPM2_RC_SUCCESS) return LoadResult{*rc, 0};
  auto h = handle_from_response(*resp);
  if (!h) return Failure{Refusal{EIO, 0, h.error().message}, true};
  return LoadResult{TPM2_RC_SUCCESS, *h};
}

std::optional<ResourceManager::Failure> ResourceManager::load_object(ObjectId id, const Plan& plan) {
  const std::size_t bound = objects_.size() + 1;
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    ObjectEntry* o = objects_.find(id);
    auto loaded = send_context_load(o->context);
    if (auto* failure = std::get_if<Failure>(&loaded)) return *failure;
    const auto [rc, h] = std::get<LoadResult>(loaded);
    if (rc == TPM2_RC_SUCCESS) {
      o->physical = h;
      o->context_current = true;
      return std::nullopt;
    }
    if (is_object_memory(rc) && evict_object(plan.objects)) continue;
    const TPM2_HANDLE vh = o->vhandle;
    if (is_gone(rc)) {
      o->dead = true;
      return Failure{Refusal{EINVAL, kRmLayer | TPM2_RC_HANDLE | TPM2_RC_1,
                             fmt::format("the object behind 0x{:08x} can no longer be loaded (rc 0x{:x})", vh,
                                         rc)}};
    }
    return Failure{Refusal{EIO, kRmLayer | rc,
                           fmt::format("reloading the object behind 0x{:08x} failed with rc 0x{:x}", vh, rc)}};
  }
  return Failure{Refusal{0, kRmObjectMemory, "no TPM object slot could be freed"}};
}

std::optional<ResourceManager::Failure> ResourceManager::load_session(TPM2_HANDLE handle, const Plan& plan) {
  const std::size_t bound = sessions_.size() + 1;
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    SessionEntry* s = sessions_.find(handle);
    auto loaded = send_context_load(s->context);
    if (auto* failure = std::get_if<Failure>(&loaded)) return *failure;
    const auto [rc, h] = std::get<LoadResult>(loaded);
    if (rc == TPM2_RC_SUCCESS) {
      if (h != handle) {
        spdlog::error("rm: session 0x{:08x} reloaded as 0x{:08x}; flushing it", handle, h);
        send_flush(h);
        forget_session(handle);
        return Failure{Refusal{EIO, kRmLayer | TPM2_RC_REFERENCE_S0,
                               fmt::format("session 0x{:08x} came back under another handle", handle)}};
      }
      s->resident = true;
      return std::nullopt;
    }
    if (rc == TPM2_RC_SESSION_MEMORY && evict_session(plan.sessions)) continue;
    if (rc == TPM2_RC_CONTEXT_GAP && regap_oldest(plan.sessions)) continue;
    if (is_gone(rc)) {
      forget_session(handle);
      return Failure{Refusal{EINVAL, kRmLayer | TPM2_RC_REFERENCE_S0,
                             fmt::format("session 0x{:08x} can no longer be loaded (rc 0x{:x}) and was "
                                         "forgotten",
                                         handle, rc)}};
    }
    return Failure{Refusal{EIO, kRmLayer | rc,
                           fmt::format("reloading session 0x{:08x} failed with rc 0x{:x}", handle, rc)}};
  }
  return Failure{Refusal{0, kRmSessionMemory, "no TPM session slot could be freed"}};
}

bool ResourceManager::evict_object(const std::set<ObjectId>& pinned) {
  while (auto victim = objects_.lru_victim(pinned, clock_)) {
    ObjectEntry* o = objects_.find(*victim);
    const TPM2_HANDLE physical = *o->physical;
    if (!o->context_current) {
      auto resp = send(make_context_save(physical), &Counters::context_saves);
      if (!resp) return false;
      auto rc = response_code(*resp);
      if (rc && is_gone(*rc)) {
        // The TPM no longer has it (something ended it behind the RM's back): the slot is free anyway.
        o->physical.reset();
        o->dead = true;
        ++counters_.evictions;
        return true;
      }
      auto context = rc && *rc == TPM2_RC_SUCCESS ? context_from_save_response(*resp)
                                                  : Result<Bytes>(make_error(EIO, "save refused"));
      if (!context) {
        spdlog::warn("rm: cannot save object 0x{:08x} to evict it (rc 0x{:x})", physical, rc ? *rc : 0);
        o->unevictable_tick = clock_;
        continue;
      }
      o->context = std::move(*context);
      o->context_current = true;
    }
    auto resp = send(make_flush_context(physical), &Counters::flushes);
    if (!resp) return false;
    auto rc = response_code(*resp);
    if (rc && *rc != TPM2_RC_SUCCESS && !is_gone(*rc)) {
      o->unevictable_tick = clock_;
      continue;
    }
    o->physical.reset();
    ++counters_.evictions;
    return true;
  }
  return false;
}

ResourceManager::SaveOutcome ResourceManager::save_session(TPM2_HANDLE handle) {
  auto resp = send(make_context_save(handle), &Counters::context_saves);
  if (!resp) return SaveOutcome::kTransport;
  auto rc = response_code(*resp);
  if (!rc) return SaveOutcome::kTransport;
  if (*rc == TPM2_RC_CONTEXT_GAP) return SaveOutcome::kGap;
  if (is_gone(*rc)) return SaveOutcome::kGone;
  if (*rc != TPM2_RC_SUCCESS) return SaveOutcome::kFailed;
  auto context = context_from_save_response(*resp);
  if (!context) return SaveOutcome::kFailed;
  auto header = parse_context(*context);
  SessionEntry* s = sessions_.find(handle);
  s->resident = false;
  s->context = std::move(*context);
  s->sequence = header->sequence;
  note_session_sequence(header->sequence);
  return SaveOutcome::kSaved;
}

bool ResourceManager::evict_session(const std::set<TPM2_HANDLE>& pinned) {
  while (auto victim = sessions_.lru_victim(pinned, clock_)) {
    SaveOutcome outcome = save_session(*victim);
    if (outcome == SaveOutcome::kGap) {
      std::set<TPM2_HANDLE> keep = pinned;
      keep.insert(*victim);
      if (regap_oldest(keep)) outcome = save_session(*victim);
    }
    switch (outcome) {
      case SaveOutcome::kSaved:
        ++counters_.evictions;
        regap_if_near_gap(pinned);
        return true;
      case SaveOutcome::kGone:
        forget_session(*victim);
        return true;
      case SaveOutcome::kTransport:
        return false;
      case SaveOutcome::kGap:
      case SaveOutcome::kFailed:
        spdlog::warn("rm: cannot save session 0x{:08x} to evict it", *victim);
        sessions_.find(*victim)->unevictable_tick = clock_;
        break;
    }
  }
  return false;
}

void ResourceManager::note_session_sequence(std::uint64_t sequence) {
  last_sequence_ = std::max(last_sequence_, sequence);
}

void ResourceManager::regap_if_near_gap(const std::set<TPM2_HANDLE>& pinned) {
  if (options_.regap_margin == 0 || regapping_) return;
  const std::uint64_t gap_max = tpm_.info().context_gap_max;
  const std::uint64_t threshold = gap_max > options_.regap_margin ? gap_max - options_.regap_margin : gap_max / 2;
  regapping_ = true;
  for (std::size_t i = 0, n = sessions_.size(); i < n; ++i) {
    auto oldest = sessions_.oldest_saved();
    if (!oldest) break;
    const std::uint64_t seq = sessions_.find(*oldest)->sequence;
    if (last_sequence_ <= seq || last_sequence_ - seq < threshold) break;
    if (!regap(*oldest, pinned)) break;
  }
  regapping_ = false;
}

bool ResourceManager::regap_oldest(const std::set<TPM2_HANDLE>& pinned) {
  auto oldest = sessions_.oldest_saved();
  if (!oldest) return false;
  const bool was = regapping_;
  regapping_ = true;
  bool ok = regap(*oldest, pinned);
  regapping_ = was;
  return ok;
}

bool ResourceManager::regap(TPM2_HANDLE handle, const std::set<TPM2_HANDLE>& pinned) {
  // Loading needs a free session slot; evicting for it is an ordinary (non-regapping) save.
  if (sessions_.resident_count() >= session_capacity_) {
    std::set<TPM2_HANDLE> keep = pinned;
    keep.insert(handle);
    auto victim = sessions_.lru_victim(keep, clock_);
    if (!victim) return false;
    SaveOutcome outcome = save_session(*victim);
    if (outcome == SaveOutcome::kGone) {
      forget_session(*victim);
    } else if (outcome != SaveOutcome::kSaved) {
      return false;
    } else {
      ++counters_.evictions;
    }
  }
  SessionEntry* s = sessions_.find(handle);
  auto resp = send(make_context_load(s->context), &Counters::context_loads);
  if (!resp) return false;
  auto rc = response_code(*resp);
  if (!rc) return false;
  if (*rc != TPM2_RC_SUCCESS) {
    if (!is_gone(*rc)) return false;
    spdlog::warn("rm: saved session 0x{:08x} was lost before it could be re-gapped (rc 0x{:x})", handle, *rc);
    forget_session(handle);
    return true;
  }
  s->resident = true;
  ++counters_.regaps;
  // Leaving it loaded would also take it out of the gap; saving it again keeps the slot free for the command.
  if (save_session(handle) == SaveOutcome::kGone) forget_session(handle);
  return true;
}

bool ResourceManager::flush_oldest_abandoned() {
  auto abandoned = sessions_.abandoned_oldest_first();
  if (abandoned.empty()) return false;
  spdlog::info("rm: flushing abandoned session 0x{:08x}", abandoned.front());
  send_flush(abandoned.front());
  sessions_.erase(abandoned.front());
  return true;
}

void ResourceManager::enforce_abandoned_bound() {
  while (sessions_.abandoned_count() > options_.max_abandoned_sessions && flush_oldest_abandoned()) {
  }
}

void ResourceManager::erase_object(ObjectId id) {
  ObjectEntry* o = objects_.find(id);
  if (!o) return;
  if (Space* space = find_space(o->owner)) space->objects.erase(o->vhandle);
  objects_.erase(id);
}

void ResourceManager::forget_session(TPM2_HANDLE handle) {
  SessionEntry* s = sessions_.find(handle);
  if (!s) return;
  if (s->owner) {
    if (Space* space = find_space(*s->owner)) space->sessions.erase(handle);
  }
  sessions_.erase(handle);
}

void ResourceManager::close(ConnectionId id) {
  Space* space = find_space(id);
  if (!space) return;
  const bool tpm_up = tpm_.available();
  for (const auto& [vh, oid] : space->objects.entries()) {
    const ObjectEntry* o = objects_.find(oid);
    if (o && o->resident() && tpm_up) send_flush(*o->physical);
    objects_.erase(oid);
  }
  for (TPM2_HANDLE h : space->sessions) {
    SessionEntry* s = sessions_.find(h);
    if (!s) continue;
    if (s->client_saved()) {
      s->owner.reset();
      s->abandoned_at = ++clock_;
      continue;
    }
    if (tpm_up) send_flush(h);
    sessions_.erase(h);
  }
  spaces_.erase(id);
  if (tpm_up) enforce_abandoned_bound();
}

void ResourceManager::shutdown() {
  while (!spaces_.empty()) close(spaces_.begin()->first);
  const bool tpm_up = tpm_.available();
  for (TPM2_HANDLE h : sessions_.abandoned_oldest_first()) {
    if (tpm_up) send_flush(h);
    sessions_.erase(h);
  }
}

Counters ResourceManager::counters() const {
  Counters out = counters_;
  out.connections_open = spaces_.size();
  for (const auto& [id, space] : spaces_) {
    ConnectionCounters c = space.counters;
    c.objects = static_cast<std::uint32_t>(space.objects.size());
    c.sessions = static_cast<std::uint32_t>(space.sessions.size());
    out.per_connection.emplace(id, c);
  }
  return out;
}

}  // namespace tpmrmd::rm

#include "rm/resource_manager.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "rm/capability_view.h"
#include "rm/handles.h"
#include "tpm/commands.h"
#include "tpm/endian.h"
#include "tpm/cc_names.h"
#include "tpm/header.h"
#include "tpm/rc_names.h"
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
// What a TPM answers to a ContextLoad of a session context that was loaded already: TPM_RC_HANDLE, parameter 1.
constexpr TPM2_RC kSecondContextLoad = TPM2_RC_HANDLE | TPM2_RC_P | TPM2_RC_1;

// What goes to the TPM for `plan`. GetCapability(TPM_PROPERTIES) loses its sessions: the answer is rewritten
// to the connection's view, which a response HMAC would forbid, and an audited raw answer would show the
// TPM's own resource counts, which describe every connection (as the RM's answers to HANDLES, it comes back
// without sessions).
Bytes tpm_command(const Plan& plan, ByteSpan command) {
  if (plan.rewrite_properties && plan.cmd.tag == TPM2_ST_SESSIONS) {
    return tpm::build_command(TPM2_CC_GetCapability, {}, {}, command.subspan(plan.cmd.parameter_offset));
  }
  return Bytes(command.begin(), command.end());
}

// Whether the command's success ends something it names: the transients of a TPMA_CC.flushed command, what a
// FlushContext names, and the sessions (sent to the TPM) whose continueSession is clear.
bool ends_what_it_names(const Plan& plan, bool sessions_sent) {
  const ParsedCommand& cmd = plan.cmd;
  if (cmd.code == TPM2_CC_FlushContext || (cmd.attributes.flushes() && !plan.pins.objects.empty())) return true;
  return sessions_sent && std::any_of(cmd.auths.begin(), cmd.auths.end(), [](const AuthEntry& auth) {
           return is_session(auth.handle) && !auth.continue_session();
         });
}

}  // namespace

ResourceManager::ResourceManager(TpmPort& tpm, RmOptions options)
    : tpm_(tpm), options_(options), residency_(tpm, options_, counters_), audit_(options_.audit),
      refusal_warnings_(options_.refusal_warnings),
      admission_(options_, residency_, spaces_, uid_connections_, tpm.info().active_sessions_max, audit_) {
  if (auto taken = residency_.take_over(options_.leftovers); !taken) {
    // The first command will find the same trouble; the RM is no worse off than without the check.
    spdlog::warn("event=leftovers-unread error=\"{}\"", log_quoted(taken.error().message));
  }
}

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
  space.counters.opened_at = std::chrono::system_clock::now();
  ++counters_.connections_opened;
  spaces_.emplace(id, std::move(space));
  uid_connections_[client.uid].insert(id);
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("event=open conn={} uid={} gid={} pid={} comm=\"{}\"", id, client.uid, client.gid, client.pid,
                  log_quoted(client.comm));
  }
  return {};
}

Space* ResourceManager::find_space(ConnectionId id) {
  auto it = spaces_.find(id);
  return it == spaces_.end() ? nullptr : &it->second;
}

Result<Bytes> ResourceManager::answer(Space& space, const RmError& error) {
  if (error.kind == RmError::Kind::kTransport) return make_error(error.error, error.message);
  ++space.counters.refusals;
  ++counters_.refusals;
  ++counters_.refusals_by_reason[static_cast<std::size_t>(refusal_reason(error.rc))];
  // Hitting a limit is worth an operator's attention (who, and which limit); other refusals are the client's bug.
  const bool limit = error.rc == kRmObjectMemory || error.rc == kRmSessionMemory;
  // Those warnings come in floods when a client loops on its limit: at most one per uid and interval, with the
  // count since the last.
  const auto line = [&](spdlog::level::level_enum level, std::string_view extra) {
    // Refusals come at the client's pace; their arguments (quoted strings, rc names) cost allocations.
    if (!spdlog::should_log(level)) return;
    spdlog::log(level, "event=refused conn={} uid={} pid={} comm=\"{}\" rc=\"{}\" errno={} reason=\"{}\"{}", space.id,
                space.client.uid, space.client.pid, log_quoted(space.client.comm), tpm::rc_name(error.rc),
                error.error, log_quoted(error.message), extra);
  };
  if (!limit) {
    line(spdlog::level::debug, "");
  } else if (const auto w = refusal_warnings_.record(space.client.uid, std::chrono::steady_clock::now()); w.log) {
    line(spdlog::level::warn, fmt::format(" refusals={} suppressed_warnings={}", w.since_last, w.suppressed));
  }
  if (error.kind == RmError::Kind::kAnswered || options_.rc_mode) return tpm::make_rc_response(error.rc);
  return make_error(error.error, error.message);
}

Result<Bytes> ResourceManager::execute(ConnectionId id, ByteSpan command) {
  Space* space = find_space(id);
  if (!space) return make_error(EBADF, fmt::format("connection {} is not open", id));
  const auto start = std::chrono::steady_clock::now();
  const std::uint64_t refusals = space->counters.refusals;
  Result<Bytes> result = execute_command(*space, command);
  // execute_command never closes a space, so `space` is still the connection's.
  account(*space, command, result, space->counters.refusals != refusals, std::chrono::steady_clock::now() - start);
  return result;
}

void ResourceManager::account(Space& space, ByteSpan command, const Result<Bytes>& result, bool refused,
                              std::chrono::nanoseconds took) {
  ConnectionCounters& c = space.counters;
  const std::uint32_t cc = command.size() >= 10 ? tpm::load_u32(command, 6) : 0;
  c.last_cc = cc;
  c.last_rc = 0;
  c.last_errno = 0;
  RcClass rc_class = refused ? RcClass::kRefusal : RcClass::kError;
  if (result) {
    auto rc = tpm::response_code(*result);
    c.last_rc = rc ? *rc : 0;
    if (!refused && rc) rc_class = classify_rc(*rc);
  } else {
    c.last_errno = result.error().code;
  }
  // A map node the first time a code is seen; a lookup among the few dozen codes clients use after that.
  ++counters_.by_command[cc][static_cast<std::size_t>(rc_class)];
  c.tpm_time += took;
  counters_.tpm_time.observe(took);
}

Result<Bytes> ResourceManager::execute_command(Space& space_ref, ByteSpan command) {
  Space* space = &space_ref;
  ++space->counters.commands;
  if (!tpm_.available()) return make_error(ENODEV, "TPM backend is gone");
  residency_.tick();
  if (residency_.unverified()) {
    // An earlier command's outcome went unseen: nothing is sent for anyone until the picture is the TPM's.
    if (auto reconciled = residency_.reconcile(); !reconciled) return answer(*space, reconciled.error());
  }

  auto plan = admission_.admit(*space, command, tpm_.info().commands);
  if (!plan) return answer(*space, plan.error());
  switch (plan->route) {
    case Route::kTpm:
      return audited(*space, *plan, run(*space, *plan, command));
    case Route::kFlush:
      return flush_for_client(*plan, command);
    case Route::kSaveSession:
      return save_session_for_client(*plan, command);
    case Route::kLoadContext:
      return load_for_client(*space, *plan, command);
    case Route::kHandlesCapability:
      return admission_.answer_handles(*space, plan->query);
    case Route::kPowerCycle:
      // One client must not shut the TPM down (or leave it unorderly) for every other; the daemon sends its own
      // Shutdown when it stops. Answered as the started TPM answers a Startup, and as a Shutdown succeeds.
      return plan->cmd.code == TPM2_CC_Startup ? tpm::make_rc_response(TPM2_RC_INITIALIZE)
                                               : tpm::make_success_response();
  }
  return make_error(EINVAL, "unroutable command");
}

Result<Bytes> ResourceManager::audited(const Space& space, const Plan& plan, Result<Bytes> result) {
  if (is_privileged(plan.cmd.code)) audit_.ran(space.id, space.client, plan.caller, plan.cmd.code, result);
  return result;
}

Result<Bytes> ResourceManager::run(Space& space, const Plan& plan, ByteSpan command) {
  Bytes out = tpm_command(plan, command);
  const std::size_t bound = residency_.objects().size() + residency_.sessions().size() + 2;
  bool regapped = false;
  Bytes response;
  const tpm::CommandAttributes attributes = plan.cmd.attributes;
  if (attributes.extensive() || (attributes.flushes() && plan.pins.objects.empty())) {
    // The TPM may flush transients the command does not name (a hierarchy disabled, a proof changed). Saved
    // contexts of the lost objects then fail to load cleanly; a slot the RM still believed occupied would
    // instead be handed to someone else while the RM maps the old owner's handle to it.
    if (auto evicted = residency_.evict_all_but(plan.pins); !evicted) return answer(space, evicted.error());
  }
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    if (residency_.unverified()) {
      if (auto reconciled = residency_.reconcile(); !reconciled) return answer(space, reconciled.error());
    }
    if (auto resident = residency_.make_resident(plan.pins, plan.creates); !resident) {
      return answer(space, resident.error());
    }
    // The RM's own traffic for it went unseen: what is resident is not known until reconciled again.
    if (residency_.unverified()) continue;
    for (const auto& [index, id] : plan.object_refs) {
      tpm::store_u32(out, ParsedCommand::handle_offset(index), *residency_.objects().find(id)->physical);
    }
    auto resp = residency_.send(out, &Counters::client_commands);
    if (!resp) return resp.error();
    response = std::move(*resp);
    auto rc = tpm::response_code(response);
    if (!rc) return rc.error();
    if (!residency_.relieve(*rc, plan.pins, regapped)) break;
  }
  if (response.empty()) {
    return answer(space, RmError::refused(EIO, kRmLayer | TPM2_RC_RETRY, "the TPM's state could not be settled"));
  }
  for (ObjectId id : plan.pins.objects) {
    if (ObjectEntry* o = residency_.objects().find(id)) o->last_use = residency_.now();
  }
  for (TPM2_HANDLE h : plan.pins.sessions) {
    if (SessionEntry* s = residency_.sessions().find(h)) s->last_use = residency_.now();
  }
  if (auto mapped = map_response(space, plan, command, response); !mapped) return answer(space, mapped.error());
  return response;
}

RmResult<void> ResourceManager::map_response(Space& space, const Plan& plan, ByteSpan command, Bytes& response) {
  auto rc = tpm::response_code(response);
  const ParsedCommand& cmd = plan.cmd;
  // GetCapability(TPM_PROPERTIES) went to the TPM without its sessions (tpm_command), so the TPM ended none of
  // them: the RM ends those the client asked to end, or they would stay in the TPM owned by nobody.
  const bool sessions_sent = !(plan.rewrite_properties && cmd.tag == TPM2_ST_SESSIONS);
  if (!rc || *rc != TPM2_RC_SUCCESS) {
    if (rc && ends_what_it_names(plan, sessions_sent)) ending_refused(cmd.code);
    return {};
  }
  if (cmd.attributes.flushes() || cmd.code == TPM2_CC_FlushContext) {
    // TPMA_CC.flushed: the TPM ended every transient the command named (e.g. SequenceComplete). A FlushContext
    // gets here only in a form the RM does not answer itself (a sessions tag, trailing bytes); a TPM that
    // accepted it ended what it named all the same.
    for (ObjectId id : plan.pins.objects) erase_object(id);
    if (cmd.code == TPM2_CC_FlushContext) {
      for (TPM2_HANDLE h : cmd.handles) {
        if (is_session(h)) residency_.sessions().erase(h);
      }
    }
  } else {
    for (ObjectId id : plan.pins.objects) {
      ObjectEntry* o = residency_.objects().find(id);
      if (!o) continue;
      auto header = tpm::parse_context(o->context);
      if (!header || header->saved_handle == kSequenceObjectMarker) o->context_current = false;
    }
  }
  if (cmd.code == TPM2_CC_ContextSave && !cmd.handles.empty() && is_session(cmd.handles[0])) {
    // Not the RM's own route either (see above): the session is now saved, and this is its context.
    auto context = tpm::context_from_save_response(response);
    if (context && tpm::parse_context(*context)) {
      residency_.record_client_save(cmd.handles[0], std::move(*context));
    } else {
      residency_.mark_unverified("a ContextSave of a session answered success without a context");
    }
  }
  for (const AuthEntry& auth : cmd.auths) {
    // continueSession clear: the TPM ended the session with this successful command.
    if (is_session(auth.handle) && !auth.continue_session()) {
      if (sessions_sent) {
        residency_.sessions().erase(auth.handle);
      } else {
        residency_.release_session(auth.handle, true);
      }
    }
  }
  if (cmd.attributes.returns_handle()) {
    if (auto mapped = map_new_handle(space, plan, command, response); !mapped) return mapped;
  }
  if (plan.rewrite_properties) {
    rewrite_properties(response, [&](TPM2_PT p) { return admission_.virtual_property(space, p); });
  }
  return {};
}

RmResult<void> ResourceManager::map_new_handle(Space& space, const Plan& plan, ByteSpan command, Bytes& response) {
  const ParsedCommand& cmd = plan.cmd;
  ObjectTable& objects = residency_.objects();
  if (response.size() < tpm::kHeaderSize + 4) {
    // Whatever the TPM created is out of the RM's sight: finding and flushing it is reconciliation's job.
    residency_.mark_unverified(fmt::format("a successful 0x{:x} came without the handle it creates", cmd.code));
    return RmError::refused(EIO, kRmLayer | TPM2_RC_FAILURE,
                            fmt::format("the TPM's response to 0x{:x} is too short to hold its handle", cmd.code));
  }
  const TPM2_HANDLE h = tpm::load_u32(response, tpm::kHeaderSize);
  const bool wants_session = plan.creates == Creates::kSession;
  if (wants_session ? !is_session(h) : !is_transient(h)) {
    // Handing it on would give the client a handle the RM does not manage (or another range's object).
    spdlog::error("event=created-handle-wrong-type conn={} cc=0x{:08x} command={} handle=0x{:08x} expected={} "
                  "action=flush",
                  space.id, cmd.code, tpm::cc_label(cmd.code), h, wants_session ? "session" : "transient");
    if ((is_transient(h) && !residency_.objects().find_physical(h)) || (is_session(h) && !residency_.sessions().find(h))) {
      residency_.flush(h);
    }
    // What it really created may sit under another handle.
    residency_.mark_unverified("a created handle of the wrong type");
    return RmError::refused(EIO, kRmLayer | TPM2_RC_FAILURE,
                            fmt::format("the TPM answered 0x{:x} with a handle of the wrong type", cmd.code));
  }
  if (is_transient(h)) {
    ObjectEntry entry;
    entry.owner = space.id;
    entry.last_use = residency_.now();
    if (cmd.code == TPM2_CC_ContextLoad) {
      // The client's blob is exactly what is now loaded, so evicting it needs no ContextSave.
      entry.context.assign(command.begin() + static_cast<std::ptrdiff_t>(cmd.parameter_offset), command.end());
      entry.context_current = tpm::parse_context(entry.context).has_value();
    }
    ObjectId id = objects.add(std::move(entry));
    residency_.place(id, h);
    auto vh = space.objects.allocate(id);
    if (!vh) {
      // Unreachable with any sane object limit; keep the TPM clean and say so rather than abort.
      spdlog::error("event=no-virtual-handle conn={} handle=0x{:08x} action=flush", space.id, h);
      residency_.flush(h);
      objects.erase(id);
      return RmError::answered(kRmObjectMemory, "no free virtual handle");
    }
    objects.find(id)->vhandle = *vh;
    tpm::store_u32(response, tpm::kHeaderSize, *vh);
    return {};
  }
  if (auto stale = residency_.sessions().find_slot(h)) {
    // The TPM hands out free slots only: the entry was stale (its session ended behind the RM). By slot, not by
    // handle: a policy session in the slot an HMAC session had left would otherwise stand beside that entry, and
    // a reconciliation could not tell the two apart.
    const SessionEntry* old = residency_.sessions().find(*stale);
    ++counters_.physical_collisions;
    spdlog::error("event=session-collision conn={} session=0x{:08x} stale_session=0x{:08x} stale_owner={} "
                  "action=drop-stale",
                  space.id, h, *stale, old->owner ? std::to_string(*old->owner) : std::string("abandoned"));
    residency_.sessions().erase(*stale);
    residency_.mark_unverified("a session slot the RM believed in use was handed out");
  }
  SessionEntry entry;
  entry.owner = space.id;
  entry.resident = true;
  entry.last_use = residency_.now();
  residency_.sessions().put(h, std::move(entry));
  return {};
}

Result<Bytes> ResourceManager::flush_for_client(const Plan& plan, ByteSpan command) {
  const TPM2_HANDLE h = plan.cmd.handles[0];
  if (is_transient(h)) {
    const ObjectId id = *plan.pins.objects.begin();
    ObjectEntry* o = residency_.objects().find(id);
    if (!o->resident()) {
      // Saved or dead: the TPM holds nothing for it; dropping the RM's blob is the whole flush.
      erase_object(id);
      return tpm::make_success_response();
    }
    Bytes out(command.begin(), command.end());
    tpm::store_u32(out, ParsedCommand::handle_offset(0), *o->physical);
    auto resp = residency_.send(out, &Counters::client_commands);
    if (!resp) return resp.error();
    auto rc = tpm::response_code(*resp);
    if (rc && (*rc == TPM2_RC_SUCCESS || is_gone(*rc))) {
      // Gone: the slot was emptied behind the RM, and a mapping left on it would reach whatever lands there.
      erase_object(id);
      if (*rc != TPM2_RC_SUCCESS) return tpm::make_success_response();  // flushed either way
    }
    if (rc && *rc != TPM2_RC_SUCCESS) ending_refused(TPM2_CC_FlushContext);
    return resp;
  }

  // A session, live or client-saved, of this connection: the TPM flushes loaded and saved sessions alike.
  auto resp = residency_.send(command, &Counters::client_commands);
  if (!resp) return resp.error();
  auto rc = tpm::response_code(*resp);
  if (rc && (*rc == TPM2_RC_SUCCESS || is_gone(*rc))) {
    residency_.sessions().erase(h);
    if (*rc != TPM2_RC_SUCCESS) return tpm::make_success_response();  // it was already gone: flushed either way
  }
  if (rc && *rc != TPM2_RC_SUCCESS) ending_refused(TPM2_CC_FlushContext);
  return resp;
}

void ResourceManager::ending_refused(TPM2_CC code) {
  // A TPM fails such a command without ending anything. One that ended a session or object all the same and
  // answered an error would leave the RM an entry (or a session token it answers itself) on a handle the TPM
  // hands out next: so the next command, anyone's, first compares the tables with the TPM's. Failures are rare;
  // one such check each is cheap.
  residency_.mark_unverified(fmt::format("a failed 0x{:x} named what its success would have ended", code),
                             spdlog::level::debug);
}

Result<Bytes> ResourceManager::save_session_for_client(const Plan& plan, ByteSpan command) {
  const TPM2_HANDLE h = plan.cmd.handles[0];
  SessionEntry* s = residency_.sessions().find(h);
  if (!s->resident) {
    // Already saved by the RM: that context is as good as a fresh one and costs the TPM nothing.
    s->client_token = s->context;
    return tpm::make_context_save_response(s->context);
  }
  // Each re-gap frees the oldest saved session from the gap; several saved sessions can be stranded at once,
  // so keep going while re-gapping makes progress, at most once per saved session.
  Result<Bytes> resp = make_error(EIO, "unreachable");
  const std::size_t bound = residency_.sessions().size() + 1;
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    resp = residency_.send(command, &Counters::client_commands);
    if (!resp) return resp.error();
    auto rc = tpm::response_code(*resp);
    if (rc && *rc == TPM2_RC_CONTEXT_GAP && residency_.regap_oldest({h})) continue;
    break;
  }
  auto rc = tpm::response_code(*resp);
  if (!rc || *rc != TPM2_RC_SUCCESS) return resp;
  auto context = tpm::context_from_save_response(*resp);
  if (!context || !tpm::parse_context(*context)) return resp;  // never drop a response the TPM produced
  residency_.record_client_save(h, std::move(*context));
  return resp;
}

Result<Bytes> ResourceManager::load_for_client(Space& space, Plan& plan, ByteSpan command) {
  const ParsedCommand& cmd = plan.cmd;
  ByteSpan blob = command.subspan(cmd.parameter_offset);
  auto header = tpm::parse_context(blob);
  SessionTable& sessions = residency_.sessions();
  if (cmd.tag == TPM2_ST_NO_SESSIONS && header && is_session(header->saved_handle)) {
    if (auto h = sessions.find_by_token(blob)) {
      // A session some connection saved (possibly one that has closed since): holding the blob is the
      // capability, as with the kernel and tpm2-abrmd. The TPM is not involved; the RM still holds it.
      if (sessions.find(*h)->owner != space.id) {
        if (auto quota = admission_.check_quota(space, Creates::kSession); !quota) {
          return answer(space, quota.error());
        }
        sessions.set_owner(*h, space.id);
      }
      SessionEntry* s = sessions.find(*h);
      s->client_token.reset();
      s->last_use = residency_.now();
      return tpm::make_context_load_response(*h);
    }
    if (sessions.find(header->saved_handle)) {
      // A context of a session the RM manages that is no (longer a) token: claimed already, or an older save.
      // Sent on, the TPM might load it (the RM may hold that very context) and hand the session to a second
      // owner; a bare TPM refuses a second load of one saved context, and so does the RM.
      return answer(space, RmError::answered(kSecondContextLoad,
                                             fmt::format("session 0x{:08x} was already loaded from this context",
                                                         header->saved_handle)));
    }
    plan.creates = Creates::kSession;
  } else {
    plan.creates = Creates::kObject;
  }
  if (auto quota = admission_.check_quota(space, plan.creates); !quota) return answer(space, quota.error());
  return run(space, plan, command);
}

void ResourceManager::erase_object(ObjectId id) {
  ObjectEntry* o = residency_.objects().find(id);
  if (!o) return;
  if (Space* space = find_space(o->owner)) space->objects.erase(o->vhandle);
  residency_.objects().erase(id);
}

void ResourceManager::close(ConnectionId id) {
  Space* space = find_space(id);
  if (!space) return;
  const bool tpm_up = tpm_.available();
  const std::size_t objects = space->objects.size();
  for (const auto& [vh, oid] : space->objects.entries()) residency_.release_object(oid, tpm_up);
  const std::vector<TPM2_HANDLE> owned(residency_.sessions().owned(id).begin(),
                                       residency_.sessions().owned(id).end());
  std::size_t kept = 0;
  for (TPM2_HANDLE h : owned) {
    const SessionEntry* s = residency_.sessions().find(h);
    kept += s && s->client_saved() ? 1 : 0;
    residency_.release_session(h, tpm_up);
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug(
        "event=close conn={} uid={} pid={} comm=\"{}\" commands={} refusals={} objects_flushed={} sessions_flushed={} "
        "sessions_kept={} tpm={}",
        id, space->client.uid, space->client.pid, log_quoted(space->client.comm), space->counters.commands,
        space->counters.refusals, objects, owned.size() - kept, kept, tpm_up ? "up" : "gone");
  }
  if (auto it = uid_connections_.find(space->client.uid); it != uid_connections_.end()) {
    it->second.erase(id);
    if (it->second.empty()) uid_connections_.erase(it);
  }
  spaces_.erase(id);
  if (!tpm_up) return;
  residency_.enforce_abandoned_bound();
  // What an unseen outcome left in the TPM must not outlive the connections that could have caused it.
  if (residency_.unverified()) (void)residency_.reconcile();
}

void ResourceManager::shutdown() {
  while (!spaces_.empty()) close(spaces_.begin()->first);
  residency_.flush_abandoned(tpm_.available());
}

Counters ResourceManager::counters() const {
  Counters out = counters_;
  out.connections_open = spaces_.size();
  for (const auto& [id, space] : spaces_) {
    ConnectionCounters c = space.counters;
    c.objects = static_cast<std::uint32_t>(space.objects.size());
    c.sessions = static_cast<std::uint32_t>(residency_.sessions().owned(id).size());
    c.pid = space.client.pid;
    c.uid = space.client.uid;
    c.comm = space.client.comm;
    out.per_connection.emplace(id, std::move(c));
  }
  return out;
}

Snapshot ResourceManager::snapshot() const {
  Snapshot out;
  out.counters = counters();
  const tpm::TpmInfo& info = tpm_.info();
  out.tpm = TpmIdentity{info.manufacturer, info.vendor_string, info.firmware_version, info.family, info.revision};
  SlotUse& slots = out.slots;
  const auto u32 = [](std::size_t n) { return static_cast<std::uint32_t>(n); };
  slots.objects_resident = u32(residency_.objects().resident_count());
  slots.objects_total = u32(residency_.objects().size());
  slots.object_slots = u32(residency_.object_capacity());
  slots.tpm_object_slots = info.hr_transient_min;
  slots.sessions_resident = u32(residency_.sessions().resident_count());
  slots.sessions_total = u32(residency_.sessions().size());
  slots.sessions_saved = slots.sessions_total - slots.sessions_resident;
  slots.sessions_abandoned = u32(residency_.sessions().abandoned_count());
  slots.session_slots = u32(residency_.session_capacity());
  slots.tpm_session_slots = info.hr_loaded_min;
  slots.active_sessions_max = info.active_sessions_max;
  slots.context_gap_max = info.context_gap_max;
  if (auto oldest = residency_.sessions().oldest_saved()) {
    const SessionEntry* s = residency_.sessions().find(*oldest);
    if (s && residency_.last_sequence() >= s->sequence) slots.context_gap = residency_.last_sequence() - s->sequence;
  }
  out.policy = options_.policy.describe();
  return out;
}

std::size_t ResourceManager::flush_abandoned() {
  const std::size_t before = residency_.sessions().abandoned_count();
  residency_.flush_abandoned(tpm_.available());
  return before - residency_.sessions().abandoned_count();
}

}  // namespace tpmrmd::rm

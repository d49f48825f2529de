#include "rm/residency.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "rm/audit_log.h"
#include "tpm/commands.h"
#include "tpm/endian.h"
#include "tpm/header.h"
#include "tpm/rc_names.h"
#include "tpm/responses.h"

namespace tpmrmd::rm {
namespace {

bool is_object_memory(TPM2_RC rc) {
  return rc == TPM2_RC_OBJECT_MEMORY || rc == TPM2_RC_OBJECT_HANDLES || rc == TPM2_RC_MEMORY;
}

}  // namespace

bool is_gone(TPM2_RC rc) {
  const TPM2_RC base = tpm::rc_base(rc);
  return (rc >= TPM2_RC_REFERENCE_H0 && rc <= TPM2_RC_REFERENCE_H0 + 6) || base == TPM2_RC_HANDLE ||
         base == TPM2_RC_INTEGRITY;
}

Residency::Residency(TpmPort& tpm, const RmOptions& options, Counters& counters)
    : tpm_(tpm),
      options_(options),
      counters_(counters),
      storm_warnings_(options.eviction_storm),
      regap_warnings_(options.regap_warnings) {
  plan_capacity();
}

void Residency::plan_capacity() {
  const auto remaining = [](std::size_t slots, std::size_t foreign, std::size_t reserve) {
    return std::max<std::size_t>(1, slots > foreign + reserve ? slots - foreign - reserve : 0);
  };
  object_capacity_ = remaining(tpm_.info().hr_transient_min, foreign_.objects.size(), options_.reserve_object_slots);
  session_capacity_ =
      remaining(tpm_.info().hr_loaded_min, foreign_.loaded_sessions.size(), options_.reserve_session_slots);
}

Result<Bytes> Residency::send(ByteSpan command, std::uint64_t Counters::*counter) {
  ++(counters_.*counter);
  auto response = tpm_.transmit(command);
  const TPM2_CC code = command.size() >= 10 ? tpm::load_u32(command, 6) : 0u;
  if (!response) {
    // E2BIG is the chip's refusal to send at all; ENODEV ends the generation: neither leaves anything unknown.
    if (response.error().code != E2BIG && tpm_.available()) {
      mark_unverified(fmt::format("command 0x{:x} failed after it was sent: {}", code, describe(response.error())));
    }
    return response;
  }
  // A response whose size field disagrees with its length, or whose tag no TPM sends (TPM_ST_RSP_COMMAND is a
  // TPM's answer to a command with a bad tag), is no response: nothing is read from it, and the client gets
  // an errno rather than bytes no TPM would send. The command may have run all the same.
  auto header = tpm::parse_response_header(*response);
  if (!header || header->size != response->size() ||
      (header->tag != TPM2_ST_NO_SESSIONS && header->tag != TPM2_ST_SESSIONS && header->tag != TPM2_ST_RSP_COMMAND)) {
    auto error = make_error(EIO, fmt::format("malformed TPM response ({} bytes, size field {}, tag 0x{:04x})",
                                             response->size(), header ? header->size : 0, header ? header->tag : 0));
    mark_unverified(fmt::format("command 0x{:x} got a {}", code, error.message));
    return error;
  }
  return response;
}

void Residency::mark_unverified(std::string_view why, spdlog::level::level_enum level) {
  if (!unverified_) spdlog::log(level, "event=tpm-state-unverified reason=\"{}\"", log_quoted(why));
  unverified_ = true;
}

bool Residency::flush(TPM2_HANDLE handle) {
  auto resp = send(tpm::make_flush_context(handle), &Counters::flushes);
  if (!resp) return false;
  auto rc = tpm::response_code(*resp);
  if (!rc || *rc != TPM2_RC_SUCCESS) {
    spdlog::warn("event=flush-refused handle=0x{:08x} rc=\"{}\"", handle, rc ? tpm::rc_name(*rc) : "malformed response");
    // The RM flushes only what it believes the TPM holds: a refusal means its picture is off somewhere (and
    // whether the handle is gone is not known), so it is compared with the TPM's before anything else is sent.
    mark_unverified(fmt::format("FlushContext(0x{:08x}) was refused", handle));
    return false;
  }
  return true;
}

RmResult<void> Residency::evict_all_but(const Pins& pins) {
  std::size_t pinned_resident = 0;
  for (ObjectId id : pins.objects) pinned_resident += objects_.find(id)->resident() ? 1 : 0;
  while (objects_.resident_count() > pinned_resident) {
    if (!evict_object(pins.objects)) {
      return RmError::refused(EBUSY, kRmLayer | TPM2_RC_RETRY,
                              "an object could not be evicted before a command that may flush it");
    }
    ++counters_.drift_evictions;
  }
  return {};
}

void Residency::place(ObjectId id, TPM2_HANDLE physical) {
  const auto stale = objects_.set_physical(id, physical);
  if (!stale) return;
  ObjectEntry* old = objects_.find(*stale);
  // Only a context that describes the object as it was loaded may stand in for it; anything else (never
  // saved, a sequence object used since) is lost with the slot.
  if (!old->context_current || old->context.empty()) old->dead = true;
  ++counters_.physical_collisions;
  spdlog::error(
      "event=physical-collision conn={} handle=0x{:08x} stale_conn={} stale_vhandle=0x{:08x} stale_object={} "
      "detail=\"the TPM put an object where the RM believed another loaded; the stale mapping is dropped\"",
      objects_.find(id)->owner, physical, old->owner, old->vhandle, old->dead ? "lost" : "reloadable");
  // A slot emptied behind the RM is evidence that its picture is off elsewhere too.
  mark_unverified("a slot the RM believed occupied was handed out");
}

RmResult<void> Residency::make_resident(const Pins& pins, Creates creates) {
  // The command was admitted before the RM's last reconciliation: a session it names may be one the TPM turned
  // out not to have (forgotten then), an object one the RM no longer holds.
  for (TPM2_HANDLE h : pins.sessions) {
    if (!sessions_.find(h)) {
      return RmError::refused(EINVAL, kRmLayer | TPM2_RC_REFERENCE_S0,
                              fmt::format("session 0x{:08x} is no longer in the TPM", h));
    }
  }
  for (ObjectId id : pins.objects) {
    if (!objects_.find(id)) {
      return RmError::refused(EINVAL, kRmLayer | TPM2_RC_HANDLE | TPM2_RC_1, "the object is no longer in the TPM");
    }
  }
  std::size_t need_objects = creates == Creates::kObject ? 1 : 0;
  for (ObjectId id : pins.objects) need_objects += objects_.find(id)->resident() ? 0 : 1;
  while (objects_.resident_count() + need_objects > object_capacity_ && evict_object(pins.objects)) {
  }
  std::size_t need_sessions = creates == Creates::kSession ? 1 : 0;
  for (TPM2_HANDLE h : pins.sessions) need_sessions += sessions_.find(h)->resident ? 0 : 1;
  while (sessions_.resident_count() + need_sessions > session_capacity_ && evict_session(pins.sessions)) {
  }
  // A load can land in a slot the RM believed held another pinned object (a stale mapping, see place()):
  // that one is then no longer resident, so go round again. Each pass loads at least one object.
  for (std::size_t pass = 0; pass <= pins.objects.size(); ++pass) {
    bool all_resident = true;
    for (ObjectId id : pins.objects) {
      const ObjectEntry* o = objects_.find(id);
      if (o->resident()) continue;
      all_resident = false;
      if (o->dead) {
        return RmError::refused(EINVAL, kRmLayer | TPM2_RC_HANDLE | TPM2_RC_1,
                                fmt::format("the object behind 0x{:08x} was lost from the TPM", o->vhandle));
      }
      if (auto loaded = load_object(id, pins); !loaded) return loaded;
    }
    if (all_resident) break;
  }
  for (ObjectId id : pins.objects) {
    if (objects_.find(id)->resident()) continue;
    return RmError::refused(EIO, kRmLayer | TPM2_RC_HANDLE | TPM2_RC_1,
                            "the TPM keeps handing out slots the RM believed occupied");
  }
  for (TPM2_HANDLE h : pins.sessions) {
    const SessionEntry* s = sessions_.find(h);
    if (!s) {
      return RmError::refused(EINVAL, kRmLayer | TPM2_RC_REFERENCE_S0,
                              fmt::format("session 0x{:08x} ended while making room", h));
    }
    if (s->resident) continue;
    if (auto loaded = load_session(h, pins); !loaded) return loaded;
  }
  return {};
}

bool Residency::relieve(TPM2_RC rc, const Pins& pins, bool& regapped) {
  if (is_object_memory(rc) && evict_object(pins.objects)) return true;
  if (rc == TPM2_RC_MEMORY && evict_session(pins.sessions)) return true;  // object and session memory are shared
  if (rc == TPM2_RC_SESSION_MEMORY && evict_session(pins.sessions)) return true;
  if (rc == TPM2_RC_SESSION_HANDLES && flush_oldest_abandoned()) return true;
  if (rc == TPM2_RC_CONTEXT_GAP && !regapped) {
    regapped = true;
    return regap_oldest(pins.sessions);
  }
  return false;
}

RmResult<Residency::Loaded> Residency::send_context_load(ByteSpan context) {
  auto resp = send(tpm::make_context_load(context), &Counters::context_loads);
  if (!resp) return RmError::transport(resp.error());
  auto rc = tpm::response_code(*resp);
  if (!rc) return RmError::transport(rc.error());
  if (*rc != TPM2_RC_SUCCESS) return Loaded{*rc, 0};
  auto h = tpm::handle_from_response(*resp);
  if (!h) return RmError::transport(h.error());
  return Loaded{TPM2_RC_SUCCESS, *h};
}

RmResult<void> Residency::load_object(ObjectId id, const Pins& pins) {
  const std::size_t bound = objects_.size() + 1;
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    ObjectEntry* o = objects_.find(id);
    auto loaded = send_context_load(o->context);
    if (!loaded) return loaded.error();
    const auto [rc, h] = *loaded;
    if (rc == TPM2_RC_SUCCESS) {
      o->context_current = true;
      place(id, h);
      return {};
    }
    if (is_object_memory(rc) && evict_object(pins.objects)) continue;
    const TPM2_HANDLE vh = o->vhandle;
    if (tpm::rc_base(rc) == TPM2_RC_HIERARCHY) {
      // Its hierarchy is disabled. Disabling keeps the hierarchy's proof, so the context loads again once the
      // hierarchy is re-enabled: refuse, but keep the object.
      return RmError::refused(
          EINVAL, kRmLayer | TPM2_RC_HIERARCHY | TPM2_RC_1,
          fmt::format("the object behind 0x{:08x} is in a disabled hierarchy ({})", vh, tpm::rc_name(rc)));
    }
    if (is_gone(rc)) {
      o->dead = true;
      return RmError::refused(
          EINVAL, kRmLayer | TPM2_RC_HANDLE | TPM2_RC_1,
          fmt::format("the object behind 0x{:08x} can no longer be loaded ({})", vh, tpm::rc_name(rc)));
    }
    return RmError::refused(EIO, kRmLayer | rc,
                            fmt::format("reloading the object behind 0x{:08x} failed with {}", vh, tpm::rc_name(rc)));
  }
  return RmError::answered(kRmObjectMemory, "no TPM object slot could be freed");
}

RmResult<void> Residency::load_session(TPM2_HANDLE handle, const Pins& pins) {
  const std::size_t bound = sessions_.size() + 1;
  for (std::size_t attempt = 0; attempt < bound; ++attempt) {
    SessionEntry* s = sessions_.find(handle);
    if (!s) {
      // Making room re-gapped this very session (the oldest saved) and found it gone.
      return RmError::refused(EINVAL, kRmLayer | TPM2_RC_REFERENCE_S0,
                              fmt::format("session 0x{:08x} was lost while making room for it", handle));
    }
    auto loaded = send_context_load(s->context);
    if (!loaded) return loaded.error();
    const auto [rc, h] = *loaded;
    if (rc == TPM2_RC_SUCCESS) {
      if (h != handle) {
        spdlog::error("event=session-reloaded-elsewhere session=0x{:08x} handle=0x{:08x} action=flush", handle, h);
        flush(h);
        sessions_.erase(handle);
        return RmError::refused(EIO, kRmLayer | TPM2_RC_REFERENCE_S0,
                                fmt::format("session 0x{:08x} came back under another handle", handle));
      }
      s->resident = true;
      return {};
    }
    if (rc == TPM2_RC_SESSION_MEMORY && evict_session(pins.sessions)) continue;
    if (rc == TPM2_RC_CONTEXT_GAP && regap_oldest(pins.sessions)) continue;
    if (is_gone(rc)) {
      sessions_.erase(handle);
      return RmError::refused(
          EINVAL, kRmLayer | TPM2_RC_REFERENCE_S0,
          fmt::format("session 0x{:08x} can no longer be loaded ({}) and was forgotten", handle, tpm::rc_name(rc)));
    }
    return RmError::refused(EIO, kRmLayer | rc,
                            fmt::format("reloading session 0x{:08x} failed with {}", handle, tpm::rc_name(rc)));
  }
  return RmError::answered(kRmSessionMemory, "no TPM session slot could be freed");
}

bool Residency::evict_object(const std::set<ObjectId>& pinned) {
  while (auto victim = objects_.lru_victim(pinned, clock_)) {
    ObjectEntry* o = objects_.find(*victim);
    const TPM2_HANDLE physical = *o->physical;
    if (!o->context_current) {
      auto resp = send(tpm::make_context_save(physical), &Counters::context_saves);
      if (!resp) return false;
      auto rc = tpm::response_code(*resp);
      if (rc && is_gone(*rc)) {
        // The TPM no longer has it (something ended it behind the RM's back): the slot is free anyway.
        objects_.set_physical(*victim, std::nullopt);
        o->dead = true;
        note_eviction("object");
        return true;
      }
      auto context = rc && *rc == TPM2_RC_SUCCESS ? tpm::context_from_save_response(*resp)
                                                  : Result<Bytes>(make_error(EIO, "save refused"));
      if (!context) {
        spdlog::warn("event=evict-save-refused kind=object handle=0x{:08x} rc=\"{}\"", physical,
                     rc ? tpm::rc_name(*rc) : "malformed response");
        o->unevictable_tick = clock_;
        continue;
      }
      o->context = std::move(*context);
      o->context_current = true;
    }
    auto resp = send(tpm::make_flush_context(physical), &Counters::flushes);
    if (!resp) {
      // The answer is lost, not necessarily the flush: the TPM may hand the slot out next, and a mapping left
      // on it would reach whatever lands there. The context is current, so the object stays reloadable.
      objects_.set_physical(*victim, std::nullopt);
      return false;
    }
    auto rc = tpm::response_code(*resp);
    if (rc && *rc != TPM2_RC_SUCCESS && !is_gone(*rc)) {
      // Whether the slot is free is not known: if it is, the next object the TPM puts there would be taken
      // for this one, so the picture is compared with the TPM's before anything else is sent.
      o->unevictable_tick = clock_;
      mark_unverified(fmt::format("FlushContext(0x{:08x}) to evict was refused", physical));
      continue;
    }
    objects_.set_physical(*victim, std::nullopt);
    note_eviction("object");
    return true;
  }
  return false;
}

void Residency::store_saved_context(SessionEntry& session, Bytes context) {
  const std::uint64_t sequence = tpm::parse_context(context)->sequence;
  session.resident = false;
  session.context = std::move(context);
  session.sequence = sequence;
  last_sequence_ = std::max(last_sequence_, sequence);
}

RmResult<TPM2_RC> Residency::save_session(TPM2_HANDLE handle) {
  auto resp = send(tpm::make_context_save(handle), &Counters::context_saves);
  if (!resp) return RmError::transport(resp.error());
  auto rc = tpm::response_code(*resp);
  if (!rc) return RmError::transport(rc.error());
  if (*rc != TPM2_RC_SUCCESS) return *rc;
  auto context = tpm::context_from_save_response(*resp);
  if (!context || !tpm::parse_context(*context)) {
    return RmError::transport(make_error(EIO, fmt::format("malformed ContextSave response for 0x{:08x}", handle)));
  }
  store_saved_context(*sessions_.find(handle), std::move(*context));
  return TPM2_RC_SUCCESS;
}

bool Residency::evict_session(const std::set<TPM2_HANDLE>& pinned) {
  while (auto victim = sessions_.lru_victim(pinned, clock_)) {
    auto saved = save_session(*victim);
    if (saved && *saved == TPM2_RC_CONTEXT_GAP) {
      std::set<TPM2_HANDLE> keep = pinned;
      keep.insert(*victim);
      if (regap_oldest(keep)) saved = save_session(*victim);
    }
    if (!saved) return false;
    if (*saved == TPM2_RC_SUCCESS) {
      note_eviction("session");
      regap_if_near_gap(pinned);
      return true;
    }
    if (is_gone(*saved)) {
      sessions_.erase(*victim);
      return true;
    }
    spdlog::warn("event=evict-save-refused kind=session handle=0x{:08x} rc=\"{}\"", *victim, tpm::rc_name(*saved));
    sessions_.find(*victim)->unevictable_tick = clock_;
  }
  return false;
}

void Residency::record_client_save(TPM2_HANDLE handle, Bytes context) {
  SessionEntry* s = sessions_.find(handle);
  s->client_token = context;
  s->last_use = clock_;
  store_saved_context(*s, std::move(context));
  regap_if_near_gap({});
}

void Residency::regap_if_near_gap(const std::set<TPM2_HANDLE>& pinned) {
  if (options_.regap_margin == 0) return;
  const std::uint64_t gap_max = tpm_.info().context_gap_max;
  const std::uint64_t threshold = gap_max > options_.regap_margin ? gap_max - options_.regap_margin : gap_max / 2;
  for (std::size_t i = 0, n = sessions_.size(); i < n; ++i) {
    auto oldest = sessions_.oldest_saved();
    if (!oldest) break;
    const std::uint64_t seq = sessions_.find(*oldest)->sequence;
    if (last_sequence_ <= seq || last_sequence_ - seq < threshold) break;
    if (!regap(*oldest, pinned)) break;
  }
}

bool Residency::regap_oldest(const std::set<TPM2_HANDLE>& pinned) {
  auto oldest = sessions_.oldest_saved();
  return oldest && regap(*oldest, pinned);
}

bool Residency::regap(TPM2_HANDLE handle, const std::set<TPM2_HANDLE>& pinned) {
  // Loading needs a free session slot; the eviction for it is a plain save (never itself a re-gap, so
  // re-gapping cannot recurse).
  if (sessions_.resident_count() >= session_capacity_) {
    std::set<TPM2_HANDLE> keep = pinned;
    keep.insert(handle);
    auto victim = sessions_.lru_victim(keep, clock_);
    if (!victim) return false;
    auto saved = save_session(*victim);
    if (!saved) return false;
    if (is_gone(*saved)) {
      sessions_.erase(*victim);
    } else if (*saved != TPM2_RC_SUCCESS) {
      return false;
    } else {
      note_eviction("session");
    }
  }
  SessionEntry* s = sessions_.find(handle);
  auto resp = send(tpm::make_context_load(s->context), &Counters::context_loads);
  if (!resp) return false;
  auto rc = tpm::response_code(*resp);
  if (!rc) return false;
  if (*rc != TPM2_RC_SUCCESS) {
    if (!is_gone(*rc)) return false;
    spdlog::warn("event=regap-session-lost session=0x{:08x} rc=\"{}\"", handle, tpm::rc_name(*rc));
    sessions_.erase(handle);
    return true;
  }
  s->resident = true;
  ++counters_.regaps;
  if (const auto w = regap_warnings_.record(0, std::chrono::steady_clock::now()); w.log) {
    spdlog::warn("event=regap session=0x{:08x} regaps={} suppressed_warnings={} context_gap_max={}", handle,
                 w.since_last, w.suppressed, tpm_.info().context_gap_max);
  }
  // Leaving it loaded would also take it out of the gap; saving it again keeps the slot free for the command.
  auto saved = save_session(handle);
  if (saved && is_gone(*saved)) sessions_.erase(handle);
  return true;
}

void Residency::note_eviction(const char* kind) {
  ++counters_.evictions;
  const auto w = storm_warnings_.record(0, std::chrono::steady_clock::now());
  if (!w.log) return;
  spdlog::warn(
      "event=eviction-storm evictions={} window_ms={} since_last_warning={} suppressed_warnings={} last={} "
      "object_slots={} session_slots={}",
      w.in_window, options_.eviction_storm.window.count(), w.since_last, w.suppressed, kind, object_capacity_,
      session_capacity_);
}

bool Residency::flush_oldest_abandoned() {
  auto abandoned = sessions_.abandoned_oldest_first();
  if (abandoned.empty()) return false;
  spdlog::info("event=abandoned-session-flushed session=0x{:08x}", abandoned.front());
  flush(abandoned.front());
  sessions_.erase(abandoned.front());
  return true;
}

void Residency::enforce_abandoned_bound() {
  while (sessions_.abandoned_count() > options_.max_abandoned_sessions && flush_oldest_abandoned()) {
  }
}

void Residency::release_object(ObjectId id, bool tpm_up) {
  const ObjectEntry* o = objects_.find(id);
  if (o && o->resident() && tpm_up) flush(*o->physical);
  objects_.erase(id);
}

void Residency::release_session(TPM2_HANDLE handle, bool tpm_up) {
  SessionEntry* s = sessions_.find(handle);
  if (!s) return;
  if (s->client_saved()) {
    sessions_.set_owner(handle, std::nullopt);
    s->abandoned_at = ++clock_;
    return;
  }
  if (tpm_up) flush(handle);
  sessions_.erase(handle);
}

void Residency::flush_abandoned(bool tpm_up) {
  for (TPM2_HANDLE h : sessions_.abandoned_oldest_first()) {
    if (tpm_up) flush(h);
    sessions_.erase(h);
  }
}

}  // namespace tpmrmd::rm

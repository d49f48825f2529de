#include "support/rm_invariants.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "rm/command.h"
#include "rm/handles.h"
#include "tpm/endian.h"
#include "tpm/header.h"
#include "tpm/responses.h"

namespace tpmrmd::testing {
namespace {

std::set<TPM2_HANDLE> as_set(const std::vector<TPM2_HANDLE>& v) { return {v.begin(), v.end()}; }

// The bytes inside the TPM2B at `offset` of `bytes`, if it fits.
std::optional<ByteSpan> tpm2b_at(ByteSpan bytes, std::size_t offset) {
  if (bytes.size() < offset + 2) return std::nullopt;
  const std::size_t n = (std::size_t{bytes[offset]} << 8) | bytes[offset + 1];
  if (bytes.size() < offset + 2 + n) return std::nullopt;
  return bytes.subspan(offset + 2, n);
}

}  // namespace

const tpm::TpmInfo& RmInvariants::Port::info() const { return owner_.tpm_.info(); }
bool RmInvariants::Port::available() const { return owner_.tpm_.available(); }

Result<Bytes> RmInvariants::Port::transmit(ByteSpan command) {
  FakeTpm& tpm = owner_.tpm_;
  auto header = tpm::parse_command_header(command);
  if (!header || header->code != TPM2_CC_FlushContext || command.size() != tpm::kHeaderSize + 4) {
    return tpm.transmit(command);
  }
  // What the flush names, read before it runs: if the TPM does not carry it out, the RM may forget the
  // object or session anyway (it has no later moment to retry), and the slot is not the RM's leak.
  const TPM2_HANDLE h = tpm::load_u32(command, tpm::kHeaderSize);
  const auto object = tpm.object_serial(h);
  const auto session = tpm.session_serial(h);
  auto result = tpm.transmit(command);
  const bool flushed = result && result->size() >= tpm::kHeaderSize && tpm::response_code(*result) &&
                       *tpm::response_code(*result) == TPM2_RC_SUCCESS;
  if (!flushed && object && tpm.object_serial(h) == object) owner_.excused_objects_.emplace(h, *object);
  if (!flushed && session && tpm.session_serial(h) == session) owner_.excused_sessions_.emplace(h, *session);
  return result;
}

RmInvariants::RmInvariants(FakeTpm& tpm, OnViolation on_violation)
    : tpm_(tpm), on_violation_(std::move(on_violation)), port_(*this) {}

void RmInvariants::fail(const std::string& message) {
  ++violations_;
  if (on_violation_) {
    on_violation_(message);
    return;
  }
  std::fprintf(stderr, "RM invariant violated: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

void RmInvariants::excuse(TPM2_HANDLE handle) {
  if (auto s = tpm_.object_serial(handle)) excused_objects_.emplace(handle, *s);
  if (auto s = tpm_.session_serial(handle)) excused_sessions_.emplace(handle, *s);
}

void RmInvariants::lied_about(TPM2_HANDLE handle) {
  lied_handles_.insert(handle);
  if (auto s = tpm_.object_serial(handle)) lied_objects_.insert(*s);
  if (auto s = tpm_.session_serial(handle)) lied_sessions_.insert(*s);
  // The RM's record of what really is there may have been overwritten by the lie.
  excuse(handle);
}

void RmInvariants::grant(rm::ConnectionId id, TPM2_HANDLE handle) {
  if (auto s = tpm_.object_serial(handle)) {
    seen_objects_.insert(*s);
    object_reach_[*s].insert(id);
  }
  if (auto s = tpm_.session_serial(handle)) {
    seen_sessions_.insert(*s);
    session_reach_[*s].insert(id);
  }
}

void RmInvariants::on_restart() {
  if (!rm_) return;
  for (const auto& [id, o] : rm_->residency().objects().entries()) stale_objects_.insert(id);
  for (const auto& [h, s] : rm_->residency().sessions().entries()) stale_sessions_.insert(h);
  excused_objects_.clear();
  excused_sessions_.clear();
}

std::optional<std::uint64_t> RmInvariants::serial_presented(ByteSpan command) const {
  auto parsed = rm::parse_command(command, tpm_.info().commands);
  if (!parsed) return std::nullopt;
  ByteSpan params = command.subspan(parsed->parameter_offset);
  if (parsed->code == TPM2_CC_ContextLoad) {
    // A session's context is the token the RM handed out: whatever its bytes say, it names the session it
    // was saved from.
    auto token = session_tokens_.find(Bytes(params.begin(), params.end()));
    if (token != session_tokens_.end()) return token->second;
    return FakeTpm::serial_in_context(params);
  }
  if (parsed->code == TPM2_CC_Load) {
    // A sessions command carries no parameterSize in a command; the parameters start with inPrivate.
    if (auto priv = tpm2b_at(params, 0)) return FakeTpm::serial_in_private(*priv);
  }
  return std::nullopt;
}

bool RmInvariants::reaches_lied_handle(rm::ConnectionId id, const std::vector<TPM2_HANDLE>& handles) const {
  auto space = rm_->spaces().find(id);
  if (space == rm_->spaces().end()) return false;
  for (TPM2_HANDLE vh : handles) {
    auto oid = space->second.objects.find(vh);
    const rm::ObjectEntry* o = oid ? rm_->residency().objects().find(*oid) : nullptr;
    if (o && o->physical && lied_handles_.count(*o->physical)) return true;
    if (oid && lied_entries_.count(*oid)) return true;  // its context was saved from such a slot
  }
  return false;
}

bool RmInvariants::may_reach_object(rm::ConnectionId id, std::uint64_t serial) const {
  auto it = object_reach_.find(serial);
  return (it != object_reach_.end() && it->second.count(id)) || lied_objects_.count(serial);
}

bool RmInvariants::may_reach_session(rm::ConnectionId id, std::uint64_t serial) const {
  auto it = session_reach_.find(serial);
  return (it != session_reach_.end() && it->second.count(id)) || lied_sessions_.count(serial);
}

void RmInvariants::on_response(rm::ConnectionId id, ByteSpan command, const Result<Bytes>& result) {
  if (!result) {
    response_distrusted_ = false;
    if (result.error().code == 0) fail(fmt::format("connection {}: an error without an errno", id));
    return;
  }
  const Bytes& r = *result;
  auto header = tpm::parse_response_header(r);
  if (!header) {
    fail(fmt::format("connection {}: a {}-byte response (command {})", id, r.size(), to_hex(command)));
    return;
  }
  if (header->size != r.size()) {
    fail(fmt::format("connection {}: response size field {} but {} bytes: {} (command {})", id, header->size,
                     r.size(), to_hex(r), to_hex(command)));
    return;
  }
  if (header->tag != TPM2_ST_NO_SESSIONS && header->tag != TPM2_ST_SESSIONS && header->tag != TPM2_ST_RSP_COMMAND) {
    fail(fmt::format("connection {}: response tag 0x{:04x}: {}", id, header->tag, to_hex(r)));
    return;
  }
  const bool distrusted = std::exchange(response_distrusted_, false);
  if (header->rc != TPM2_RC_SUCCESS || !rm_) return;
  auto parsed = rm::parse_command(command, tpm_.info().commands);
  if (!parsed) return;
  if (parsed->code == TPM2_CC_ContextSave && !parsed->handles.empty() && rm::is_session(parsed->handles[0]) &&
      r.size() > tpm::kHeaderSize) {
    if (auto serial = tpm_.session_serial(parsed->handles[0])) {
      session_tokens_[Bytes(r.begin() + tpm::kHeaderSize, r.end())] = *serial;
    }
  }
  if (parsed->attributes.returns_handle() && r.size() >= tpm::kHeaderSize + 4) {
    on_new_handle(id, command, tpm::load_u32(r, tpm::kHeaderSize));
  }
  if (parsed->code == TPM2_CC_ReadPublic && !distrusted && !reaches_lied_handle(id, parsed->handles)) {
    if (auto serial = FakeTpm::serial_in_read_public(r); serial && !may_reach_object(id, *serial)) {
      fail(fmt::format("connection {}: ReadPublic(0x{:08x}) answered object #{}, which it never created or "
                       "loaded",
                       id, parsed->handles.empty() ? 0u : parsed->handles[0], *serial));
    }
  }
}

void RmInvariants::on_new_handle(rm::ConnectionId id, ByteSpan command, TPM2_HANDLE handle) {
  const auto& spaces = rm_->spaces();
  auto space = spaces.find(id);
  if (space == spaces.end()) return;
  const auto presented = serial_presented(command);
  if (rm::is_transient(handle)) {
    auto oid = space->second.objects.find(handle);
    if (!oid) {
      fail(fmt::format("connection {} got handle 0x{:08x}, which is none of its virtual handles", id, handle));
      return;
    }
    const rm::ObjectEntry* o = rm_->residency().objects().find(*oid);
    if (!o || !o->physical) return;  // lost again at once (a hostile TPM); nothing to attribute
    auto serial = tpm_.object_serial(*o->physical);
    if (!serial) return;
    const bool fresh = !seen_objects_.count(*serial);
    if (!fresh && !may_reach_object(id, *serial) && presented != serial && !lied_handles_.count(*o->physical)) {
      fail(fmt::format("connection {}: new handle 0x{:08x} reaches object #{} (slot 0x{:08x}), which it never "
                       "created or loaded",
                       id, handle, *serial, *o->physical));
    }
    seen_objects_.insert(*serial);
    object_reach_[*serial].insert(id);
  } else if (rm::is_session(handle)) {
    const rm::SessionEntry* s = rm_->residency().sessions().find(handle);
    if (!s) return;
    if (s->owner != id) {
      fail(fmt::format("connection {} got session 0x{:08x}, which the RM gives to another owner", id, handle));
      return;
    }
    auto serial = tpm_.session_serial(handle);
    if (!serial) return;
    const bool fresh = !seen_sessions_.count(*serial);
    if (!fresh && !may_reach_session(id, *serial) && presented != serial) {
      fail(fmt::format("connection {}: session 0x{:08x} is session #{}, which it never started or loaded", id,
                       handle, *serial));
    }
    seen_sessions_.insert(*serial);
    session_reach_[*serial].insert(id);
  }
}

void RmInvariants::check() {
  if (!rm_) return;
  check_tables();
  check_isolation();
  if (slots_trusted_) check_slots();
  if (rm_->abandoned_sessions() > rm_->options().max_abandoned_sessions) {
    fail(fmt::format("{} abandoned sessions, over the bound of {}", rm_->abandoned_sessions(),
                     rm_->options().max_abandoned_sessions));
  }
}

void RmInvariants::check_tables() {
  const auto& spaces = rm_->spaces();
  const auto& objects = rm_->residency().objects();
  std::map<TPM2_HANDLE, rm::ObjectId> by_physical;
  for (const auto& [id, space] : spaces) {
    for (const auto& [vh, oid] : space.objects.entries()) {
      const rm::ObjectEntry* o = objects.find(oid);
      if (!o) {
        fail(fmt::format("connection {}: 0x{:08x} maps to object id {}, which the RM no longer has", id, vh, oid));
        continue;
      }
      if (o->owner != id || o->vhandle != vh) {
        fail(fmt::format("connection {}: 0x{:08x} maps to the object of connection {} (0x{:08x})", id, vh,
                         o->owner, o->vhandle));
      }
    }
  }
  for (const auto& [oid, o] : objects.entries()) {
    auto space = spaces.find(o.owner);
    if (space == spaces.end() || space->second.objects.find(o.vhandle) != oid) {
      fail(fmt::format("object id {} (connection {}, 0x{:08x}) is reachable from no connection", oid, o.owner,
                       o.vhandle));
    }
    if (!o.physical) continue;
    auto [it, inserted] = by_physical.emplace(*o.physical, oid);
    if (!inserted) {
      fail(fmt::format("slot 0x{:08x} is believed to hold object ids {} and {}", *o.physical, it->second, oid));
    }
    if (objects.find_physical(*o.physical) != oid) {
      fail(fmt::format("the slot index does not say 0x{:08x} holds object id {}", *o.physical, oid));
    }
  }
  if (objects.resident_count() != by_physical.size()) {
    fail(fmt::format("the slot index counts {} resident objects, the entries {}", objects.resident_count(),
                     by_physical.size()));
  }
  for (const auto& [h, s] : rm_->residency().sessions().entries()) {
    if (s.owner && !spaces.count(*s.owner)) {
      fail(fmt::format("session 0x{:08x} is owned by connection {}, which is closed", h, *s.owner));
    }
  }
}

void RmInvariants::check_isolation() {
  for (const auto& [oid, o] : rm_->residency().objects().entries()) {
    if (!o.physical) continue;
    auto serial = tpm_.object_serial(*o.physical);
    if (lied_handles_.count(*o.physical)) {
      if (serial) lied_entries_[oid].insert(*serial);
      continue;
    }
    auto lied = lied_entries_.find(oid);
    if (serial && lied != lied_entries_.end() && lied->second.count(*serial)) continue;
    if (serial && !may_reach_object(o.owner, *serial)) {
      fail(fmt::format("connection {}'s 0x{:08x} maps to slot 0x{:08x}, which holds object #{}: not one it "
                       "created or loaded",
                       o.owner, o.vhandle, *o.physical, *serial));
    }
  }
  for (const auto& [h, s] : rm_->residency().sessions().entries()) {
    if (!s.owner || lied_handles_.count(h)) continue;
    auto serial = tpm_.session_serial(h);
    if (serial && !may_reach_session(*s.owner, *serial)) {
      fail(fmt::format("connection {} owns session 0x{:08x}, which is session #{}: not one it started or loaded",
                       *s.owner, h, *serial));
    }
  }
}

std::set<TPM2_HANDLE> RmInvariants::leaked_objects() const {
  std::set<TPM2_HANDLE> out;
  const auto& objects = rm_->residency().objects();
  for (TPM2_HANDLE h : tpm_.loaded_objects()) {
    if (objects.find_physical(h)) continue;
    if (excused_objects_.count({h, tpm_.object_serial(h).value_or(0)})) continue;
    out.insert(h);
  }
  return out;
}

std::set<TPM2_HANDLE> RmInvariants::leaked_sessions() const {
  std::set<TPM2_HANDLE> out;
  const auto& sessions = rm_->residency().sessions();
  auto explained = [&](TPM2_HANDLE h, bool loaded) {
    const rm::SessionEntry* s = sessions.find(h);
    if (s && s->resident == loaded) return true;
    return excused_sessions_.count({h, tpm_.session_serial(h).value_or(0)}) > 0;
  };
  for (TPM2_HANDLE h : tpm_.loaded_sessions()) {
    if (!explained(h, true)) out.insert(h);
  }
  for (TPM2_HANDLE h : tpm_.saved_sessions()) {
    if (!explained(h, false)) out.insert(h);
  }
  return out;
}

void RmInvariants::check_slots() {
  // A stale entry the RM has dropped or replaced since no longer needs the excuse.
  std::erase_if(stale_objects_, [&](rm::ObjectId id) { return !rm_->residency().objects().find(id); });
  std::erase_if(stale_sessions_, [&](TPM2_HANDLE h) { return !rm_->residency().sessions().find(h); });
  for (TPM2_HANDLE h : leaked_objects()) {
    fail(fmt::format("slot 0x{:08x} holds object #{}, which the RM does not believe loaded", h,
                     tpm_.object_serial(h).value_or(0)));
  }
  for (TPM2_HANDLE h : leaked_sessions()) {
    fail(fmt::format("session 0x{:08x} is {} in the TPM, which the RM does not believe", h,
                     as_set(tpm_.loaded_sessions()).count(h) ? "loaded" : "saved"));
  }
  const auto loaded = as_set(tpm_.loaded_objects());
  for (const auto& [oid, o] : rm_->residency().objects().entries()) {
    if (o.physical && !loaded.count(*o.physical) && !stale_objects_.count(oid)) {
      fail(fmt::format("the RM believes connection {}'s 0x{:08x} loaded in 0x{:08x}, which is empty", o.owner,
                       o.vhandle, *o.physical));
    }
  }
  const auto loaded_sessions = as_set(tpm_.loaded_sessions());
  const auto saved_sessions = as_set(tpm_.saved_sessions());
  for (const auto& [h, s] : rm_->residency().sessions().entries()) {
    if (stale_sessions_.count(h)) continue;
    const bool where = s.resident ? loaded_sessions.count(h) : saved_sessions.count(h);
    if (!where) {
      fail(fmt::format("the RM believes session 0x{:08x} {}, the TPM does not", h,
                       s.resident ? "loaded" : "saved"));
    }
  }
}

void RmInvariants::check_all_closed() {
  if (!rm_) return;
  check();
  if (!rm_->spaces().empty()) fail(fmt::format("{} connections still open", rm_->spaces().size()));
  if (!rm_->residency().objects().entries().empty()) {
    fail(fmt::format("{} objects outlive every connection", rm_->residency().objects().size()));
  }
  for (const auto& [h, s] : rm_->residency().sessions().entries()) {
    if (s.owner) fail(fmt::format("session 0x{:08x} still owned by closed connection {}", h, *s.owner));
  }
  // Once the TPM has lied, what it holds can be unknowable to any RM (a lie in a handle list, a handle swapped
  // for another's): the RM's own tables are still checked above, the TPM's slots only while it told the truth.
  if (!slots_trusted_) return;
  for (TPM2_HANDLE h : leaked_objects()) {
    fail(fmt::format("slot 0x{:08x} (object #{}) outlives every connection", h, tpm_.object_serial(h).value_or(0)));
  }
  for (TPM2_HANDLE h : leaked_sessions()) fail(fmt::format("session 0x{:08x} outlives every connection", h));
}

void RmInvariants::check_shut_down() {
  if (!rm_) return;
  if (!rm_->residency().sessions().entries().empty()) {
    fail(fmt::format("{} sessions outlive shutdown", rm_->residency().sessions().size()));
  }
  if (!slots_trusted_) return;
  for (TPM2_HANDLE h : leaked_objects()) {
    fail(fmt::format("slot 0x{:08x} (object #{}) outlives shutdown", h, tpm_.object_serial(h).value_or(0)));
  }
  for (TPM2_HANDLE h : leaked_sessions()) fail(fmt::format("session 0x{:08x} outlives shutdown", h));
}

}  // namespace tpmrmd::testing

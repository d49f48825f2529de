// The fake TPM's model. Every input is untrusted (the fake is fuzzed): all parsing is bounds-checked and a
// malformed command gets the rc a TPM would give, never a crash.
#include "support/fake_tpm.h"

#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <string>

#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

constexpr TPM2_HANDLE kOrdinaryMarker = 0x80000000u;  // savedHandle of an ordinary object's context
constexpr TPM2_HANDLE kSequenceMarker = 0x80000001u;  // savedHandle of a sequence object's context
constexpr std::uint8_t kBlobObject = 1;
constexpr std::uint8_t kBlobSession = 2;
constexpr std::uint32_t kMaxSessionIndex = 0x00FFFFFFu;

std::uint8_t type_of(TPM2_HANDLE h) { return static_cast<std::uint8_t>(h >> 24); }
bool is_transient(TPM2_HANDLE h) { return type_of(h) == TPM2_HT_TRANSIENT; }
bool is_session(TPM2_HANDLE h) {
  return type_of(h) == TPM2_HT_HMAC_SESSION || type_of(h) == TPM2_HT_POLICY_SESSION;
}
bool is_hierarchy(TPM2_HANDLE h) {
  return h == TPM2_RH_OWNER || h == TPM2_RH_ENDORSEMENT || h == TPM2_RH_PLATFORM || h == TPM2_RH_NULL;
}

// Format-1 codes: the failing handle, parameter or session number rides in the rc.
TPM2_RC at_handle(TPM2_RC base, std::size_t index) {
  return base | TPM2_RC_H | (TPM2_RC_1 * static_cast<TPM2_RC>(index + 1));
}
TPM2_RC at_param(TPM2_RC base, unsigned n) { return base | TPM2_RC_P | (TPM2_RC_1 * n); }
TPM2_RC at_session(TPM2_RC base, std::size_t index) {
  return base | TPM2_RC_S | (TPM2_RC_1 * static_cast<TPM2_RC>(index + 1));
}

std::optional<std::uint16_t> digest_size(TPMI_ALG_HASH alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return 20;
    case TPM2_ALG_SHA256: return 32;
    case TPM2_ALG_SHA384: return 48;
    case TPM2_ALG_SHA512: return 64;
    default: return std::nullopt;
  }
}

std::uint64_t fnv(std::uint64_t h, ByteSpan bytes) {
  for (std::uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

tpm::CommandAttributes cc(TPM2_CC code, unsigned handles, bool r_handle = false, bool flushed = false) {
  return tpm::CommandAttributes(code | (handles << 25) | (r_handle ? 1u << 28 : 0u) | (flushed ? 1u << 24 : 0u));
}

// The commands the model implements, with their wire attributes (FlushContext's handle is a parameter).
std::vector<tpm::CommandAttributes> command_list() {
  return {
      // nv and extensive, as on a TPM: disabling a hierarchy flushes objects the command does not name.
      tpm::CommandAttributes(cc(TPM2_CC_HierarchyControl, 1).raw() | (1u << 22) | (1u << 23)),
      cc(TPM2_CC_SequenceComplete, 1, false, true),
      cc(TPM2_CC_CreatePrimary, 1, true),
      cc(TPM2_CC_Certify, 2),
      cc(TPM2_CC_Create, 1),
      cc(TPM2_CC_Load, 1, true),
      cc(TPM2_CC_SequenceUpdate, 1),
      cc(TPM2_CC_ContextLoad, 0, true),
      cc(TPM2_CC_ContextSave, 1),
      cc(TPM2_CC_FlushContext, 0),
      cc(TPM2_CC_PolicyAuthValue, 1),
      cc(TPM2_CC_ReadPublic, 1),
      cc(TPM2_CC_StartAuthSession, 2, true),
      cc(TPM2_CC_GetCapability, 0),
      cc(TPM2_CC_GetRandom, 0),
      cc(TPM2_CC_HashSequenceStart, 0, true),
      cc(TPM2_CC_PolicyGetDigest, 1),
  };
}

// Authorizations each command needs (one per authorized handle).
std::size_t auths_needed(TPM2_CC code) {
  switch (code) {
    case TPM2_CC_Certify: return 2;
    case TPM2_CC_HierarchyControl:
    case TPM2_CC_CreatePrimary:
    case TPM2_CC_Create:
    case TPM2_CC_Load:
    case TPM2_CC_SequenceUpdate:
    case TPM2_CC_SequenceComplete: return 1;
    default: return 0;
  }
}

bool takes_no_sessions(TPM2_CC code) {
  return code == TPM2_CC_ContextSave || code == TPM2_CC_ContextLoad || code == TPM2_CC_FlushContext;
}

class Writer {
 public:
  // Responses and blobs are built a few bytes at a time; one allocation instead of one per doubling (the fuzz
  // targets build thousands a second, and each allocation under ASan records a stack).
  Writer() { b_.reserve(256); }
  Writer& u8(std::uint8_t v) { b_.push_back(v); return *this; }
  Writer& u16(std::uint16_t v) { return put(v, Tss2_MU_UINT16_Marshal); }
  Writer& u32(std::uint32_t v) { return put(v, Tss2_MU_UINT32_Marshal); }
  Writer& u64(std::uint64_t v) { return put(v, Tss2_MU_UINT64_Marshal); }
  Writer& bytes(ByteSpan v) { b_.insert(b_.end(), v.begin(), v.end()); return *this; }
  Writer& tpm2b(ByteSpan v) { return u16(static_cast<std::uint16_t>(v.size())).bytes(v); }
  template <typename T, typename F>
  Writer& mu(const T& v, F marshal) {
    const std::size_t at = b_.size();
    b_.resize(at + sizeof(T) + 16);
    size_t off = at;
    if (marshal(&v, b_.data(), b_.size(), &off) != TSS2_RC_SUCCESS) off = at;
    b_.resize(off);
    return *this;
  }
  Bytes take() { return std::move(b_); }
  const Bytes& view() const { return b_; }

 private:
  template <typename T, typename F>
  Writer& put(T v, F marshal) {
    std::uint8_t buf[sizeof(T)];
    size_t off = 0;
    marshal(v, buf, sizeof buf, &off);
    return bytes(ByteSpan(buf, off));
  }
  Bytes b_;
};

}  // namespace

// Bounds-checked reads; the first failure sticks and later reads return zeroes.
class FakeTpm::Reader {
 public:
  explicit Reader(ByteSpan bytes, std::size_t offset = 0) : bytes_(bytes), off_(offset) {}

  std::uint8_t u8() { return get<std::uint8_t>(Tss2_MU_UINT8_Unmarshal); }
  std::uint16_t u16() { return get<std::uint16_t>(Tss2_MU_UINT16_Unmarshal); }
  std::uint32_t u32() { return get<std::uint32_t>(Tss2_MU_UINT32_Unmarshal); }
  std::uint64_t u64() { return get<std::uint64_t>(Tss2_MU_UINT64_Unmarshal); }
  Bytes tpm2b() {
    std::uint16_t n = u16();
    if (failed_ || n > remaining()) {
      failed_ = true;
      return {};
    }
    Bytes out(bytes_.begin() + static_cast<std::ptrdiff_t>(off_),
              bytes_.begin() + static_cast<std::ptrdiff_t>(off_ + n));
    off_ += n;
    return out;
  }
  template <typename T, typename F>
  bool mu(T& out, F unmarshal) {
    if (failed_ || remaining() == 0) {
      failed_ = true;
      return false;
    }
    size_t off = off_;
    if (unmarshal(bytes_.data(), bytes_.size(), &off, &out) != TSS2_RC_SUCCESS) {
      failed_ = true;
      return false;
    }
    off_ = off;
    return true;
  }
  std::size_t remaining() const { return off_ <= bytes_.size() ? bytes_.size() - off_ : 0; }
  std::size_t offset() const { return off_; }
  bool failed() const { return failed_; }
  // After the last parameter: what a TPM says about a short or overlong parameter area, if anything.
  std::optional<TPM2_RC> end(unsigned last_param = 1) const {
    if (failed_) return at_param(TPM2_RC_INSUFFICIENT, last_param);
    if (remaining() != 0) return at_param(TPM2_RC_SIZE, last_param);
    return std::nullopt;
  }

 private:
  template <typename T, typename F>
  T get(F unmarshal) {
    T v{};
    if (failed_ || remaining() < sizeof(T)) {
      failed_ = true;
      return T{};
    }
    size_t off = off_;
    if (unmarshal(bytes_.data(), bytes_.size(), &off, &v) != TSS2_RC_SUCCESS) {
      failed_ = true;
      return T{};
    }
    off_ = off;
    return v;
  }

  ByteSpan bytes_;
  std::size_t off_;
  bool failed_ = false;
};

struct FakeTpm::Reply {
  Reply(TPM2_RC code) : rc(code) {}  // NOLINT: implicit so handlers can return an rc
  Reply(std::optional<TPM2_HANDLE> h, Bytes p) : handle(h), params(std::move(p)) {}
  TPM2_RC rc = TPM2_RC_SUCCESS;
  std::optional<TPM2_HANDLE> handle;
  Bytes params;
};

FakeTpm::FakeTpm(FakeTpmOptions options) : options_(options) {
  info_.manufacturer = "FAKE";
  info_.vendor_string = "tpmrmd-fake";
  info_.family = 0x322E3000u;  // "2.0"
  info_.revision = 159;
  info_.firmware_version = 1;
  info_.max_command_size = options_.max_command_size;
  info_.max_response_size = options_.max_response_size;
  info_.max_object_context = 2048;
  info_.max_session_context = 256;
  info_.hr_transient_min = options_.reported_object_slots.value_or(options_.object_slots);
  info_.hr_loaded_min = options_.reported_session_slots.value_or(options_.session_slots);
  info_.active_sessions_max = options_.active_sessions_max;
  info_.context_gap_max = options_.context_gap_max;
  auto list = command_list();
  for (const auto& a : list) wire_commands_.push_back(a.raw());
  std::sort(wire_commands_.begin(), wire_commands_.end(),
            [](TPMA_CC a, TPMA_CC b) { return (a & 0xFFFFu) < (b & 0xFFFFu); });
  info_.total_commands = static_cast<std::uint32_t>(list.size());
  info_.commands = tpm::CommandTable(std::move(list));
  for (TPM2_HANDLE h : {TPM2_RH_OWNER, TPM2_RH_ENDORSEMENT, TPM2_RH_PLATFORM, TPM2_RH_NULL}) enabled_[h] = true;
}

// --- the port -----------------------------------------------------------------------------------------------

Result<Bytes> FakeTpm::transmit(ByteSpan command) {
  CommandHook command_hook;
  ResponseHook response_hook;
  {
    std::lock_guard lock(mutex_);
    ++total_commands_;
    auto header = tpm::parse_command_header(command);
    if (header) ++by_code_[header->code];
    if (!available_) return make_error(ENODEV, "fake TPM is unavailable");
    if (fail_times_ > 0) {
      --fail_times_;
      return make_error(fail_error_, "injected transport failure");
    }
    command_hook = command_hook_;
    response_hook = response_hook_;
  }
  if (command_hook) {
    if (auto replaced = command_hook(command)) return std::move(*replaced);
  }
  Bytes response;
  {
    std::lock_guard lock(mutex_);
    auto header = tpm::parse_command_header(command);
    if (inject_times_ > 0 && header && header->code == inject_code_) {
      --inject_times_;
      response = tpm::make_rc_response(inject_rc_);
    } else {
      response = run(command);
    }
  }
  if (response_hook) return response_hook(command, std::move(response));
  return response;
}

bool FakeTpm::available() const {
  std::lock_guard lock(mutex_);
  return available_;
}

void FakeTpm::set_available(bool available) {
  std::lock_guard lock(mutex_);
  available_ = available;
}

void FakeTpm::fail_next(int error_code, int times) {
  std::lock_guard lock(mutex_);
  fail_error_ = error_code;
  fail_times_ = times;
}

void FakeTpm::inject_rc(TPM2_CC code, TPM2_RC rc, int times) {
  std::lock_guard lock(mutex_);
  inject_code_ = code;
  inject_rc_ = rc;
  inject_times_ = times;
}

void FakeTpm::set_command_hook(CommandHook hook) {
  std::lock_guard lock(mutex_);
  command_hook_ = std::move(hook);
}

void FakeTpm::set_response_hook(ResponseHook hook) {
  std::lock_guard lock(mutex_);
  response_hook_ = std::move(hook);
}

void FakeTpm::set_slots(std::uint32_t objects, std::uint32_t sessions) {
  std::lock_guard lock(mutex_);
  options_.object_slots = objects;
  options_.session_slots = sessions;
}

void FakeTpm::restart() {
  std::lock_guard lock(mutex_);
  objects_.clear();
  sessions_.clear();
  for (auto& [h, on] : enabled_) on = true;
  ++epoch_;
}

// --- observation --------------------------------------------------------------------------------------------

std::uint64_t FakeTpm::commands() const {
  std::lock_guard lock(mutex_);
  return total_commands_;
}

std::uint64_t FakeTpm::commands(TPM2_CC code) const {
  std::lock_guard lock(mutex_);
  auto it = by_code_.find(code);
  return it == by_code_.end() ? 0 : it->second;
}

std::vector<TPM2_HANDLE> FakeTpm::loaded_objects() const {
  std::lock_guard lock(mutex_);
  std::vector<TPM2_HANDLE> out;
  for (const auto& [h, o] : objects_) out.push_back(h);
  return out;
}

namespace {
TPM2_HANDLE session_handle(std::uint32_t index, TPM2_SE type) {
  return (type == TPM2_SE_HMAC ? TPM2_HMAC_SESSION_FIRST : TPM2_POLICY_SESSION_FIRST) | index;
}
}  // namespace

std::vector<TPM2_HANDLE> FakeTpm::loaded_sessions() const {
  std::lock_guard lock(mutex_);
  std::vector<TPM2_HANDLE> out;
  for (const auto& [i, s] : sessions_) {
    if (s.loaded) out.push_back(session_handle(i, s.type));
  }
  return out;
}

std::vector<TPM2_HANDLE> FakeTpm::saved_sessions() const {
  std::lock_guard lock(mutex_);
  std::vector<TPM2_HANDLE> out;
  for (const auto& [i, s] : sessions_) {
    if (!s.loaded) out.push_back(session_handle(i, s.type));
  }
  return out;
}

std::optional<std::uint64_t> FakeTpm::object_serial(TPM2_HANDLE physical) const {
  std::lock_guard lock(mutex_);
  auto it = objects_.find(physical);
  if (it == objects_.end()) return std::nullopt;
  return it->second.serial;
}

std::optional<std::uint64_t> FakeTpm::session_serial(TPM2_HANDLE handle) const {
  std::lock_guard lock(mutex_);
  if (!is_session(handle)) return std::nullopt;
  auto it = sessions_.find(handle & kMaxSessionIndex);
  if (it == sessions_.end() || session_handle(it->first, it->second.type) != handle) return std::nullopt;
  return it->second.serial;
}

std::uint64_t FakeTpm::session_context_counter() const {
  std::lock_guard lock(mutex_);
  return session_counter_;
}

bool FakeTpm::hierarchy_enabled(TPM2_HANDLE hierarchy) const {
  std::lock_guard lock(mutex_);
  auto it = enabled_.find(hierarchy);
  return it != enabled_.end() && it->second;
}

Bytes FakeTpm::name_of(std::uint64_t serial) const {
  // nameAlg SHA-256, then the serial, then filler: unique per object, stable across save/load.
  Writer w;
  w.u16(TPM2_ALG_SHA256).u64(serial);
  for (int i = 0; i < 24; ++i) w.u8(static_cast<std::uint8_t>(0xA0 + i));
  return w.take();
}

std::optional<std::uint64_t> FakeTpm::serial_in_read_public(ByteSpan response) {
  Reader r(response, tpm::kHeaderSize);
  TPM2B_PUBLIC pub{};
  if (response.size() < tpm::kHeaderSize || !r.mu(pub, Tss2_MU_TPM2B_PUBLIC_Unmarshal)) return std::nullopt;
  Bytes name = r.tpm2b();
  if (r.failed() || name.size() != 34) return std::nullopt;
  Reader n(name);
  if (n.u16() != TPM2_ALG_SHA256) return std::nullopt;
  return n.u64();
}

std::optional<std::uint64_t> FakeTpm::serial_in_context(ByteSpan context) {
  Reader r(context);
  r.u64();  // sequence
  r.u32();  // savedHandle
  r.u32();  // hierarchy
  Bytes blob = r.tpm2b();
  if (r.failed() || r.remaining() != 0) return std::nullopt;
  Reader b(blob);
  const std::uint8_t kind = b.u8();
  const std::uint64_t serial = b.u64();
  if (b.failed() || (kind != kBlobObject && kind != kBlobSession)) return std::nullopt;
  return serial;
}

std::optional<std::uint64_t> FakeTpm::serial_in_private(ByteSpan private_buffer) {
  Reader r(private_buffer);
  const std::uint64_t serial = r.u64();
  if (r.failed()) return std::nullopt;
  return serial;
}

// --- the model ----------------------------------------------------------------------------------------------

Bytes FakeTpm::run(ByteSpan command) {
  auto header = tpm::parse_command_header(command);
  if (!header) return tpm::make_rc_response(TPM2_RC_COMMAND_SIZE);
  if (header->tag != TPM2_ST_NO_SESSIONS && header->tag != TPM2_ST_SESSIONS) {
    return tpm::make_rc_response(TPM2_RC_BAD_TAG);
  }
  if (header->size != command.size() || header->size > options_.max_command_size) {
    return tpm::make_rc_response(TPM2_RC_COMMAND_SIZE);
  }
  auto wire = std::find_if(wire_commands_.begin(), wire_commands_.end(),
                           [&](TPMA_CC a) { return (a & 0xFFFFu) == header->code; });
  if (wire == wire_commands_.end()) return tpm::make_rc_response(TPM2_RC_COMMAND_CODE);
  const tpm::CommandAttributes attrs(*wire);

  Reader in(command, tpm::kHeaderSize);
  std::vector<TPM2_HANDLE> handles;
  for (unsigned i = 0; i < attrs.handle_count(); ++i) {
    handles.push_back(in.u32());
    if (in.failed()) return tpm::make_rc_response(TPM2_RC_INSUFFICIENT);
  }
  for (std::size_t i = 0; i < handles.size(); ++i) {
    if (auto rc = check_handle(header->code, i, handles[i])) return tpm::make_rc_response(*rc);
  }

  struct Auth {
    TPM2_HANDLE handle;
    TPMA_SESSION attributes;
  };
  std::vector<Auth> auths;
  const bool with_sessions = header->tag == TPM2_ST_SESSIONS;
  if (with_sessions) {
    if (takes_no_sessions(header->code)) return tpm::make_rc_response(TPM2_RC_AUTH_CONTEXT);
    const std::uint32_t size = in.u32();
    if (in.failed() || size < 9 || size > in.remaining()) return tpm::make_rc_response(TPM2_RC_AUTHSIZE);
    Reader area(command.subspan(0, in.offset() + size), in.offset());
    while (area.remaining() > 0) {
      Auth a{area.u32(), 0};
      area.tpm2b();  // nonce
      a.attributes = area.u8();
      area.tpm2b();  // hmac
      if (area.failed() || auths.size() == 3) return tpm::make_rc_response(TPM2_RC_AUTHSIZE);
      auths.push_back(a);
    }
    in = Reader(command, in.offset() + size);
    for (std::size_t k = 0; k < auths.size(); ++k) {
      const TPM2_HANDLE h = auths[k].handle;
      if (h == TPM2_RH_PW) continue;
      if (!is_session(h)) return tpm::make_rc_response(at_session(TPM2_RC_HANDLE, k));
      auto it = sessions_.find(h & kMaxSessionIndex);
      if (it == sessions_.end() || session_handle(it->first, it->second.type) != h || !it->second.loaded) {
        return tpm::make_rc_response(TPM2_RC_REFERENCE_S0 + static_cast<TPM2_RC>(k));
      }
    }
  }
  if (auths.size() < auths_needed(header->code)) return tpm::make_rc_response(TPM2_RC_AUTH_MISSING);

  Reply reply = dispatch(header->code, handles, in);
  if (reply.rc != TPM2_RC_SUCCESS) return tpm::make_rc_response(reply.rc);

  // A session whose continueSession was clear ends with the command that used it.
  for (const Auth& a : auths) {
    if (is_session(a.handle) && !(a.attributes & TPMA_SESSION_CONTINUESESSION)) {
      auto it = sessions_.find(a.handle & kMaxSessionIndex);
      if (it != sessions_.end() && session_handle(it->first, it->second.type) == a.handle) sessions_.erase(it);
    }
  }

  Writer out;
  out.u16(with_sessions ? TPM2_ST_SESSIONS : TPM2_ST_NO_SESSIONS).u32(0).u32(TPM2_RC_SUCCESS);
  if (reply.handle) out.u32(*reply.handle);
  if (with_sessions) out.u32(static_cast<std::uint32_t>(reply.params.size()));
  out.bytes(reply.params);
  for (const Auth& a : auths) {
    const std::uint8_t attributes =
        a.handle == TPM2_RH_PW ? TPMA_SESSION_CONTINUESESSION
                               : static_cast<std::uint8_t>(a.attributes & (TPMA_SESSION_CONTINUESESSION |
                                                                          TPMA_SESSION_AUDITEXCLUSIVE |
                                                                          TPMA_SESSION_AUDITRESET |
                                                                          TPMA_SESSION_AUDIT));
    out.u16(0).u8(attributes).u16(0);
  }
  Bytes response = out.take();
  tpm::patch_size_field(response);
  return response;
}

std::optional<TPM2_RC> FakeTpm::check_handle(TPM2_CC code, std::size_t index, TPM2_HANDLE h) const {
  auto loaded_object = [&](bool sequence_ok, bool ordinary_ok) -> std::optional<TPM2_RC> {
    if (!is_transient(h)) return at_handle(TPM2_RC_HANDLE, index);
    auto it = objects_.find(h);
    if (it == objects_.end()) return TPM2_RC_REFERENCE_H0 + static_cast<TPM2_RC>(index);
    const bool sequence = it->second.kind == ObjectKind::kSequence;
    if ((sequence && !sequence_ok) || (!sequence && !ordinary_ok)) return at_handle(TPM2_RC_HANDLE, index);
    return std::nullopt;
  };
  auto loaded_session = [&](bool hmac_ok, bool policy_ok) -> std::optional<TPM2_RC> {
    if (!is_session(h)) return at_handle(TPM2_RC_HANDLE, index);
    if ((type_of(h) == TPM2_HT_HMAC_SESSION && !hmac_ok) || (type_of(h) == TPM2_HT_POLICY_SESSION && !policy_ok)) {
      return at_handle(TPM2_RC_HANDLE, index);
    }
    auto it = sessions_.find(h & kMaxSessionIndex);
    if (it == sessions_.end() || session_handle(it->first, it->second.type) != h || !it->second.loaded) {
      return TPM2_RC_REFERENCE_H0 + static_cast<TPM2_RC>(index);
    }
    return std::nullopt;
  };
  auto hierarchy = [&](bool null_ok) -> std::optional<TPM2_RC> {
    if (!is_hierarchy(h) || (h == TPM2_RH_NULL && !null_ok)) return at_handle(TPM2_RC_VALUE, index);
    if (!enabled_.at(h)) return at_handle(TPM2_RC_HIERARCHY, index);
    return std::nullopt;
  };
  switch (code) {
    case TPM2_CC_CreatePrimary:
      return hierarchy(true);
    case TPM2_CC_HierarchyControl:
      return hierarchy(false);
    case TPM2_CC_Create:
    case TPM2_CC_Load:
      return loaded_object(false, true);
    case TPM2_CC_ReadPublic:
    case TPM2_CC_Certify:
      return loaded_object(true, true);
    case TPM2_CC_SequenceUpdate:
    case TPM2_CC_SequenceComplete:
      return loaded_object(true, false);
    case TPM2_CC_StartAuthSession:
      if (h == TPM2_RH_NULL) return std::nullopt;
      if (index == 1 && is_hierarchy(h)) return hierarchy(false);
      return loaded_object(false, true);
    case TPM2_CC_PolicyGetDigest:
    case TPM2_CC_PolicyAuthValue:
      return loaded_session(false, true);
    case TPM2_CC_ContextSave:
      if (is_transient(h)) return loaded_object(true, true);
      return loaded_session(true, true);
    default:
      return std::nullopt;
  }
}

FakeTpm::Reply FakeTpm::dispatch(TPM2_CC code, const std::vector<TPM2_HANDLE>& handles, Reader& in) {
  switch (code) {
    case TPM2_CC_CreatePrimary: return create_primary(handles[0], in);
    case TPM2_CC_Create: return create(handles[0], in);
    case TPM2_CC_Load: return load(handles[0], in);
    case TPM2_CC_ReadPublic:
      if (auto rc = in.end()) return *rc;
      return read_public(handles[0]);
    case TPM2_CC_Certify: return certify(handles[0], handles[1], in);
    case TPM2_CC_StartAuthSession: return start_auth_session(in);
    case TPM2_CC_PolicyAuthValue:
      if (auto rc = in.end()) return *rc;
      return policy_auth_value(handles[0]);
    case TPM2_CC_PolicyGetDigest:
      if (auto rc = in.end()) return *rc;
      return policy_get_digest(handles[0]);
    case TPM2_CC_HashSequenceStart: return hash_sequence_start(in);
    case TPM2_CC_SequenceUpdate: return sequence_update(handles[0], in);
    case TPM2_CC_SequenceComplete: return sequence_complete(handles[0], in);
    case TPM2_CC_FlushContext: return flush_context(in);
    case TPM2_CC_ContextSave:
      if (auto rc = in.end()) return *rc;
      return context_save(handles[0]);
    case TPM2_CC_ContextLoad: return context_load(in);
    case TPM2_CC_GetCapability: return get_capability(in);
    case TPM2_CC_GetRandom: return get_random(in);
    case TPM2_CC_HierarchyControl: return hierarchy_control(handles[0], in);
    default: return TPM2_RC_COMMAND_CODE;
  }
}

std::optional<TPM2_RC> FakeTpm::object_room() const {
  if (objects_.size() < options_.object_slots && free_object_handle()) return std::nullopt;
  return options_.objects_full_is_object_handles ? TPM2_RC_OBJECT_HANDLES : TPM2_RC_OBJECT_MEMORY;
}

std::optional<TPM2_HANDLE> FakeTpm::free_object_handle() const {
  // The lowest free slot, as small TPMs do: physical handles are reused, which catches stale RM mappings.
  for (TPM2_HANDLE h = TPM2_TRANSIENT_FIRST; h <= TPM2_TRANSIENT_LAST; ++h) {
    if (!objects_.count(h)) return h;
  }
  return std::nullopt;
}

TPM2_HANDLE FakeTpm::add_object(Object object) {
  const TPM2_HANDLE h = *free_object_handle();
  objects_.emplace(h, std::move(object));
  return h;
}

std::size_t FakeTpm::loaded_session_count() const {
  return static_cast<std::size_t>(
      std::count_if(sessions_.begin(), sessions_.end(), [](const auto& e) { return e.second.loaded; }));
}

std::optional<std::uint64_t> FakeTpm::oldest_saved_sequence() const {
  std::optional<std::uint64_t> oldest;
  for (const auto& [i, s] : sessions_) {
    if (!s.loaded && (!oldest || s.sequence < *oldest)) oldest = s.sequence;
  }
  return oldest;
}

bool FakeTpm::last_slot_reserved() const {
  // Once the next session save would exceed the gap, the only way out is to load the oldest saved session and
  // save it again; so the last free session slot is kept for it.
  const auto oldest = oldest_saved_sequence();
  return oldest && session_counter_ - *oldest > options_.context_gap_max &&
         loaded_session_count() + 1 == options_.session_slots;
}

std::uint64_t FakeTpm::mac(ByteSpan bytes) const {
  Writer key;
  key.u64(0x243F6A8885A308D3ull).u64(epoch_);
  return fnv(fnv(0xcbf29ce484222325ull, key.view()), bytes);
}

namespace {

// The creation outputs every object-creating command shares: creationData, creationHash, creationTicket.
void put_creation(Writer& w, TPM2_HANDLE hierarchy) {
  Bytes digest(32, 0xC7);
  w.u16(0);  // empty TPM2B_CREATION_DATA
  w.tpm2b(digest);
  w.u16(TPM2_ST_CREATION).u32(hierarchy).tpm2b(digest);
}

struct CreateParams {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC pub{};
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
};

}  // namespace

FakeTpm::Reply FakeTpm::create_primary(TPM2_HANDLE hierarchy, Reader& in) {
  CreateParams p;
  in.mu(p.sensitive, Tss2_MU_TPM2B_SENSITIVE_CREATE_Unmarshal);
  in.mu(p.pub, Tss2_MU_TPM2B_PUBLIC_Unmarshal);
  in.mu(p.outside, Tss2_MU_TPM2B_DATA_Unmarshal);
  in.mu(p.pcrs, Tss2_MU_TPML_PCR_SELECTION_Unmarshal);
  if (auto rc = in.end(4)) return *rc;
  if (auto rc = object_room()) return *rc;
  Object o;
  o.serial = next_serial_++;
  o.hierarchy = hierarchy;
  o.public_area = Writer().mu(p.pub, Tss2_MU_TPM2B_PUBLIC_Marshal).take();
  Writer w;
  w.bytes(o.public_area);
  put_creation(w, hierarchy);
  w.tpm2b(name_of(o.serial));
  const TPM2_HANDLE h = add_object(std::move(o));
  return Reply(h, w.take());
}

FakeTpm::Reply FakeTpm::create(TPM2_HANDLE parent, Reader& in) {
  CreateParams p;
  in.mu(p.sensitive, Tss2_MU_TPM2B_SENSITIVE_CREATE_Unmarshal);
  in.mu(p.pub, Tss2_MU_TPM2B_PUBLIC_Unmarshal);
  in.mu(p.outside, Tss2_MU_TPM2B_DATA_Unmarshal);
  in.mu(p.pcrs, Tss2_MU_TPML_PCR_SELECTION_Unmarshal);
  if (auto rc = in.end(4)) return *rc;
  const Object& parent_object = objects_.at(parent);
  const Bytes pub = Writer().mu(p.pub, Tss2_MU_TPM2B_PUBLIC_Marshal).take();
  // The private part: the key's serial, its parent's, and a check over both and the public area.
  Writer priv;
  priv.u64(next_serial_++).u64(parent_object.serial);
  Writer checked;
  checked.bytes(priv.view()).bytes(pub);
  priv.u64(mac(checked.view()));
  Writer w;
  w.tpm2b(priv.view()).bytes(pub);
  put_creation(w, parent_object.hierarchy);
  return Reply(std::nullopt, w.take());
}

FakeTpm::Reply FakeTpm::load(TPM2_HANDLE parent, Reader& in) {
  Bytes priv = in.tpm2b();
  TPM2B_PUBLIC pub_in{};
  in.mu(pub_in, Tss2_MU_TPM2B_PUBLIC_Unmarshal);
  if (auto rc = in.end(2)) return *rc;
  const Object& parent_object = objects_.at(parent);
  const Bytes pub = Writer().mu(pub_in, Tss2_MU_TPM2B_PUBLIC_Marshal).take();
  Reader r(priv);
  const std::uint64_t serial = r.u64();
  const std::uint64_t parent_serial = r.u64();
  const std::uint64_t check = r.u64();
  Writer checked;
  checked.bytes(ByteSpan(priv).first(std::min<std::size_t>(16, priv.size()))).bytes(pub);
  if (r.failed() || r.remaining() != 0 || parent_serial != parent_object.serial || check != mac(checked.view())) {
    return at_param(TPM2_RC_INTEGRITY, 1);
  }
  if (auto rc = object_room()) return *rc;
  Object o;
  o.serial = serial;
  o.hierarchy = parent_object.hierarchy;
  o.public_area = pub;
  Bytes name = name_of(serial);
  const TPM2_HANDLE h = add_object(std::move(o));
  return Reply(h, Writer().tpm2b(name).take());
}

FakeTpm::Reply FakeTpm::read_public(TPM2_HANDLE handle) {
  const Object& o = objects_.at(handle);
  if (o.kind == ObjectKind::kSequence) return TPM2_RC_SEQUENCE;
  Bytes name = name_of(o.serial);
  return Reply(std::nullopt, Writer().bytes(o.public_area).tpm2b(name).tpm2b(name).take());
}

FakeTpm::Reply FakeTpm::certify(TPM2_HANDLE object, TPM2_HANDLE signer, Reader& in) {
  TPM2B_DATA qualifying{};
  TPMT_SIG_SCHEME scheme{};
  in.mu(qualifying, Tss2_MU_TPM2B_DATA_Unmarshal);
  in.mu(scheme, Tss2_MU_TPMT_SIG_SCHEME_Unmarshal);
  if (auto rc = in.end(2)) return *rc;
  // Not a real TPMS_ATTEST: just which two objects the command reached.
  Writer attest;
  attest.u64(objects_.at(object).serial).u64(objects_.at(signer).serial);
  return Reply(std::nullopt, Writer().tpm2b(attest.view()).u16(TPM2_ALG_NULL).take());
}

FakeTpm::Reply FakeTpm::start_auth_session(Reader& in) {
  Bytes nonce_caller = in.tpm2b();
  Bytes salt = in.tpm2b();
  const std::uint8_t type = in.u8();
  TPMT_SYM_DEF symmetric{};
  in.mu(symmetric, Tss2_MU_TPMT_SYM_DEF_Unmarshal);
  const TPMI_ALG_HASH auth_hash = in.u16();
  if (auto rc = in.end(5)) return *rc;
  if (nonce_caller.size() < 16 || nonce_caller.size() > 64) return at_param(TPM2_RC_SIZE, 1);
  if (type != TPM2_SE_HMAC && type != TPM2_SE_POLICY && type != TPM2_SE_TRIAL) return at_param(TPM2_RC_VALUE, 3);
  auto size = digest_size(auth_hash);
  if (!size) return at_param(TPM2_RC_HASH, 5);
  if (loaded_session_count() >= options_.session_slots) return TPM2_RC_SESSION_MEMORY;
  if (sessions_.size() >= options_.active_sessions_max) return TPM2_RC_SESSION_HANDLES;
  if (last_slot_reserved()) return TPM2_RC_CONTEXT_GAP;
  std::uint32_t index = 0;
  while (index <= kMaxSessionIndex && sessions_.count(index)) ++index;
  if (index > kMaxSessionIndex) return TPM2_RC_SESSION_HANDLES;
  Session s;
  s.serial = next_serial_++;
  s.type = type;
  s.digest.assign(*size, 0);
  Writer nonce;
  nonce.u64(s.serial);
  Bytes nonce_tpm = nonce.take();
  nonce_tpm.resize(*size, 0x4E);
  sessions_.emplace(index, std::move(s));
  return Reply(session_handle(index, type), Writer().tpm2b(nonce_tpm).take());
}

FakeTpm::Reply FakeTpm::policy_auth_value(TPM2_HANDLE handle) {
  Session& s = sessions_.at(handle & kMaxSessionIndex);
  for (std::size_t i = 0; i < s.digest.size(); ++i) {
    s.digest[i] = static_cast<std::uint8_t>(s.digest[i] * 31 + 0x6B + i);
  }
  return Reply(std::nullopt, {});
}

FakeTpm::Reply FakeTpm::policy_get_digest(TPM2_HANDLE handle) {
  return Reply(std::nullopt, Writer().tpm2b(sessions_.at(handle & kMaxSessionIndex).digest).take());
}

FakeTpm::Reply FakeTpm::hash_sequence_start(Reader& in) {
  Bytes auth = in.tpm2b();
  const TPMI_ALG_HASH alg = in.u16();
  if (auto rc = in.end(2)) return *rc;
  if (auth.size() > 64) return at_param(TPM2_RC_SIZE, 1);
  if (alg != TPM2_ALG_NULL && !digest_size(alg)) return at_param(TPM2_RC_HASH, 2);
  if (auto rc = object_room()) return *rc;
  Object o;
  o.serial = next_serial_++;
  o.kind = ObjectKind::kSequence;
  o.state = fnv(0xcbf29ce484222325ull, Writer().u16(alg).view());
  return Reply(add_object(std::move(o)), {});
}

FakeTpm::Reply FakeTpm::sequence_update(TPM2_HANDLE handle, Reader& in) {
  Bytes data = in.tpm2b();
  if (auto rc = in.end(1)) return *rc;
  Object& o = objects_.at(handle);
  o.state = fnv(o.state, data);
  return Reply(std::nullopt, {});
}

FakeTpm::Reply FakeTpm::sequence_complete(TPM2_HANDLE handle, Reader& in) {
  Bytes data = in.tpm2b();
  const TPM2_HANDLE hierarchy = in.u32();
  if (auto rc = in.end(2)) return *rc;
  if (!is_hierarchy(hierarchy)) return at_param(TPM2_RC_VALUE, 2);
  const std::uint64_t state = fnv(objects_.at(handle).state, data);
  objects_.erase(handle);
  Writer result;
  for (int i = 0; i < 4; ++i) result.u64(state + static_cast<std::uint64_t>(i));
  Writer w;
  w.tpm2b(result.view()).u16(TPM2_ST_HASHCHECK).u32(hierarchy).u16(0);
  return Reply(std::nullopt, w.take());
}

FakeTpm::Reply FakeTpm::flush_context(Reader& in) {
  const TPM2_HANDLE h = in.u32();
  if (auto rc = in.end(1)) return *rc;
  if (is_transient(h)) {
    if (!objects_.erase(h)) return at_param(TPM2_RC_HANDLE, 1);
    return Reply(std::nullopt, {});
  }
  if (!is_session(h)) return at_param(TPM2_RC_VALUE, 1);
  auto it = sessions_.find(h & kMaxSessionIndex);
  if (it == sessions_.end() || session_handle(it->first, it->second.type) != h) {
    return at_param(TPM2_RC_HANDLE, 1);
  }
  sessions_.erase(it);
  return Reply(std::nullopt, {});
}

FakeTpm::Reply FakeTpm::context_save(TPM2_HANDLE handle) {
  TPMS_CONTEXT ctx{};
  Writer payload;
  Session* saved = nullptr;  // a saved session leaves the TPM's memory
  if (is_transient(handle)) {
    const Object& o = objects_.at(handle);
    ctx.sequence = object_counter_++;
    ctx.savedHandle = o.kind == ObjectKind::kSequence ? kSequenceMarker : kOrdinaryMarker;
    ctx.hierarchy = o.hierarchy;
    payload.u8(kBlobObject).u64(o.serial).u8(static_cast<std::uint8_t>(o.kind)).u32(o.hierarchy).u64(o.state);
    payload.tpm2b(o.public_area);
  } else {
    Session& s = sessions_.at(handle & kMaxSessionIndex);
    // A saved session's sequence must stay within the gap of every later one: the TPM refuses a save that
    // would leave the oldest saved session unloadable.
    const auto oldest = oldest_saved_sequence();
    if (oldest && session_counter_ - *oldest > options_.context_gap_max) return TPM2_RC_CONTEXT_GAP;
    ctx.sequence = session_counter_;
    ctx.savedHandle = handle;
    ctx.hierarchy = TPM2_RH_NULL;
    payload.u8(kBlobSession).u64(s.serial).u8(s.type).tpm2b(s.digest);
    saved = &s;
  }
  Writer checked;
  checked.u64(ctx.sequence).u32(ctx.savedHandle).u32(ctx.hierarchy).bytes(payload.view());
  payload.u64(mac(checked.view()));
  const Bytes& blob = payload.view();
  if (blob.size() > sizeof ctx.contextBlob.buffer) return TPM2_RC_FAILURE;
  if (saved) {
    saved->loaded = false;
    saved->sequence = session_counter_++;
  }
  ctx.contextBlob.size = static_cast<std::uint16_t>(blob.size());
  std::copy(blob.begin(), blob.end(), ctx.contextBlob.buffer);
  return Reply(std::nullopt, Writer().mu(ctx, Tss2_MU_TPMS_CONTEXT_Marshal).take());
}

FakeTpm::Reply FakeTpm::context_load(Reader& in) {
  TPMS_CONTEXT ctx{};
  in.mu(ctx, Tss2_MU_TPMS_CONTEXT_Unmarshal);
  if (auto rc = in.end(1)) return *rc;
  const ByteSpan blob(ctx.contextBlob.buffer, std::min<std::size_t>(ctx.contextBlob.size,
                                                                     sizeof ctx.contextBlob.buffer));
  const TPM2_RC integrity = at_param(TPM2_RC_INTEGRITY, 1);
  if (blob.size() < 8) return integrity;
  Writer checked;
  checked.u64(ctx.sequence).u32(ctx.savedHandle).u32(ctx.hierarchy).bytes(blob.first(blob.size() - 8));
  Reader tail(blob, blob.size() - 8);
  if (tail.u64() != mac(checked.view())) return integrity;

  Reader r(blob.first(blob.size() - 8));
  const std::uint8_t kind = r.u8();
  const std::uint64_t serial = r.u64();
  if (kind == kBlobSession) {
    const TPM2_SE type = r.u8();
    Bytes digest = r.tpm2b();
    if (r.failed() || r.remaining() != 0 || !is_session(ctx.savedHandle)) return integrity;
    // Only the latest save of a session that still exists can be loaded, and only once.
    auto it = sessions_.find(ctx.savedHandle & kMaxSessionIndex);
    if (it == sessions_.end() || session_handle(it->first, it->second.type) != ctx.savedHandle ||
        it->second.serial != serial || it->second.type != type || it->second.loaded ||
        it->second.sequence != ctx.sequence) {
      return at_param(TPM2_RC_HANDLE, 1);
    }
    if (loaded_session_count() >= options_.session_slots) return TPM2_RC_SESSION_MEMORY;
    if (last_slot_reserved() && it->second.sequence != oldest_saved_sequence()) return TPM2_RC_CONTEXT_GAP;
    it->second.loaded = true;
    it->second.digest = std::move(digest);
    return Reply(ctx.savedHandle, {});
  }
  if (kind != kBlobObject) return integrity;
  Object o;
  o.serial = serial;
  o.kind = static_cast<ObjectKind>(r.u8());
  o.hierarchy = r.u32();
  o.state = r.u64();
  o.public_area = r.tpm2b();
  if (r.failed() || r.remaining() != 0 || o.hierarchy != ctx.hierarchy || !is_hierarchy(o.hierarchy)) {
    return integrity;
  }
  if (!enabled_.at(o.hierarchy)) return at_param(TPM2_RC_HIERARCHY, 1);
  if (auto rc = object_room()) return *rc;
  return Reply(add_object(std::move(o)), {});
}

std::vector<std::pair<TPM2_PT, std::uint32_t>> FakeTpm::properties() const {
  const auto loaded = static_cast<std::uint32_t>(loaded_session_count());
  const auto active = static_cast<std::uint32_t>(sessions_.size());
  const auto objects = static_cast<std::uint32_t>(objects_.size());
  auto avail = [](std::uint32_t cap, std::uint32_t used) { return cap > used ? cap - used : 0u; };
  std::uint32_t startup_clear = 0x80000000u;  // orderly
  if (enabled_.at(TPM2_RH_PLATFORM)) startup_clear |= 1u << 0;
  if (enabled_.at(TPM2_RH_OWNER)) startup_clear |= 1u << 1;
  if (enabled_.at(TPM2_RH_ENDORSEMENT)) startup_clear |= 1u << 2;
  return {
      {TPM2_PT_FAMILY_INDICATOR, info_.family},
      {TPM2_PT_LEVEL, 0},
      {TPM2_PT_REVISION, info_.revision},
      {TPM2_PT_MANUFACTURER, 0x46414B45u},  // "FAKE"
      {TPM2_PT_VENDOR_STRING_1, 0x74706D72u},  // "tpmr"
      {TPM2_PT_VENDOR_STRING_2, 0x6D642D66u},  // "md-f"
      {TPM2_PT_VENDOR_STRING_3, 0x616B6500u},  // "ake"
      {TPM2_PT_VENDOR_STRING_4, 0},
      {TPM2_PT_FIRMWARE_VERSION_1, 0},
      {TPM2_PT_FIRMWARE_VERSION_2, 1},
      {TPM2_PT_INPUT_BUFFER, 1024},
      {TPM2_PT_HR_TRANSIENT_MIN, info_.hr_transient_min},
      {TPM2_PT_HR_PERSISTENT_MIN, 7},
      {TPM2_PT_HR_LOADED_MIN, info_.hr_loaded_min},
      {TPM2_PT_ACTIVE_SESSIONS_MAX, info_.active_sessions_max},
      {TPM2_PT_PCR_COUNT, 24},
      {TPM2_PT_PCR_SELECT_MIN, 3},
      {TPM2_PT_CONTEXT_GAP_MAX, info_.context_gap_max},
      {TPM2_PT_NV_INDEX_MAX, 2048},
      {TPM2_PT_CONTEXT_HASH, TPM2_ALG_SHA256},
      {TPM2_PT_MAX_COMMAND_SIZE, info_.max_command_size},
      {TPM2_PT_MAX_RESPONSE_SIZE, info_.max_response_size},
      {TPM2_PT_MAX_DIGEST, 64},
      {TPM2_PT_MAX_OBJECT_CONTEXT, info_.max_object_context},
      {TPM2_PT_MAX_SESSION_CONTEXT, info_.max_session_context},
      {TPM2_PT_TOTAL_COMMANDS, info_.total_commands},
      {TPM2_PT_LIBRARY_COMMANDS, info_.total_commands},
      {TPM2_PT_VENDOR_COMMANDS, 0},
      {TPM2_PT_PERMANENT, 0},
      {TPM2_PT_STARTUP_CLEAR, startup_clear},
      {TPM2_PT_HR_NV_INDEX, 0},
      {TPM2_PT_HR_LOADED, loaded},
      {TPM2_PT_HR_LOADED_AVAIL, avail(options_.session_slots, loaded)},
      {TPM2_PT_HR_ACTIVE, active},
      {TPM2_PT_HR_ACTIVE_AVAIL, avail(options_.active_sessions_max, active)},
      {TPM2_PT_HR_TRANSIENT_AVAIL, avail(options_.object_slots, objects)},
      {TPM2_PT_HR_PERSISTENT, 0},
      {TPM2_PT_HR_PERSISTENT_AVAIL, 7},
  };
}

FakeTpm::Reply FakeTpm::get_capability(Reader& in) {
  const TPM2_CAP capability = in.u32();
  const std::uint32_t property = in.u32();
  const std::uint32_t count = in.u32();
  if (auto rc = in.end(3)) return *rc;
  // Each answer fits the response buffer: moreData tells the caller to ask again.
  const std::size_t overhead = tpm::kHeaderSize + 1 + 4 + 4;
  const std::size_t room = options_.max_response_size > overhead ? options_.max_response_size - overhead : 0;
  auto page = [&](std::size_t available, std::size_t cap, std::size_t item_size) {
    return std::min({available, static_cast<std::size_t>(count), cap, room / item_size});
  };
  Writer w;
  if (capability == TPM2_CAP_TPM_PROPERTIES) {
    std::vector<std::pair<TPM2_PT, std::uint32_t>> selected;
    for (const auto& p : properties()) {
      if (p.first >= property) selected.push_back(p);
    }
    std::sort(selected.begin(), selected.end());
    const std::size_t n = page(selected.size(), TPM2_MAX_TPM_PROPERTIES, 8);
    w.u8(n < selected.size() ? TPM2_YES : TPM2_NO).u32(capability).u32(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) w.u32(selected[i].first).u32(selected[i].second);
    return Reply(std::nullopt, w.take());
  }
  if (capability == TPM2_CAP_HANDLES) {
    std::vector<TPM2_HANDLE> selected;
    const std::uint8_t range = type_of(property);
    if (range == TPM2_HT_TRANSIENT) {
      for (const auto& [h, o] : objects_) {
        if (h >= property) selected.push_back(h);
      }
    } else if (range == TPM2_HT_LOADED_SESSION || range == TPM2_HT_SAVED_SESSION) {
      // Both session types share one index space; the range says loaded or saved.
      for (const auto& [i, s] : sessions_) {
        if (s.loaded == (range == TPM2_HT_LOADED_SESSION) && i >= (property & kMaxSessionIndex)) {
          selected.push_back(session_handle(i, s.type));
        }
      }
    } else if (range == TPM2_HT_PERMANENT) {
      for (TPM2_HANDLE h : {TPM2_RH_OWNER, TPM2_RH_NULL, TPM2_RS_PW, TPM2_RH_LOCKOUT, TPM2_RH_ENDORSEMENT,
                            TPM2_RH_PLATFORM, TPM2_RH_PLATFORM_NV}) {
        if (h >= property) selected.push_back(h);
      }
    } else if (range != TPM2_HT_PCR && range != TPM2_HT_NV_INDEX && range != TPM2_HT_PERSISTENT) {
      return at_param(TPM2_RC_VALUE, 2);
    }
    const std::size_t n = page(selected.size(), TPM2_MAX_CAP_HANDLES, 4);
    w.u8(n < selected.size() ? TPM2_YES : TPM2_NO).u32(capability).u32(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) w.u32(selected[i]);
    return Reply(std::nullopt, w.take());
  }
  if (capability == TPM2_CAP_COMMANDS) {
    std::vector<TPMA_CC> selected;
    for (TPMA_CC a : wire_commands_) {
      if ((a & 0xFFFFu) >= (property & 0xFFFFu)) selected.push_back(a);
    }
    const std::size_t n = page(selected.size(), TPM2_MAX_CAP_CC, 4);
    w.u8(n < selected.size() ? TPM2_YES : TPM2_NO).u32(capability).u32(static_cast<std::uint32_t>(n));
    for (std::size_t i = 0; i < n; ++i) w.u32(selected[i]);
    return Reply(std::nullopt, w.take());
  }
  return at_param(TPM2_RC_VALUE, 1);
}

FakeTpm::Reply FakeTpm::get_random(Reader& in) {
  const std::uint16_t requested = in.u16();
  if (auto rc = in.end(1)) return *rc;
  Writer w;
  const std::uint16_t n = std::min<std::uint16_t>(requested, 32);
  w.u16(n);
  for (std::uint16_t i = 0; i < n; ++i) {
    random_ = random_ * 6364136223846793005ull + 1442695040888963407ull;
    w.u8(static_cast<std::uint8_t>(random_ >> 56));
  }
  return Reply(std::nullopt, w.take());
}

FakeTpm::Reply FakeTpm::hierarchy_control(TPM2_HANDLE auth, Reader& in) {
  const TPM2_HANDLE enable = in.u32();
  const std::uint8_t state = in.u8();
  if (auto rc = in.end(2)) return *rc;
  if (enable != TPM2_RH_OWNER && enable != TPM2_RH_ENDORSEMENT && enable != TPM2_RH_PLATFORM &&
      enable != TPM2_RH_PLATFORM_NV) {
    return at_param(TPM2_RC_VALUE, 1);
  }
  if (state > 1) return at_param(TPM2_RC_VALUE, 2);
  // Who may touch what, simplified from the TPM's rules: only the platform enables; a hierarchy may disable
  // itself.
  if (auth != TPM2_RH_PLATFORM && (state == TPM2_YES || auth != enable)) return TPM2_RC_AUTH_TYPE;
  if (enable == TPM2_RH_PLATFORM_NV) return Reply(std::nullopt, {});
  enabled_[enable] = state == TPM2_YES;
  if (state == TPM2_NO) {
    // A disabled hierarchy's transient objects are flushed.
    std::erase_if(objects_, [&](const auto& e) { return e.second.hierarchy == enable; });
  }
  return Reply(std::nullopt, {});
}

}  // namespace tpmrmd::testing

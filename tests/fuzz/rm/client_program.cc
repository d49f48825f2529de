#include "client_program.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "rm/handles.h"
#include "support/tpm_commands.h"
#include "tpm/endian.h"
#include "tpm/header.h"
#include "tpm/responses.h"

namespace tpmrmd::fuzz {
namespace {

using testing::build_command;

constexpr std::size_t kMaxKept = 12;  // handles, blobs, keys, commands kept for later steps
// Where CreatePrimary's parameters start in the builder's output: header, one handle, authorizationSize and
// one empty password authorization.
constexpr std::size_t kCreatePrimaryParams = 10 + 4 + 4 + 9;

template <typename T>
void keep(std::vector<T>& v, T value) {
  if (v.size() >= kMaxKept) v.erase(v.begin());
  v.push_back(std::move(value));
}

void put_u16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put_u32(Bytes& b, std::uint32_t v) {
  put_u16(b, static_cast<std::uint16_t>(v >> 16));
  put_u16(b, static_cast<std::uint16_t>(v));
}
void put_tpm2b(Bytes& b, ByteSpan v) {
  put_u16(b, static_cast<std::uint16_t>(v.size()));
  b.insert(b.end(), v.begin(), v.end());
}

// The TPM2B at `offset` (size field included), if it fits.
std::optional<Bytes> tpm2b_at(ByteSpan bytes, std::size_t& offset) {
  if (bytes.size() < offset + 2) return std::nullopt;
  const std::size_t n = (std::size_t{bytes[offset]} << 8) | bytes[offset + 1];
  if (bytes.size() < offset + 2 + n) return std::nullopt;
  Bytes out(bytes.begin() + static_cast<std::ptrdiff_t>(offset),
            bytes.begin() + static_cast<std::ptrdiff_t>(offset + 2 + n));
  offset += 2 + n;
  return out;
}

constexpr TPM2_HANDLE kWellKnown[] = {
    0x80000000u,        0x80000001u,         0x80000002u,          0x80FFFFFFu,     TPM2_RH_OWNER,
    TPM2_RH_NULL,       TPM2_RH_PLATFORM,    TPM2_RH_ENDORSEMENT,  TPM2_RS_PW,      0x02000000u,
    0x03000000u,        0x02000001u,         0x03000001u,          0x81000000u,     0x01000000u,
    TPM2_RH_LOCKOUT,
};

constexpr TPM2_CC kCodes[] = {
    TPM2_CC_ContextLoad,  TPM2_CC_ContextSave,    TPM2_CC_FlushContext, TPM2_CC_CreatePrimary,
    TPM2_CC_Load,         TPM2_CC_StartAuthSession, TPM2_CC_ReadPublic, TPM2_CC_HashSequenceStart,
    TPM2_CC_GetCapability, TPM2_CC_PolicyGetDigest, TPM2_CC_SequenceComplete, TPM2_CC_HierarchyControl,
};

// What a TPM may answer without contradicting its state: warnings, refusals. (A "gone" code such as
// TPM_RC_HANDLE for an object that is loaded is a lie, which the hostile-TPM target tells.)
constexpr TPM2_RC kRcs[] = {
    TPM2_RC_OBJECT_MEMORY,
    TPM2_RC_OBJECT_HANDLES,
    TPM2_RC_SESSION_MEMORY,
    TPM2_RC_SESSION_HANDLES,
    TPM2_RC_MEMORY,
    TPM2_RC_CONTEXT_GAP,
    TPM2_RC_RETRY,
    TPM2_RC_FAILURE,
    TPM2_RC_HIERARCHY | TPM2_RC_P | TPM2_RC_1,
    TPM2_RC_VALUE | TPM2_RC_P | TPM2_RC_1,
    TPM2_RC_INITIALIZE,
};

}  // namespace

ClientProgram::ClientProgram(FuzzInput& in, ProgramLimits limits) : in_(in), limits_(limits) {
  const std::uint8_t t = in_.u8(), r = in_.u8(), g = in_.u8();
  testing::FakeTpmOptions tpm_options;
  tpm_options.object_slots = 1 + (t & 3);
  tpm_options.session_slots = 1 + ((t >> 2) & 3);
  if (t & 0x10) tpm_options.context_gap_max = 4 + (g & 15);
  tpm_options.objects_full_is_object_handles = t & 0x20;
  if (t & 0x40) tpm_options.reported_object_slots = tpm_options.object_slots + 1;
  if (t & 0x80) tpm_options.reported_session_slots = tpm_options.session_slots + 1;
  if (g & 0x40) tpm_options.active_sessions_max = 4 + ((g >> 4) & 3);
  rm::RmOptions options;
  constexpr std::uint32_t kObjects[] = {1024, 1, 2, 4};
  constexpr std::uint32_t kSessions[] = {32, 1, 2, 3};
  constexpr std::uint32_t kAbandoned[] = {16, 0, 1, 2};
  constexpr std::uint32_t kMargins[] = {64, 0, 2, 4};
  options.max_objects_per_connection = kObjects[r & 3];
  options.max_sessions_per_connection = kSessions[(r >> 2) & 3];
  options.max_abandoned_sessions = kAbandoned[(r >> 4) & 3];
  options.regap_margin = kMargins[(r >> 6) & 3];
  options.rc_mode = g & 0x80;
  tpm_ = std::make_unique<testing::FakeTpm>(tpm_options);
  invariants_ = std::make_unique<testing::RmInvariants>(*tpm_);
  rm_ = std::make_unique<rm::ResourceManager>(invariants_->port(), options);
  invariants_->watch(*rm_);
}

ClientProgram::~ClientProgram() = default;

void ClientProgram::run() {
  run_steps();
  finish();
}

void ClientProgram::run_steps() {
  for (std::size_t i = 0; i < limits_.max_steps && !in_.empty(); ++i) {
    step();
    invariants_->check();
  }
}

void ClientProgram::finish() {  // Whatever faults are still armed, the end is a clean close: what remains is then the RM's doing.
  tpm_->fail_next(0, 0);
  tpm_->inject_rc(0, 0, 0);
  while (!connections_.empty()) {
    close(0);
    invariants_->check();
  }
  invariants_->check_all_closed();
  rm_->shutdown();
  invariants_->check_shut_down();
}

void ClientProgram::step() {
  switch (step_of(in_.u8())) {
    case Step::kOpen:
      open();
      return;
    case Step::kClose:
      if (!connections_.empty()) close(pick_connection());
      return;
    case Step::kCommand:
      if (connections_.empty()) return open();
      {
        const std::size_t c = pick_connection();
        execute(c, structured(c));
      }
      return;
    case Step::kRaw:
      if (connections_.empty()) open();
      {
        const std::size_t c = pick_connection();
        execute(c, raw());
      }
      return;
    case Step::kMutate:
      if (connections_.empty() || recent_.empty()) return;
      {
        const std::size_t c = pick_connection();
        execute(c, mutated());
      }
      return;
    case Step::kFault:
      if (limits_.faults) fault();
      return;
  }
}

void ClientProgram::open() {
  if (connections_.size() >= limits_.max_connections) return;
  auto id = rm_->open(rm::ClientInfo{0, 0, 0});
  if (!id) return;
  connections_.push_back(Connection{*id, {}, {}});
  if (limits_.trace) std::fprintf(stderr, "open conn %llu\n", static_cast<unsigned long long>(*id));
}

void ClientProgram::close(std::size_t index) {
  if (limits_.trace) std::fprintf(stderr, "close conn %llu\n", static_cast<unsigned long long>(connections_[index].id));
  rm_->close(connections_[index].id);
  connections_.erase(connections_.begin() + static_cast<std::ptrdiff_t>(index));
}

std::size_t ClientProgram::pick_connection() { return in_.pick(connections_.size()); }

void ClientProgram::execute(std::size_t index, const Bytes& command) {
  Connection& c = connections_[index];
  executing_command_ = &command;
  executing_connection_ = c.id;
  auto result = rm_->execute(c.id, command);
  executing_command_ = nullptr;
  if (limits_.trace) {
    std::fprintf(stderr, "conn %llu: %s -> %s\n", static_cast<unsigned long long>(c.id), to_hex(command).c_str(),
                 result ? to_hex(*result).c_str() : describe(result.error()).c_str());
  }
  invariants_->on_response(c.id, command, result);
  if (command.size() >= tpm::kHeaderSize) keep(recent_, command);
  if (result) learn(c, command, *result);
}

void ClientProgram::learn(Connection& c, const Bytes& command, const Bytes& response) {
  auto header = tpm::parse_command_header(command);
  auto rc = tpm::response_code(response);
  if (!header || !rc || *rc != TPM2_RC_SUCCESS) return;
  auto attributes = tpm_->info().commands.find(header->code);
  if (attributes && attributes->returns_handle() && response.size() >= tpm::kHeaderSize + 4) {
    const TPM2_HANDLE h = tpm::load_u32(response, tpm::kHeaderSize);
    if (rm::is_transient(h)) keep(c.handles, h);
    if (rm::is_session(h)) {
      keep(c.sessions, h);
      keep(all_sessions_, h);
    }
  }
  if (header->code == TPM2_CC_ContextSave && response.size() > tpm::kHeaderSize) {
    keep(blobs_, Bytes(response.begin() + tpm::kHeaderSize, response.end()));
  }
  if (header->code == TPM2_CC_Create) {
    // outPrivate, outPublic; after parameterSize when the response has sessions.
    std::size_t offset = tpm::kHeaderSize + (response[1] == 0x02 ? 4 : 0);
    auto priv = tpm2b_at(response, offset);
    auto pub = priv ? tpm2b_at(response, offset) : std::nullopt;
    if (pub) keep(keys_, Key{std::move(*priv), std::move(*pub)});
  }
}

TPM2_HANDLE ClientProgram::pick_handle(std::size_t index) {
  const Connection& c = connections_[index];
  const std::uint8_t how = in_.u8();
  switch (how % 8) {
    case 0:
    case 1:
    case 2:
      if (!c.handles.empty()) return c.handles[in_.pick(c.handles.size())];
      return 0x80000000u;
    case 3: {
      const Connection& other = connections_[in_.pick(connections_.size())];
      if (!other.handles.empty()) return other.handles[in_.pick(other.handles.size())];
      return 0x80000001u;
    }
    case 4:
      if (!c.sessions.empty()) return c.sessions[in_.pick(c.sessions.size())];
      return 0x03000000u;
    case 5:
      if (!all_sessions_.empty()) return all_sessions_[in_.pick(all_sessions_.size())];
      return 0x02000000u;
    case 6:
      return kWellKnown[in_.pick(std::size(kWellKnown))];
    default:
      return in_.u32();
  }
}

std::vector<tpm::Auth> ClientProgram::pick_auths(std::size_t index, std::size_t min, std::size_t max) {
  std::vector<tpm::Auth> auths;
  const std::uint8_t how = in_.u8();
  const std::size_t n = min + (max > min ? (how >> 4) % (max - min + 1) : 0);
  for (std::size_t i = 0; i < n; ++i) {
    if ((how >> i) & 1) {
      const std::uint8_t attributes = in_.u8();  // continueSession (bit 0) clear ends the session
      auths.push_back(tpm::Auth{pick_handle(index), attributes});
    } else {
      auths.push_back(tpm::Auth{});
    }
  }
  return auths;
}

Bytes ClientProgram::structured(std::size_t index) {
  Bytes p;
  switch (in_.u8() % 18) {
    case 0:
    case 1: {
      constexpr TPM2_HANDLE kHierarchies[] = {TPM2_RH_OWNER, TPM2_RH_ENDORSEMENT, TPM2_RH_PLATFORM, TPM2_RH_NULL};
      const TPM2_HANDLE h = kHierarchies[in_.u8() % 4];
      const std::uint8_t unique = in_.u8();
      Bytes cp = testing::create_primary(h, unique);
      auto auths = pick_auths(index, 1, 1);
      return build_command(TPM2_CC_CreatePrimary, {h}, auths, ByteSpan(cp).subspan(kCreatePrimaryParams));
    }
    case 2: {
      Bytes cp = testing::create_primary(TPM2_RH_OWNER, in_.u8());
      const TPM2_HANDLE parent = pick_handle(index);
      return build_command(TPM2_CC_Create, {parent}, pick_auths(index, 1, 1),
                           ByteSpan(cp).subspan(kCreatePrimaryParams));
    }
    case 3: {
      const TPM2_HANDLE parent = pick_handle(index);
      if (!keys_.empty()) {
        const Key& k = keys_[in_.pick(keys_.size())];
        p = k.private_area;
        p.insert(p.end(), k.public_area.begin(), k.public_area.end());
      }
      return build_command(TPM2_CC_Load, {parent}, pick_auths(index, 1, 1), p);
    }
    case 4:
    case 5:
      return testing::read_public(pick_handle(index));
    case 6: {
      const TPM2_SE type = in_.u8() & 1 ? TPM2_SE_POLICY : TPM2_SE_HMAC;
      const bool bound = in_.u8() & 1;
      const TPM2_HANDLE key = bound ? pick_handle(index) : TPM2_RH_NULL;
      const TPM2_HANDLE bind = bound ? pick_handle(index) : TPM2_RH_NULL;
      return testing::start_auth_session(type, key, bind);
    }
    case 7: {
      const TPM2_HANDLE s = pick_handle(index);
      if (in_.u8() & 1) return build_command(TPM2_CC_PolicyAuthValue, {s}, {}, {});
      return build_command(TPM2_CC_PolicyGetDigest, {s}, pick_auths(index, 0, 2), {});
    }
    case 8:
      return testing::context_save(pick_handle(index));
    case 9: {
      if (blobs_.empty()) return testing::context_load(Bytes(24, 0));
      Bytes blob = blobs_[in_.pick(blobs_.size())];
      const std::uint8_t how = in_.u8();
      if ((how & 3) == 1) blob[in_.pick(blob.size())] ^= static_cast<std::uint8_t>(1u << (how >> 5));
      if ((how & 3) == 2) blob.resize(in_.pick(blob.size()));
      return testing::context_load(blob);
    }
    case 10:
      return testing::flush_context(pick_handle(index));
    case 11: {
      put_u16(p, 0);
      put_u16(p, in_.u8() & 1 ? TPM2_ALG_SHA256 : TPM2_ALG_NULL);
      return build_command(TPM2_CC_HashSequenceStart, {}, {}, p);
    }
    case 12: {
      const TPM2_HANDLE s = pick_handle(index);
      put_tpm2b(p, in_.bytes(in_.u8() % 8));
      return build_command(TPM2_CC_SequenceUpdate, {s}, pick_auths(index, 1, 1), p);
    }
    case 13: {
      const TPM2_HANDLE s = pick_handle(index);
      put_tpm2b(p, in_.bytes(in_.u8() % 8));
      put_u32(p, TPM2_RH_NULL);
      return build_command(TPM2_CC_SequenceComplete, {s}, pick_auths(index, 1, 1), p);
    }
    case 14: {
      constexpr TPM2_HANDLE kRanges[] = {0x80000000u, 0x80000001u, 0x80000002u, 0x02000000u,
                                         0x03000000u, 0x03000001u, 0x40000000u, 0x81000000u};
      const std::uint8_t how = in_.u8();
      const TPM2_HANDLE from = how & 0x80 ? in_.u32() : kRanges[how & 7];
      const std::uint32_t count = how & 0x40 ? in_.u32() : in_.u8() % 4;
      if (how & 0x20) {
        put_u32(p, TPM2_CAP_HANDLES);
        put_u32(p, from);
        put_u32(p, count);
        return build_command(TPM2_CC_GetCapability, {}, pick_auths(index, 1, 3), p);
      }
      return testing::get_capability(TPM2_CAP_HANDLES, from, count);
    }
    case 15: {
      constexpr TPM2_PT kProperties[] = {TPM2_PT_FIXED, TPM2_PT_VAR, TPM2_PT_HR_TRANSIENT_AVAIL,
                                         TPM2_PT_HR_LOADED, TPM2_PT_CONTEXT_GAP_MAX, TPM2_PT_HR_ACTIVE_AVAIL};
      const std::uint8_t how = in_.u8();
      const TPM2_CAP cap = how & 0x80 ? TPM2_CAP_COMMANDS : TPM2_CAP_TPM_PROPERTIES;
      put_u32(p, cap);
      put_u32(p, kProperties[in_.pick(std::size(kProperties))]);
      put_u32(p, how & 0x40 ? in_.u32() : in_.u8() % 64);
      return build_command(TPM2_CC_GetCapability, {}, how & 0x20 ? pick_auths(index, 1, 2) : std::vector<tpm::Auth>{},
                           p);
    }
    case 16: {
      constexpr TPM2_HANDLE kAuth[] = {TPM2_RH_PLATFORM, TPM2_RH_OWNER, TPM2_RH_ENDORSEMENT};
      constexpr TPM2_HANDLE kEnable[] = {TPM2_RH_OWNER, TPM2_RH_ENDORSEMENT, TPM2_RH_PLATFORM, TPM2_RH_PLATFORM_NV};
      const std::uint8_t how = in_.u8();
      put_u32(p, kEnable[(how >> 2) & 3]);
      p.push_back((how >> 4) & 1);
      return build_command(TPM2_CC_HierarchyControl, {kAuth[how % 3]}, pick_auths(index, 1, 1), p);
    }
    default: {
      const TPM2_HANDLE object = pick_handle(index), signer = pick_handle(index);
      put_u16(p, 0);
      put_u16(p, TPM2_ALG_NULL);
      return build_command(TPM2_CC_Certify, {object, signer}, pick_auths(index, 2, 2), p);
    }
  }
}

Bytes ClientProgram::raw() {
  const std::size_t n = in_.u16() % 1024;
  Bytes command = in_.bytes(n);
  if (in_.u8() & 1 && command.size() >= tpm::kHeaderSize) tpm::patch_size_field(command);
  return command;
}

Bytes ClientProgram::mutated() {
  Bytes command = recent_[in_.pick(recent_.size())];
  const std::size_t edits = 1 + in_.u8() % 4;
  for (std::size_t i = 0; i < edits && !command.empty(); ++i) {
    const std::size_t at = in_.pick(command.size());
    const std::uint8_t value = in_.u8();
    switch (in_.u8() % 4) {
      case 0: command[at] = value; break;
      case 1: command.insert(command.begin() + static_cast<std::ptrdiff_t>(at), value); break;
      case 2: command.erase(command.begin() + static_cast<std::ptrdiff_t>(at)); break;
      default: command.resize(at); break;
    }
  }
  if (in_.u8() & 1 && command.size() >= tpm::kHeaderSize) tpm::patch_size_field(command);
  return command;
}

void ClientProgram::fault() {
  const std::uint8_t how = in_.u8();
  if (limits_.trace) std::fprintf(stderr, "fault %u\n", how % 5);
  switch (how % 5) {
    case 0:
    case 1:
      tpm_->inject_rc(kCodes[in_.pick(std::size(kCodes))], kRcs[in_.pick(std::size(kRcs))], 1 + (how >> 6));
      return;
    case 2: {
      constexpr int kErrors[] = {ENODEV, ETIME, EIO};
      tpm_->fail_next(kErrors[(how >> 3) % 3], 1 + (how >> 7));
      return;
    }
    case 3:
      if (!limits_.restarts) return;
      tpm_->restart();
      invariants_->on_restart();
      return;
    default:
      tpm_->set_slots(in_.u8() % 5, in_.u8() % 5);
      return;
  }
}

}  // namespace tpmrmd::fuzz

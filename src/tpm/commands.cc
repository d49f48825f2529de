// Builders for complete commands and RM-made responses, marshalled with tss2-mu.
#include "tpm/commands.h"

#include <tss2/tss2_mu.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "tpm/header.h"

namespace tpmrmd::tpm {
namespace {

// sessionHandle (4) + nonce size (2) + sessionAttributes (1) + hmac size (2)
constexpr std::uint32_t kEmptyAuthSize = 9;

Bytes u32_parameter(std::uint32_t value) {
  Bytes out;
  append_marshalled(out, value, Tss2_MU_UINT32_Marshal);
  return out;
}

Bytes u16_parameter(std::uint16_t value) {
  Bytes out;
  append_marshalled(out, value, Tss2_MU_UINT16_Marshal);
  return out;
}

}  // namespace

Bytes build_command(TPM2_CC code, std::span<const TPM2_HANDLE> handles, std::span<const Auth> auths,
                    ByteSpan parameters) {
  Bytes out(kHeaderSize);
  out.reserve(kHeaderSize + 4 * handles.size() + 4 + kEmptyAuthSize * auths.size() + parameters.size());
  for (TPM2_HANDLE h : handles) append_marshalled(out, h, Tss2_MU_TPM2_HANDLE_Marshal);
  if (!auths.empty()) {
    append_marshalled(out, static_cast<std::uint32_t>(auths.size() * kEmptyAuthSize), Tss2_MU_UINT32_Marshal);
    for (const Auth& a : auths) {
      TPMS_AUTH_COMMAND entry{};
      entry.sessionHandle = a.handle;
      entry.sessionAttributes = a.attributes;
      append_marshalled(out, entry, Tss2_MU_TPMS_AUTH_COMMAND_Marshal);
    }
  }
  out.insert(out.end(), parameters.begin(), parameters.end());
  write_command_header(
      CommandHeader{auths.empty() ? TPM2_ST_NO_SESSIONS : TPM2_ST_SESSIONS, static_cast<std::uint32_t>(out.size()),
                    code},
      out);
  return out;
}

Bytes make_get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count) {
  Bytes p;
  append_marshalled(p, capability, Tss2_MU_UINT32_Marshal);
  append_marshalled(p, property, Tss2_MU_UINT32_Marshal);
  append_marshalled(p, count, Tss2_MU_UINT32_Marshal);
  return build_command(TPM2_CC_GetCapability, {}, {}, p);
}

Bytes make_self_test(bool full) {
  const std::array<std::uint8_t, 1> full_test{static_cast<std::uint8_t>(full ? TPM2_YES : TPM2_NO)};
  return build_command(TPM2_CC_SelfTest, {}, {}, full_test);
}

Bytes make_startup(TPM2_SU startup_type) { return build_command(TPM2_CC_Startup, {}, {}, u16_parameter(startup_type)); }

Bytes make_shutdown(TPM2_SU shutdown_type) {
  return build_command(TPM2_CC_Shutdown, {}, {}, u16_parameter(shutdown_type));
}

Bytes make_context_save(TPM2_HANDLE handle) {
  return build_command(TPM2_CC_ContextSave, std::span(&handle, 1), {}, {});
}

Bytes make_context_load(ByteSpan context) { return build_command(TPM2_CC_ContextLoad, {}, {}, context); }

// FlushContext takes its handle as a parameter, not in the handle area; the bytes are the same.
Bytes make_flush_context(TPM2_HANDLE handle) {
  return build_command(TPM2_CC_FlushContext, {}, {}, u32_parameter(handle));
}

Bytes make_hierarchy_change_auth(TPM2_HANDLE hierarchy, ByteSpan password, ByteSpan new_auth) {
  // build_command's authorization entries carry an empty hmac; a password session puts the password there.
  TPMS_AUTH_COMMAND auth{};
  auth.sessionHandle = TPM2_RH_PW;
  auth.sessionAttributes = TPMA_SESSION_CONTINUESESSION;
  auth.hmac.size = static_cast<UINT16>(std::min(password.size(), sizeof(auth.hmac.buffer)));
  std::copy_n(password.begin(), auth.hmac.size, auth.hmac.buffer);
  Bytes area;
  append_marshalled(area, auth, Tss2_MU_TPMS_AUTH_COMMAND_Marshal);
  TPM2B_AUTH fresh{};
  fresh.size = static_cast<UINT16>(std::min(new_auth.size(), sizeof(fresh.buffer)));
  std::copy_n(new_auth.begin(), fresh.size, fresh.buffer);

  Bytes out(kHeaderSize);
  append_marshalled(out, hierarchy, Tss2_MU_TPM2_HANDLE_Marshal);
  append_marshalled(out, static_cast<std::uint32_t>(area.size()), Tss2_MU_UINT32_Marshal);
  out.insert(out.end(), area.begin(), area.end());
  append_marshalled(out, fresh, Tss2_MU_TPM2B_AUTH_Marshal);
  write_command_header(
      CommandHeader{TPM2_ST_SESSIONS, static_cast<std::uint32_t>(out.size()), TPM2_CC_HierarchyChangeAuth}, out);
  // The secrets are in the command now; no copies linger in these locals.
  explicit_bzero(&auth, sizeof(auth));
  explicit_bzero(&fresh, sizeof(fresh));
  explicit_bzero(area.data(), area.size());
  return out;
}

Bytes make_response(TPM2_RC rc, ByteSpan body) {
  Bytes out(kHeaderSize);
  out.insert(out.end(), body.begin(), body.end());
  write_command_header(CommandHeader{TPM2_ST_NO_SESSIONS, static_cast<std::uint32_t>(out.size()), rc}, out);
  return out;
}

Bytes make_success_response() { return make_rc_response(TPM2_RC_SUCCESS); }

Bytes make_context_load_response(TPM2_HANDLE handle) {
  return make_response(TPM2_RC_SUCCESS, u32_parameter(handle));
}

Bytes make_context_save_response(ByteSpan context) { return make_response(TPM2_RC_SUCCESS, context); }

}  // namespace tpmrmd::tpm

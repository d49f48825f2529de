// Commands the daemon sends on its own behalf and responses the RM answers itself, as complete byte strings.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "util/bytes.h"

namespace tpmrmd::tpm {

// One authorization-area entry with an empty nonce and an empty hmac (a password session with an empty
// password when `handle` is TPM2_RH_PW).
struct Auth {
  TPM2_HANDLE handle = TPM2_RH_PW;
  std::uint8_t attributes = TPMA_SESSION_CONTINUESESSION;
};

// Appends `value` as marshalled by a Tss2_MU_*_Marshal function, which may take it by value (integers) or by
// pointer (structures). A marshalled value is never larger than its C structure.
template <typename T, typename Marshal>
void append_marshalled(Bytes& out, const T& value, Marshal marshal) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::size_t offset = at;
  if constexpr (std::is_invocable_v<Marshal, const T*, std::uint8_t*, std::size_t, std::size_t*>) {
    marshal(&value, out.data(), out.size(), &offset);
  } else {
    marshal(value, out.data(), out.size(), &offset);
  }
  out.resize(offset);
}

// A command with `handles` in the handle area, `auths` in the authorization area (tag TPM2_ST_SESSIONS when
// there are any) and then `parameters`, with its size field filled in.
Bytes build_command(TPM2_CC code, std::span<const TPM2_HANDLE> handles, std::span<const Auth> auths,
                    ByteSpan parameters);

Bytes make_get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count);
Bytes make_self_test(bool full);
Bytes make_startup(TPM2_SU startup_type);
Bytes make_shutdown(TPM2_SU shutdown_type);
Bytes make_context_save(TPM2_HANDLE handle);
Bytes make_context_load(ByteSpan context);
Bytes make_flush_context(TPM2_HANDLE handle);
// HierarchyChangeAuth(`hierarchy`) authorized by a password session with `password` (empty: the hierarchy's
// auth is still the empty one), setting `new_auth` (at most 64 bytes, a TPM2B_AUTH).
Bytes make_hierarchy_change_auth(TPM2_HANDLE hierarchy, ByteSpan password, ByteSpan new_auth);

// A response with tag TPM2_ST_NO_SESSIONS: header carrying `rc`, then `body`.
Bytes make_response(TPM2_RC rc, ByteSpan body);
// A 10-byte success response (FlushContext answered by the RM).
Bytes make_success_response();
// ContextLoad's response: header + loadedHandle.
Bytes make_context_load_response(TPM2_HANDLE handle);
// ContextSave's response: header + TPMS_CONTEXT.
Bytes make_context_save_response(ByteSpan context);

}  // namespace tpmrmd::tpm

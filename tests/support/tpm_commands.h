// Raw TPM 2.0 commands for the tests, so they speak bytes to the RM and the chip (no ESYS). Framing and the
// commands the daemon sends itself come from src/tpm; what is here is what only tests send.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "tpm/commands.h"
#include "util/bytes.h"

namespace tpmrmd::testing {

using Auth = tpm::Auth;

// A command with `handles` in the handle area, `auths` (tag SESSIONS if non-empty; empty nonce and hmac) and
// `parameters`.
Bytes build_command(TPM2_CC code, const std::vector<TPM2_HANDLE>& handles, const std::vector<Auth>& auths,
                    ByteSpan parameters);

Bytes get_random(std::uint16_t bytes, const std::vector<Auth>& auths = {});
// Create (`parent` a key) or CreatePrimary (`parent` a hierarchy) of `pub` with the parent's empty password:
// empty sensitive data, no outside info, no PCRs. Both commands take the same parameters.
Bytes create_command(TPM2_CC code, TPM2_HANDLE parent, const TPM2B_PUBLIC& pub);
// Primary ECC P-256 signing key (fast to create on swtpm) in `hierarchy`, password auth; `unique` makes keys
// differ.
Bytes create_primary(TPM2_HANDLE hierarchy = TPM2_RH_OWNER, std::uint8_t unique = 0);
// An RSA-2048 storage primary under the owner hierarchy (what tpm2_createprimary makes by default): slow, its
// primes are generated. `unique`, if given, varies the key so that no TPM can answer from a cache.
Bytes create_rsa_primary(std::optional<std::uint32_t> unique = std::nullopt);
Bytes read_public(TPM2_HANDLE handle);
// Unbound, unsalted session, SHA-256, no symmetric algorithm.
Bytes start_auth_session(TPM2_SE type, TPM2_HANDLE tpm_key = TPM2_RH_NULL, TPM2_HANDLE bind = TPM2_RH_NULL);
Bytes policy_get_digest(TPM2_HANDLE session);
Bytes flush_context(TPM2_HANDLE handle);
Bytes context_save(TPM2_HANDLE handle);
Bytes context_load(ByteSpan context);
Bytes get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count);
Bytes hash_sequence_start();
Bytes sequence_complete(TPM2_HANDLE sequence);

// Response accessors (the response must be long enough; tests check rc first).
TPM2_RC rc_of(ByteSpan response);
TPM2_HANDLE handle_of(ByteSpan response);  // the handle right after the header
Bytes body_of(ByteSpan response);          // everything after the header

struct HandleList {
  bool more = false;
  std::vector<TPM2_HANDLE> handles;
};
// Parses a GetCapability(HANDLES) response; nullopt if malformed.
std::optional<HandleList> parse_handles(ByteSpan response);
// Reads one TPM property from a GetCapability(TPM_PROPERTIES) response.
std::optional<std::uint32_t> property_of(ByteSpan response, TPM2_PT property);

}  // namespace tpmrmd::testing

// Handle-type predicates (TPM 2.0 Part 2, TPM_HT): the RM virtualises transients and guards sessions; every
// other range passes through untouched.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>

namespace tpmrmd::rm {

inline constexpr std::uint8_t handle_type(TPM2_HANDLE h) { return static_cast<std::uint8_t>(h >> 24); }
inline constexpr bool is_transient(TPM2_HANDLE h) { return handle_type(h) == TPM2_HT_TRANSIENT; }
inline constexpr bool is_session(TPM2_HANDLE h) {
  return handle_type(h) == TPM2_HT_HMAC_SESSION || handle_type(h) == TPM2_HT_POLICY_SESSION;
}
// HMAC and policy sessions share one slot index space in the TPM; the capability ranges iterate over it.
inline constexpr std::uint32_t session_index(TPM2_HANDLE h) { return h & 0x00FFFFFFu; }

inline constexpr TPM2_HANDLE kFirstVirtualHandle = 0x80000000u;
inline constexpr TPM2_HANDLE kLastVirtualHandle = 0x80FFFFFFu;

// RM-layer response codes (TSS2_RESMGR_RC_LAYER = 11 << 16), the values the kernel and tpm2-abrmd use.
inline constexpr TPM2_RC kRmLayer = 0x000B0000u;
inline constexpr TPM2_RC kRmCommandCode = kRmLayer | TPM2_RC_COMMAND_CODE;     // 0x000B0143
inline constexpr TPM2_RC kRmObjectMemory = kRmLayer | TPM2_RC_OBJECT_MEMORY;   // 0x000B0902
inline constexpr TPM2_RC kRmSessionMemory = kRmLayer | TPM2_RC_SESSION_MEMORY; // 0x000B0903

}  // namespace tpmrmd::rm

// The three commands the RM issues on its own behalf (ContextSave, ContextLoad, FlushContext), and the bits of
// a TPMS_CONTEXT it needs to look at (sequence for the context gap, savedHandle for what a blob will create).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>

#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::rm {

struct ContextHeader {
  std::uint64_t sequence = 0;
  TPM2_HANDLE saved_handle = 0;
};

// Unmarshals a whole TPMS_CONTEXT; nullopt if `blob` is not exactly one well-formed TPMS_CONTEXT.
std::optional<ContextHeader> parse_context(ByteSpan blob);

Bytes make_context_save(TPM2_HANDLE handle);
Bytes make_context_load(ByteSpan context);
Bytes make_flush_context(TPM2_HANDLE handle);

// A 10-byte success response (FlushContext answered by the RM).
Bytes make_success_response();
// ContextLoad's response: header + loadedHandle.
Bytes make_context_load_response(TPM2_HANDLE handle);
// ContextSave's response: header + TPMS_CONTEXT.
Bytes make_context_save_response(ByteSpan context);

// The response code of a whole response (EIO if shorter than a header).
Result<TPM2_RC> response_code(ByteSpan response);
// The TPMS_CONTEXT in a successful ContextSave response (EIO if the body is not one).
Result<Bytes> context_from_save_response(ByteSpan response);
// The handle in a successful response that returns one (EIO if too short).
Result<TPM2_HANDLE> handle_from_response(ByteSpan response);

// Format-1 codes carry a handle/parameter/session number; this strips it as the kernel's tpm2_rc_value does.
inline constexpr TPM2_RC rc_base(TPM2_RC rc) { return (rc & TPM2_RC_FMT1) ? (rc & 0xBFu) : rc; }

}  // namespace tpmrmd::rm

// Reading TPM responses: the response code, the handle or TPMS_CONTEXT a command returns, and one page of a
// GetCapability answer. The Result accessors fail with EIO on a response too short or malformed for what they
// read.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>

#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::tpm {

// The bits of a TPMS_CONTEXT the RM looks at: sequence for the context gap, savedHandle for what a blob
// will create when loaded.
struct ContextHeader {
  std::uint64_t sequence = 0;
  TPM2_HANDLE saved_handle = 0;
};

// Unmarshals a whole TPMS_CONTEXT; nullopt if `blob` is not exactly one well-formed TPMS_CONTEXT.
std::optional<ContextHeader> parse_context(ByteSpan blob);

// The response code of a whole response (EIO if shorter than a header).
Result<TPM2_RC> response_code(ByteSpan response);
// The TPMS_CONTEXT in a successful ContextSave response (EIO if the body is not one).
Result<Bytes> context_from_save_response(ByteSpan response);
// The handle in a successful response that returns one (EIO if too short).
Result<TPM2_HANDLE> handle_from_response(ByteSpan response);

// Format-1 codes carry a handle/parameter/session number; this strips it as the kernel's tpm2_rc_value does.
inline constexpr TPM2_RC rc_base(TPM2_RC rc) { return (rc & TPM2_RC_FMT1) ? (rc & 0xBFu) : rc; }

struct CapabilityPage {
  bool more_data = false;
  TPMS_CAPABILITY_DATA data{};
};

// Unmarshals a successful GetCapability response: EIO if it is short, its rc is not success, or its body is not
// exactly moreData + TPMS_CAPABILITY_DATA.
Result<CapabilityPage> parse_get_capability(ByteSpan response);

}  // namespace tpmrmd::tpm

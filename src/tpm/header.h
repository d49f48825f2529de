// The 10-byte TPM 2.0 command and response headers, shared by every layer.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>

#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::tpm {

inline constexpr std::size_t kHeaderSize = 10;

struct CommandHeader {
  TPM2_ST tag = 0;
  std::uint32_t size = 0;  // the commandSize field, header included
  TPM2_CC code = 0;
};

struct ResponseHeader {
  TPM2_ST tag = 0;
  std::uint32_t size = 0;  // the responseSize field, header included
  TPM2_RC rc = 0;
};

// Decodes the first 10 bytes. Checks only that there are 10 bytes (EINVAL otherwise); callers validate the
// tag and size against their own rules.
Result<CommandHeader> parse_command_header(ByteSpan bytes);
Result<ResponseHeader> parse_response_header(ByteSpan bytes);

// Writes `header` into the first 10 bytes of `out` (which must hold at least 10).
void write_command_header(const CommandHeader& header, std::span<std::uint8_t> out);

// A 10-byte response carrying only `rc`, tag TPM_ST_NO_SESSIONS (e.g. the RM's 0x000B0143).
Bytes make_rc_response(TPM2_RC rc);

// Rewrites the size field of a complete command or response to `bytes.size()`.
void patch_size_field(Bytes& bytes);

}  // namespace tpmrmd::tpm

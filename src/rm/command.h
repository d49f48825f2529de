// A client command, parsed and validated against the TPM's command table before anything reaches the TPM.
//
// The parse records where every handle and every authorization-area session handle sits, so the RM can check
// ownership and rewrite virtual handles in place without re-parsing. Only the framing is validated here (tag,
// sizes, handle area, authorization area); parameter contents are the TPM's business.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "rm/rm_error.h"
#include "tpm/command_attributes.h"
#include "util/bytes.h"

namespace tpmrmd::rm {

inline constexpr std::size_t kMaxAuthSessions = 3;  // TPM 2.0 Part 1: at most three sessions per command

struct AuthEntry {
  TPM2_HANDLE handle = 0;
  std::size_t offset = 0;  // of the handle, within the command
  std::uint8_t attributes = 0;
  bool continue_session() const { return attributes & TPMA_SESSION_CONTINUESESSION; }
};

struct ParsedCommand {
  TPM2_ST tag = 0;
  TPM2_CC code = 0;
  tpm::CommandAttributes attributes;
  std::vector<TPM2_HANDLE> handles;  // the handle area, cHandles entries starting at offset 10
  std::vector<AuthEntry> auths;      // empty unless tag == TPM2_ST_SESSIONS
  std::size_t parameter_offset = 0;  // first byte after the handle and authorization areas

  static constexpr std::size_t handle_offset(std::size_t index) { return 10 + 4 * index; }
};

// The parsed command, or why the RM answers it itself. An unknown command code is answered with 0x000B0143 in
// both error modes, so both produce the kernel's bytes.
RmResult<ParsedCommand> parse_command(ByteSpan command, const tpm::CommandTable& table);

}  // namespace tpmrmd::rm

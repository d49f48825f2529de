// What start-up learned about a TPM: fixed properties the RM needs, vendor identification, command table.
#pragma once

#include <cstdint>
#include <string>

#include "tpm/command_attributes.h"

namespace tpmrmd::tpm {

struct TpmInfo {
  std::string manufacturer;     // TPM_PT_MANUFACTURER as 4 ASCII chars, e.g. "IBM "
  std::string vendor_string;    // TPM_PT_VENDOR_STRING_1..4 concatenated, trailing NULs trimmed
  std::uint64_t firmware_version = 0;  // FIRMWARE_VERSION_1 << 32 | FIRMWARE_VERSION_2
  std::uint32_t family = 0;     // TPM_PT_FAMILY_INDICATOR, e.g. "2.0"
  std::uint32_t revision = 0;   // TPM_PT_REVISION

  std::uint32_t max_command_size = 4096;   // TPM_PT_MAX_COMMAND_SIZE
  std::uint32_t max_response_size = 4096;  // TPM_PT_MAX_RESPONSE_SIZE
  std::uint32_t max_object_context = 0;    // TPM_PT_MAX_OBJECT_CONTEXT
  std::uint32_t max_session_context = 0;   // TPM_PT_MAX_SESSION_CONTEXT
  std::uint32_t hr_transient_min = 3;      // TPM_PT_HR_TRANSIENT_MIN: object slots
  std::uint32_t hr_loaded_min = 3;         // TPM_PT_HR_LOADED_MIN: loaded-session slots
  std::uint32_t active_sessions_max = 64;  // TPM_PT_ACTIVE_SESSIONS_MAX
  std::uint32_t context_gap_max = 0xFFFF;  // TPM_PT_CONTEXT_GAP_MAX
  std::uint32_t total_commands = 0;        // TPM_PT_TOTAL_COMMANDS

  CommandTable commands;
};

}  // namespace tpmrmd::tpm

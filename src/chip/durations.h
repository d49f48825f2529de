// How long a command may take before the chip cancels it: the kernel's per-command table
// (tpm2_ordinal_duration_map in the kernel's tpm2-cmd.c), 120 s for everything else.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <chrono>

namespace tpmrmd::chip {

std::chrono::milliseconds command_duration(TPM2_CC code);

}  // namespace tpmrmd::chip

// Response codes as text for logs and error messages.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <string>

namespace tpmrmd::tpm {

// "0x<hex> (<decoded text>)", e.g. "0x902 (tpm:warn(2.0): out of memory for object contexts)". Works for any
// TSS2_RC, including the RM's own layer (0xb0143) and TCTI errors.
std::string rc_name(TPM2_RC rc);

}  // namespace tpmrmd::tpm

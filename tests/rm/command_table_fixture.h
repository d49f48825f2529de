// A command table shaped like the one swtpm reports, for tests that run without a TPM.
#pragma once

#include "tpm/command_attributes.h"

namespace tpmrmd::testing {

inline tpm::CommandAttributes attrs(TPM2_CC code, unsigned handles, bool r_handle = false, bool flushed = false) {
  return tpm::CommandAttributes(code | (handles << 25) | (r_handle ? 1u << 28 : 0u) | (flushed ? 1u << 24 : 0u));
}

inline tpm::CommandTable test_command_table() {
  return tpm::CommandTable({
      attrs(TPM2_CC_GetRandom, 0),
      attrs(TPM2_CC_FlushContext, 0),  // forced to 1 by CommandTable, as the kernel does
      attrs(TPM2_CC_ContextSave, 1),
      attrs(TPM2_CC_ContextLoad, 0, true),
      attrs(TPM2_CC_CreatePrimary, 1, true),
      attrs(TPM2_CC_StartAuthSession, 2, true),
      attrs(TPM2_CC_ReadPublic, 1),
      attrs(TPM2_CC_SequenceComplete, 1, false, true),
      attrs(TPM2_CC_PolicyGetDigest, 1),
      attrs(TPM2_CC_PolicySecret, 2),
      attrs(TPM2_CC_GetCapability, 0),
      attrs(TPM2_CC_HashSequenceStart, 0, true),
  });
}

}  // namespace tpmrmd::testing

#include "chip/durations.h"

namespace tpmrmd::chip {

std::chrono::milliseconds command_duration(TPM2_CC code) {
  using std::chrono::milliseconds;
  switch (code) {
    case TPM2_CC_Startup:
    case TPM2_CC_SequenceUpdate:
    case TPM2_CC_SequenceComplete:
    case TPM2_CC_EventSequenceComplete:
    case TPM2_CC_HashSequenceStart:
    case TPM2_CC_PCR_Extend:
    case TPM2_CC_GetCapability:
      return milliseconds(750);
    case TPM2_CC_GetRandom:
    case TPM2_CC_HierarchyControl:
    case TPM2_CC_HierarchyChangeAuth:
    case TPM2_CC_NV_Read:
      return milliseconds(2000);
    case TPM2_CC_SelfTest:
      return milliseconds(3000);
    case TPM2_CC_VerifySignature:
    case TPM2_CC_CreatePrimary:
    case TPM2_CC_Create:
    case TPM2_CC_CreateLoaded:
      return milliseconds(30000);
    default:
      return milliseconds(120000);
  }
}

}  // namespace tpmrmd::chip

#include "rm/counters.h"

#include <tss2/tss2_tpm2_types.h>

namespace tpmrmd::rm {

std::string_view rc_class_name(RcClass c) {
  switch (c) {
    case RcClass::kSuccess: return "success";
    case RcClass::kWarning: return "warning";
    case RcClass::kError: return "error";
    case RcClass::kRefusal: return "rm-refusal";
  }
  return "error";
}

RcClass classify_rc(std::uint32_t rc) {
  if (rc == TPM2_RC_SUCCESS) return RcClass::kSuccess;
  // Format zero (bit 7 clear), TPM 2.0 (VER1) with the severity bit: a warning (TPM_RC_WARN is VER1 | 0x800).
  if ((rc & TPM2_RC_FMT1) == 0 && (rc & TPM2_RC_WARN) == TPM2_RC_WARN) return RcClass::kWarning;
  return RcClass::kError;
}

std::string_view refusal_reason_name(RefusalReason r) {
  switch (r) {
    case RefusalReason::kPolicy: return "policy";
    case RefusalReason::kObjectLimit: return "object-limit";
    case RefusalReason::kSessionLimit: return "session-limit";
    case RefusalReason::kMalformed: return "malformed";
    case RefusalReason::kHandle: return "handle";
    case RefusalReason::kBusy: return "busy";
    case RefusalReason::kFailure: return "failure";
    case RefusalReason::kOther: return "other";
  }
  return "other";
}

RefusalReason refusal_reason(std::uint32_t rm_rc) {
  const std::uint32_t rc = rm_rc & 0xFFFu;
  // Format one carries a parameter, handle or session number in bits 6 and 8-11; the error is bits 0-5.
  const std::uint32_t base = (rc & TPM2_RC_FMT1) ? (rc & (TPM2_RC_FMT1 | 0x3Fu)) : rc;
  if (base >= TPM2_RC_REFERENCE_H0 && base <= TPM2_RC_REFERENCE_S0 + 7) return RefusalReason::kHandle;
  switch (base) {
    case TPM2_RC_COMMAND_CODE: return RefusalReason::kPolicy;
    case TPM2_RC_OBJECT_MEMORY: return RefusalReason::kObjectLimit;
    case TPM2_RC_SESSION_MEMORY: return RefusalReason::kSessionLimit;
    case TPM2_RC_COMMAND_SIZE:
    case TPM2_RC_AUTHSIZE:
    case TPM2_RC_TAG: return RefusalReason::kMalformed;
    case TPM2_RC_HANDLE: return RefusalReason::kHandle;
    case TPM2_RC_RETRY: return RefusalReason::kBusy;
    case TPM2_RC_FAILURE: return RefusalReason::kFailure;
    default: return RefusalReason::kOther;
  }
}

}  // namespace tpmrmd::rm

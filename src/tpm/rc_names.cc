// rc_name on top of libtss2-rc's decoder.
#include "tpm/rc_names.h"

#include <tss2/tss2_rc.h>

#include <cstdio>

namespace tpmrmd::tpm {

std::string rc_name(TPM2_RC rc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%x", rc);
  // Tss2_RC_Decode answers from a thread-local buffer that its next call overwrites: copy it now.
  const char* text = Tss2_RC_Decode(rc);
  return std::string(hex) + " (" + (text ? text : "unknown") + ")";
}

}  // namespace tpmrmd::tpm

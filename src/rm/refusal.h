// A command the RM answers itself because it must not (or cannot) reach the TPM.
//
// Each refusal carries both encodings of §3.0 of the device spec: the errno the kernel would return (errno
// mode, the default) and the RM-layer response code (rc mode). The message says exactly what was wrong, for
// logs and test diagnostics.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cerrno>
#include <string>

#include "rm/handles.h"

namespace tpmrmd::rm {

struct Refusal {
  int error = 0;       // errno for errno mode; 0 means "always answer with `rc`" (quota refusals)
  TPM2_RC rc = 0;      // full RM-layer rc (0x000B....) for rc mode
  std::string message;
};

inline Refusal malformed(std::string message) {
  return Refusal{EINVAL, kRmLayer | TPM2_RC_COMMAND_SIZE, std::move(message)};
}

}  // namespace tpmrmd::rm

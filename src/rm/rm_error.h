// The RM's one error type: why a client command ends without (or before) the TPM's own answer.
//
// Two encodings exist for an RM refusal: the errno the kernel's /dev/tpmrm0 returns (errno mode, the default)
// and the RM-layer response code 0x000B.... that tpm2-abrmd answers (rc mode). A few refusals are answered
// with their rc in both modes because the kernel does so too (unknown command code) or because the client
// needs the TPM-like warning (quotas). Transport failures (ENODEV, ETIME, EIO from the chip) are not
// refusals: they reach the client as the chip's errno in either mode.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cerrno>
#include <string>

#include "rm/handles.h"
#include "util/result.h"

namespace tpmrmd::rm {

struct RmError {
  enum class Kind {
    kRefused,    // errno in errno mode, rc in rc mode
    kAnswered,   // rc in both modes
    kTransport,  // the chip's errno, in both modes; not counted as a refusal
  };
  Kind kind = Kind::kRefused;
  int error = 0;   // errno: kRefused, kTransport
  TPM2_RC rc = 0;  // full RM-layer rc: kRefused, kAnswered
  std::string message;

  static RmError refused(int error, TPM2_RC rc, std::string message) {
    return {Kind::kRefused, error, rc, std::move(message)};
  }
  static RmError answered(TPM2_RC rc, std::string message) { return {Kind::kAnswered, 0, rc, std::move(message)}; }
  static RmError transport(Error e) { return {Kind::kTransport, e.code, 0, std::move(e.message)}; }
  // A framing error: the sizes or areas of the command do not add up.
  static RmError malformed(std::string message) {
    return refused(EINVAL, kRmLayer | TPM2_RC_COMMAND_SIZE, std::move(message));
  }
};

template <typename T>
using RmResult = Result<T, RmError>;

}  // namespace tpmrmd::rm

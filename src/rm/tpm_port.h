// What the RM needs of a TPM: its start-up facts and a way to send one whole command. The daemon adapts a
// Chip to it; tests put a fake TPM or a fault-injecting wrapper behind it.
#pragma once

#include "tpm/tpm_info.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::rm {

class TpmPort {
 public:
  virtual ~TpmPort() = default;
  virtual const tpm::TpmInfo& info() const = 0;
  // A response with a non-zero rc is a success; errors are transport/lifetime failures (ENODEV, ETIME, EIO).
  virtual Result<Bytes> transmit(ByteSpan command) = 0;
  virtual bool available() const = 0;
};

}  // namespace tpmrmd::rm

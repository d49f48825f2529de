// What the RM needs of a TPM: its start-up facts and a way to send one whole command. A Chip provides both
// (ChipPort); tests wrap a real ChipPort to inject faults the real TPM can't be made to produce on cue.
#pragma once

#include "tis/tpm_info.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::tis {
class Chip;
}

namespace tpmrmd::rm {

class TpmPort {
 public:
  virtual ~TpmPort() = default;
  virtual const tis::TpmInfo& info() const = 0;
  // A response with a non-zero rc is a success; errors are transport/lifetime failures (ENODEV, ETIME, EIO).
  virtual Result<Bytes> transmit(ByteSpan command) = 0;
  virtual bool available() const = 0;
};

class ChipPort final : public TpmPort {
 public:
  explicit ChipPort(tis::Chip& chip) : chip_(chip) {}
  const tis::TpmInfo& info() const override;
  Result<Bytes> transmit(ByteSpan command) override;
  bool available() const override;

 private:
  tis::Chip& chip_;
};

}  // namespace tpmrmd::rm

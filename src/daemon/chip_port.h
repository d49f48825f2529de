// The RM's TpmPort over a Chip: the one place where the resource manager meets the chip layer.
#pragma once

#include "chip/chip.h"
#include "rm/tpm_port.h"

namespace tpmrmd::daemon {

class ChipPort final : public rm::TpmPort {
 public:
  explicit ChipPort(chip::Chip& chip) : chip_(chip) {}
  const tpm::TpmInfo& info() const override { return chip_.info(); }
  Result<Bytes> transmit(ByteSpan command) override { return chip_.transmit(command); }
  bool available() const override { return chip_.registered(); }

 private:
  chip::Chip& chip_;
};

}  // namespace tpmrmd::daemon

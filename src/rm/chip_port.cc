#include "rm/tpm_port.h"
#include "tis/chip.h"

namespace tpmrmd::rm {

const tis::TpmInfo& ChipPort::info() const { return chip_.info(); }
Result<Bytes> ChipPort::transmit(ByteSpan command) { return chip_.transmit(command); }
bool ChipPort::available() const { return chip_.registered(); }

}  // namespace tpmrmd::rm

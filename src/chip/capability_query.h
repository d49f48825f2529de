// TPM2_GetCapability as the chip uses it: building the command and unmarshalling one page of the answer.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::chip {

Bytes make_get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count);

struct CapabilityPage {
  bool more_data = false;
  TPMS_CAPABILITY_DATA data{};
};

// Unmarshals a successful GetCapability response (rc must be 0); EIO if its body is malformed.
Result<CapabilityPage> parse_get_capability(ByteSpan response);

}  // namespace tpmrmd::chip

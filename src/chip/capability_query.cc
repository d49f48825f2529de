#include "chip/capability_query.h"

#include <tss2/tss2_mu.h>

#include <cerrno>

#include "tpm/header.h"

namespace tpmrmd::chip {

Bytes make_get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count) {
  Bytes cmd(22);
  tpm::write_command_header({TPM2_ST_NO_SESSIONS, 22, TPM2_CC_GetCapability}, cmd);
  size_t offset = tpm::kHeaderSize;
  Tss2_MU_UINT32_Marshal(capability, cmd.data(), cmd.size(), &offset);
  Tss2_MU_UINT32_Marshal(property, cmd.data(), cmd.size(), &offset);
  Tss2_MU_UINT32_Marshal(count, cmd.data(), cmd.size(), &offset);
  return cmd;
}

Result<CapabilityPage> parse_get_capability(ByteSpan response) {
  auto header = tpm::parse_response_header(response);
  if (!header) return header.error();
  if (header->rc != TPM2_RC_SUCCESS) return make_error(EIO, "GetCapability failed");
  CapabilityPage page;
  size_t offset = tpm::kHeaderSize;
  TPMI_YES_NO more = 0;
  if (Tss2_MU_UINT8_Unmarshal(response.data(), response.size(), &offset, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(response.data(), response.size(), &offset, &page.data) !=
          TSS2_RC_SUCCESS) {
    return make_error(EIO, "malformed GetCapability response body");
  }
  page.more_data = more != 0;
  return page;
}

}  // namespace tpmrmd::chip

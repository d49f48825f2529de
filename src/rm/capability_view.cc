#include "rm/capability_view.h"

#include <tss2/tss2_mu.h>

#include <algorithm>

#include "rm/command.h"
#include "rm/handles.h"
#include "tpm/header.h"

namespace tpmrmd::rm {

std::optional<CapabilityQuery> parse_capability_query(ByteSpan parameters) {
  if (parameters.size() != 12) return std::nullopt;
  return CapabilityQuery{read_u32(parameters, 0), read_u32(parameters, 4), read_u32(parameters, 8)};
}

bool is_virtualised_handle_range(std::uint32_t property) {
  const auto type = handle_type(property);
  return type == TPM2_HT_TRANSIENT || type == TPM2_HT_LOADED_SESSION || type == TPM2_HT_SAVED_SESSION;
}

Bytes make_handles_response(std::span<const TPM2_HANDLE> remaining, std::uint32_t count) {
  auto first = remaining.begin();
  const std::size_t available = remaining.size();
  const std::size_t cap = std::min<std::size_t>(count, TPM2_MAX_CAP_HANDLES);
  const std::size_t n = std::min(available, cap);

  TPMS_CAPABILITY_DATA data{};
  data.capability = TPM2_CAP_HANDLES;
  data.data.handles.count = static_cast<std::uint32_t>(n);
  std::copy(first, first + static_cast<std::ptrdiff_t>(n), data.data.handles.handle);
  const TPMI_YES_NO more = available > n ? TPM2_YES : TPM2_NO;

  Bytes out(tpm::kHeaderSize + 1 + sizeof(TPMS_CAPABILITY_DATA));
  size_t offset = tpm::kHeaderSize;
  Tss2_MU_UINT8_Marshal(more, out.data(), out.size(), &offset);
  Tss2_MU_TPMS_CAPABILITY_DATA_Marshal(&data, out.data(), out.size(), &offset);
  out.resize(offset);
  tpm::write_command_header(
      tpm::CommandHeader{TPM2_ST_NO_SESSIONS, static_cast<std::uint32_t>(out.size()), TPM2_RC_SUCCESS}, out);
  return out;
}

bool rewrite_properties(Bytes& response, const std::function<std::optional<std::uint32_t>(TPM2_PT)>& rewrite) {
  auto header = tpm::parse_response_header(response);
  if (!header || header->tag != TPM2_ST_NO_SESSIONS || header->rc != TPM2_RC_SUCCESS) return false;
  size_t offset = tpm::kHeaderSize;
  TPMI_YES_NO more = 0;
  TPMS_CAPABILITY_DATA data{};
  if (Tss2_MU_UINT8_Unmarshal(response.data(), response.size(), &offset, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(response.data(), response.size(), &offset, &data) != TSS2_RC_SUCCESS ||
      offset != response.size() || data.capability != TPM2_CAP_TPM_PROPERTIES) {
    return false;
  }
  for (std::uint32_t i = 0; i < data.data.tpmProperties.count; ++i) {
    auto& p = data.data.tpmProperties.tpmProperty[i];
    if (auto v = rewrite(p.property)) p.value = *v;
  }
  offset = tpm::kHeaderSize + 1;
  return Tss2_MU_TPMS_CAPABILITY_DATA_Marshal(&data, response.data(), response.size(), &offset) == TSS2_RC_SUCCESS;
}

}  // namespace tpmrmd::rm

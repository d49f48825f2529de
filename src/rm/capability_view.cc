#include "rm/capability_view.h"

#include <tss2/tss2_mu.h>

#include <algorithm>

#include "rm/handles.h"
#include "tpm/commands.h"
#include "tpm/endian.h"
#include "tpm/header.h"
#include "tpm/responses.h"

namespace tpmrmd::rm {

std::optional<CapabilityQuery> parse_capability_query(ByteSpan parameters) {
  if (parameters.size() != 12) return std::nullopt;
  return CapabilityQuery{tpm::load_u32(parameters, 0), tpm::load_u32(parameters, 4), tpm::load_u32(parameters, 8)};
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

  Bytes body;
  tpm::append_marshalled(body, more, Tss2_MU_UINT8_Marshal);
  tpm::append_marshalled(body, data, Tss2_MU_TPMS_CAPABILITY_DATA_Marshal);
  return tpm::make_response(TPM2_RC_SUCCESS, body);
}

bool rewrite_properties(Bytes& response, const std::function<std::optional<std::uint32_t>(TPM2_PT)>& rewrite) {
  auto header = tpm::parse_response_header(response);
  if (!header || header->tag != TPM2_ST_NO_SESSIONS) return false;
  auto page = tpm::parse_get_capability(response);
  if (!page || page->data.capability != TPM2_CAP_TPM_PROPERTIES) return false;
  TPMS_CAPABILITY_DATA& data = page->data;
  for (std::uint32_t i = 0; i < data.data.tpmProperties.count; ++i) {
    auto& p = data.data.tpmProperties.tpmProperty[i];
    if (auto v = rewrite(p.property)) p.value = *v;
  }
  size_t offset = tpm::kHeaderSize + 1;  // after moreData; the rewritten data has the same size
  return Tss2_MU_TPMS_CAPABILITY_DATA_Marshal(&data, response.data(), response.size(), &offset) == TSS2_RC_SUCCESS;
}

}  // namespace tpmrmd::rm

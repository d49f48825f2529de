// Response accessors, unmarshalled with tss2-mu.
#include "tpm/responses.h"

#include <tss2/tss2_mu.h>

#include <cerrno>

#include "tpm/header.h"

namespace tpmrmd::tpm {

std::optional<ContextHeader> parse_context(ByteSpan blob) {
  if (blob.empty()) return std::nullopt;  // tss2-mu logs an error for a null buffer
  TPMS_CONTEXT ctx{};
  size_t offset = 0;
  if (Tss2_MU_TPMS_CONTEXT_Unmarshal(blob.data(), blob.size(), &offset, &ctx) != TSS2_RC_SUCCESS) {
    return std::nullopt;
  }
  if (offset != blob.size()) return std::nullopt;
  return ContextHeader{ctx.sequence, ctx.savedHandle};
}

Result<TPM2_RC> response_code(ByteSpan response) {
  auto h = parse_response_header(response);
  if (!h) return make_error(EIO, "TPM response shorter than a header");
  return h->rc;
}

Result<Bytes> context_from_save_response(ByteSpan response) {
  if (response.size() <= kHeaderSize) return make_error(EIO, "ContextSave response has no body");
  ByteSpan body = response.subspan(kHeaderSize);
  if (!parse_context(body)) return make_error(EIO, "ContextSave response body is not a TPMS_CONTEXT");
  return Bytes(body.begin(), body.end());
}

Result<TPM2_HANDLE> handle_from_response(ByteSpan response) {
  TPM2_HANDLE handle = 0;
  size_t offset = kHeaderSize;
  if (response.size() < kHeaderSize + sizeof handle ||
      Tss2_MU_TPM2_HANDLE_Unmarshal(response.data(), response.size(), &offset, &handle) != TSS2_RC_SUCCESS) {
    return make_error(EIO, "response too short for its handle");
  }
  return handle;
}

Result<CapabilityPage> parse_get_capability(ByteSpan response) {
  auto rc = response_code(response);
  if (!rc) return rc.error();
  if (*rc != TPM2_RC_SUCCESS) return make_error(EIO, "GetCapability failed");
  CapabilityPage page;
  size_t offset = kHeaderSize;
  TPMI_YES_NO more = 0;
  if (Tss2_MU_UINT8_Unmarshal(response.data(), response.size(), &offset, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(response.data(), response.size(), &offset, &page.data) !=
          TSS2_RC_SUCCESS ||
      offset != response.size()) {
    return make_error(EIO, "malformed GetCapability response body");
  }
  page.more_data = more != 0;
  return page;
}

}  // namespace tpmrmd::tpm

#include "rm/context_commands.h"

#include <tss2/tss2_mu.h>

#include "rm/command.h"
#include "tpm/header.h"

namespace tpmrmd::rm {
namespace {

Bytes make_command(TPM2_CC code, ByteSpan body) {
  Bytes out(tpm::kHeaderSize + body.size());
  tpm::write_command_header(
      tpm::CommandHeader{TPM2_ST_NO_SESSIONS, static_cast<std::uint32_t>(out.size()), code}, out);
  std::copy(body.begin(), body.end(), out.begin() + tpm::kHeaderSize);
  return out;
}

Bytes u32_bytes(std::uint32_t v) {
  Bytes b(4);
  write_u32(b, 0, v);
  return b;
}

}  // namespace

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

Bytes make_context_save(TPM2_HANDLE handle) { return make_command(TPM2_CC_ContextSave, u32_bytes(handle)); }
Bytes make_context_load(ByteSpan context) { return make_command(TPM2_CC_ContextLoad, context); }
Bytes make_flush_context(TPM2_HANDLE handle) { return make_command(TPM2_CC_FlushContext, u32_bytes(handle)); }

Bytes make_success_response() { return tpm::make_rc_response(TPM2_RC_SUCCESS); }

Bytes make_context_load_response(TPM2_HANDLE handle) {
  Bytes out = make_command(TPM2_RC_SUCCESS, u32_bytes(handle));
  return out;
}

Bytes make_context_save_response(ByteSpan context) { return make_command(TPM2_RC_SUCCESS, context); }

Result<TPM2_RC> response_code(ByteSpan response) {
  auto h = tpm::parse_response_header(response);
  if (!h) return make_error(EIO, "TPM response shorter than a header");
  return h->rc;
}

Result<Bytes> context_from_save_response(ByteSpan response) {
  if (response.size() <= tpm::kHeaderSize) return make_error(EIO, "ContextSave response has no body");
  ByteSpan body = response.subspan(tpm::kHeaderSize);
  if (!parse_context(body)) return make_error(EIO, "ContextSave response body is not a TPMS_CONTEXT");
  return Bytes(body.begin(), body.end());
}

Result<TPM2_HANDLE> handle_from_response(ByteSpan response) {
  if (response.size() < tpm::kHeaderSize + 4) return make_error(EIO, "response too short for its handle");
  return read_u32(response, tpm::kHeaderSize);
}

}  // namespace tpmrmd::rm

#include "tpm/header.h"

#include <tss2/tss2_mu.h>

#include <cerrno>

namespace tpmrmd::tpm {
namespace {

// Response and command headers share their layout: u16 tag, u32 size, u32 code.
struct RawHeader {
  std::uint16_t tag;
  std::uint32_t size;
  std::uint32_t code;
};

Result<RawHeader> parse_raw(ByteSpan bytes) {
  if (bytes.size() < kHeaderSize) {
    return make_error(EINVAL, "buffer of " + std::to_string(bytes.size()) + " bytes is shorter than a TPM header");
  }
  RawHeader h{};
  size_t offset = 0;
  if (Tss2_MU_UINT16_Unmarshal(bytes.data(), kHeaderSize, &offset, &h.tag) != TSS2_RC_SUCCESS ||
      Tss2_MU_UINT32_Unmarshal(bytes.data(), kHeaderSize, &offset, &h.size) != TSS2_RC_SUCCESS ||
      Tss2_MU_UINT32_Unmarshal(bytes.data(), kHeaderSize, &offset, &h.code) != TSS2_RC_SUCCESS) {
    return make_error(EINVAL, "cannot unmarshal TPM header");
  }
  return h;
}

}  // namespace

Result<CommandHeader> parse_command_header(ByteSpan bytes) {
  auto raw = parse_raw(bytes);
  if (!raw) return raw.error();
  return CommandHeader{raw->tag, raw->size, raw->code};
}

Result<ResponseHeader> parse_response_header(ByteSpan bytes) {
  auto raw = parse_raw(bytes);
  if (!raw) return raw.error();
  return ResponseHeader{raw->tag, raw->size, raw->code};
}

void write_command_header(const CommandHeader& header, std::span<std::uint8_t> out) {
  size_t offset = 0;
  Tss2_MU_UINT16_Marshal(header.tag, out.data(), out.size(), &offset);
  Tss2_MU_UINT32_Marshal(header.size, out.data(), out.size(), &offset);
  Tss2_MU_UINT32_Marshal(header.code, out.data(), out.size(), &offset);
}

Bytes make_rc_response(TPM2_RC rc) {
  Bytes out(kHeaderSize);
  write_command_header(CommandHeader{TPM2_ST_NO_SESSIONS, kHeaderSize, rc}, out);
  return out;
}

void patch_size_field(Bytes& bytes) {
  size_t offset = 2;
  Tss2_MU_UINT32_Marshal(static_cast<std::uint32_t>(bytes.size()), bytes.data(), bytes.size(), &offset);
}

}  // namespace tpmrmd::tpm

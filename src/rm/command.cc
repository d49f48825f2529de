#include "rm/command.h"

#include <fmt/format.h>

#include "tpm/endian.h"
#include "tpm/header.h"

namespace tpmrmd::rm {

namespace {

// Parses one TPMS_AUTH_COMMAND at `offset`, not reading past `end`; returns the offset after it.
std::optional<std::size_t> parse_auth(ByteSpan cmd, std::size_t offset, std::size_t end, AuthEntry& out,
                                      std::string& why) {
  // sessionHandle (4) + nonce size (2) + sessionAttributes (1) + hmac size (2)
  if (end - offset < 9) {
    why = fmt::format("authorization entry at offset {} needs at least 9 bytes, {} left", offset, end - offset);
    return std::nullopt;
  }
  out.offset = offset;
  out.handle = tpm::load_u32(cmd, offset);
  std::size_t pos = offset + 4;
  std::uint16_t nonce = tpm::load_u16(cmd, pos);
  pos += 2;
  if (end - pos < std::size_t{nonce} + 1 + 2) {
    why = fmt::format("nonce of {} bytes in the authorization entry at offset {} overruns the area", nonce, offset);
    return std::nullopt;
  }
  pos += nonce;
  out.attributes = cmd[pos];
  pos += 1;
  std::uint16_t hmac = tpm::load_u16(cmd, pos);
  pos += 2;
  if (end - pos < hmac) {
    why = fmt::format("hmac of {} bytes in the authorization entry at offset {} overruns the area", hmac, offset);
    return std::nullopt;
  }
  return pos + hmac;
}

}  // namespace

RmResult<ParsedCommand> parse_command(ByteSpan cmd, const tpm::CommandTable& table) {
  auto header = tpm::parse_command_header(cmd);
  if (!header) return RmError::malformed(header.error().message);
  if (header->tag != TPM2_ST_NO_SESSIONS && header->tag != TPM2_ST_SESSIONS) {
    return RmError::refused(EINVAL, kRmLayer | TPM2_RC_TAG, fmt::format("bad command tag 0x{:04x}", header->tag));
  }
  if (header->size != cmd.size()) {
    return RmError::malformed(fmt::format("commandSize {} disagrees with the {} bytes received", header->size, cmd.size()));
  }
  if (table.size() == 0) return RmError::refused(ENODEV, kRmLayer | TPM2_RC_FAILURE, "the TPM's command table is empty");
  auto attrs = table.find(header->code);
  if (!attrs) {
    return RmError::answered(kRmCommandCode, fmt::format("command code 0x{:08x} is not implemented by the TPM", header->code));
  }

  ParsedCommand out;
  out.tag = header->tag;
  out.code = header->code;
  out.attributes = *attrs;
  const std::size_t handles = attrs->handle_count();
  if (cmd.size() < ParsedCommand::handle_offset(handles)) {
    return RmError::malformed(fmt::format("command 0x{:x} has {} handles but only {} bytes", header->code, handles,
                                 cmd.size()));
  }
  for (std::size_t i = 0; i < handles; ++i) {
    out.handles.push_back(tpm::load_u32(cmd, ParsedCommand::handle_offset(i)));
  }

  std::size_t pos = ParsedCommand::handle_offset(handles);
  if (out.tag == TPM2_ST_SESSIONS) {
    if (cmd.size() - pos < 4) return RmError::malformed("authorizationSize missing after the handle area");
    std::uint32_t auth_size = tpm::load_u32(cmd, pos);
    pos += 4;
    if (auth_size < 9) {
      return RmError::refused(EINVAL, kRmLayer | TPM2_RC_AUTHSIZE,
                     fmt::format("authorizationSize {} is too small for one session", auth_size));
    }
    if (auth_size > cmd.size() - pos) {
      return RmError::refused(EINVAL, kRmLayer | TPM2_RC_AUTHSIZE,
                     fmt::format("authorizationSize {} overruns the command ({} bytes left)", auth_size,
                                 cmd.size() - pos));
    }
    const std::size_t end = pos + auth_size;
    while (pos < end) {
      if (out.auths.size() == kMaxAuthSessions) {
        return RmError::refused(EINVAL, kRmLayer | TPM2_RC_AUTHSIZE, "more than three sessions in the authorization area");
      }
      AuthEntry entry;
      std::string why;
      auto next = parse_auth(cmd, pos, end, entry, why);
      if (!next) return RmError::refused(EINVAL, kRmLayer | TPM2_RC_AUTHSIZE, why);
      out.auths.push_back(entry);
      pos = *next;
    }
  }
  out.parameter_offset = pos;
  return out;
}

}  // namespace tpmrmd::rm

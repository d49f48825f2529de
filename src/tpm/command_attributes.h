// TPMA_CC: what the TPM says about each command it implements (TPM_CAP_COMMANDS). The RM's handle mapping and
// the chip's sanity checks are driven by this table, not by a hard-coded list.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace tpmrmd::tpm {

class CommandAttributes {
 public:
  constexpr CommandAttributes() = default;
  constexpr explicit CommandAttributes(TPMA_CC raw) : raw_(raw) {}

  TPMA_CC raw() const { return raw_; }
  // The command code this entry describes: commandIndex plus the vendor bit.
  TPM2_CC code() const { return (raw_ & 0xFFFFu) | (vendor() ? (1u << 29) : 0u); }
  unsigned handle_count() const { return (raw_ >> 25) & 0x7u; }  // cHandles
  bool returns_handle() const { return (raw_ >> 28) & 0x1u; }   // rHandle
  bool flushes() const { return (raw_ >> 24) & 0x1u; }          // flushed
  bool nv() const { return (raw_ >> 22) & 0x1u; }
  bool extensive() const { return (raw_ >> 23) & 0x1u; }
  bool vendor() const { return (raw_ >> 29) & 0x1u; }

 private:
  TPMA_CC raw_ = 0;
};

// The TPM's command table. ContextSave and FlushContext are entered as taking one handle, as the kernel does
// (their handle is in the parameter area on the wire but is a handle to the RM).
class CommandTable {
 public:
  CommandTable() = default;
  explicit CommandTable(std::vector<CommandAttributes> entries);

  std::optional<CommandAttributes> find(TPM2_CC code) const;
  std::size_t size() const { return entries_.size(); }
  const std::vector<CommandAttributes>& entries() const { return entries_; }

 private:
  std::vector<CommandAttributes> entries_;  // sorted by code()
};

}  // namespace tpmrmd::tpm

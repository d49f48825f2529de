#include "tpm/command_attributes.h"

#include <algorithm>

namespace tpmrmd::tpm {

CommandTable::CommandTable(std::vector<CommandAttributes> entries) : entries_(std::move(entries)) {
  for (auto& e : entries_) {
    if (e.code() == TPM2_CC_ContextSave || e.code() == TPM2_CC_FlushContext) {
      e = CommandAttributes((e.raw() & ~(0x7u << 25)) | (1u << 25));
    }
  }
  std::sort(entries_.begin(), entries_.end(),
            [](const CommandAttributes& a, const CommandAttributes& b) { return a.code() < b.code(); });
}

std::optional<CommandAttributes> CommandTable::find(TPM2_CC code) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), code,
                             [](const CommandAttributes& e, TPM2_CC c) { return e.code() < c; });
  if (it == entries_.end() || it->code() != code) return std::nullopt;
  return *it;
}

}  // namespace tpmrmd::tpm

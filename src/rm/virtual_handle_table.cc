#include "rm/virtual_handle_table.h"

namespace tpmrmd::rm {

std::optional<TPM2_HANDLE> VirtualHandleTable::allocate(ObjectId object) {
  const std::uint64_t range = std::uint64_t{last_} - kFirstVirtualHandle + 1;
  if (map_.size() >= range) return std::nullopt;
  for (std::uint64_t tries = 0; tries < range; ++tries) {
    TPM2_HANDLE candidate = next_;
    next_ = candidate == last_ ? kFirstVirtualHandle : candidate + 1;
    if (map_.emplace(candidate, object).second) return candidate;
  }
  return std::nullopt;
}

std::optional<ObjectId> VirtualHandleTable::find(TPM2_HANDLE vhandle) const {
  auto it = map_.find(vhandle);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

bool VirtualHandleTable::erase(TPM2_HANDLE vhandle) { return map_.erase(vhandle) > 0; }

std::vector<TPM2_HANDLE> VirtualHandleTable::handles_from(TPM2_HANDLE from) const {
  std::vector<TPM2_HANDLE> out;
  for (auto it = map_.lower_bound(from); it != map_.end(); ++it) out.push_back(it->first);
  return out;
}

}  // namespace tpmrmd::rm

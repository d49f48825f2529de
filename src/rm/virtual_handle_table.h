// One connection's transient-object handles: virtual handle -> RM object id.
//
// Handles are allocated ascending from 0x80000000 and not reused while the connection lives (a stale handle
// then fails instead of silently naming a newer object). After 2^24 allocations the counter wraps and skips
// handles still live, so it never aborts.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "rm/handles.h"

namespace tpmrmd::rm {

using ObjectId = std::uint64_t;

class VirtualHandleTable {
 public:
  // Every connection gets the whole transient range (2^24 handles); a smaller `range` (from 0x80000000 on)
  // is for exercising the wrap without allocating 2^24 handles.
  static constexpr std::uint32_t kFullRange = kLastVirtualHandle - kFirstVirtualHandle + 1;
  explicit VirtualHandleTable(std::uint32_t range = kFullRange) : last_(kFirstVirtualHandle + (range - 1)) {}

  // Returns the new virtual handle, or nullopt when every handle of the range is live.
  std::optional<TPM2_HANDLE> allocate(ObjectId object);
  std::optional<ObjectId> find(TPM2_HANDLE vhandle) const;
  bool erase(TPM2_HANDLE vhandle);

  std::size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  // Live handles >= `from`, ascending.
  std::vector<TPM2_HANDLE> handles_from(TPM2_HANDLE from) const;
  const std::map<TPM2_HANDLE, ObjectId>& entries() const { return map_; }

 private:
  std::map<TPM2_HANDLE, ObjectId> map_;  // ordered: GetCapability walks it
  TPM2_HANDLE last_;
  TPM2_HANDLE next_ = kFirstVirtualHandle;
};

}  // namespace tpmrmd::rm

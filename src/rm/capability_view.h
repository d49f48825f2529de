// GetCapability as one connection sees it: the handle ranges the RM virtualises are answered from the
// connection's own tables, and a few TPM properties that describe the RM's resources are rewritten.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "util/bytes.h"

namespace tpmrmd::rm {

struct CapabilityQuery {
  TPM2_CAP capability = 0;
  std::uint32_t property = 0;
  std::uint32_t count = 0;
};

// GetCapability's parameters (exactly 12 bytes); nullopt when malformed (the TPM then answers it).
std::optional<CapabilityQuery> parse_capability_query(ByteSpan parameters);

// Whether TPM_CAP_HANDLES at `property` is a range the RM answers itself (transient, loaded and saved sessions).
bool is_virtualised_handle_range(std::uint32_t property);

// A complete GetCapability(TPM_CAP_HANDLES) response listing the first `count` (at most TPM2_MAX_CAP_HANDLES)
// of `remaining` (the caller's candidates from the query's start point on, in order), moreData set iff some
// are left out.
Bytes make_handles_response(std::span<const TPM2_HANDLE> remaining, std::uint32_t count);

// Rewrites TPM_PROPERTIES values in a successful GetCapability response in place. `rewrite` returns the
// value a property should have, or nullopt to leave it. Returns false (response untouched) if the body does
// not parse as TPM_PROPERTIES data.
bool rewrite_properties(Bytes& response, const std::function<std::optional<std::uint32_t>(TPM2_PT)>& rewrite);

}  // namespace tpmrmd::rm

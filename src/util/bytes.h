// Byte buffers at layer boundaries: owned commands/responses are Bytes, borrowed ones ByteSpan.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tpmrmd {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;

// Lower-case hex without separators, for logs and test diagnostics.
std::string to_hex(ByteSpan bytes);

// Parses hex digits, ignoring spaces; returns an empty vector on malformed input.
Bytes from_hex(std::string_view hex);

}  // namespace tpmrmd

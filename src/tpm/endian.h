// Big-endian (TPM wire order) loads and stores of fixed-width integers at known offsets, for reading and
// patching buffers in place; whole values are built with tss2-mu (tpm/commands.h).
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>

#include "util/bytes.h"

namespace tpmrmd::tpm {
namespace endian_detail {

template <typename T>
T load(ByteSpan bytes, std::size_t offset) {
  // Callers have already checked the length (they know the framing); an overrun here is a bug, not input.
  assert(offset <= bytes.size() && bytes.size() - offset >= sizeof(T));
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value = static_cast<T>((value << 8) | bytes[offset + i]);
  return value;
}

template <typename T>
void store(std::span<std::uint8_t> bytes, std::size_t offset, T value) {
  assert(offset <= bytes.size() && bytes.size() - offset >= sizeof(T));
  for (std::size_t i = sizeof(T); i-- > 0;) {
    bytes[offset + i] = static_cast<std::uint8_t>(value);
    value = static_cast<T>(value >> 8);
  }
}

}  // namespace endian_detail

// `offset` is where the integer starts; the span must hold it entirely.
inline std::uint16_t load_u16(ByteSpan bytes, std::size_t offset) {
  return endian_detail::load<std::uint16_t>(bytes, offset);
}
inline std::uint32_t load_u32(ByteSpan bytes, std::size_t offset) {
  return endian_detail::load<std::uint32_t>(bytes, offset);
}
inline std::uint64_t load_u64(ByteSpan bytes, std::size_t offset) {
  return endian_detail::load<std::uint64_t>(bytes, offset);
}

inline void store_u16(std::span<std::uint8_t> bytes, std::size_t offset, std::uint16_t value) {
  endian_detail::store(bytes, offset, value);
}
inline void store_u32(std::span<std::uint8_t> bytes, std::size_t offset, std::uint32_t value) {
  endian_detail::store(bytes, offset, value);
}
inline void store_u64(std::span<std::uint8_t> bytes, std::size_t offset, std::uint64_t value) {
  endian_detail::store(bytes, offset, value);
}

}  // namespace tpmrmd::tpm

// A window of TPM registers as the register drivers see it: 8- and 32-bit accesses at byte offsets from the
// window's start, plus the byte streams of a FIFO register and of a memory buffer. Implemented by MMIO over
// /dev/mem and by the in-process emulated TIS/CRB devices.
//
// Accesses never fail: like real hardware, an access outside the window reads all-ones and writes are dropped.
// Transport loss (an emulated device whose backend died) shows in alive(), so drivers can tell it from a slow
// device.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "util/bytes.h"

namespace tpmrmd::chip {

class RegisterBus {
 public:
  virtual ~RegisterBus() = default;

  virtual std::uint8_t read8(std::uint32_t offset) = 0;
  virtual std::uint32_t read32(std::uint32_t offset) = 0;
  virtual void write8(std::uint32_t offset, std::uint8_t value) = 0;
  virtual void write32(std::uint32_t offset, std::uint32_t value) = 0;

  // A FIFO register: every byte goes through the same offset, one 8-bit access each.
  virtual void read_fifo(std::uint32_t offset, std::span<std::uint8_t> out) {
    for (auto& b : out) b = read8(offset);
  }
  virtual void write_fifo(std::uint32_t offset, ByteSpan bytes) {
    for (auto b : bytes) write8(offset, b);
  }

  // A memory buffer at consecutive offsets: aligned 32-bit accesses, 8-bit ones for the unaligned edges.
  virtual void read_block(std::uint32_t offset, std::span<std::uint8_t> out);
  virtual void write_block(std::uint32_t offset, ByteSpan bytes);

  // Physical address of offset 0 (what CRB address registers are relative to) and the window's length.
  virtual std::uint64_t physical_base() const = 0;
  virtual std::uint32_t size() const = 0;

  virtual std::string description() const = 0;
  // The same device gives the same string however it is reached (for "one daemon per TPM" locks).
  virtual std::string identity() const { return description(); }
  // False once whatever is behind the registers is gone for good.
  virtual bool alive() const { return true; }
};

inline void RegisterBus::read_block(std::uint32_t offset, std::span<std::uint8_t> out) {
  std::size_t i = 0;
  while (i < out.size()) {
    const std::uint32_t at = offset + static_cast<std::uint32_t>(i);
    if (at % 4 == 0 && out.size() - i >= 4) {
      const std::uint32_t v = read32(at);
      for (int k = 0; k < 4; ++k) out[i + k] = static_cast<std::uint8_t>(v >> (8 * k));
      i += 4;
    } else {
      out[i++] = read8(at);
    }
  }
}

inline void RegisterBus::write_block(std::uint32_t offset, ByteSpan bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const std::uint32_t at = offset + static_cast<std::uint32_t>(i);
    if (at % 4 == 0 && bytes.size() - i >= 4) {
      std::uint32_t v = 0;
      for (int k = 0; k < 4; ++k) v |= std::uint32_t{bytes[i + k]} << (8 * k);
      write32(at, v);
      i += 4;
    } else {
      write8(at, bytes[i++]);
    }
  }
}

}  // namespace tpmrmd::chip

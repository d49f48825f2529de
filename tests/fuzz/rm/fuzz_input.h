// The RM fuzz targets read their input as a program: a few configuration bytes, then steps. This is the one
// reader they share. Reads past the end return zeroes, so every input is a complete program (and a truncated
// seed still means what its prefix meant).
#pragma once

#include <cstddef>
#include <cstdint>

#include "util/bytes.h"

namespace tpmrmd::fuzz {

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const { return off_ >= size_; }
  std::uint8_t u8() { return off_ < size_ ? data_[off_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>((u8() << 8) | u8()); }
  std::uint32_t u32() { return (std::uint32_t{u16()} << 16) | u16(); }
  // One of `n` choices (n > 0).
  std::size_t pick(std::size_t n) { return n <= 256 ? u8() % n : u16() % n; }
  Bytes bytes(std::size_t n) {
    const std::size_t left = off_ < size_ ? size_ - off_ : 0;
    const std::size_t take = n < left ? n : left;
    Bytes out(data_ + off_, data_ + off_ + take);
    off_ += take;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t off_ = 0;
};

// The step kinds both RM targets share (the step byte modulo kStepKinds; commands get the most weight).
enum class Step : std::uint8_t { kOpen, kClose, kCommand, kRaw, kMutate, kFault };
inline constexpr std::uint8_t kStepKinds = 8;
inline Step step_of(std::uint8_t byte) {
  switch (byte % kStepKinds) {
    case 0: return Step::kOpen;
    case 1: return Step::kClose;
    case 5: return Step::kRaw;
    case 6: return Step::kMutate;
    case 7: return Step::kFault;
    default: return Step::kCommand;
  }
}
// The byte that encodes each kind, for seed generators.
inline constexpr std::uint8_t kOpenByte = 0, kCloseByte = 1, kCommandByte = 2, kRawByte = 5, kMutateByte = 6,
                              kFaultByte = 7;

// A raw-bytes step: the connection (index among open ones), the length, the bytes, and a flags byte (bit 0: fix
// the size field so the command passes framing).
inline void append_raw_step(Bytes& program, std::uint8_t connection, ByteSpan command, bool fix_size = false) {
  program.push_back(kRawByte);
  program.push_back(connection);
  program.push_back(static_cast<std::uint8_t>(command.size() >> 8));
  program.push_back(static_cast<std::uint8_t>(command.size()));
  program.insert(program.end(), command.begin(), command.end());
  program.push_back(fix_size ? 1 : 0);
}

}  // namespace tpmrmd::fuzz

// Registers reached through /dev/mem at a physical base address: an uncached (O_SYNC) shared mapping, and every
// access exactly as wide as asked (volatile 8- and 32-bit loads and stores), as register windows require.
// Needs root and a kernel that lets /dev/mem reach the range (no driver bound to it: CONFIG_IO_STRICT_DEVMEM).
#pragma once

#include <cstdint>
#include <memory>

#include "chip/registers/register_bus.h"
#include "util/result.h"

namespace tpmrmd::chip {

class MmioBus final : public RegisterBus {
 public:
  // `base` must be page-aligned. `path` is /dev/mem except in tests.
  static Result<std::unique_ptr<MmioBus>> open(std::uint64_t base, std::uint32_t size,
                                               const char* path = "/dev/mem");
  ~MmioBus() override;
  MmioBus(const MmioBus&) = delete;
  MmioBus& operator=(const MmioBus&) = delete;

  std::uint8_t read8(std::uint32_t offset) override;
  std::uint32_t read32(std::uint32_t offset) override;
  void write8(std::uint32_t offset, std::uint8_t value) override;
  void write32(std::uint32_t offset, std::uint32_t value) override;
  std::uint64_t physical_base() const override { return base_; }
  std::uint32_t size() const override { return size_; }
  std::string description() const override;
  std::string identity() const override;

 private:
  MmioBus(std::uint64_t base, std::uint32_t size, volatile std::uint8_t* map) : base_(base), size_(size), map_(map) {}
  bool in_range(std::uint32_t offset, std::uint32_t width) const { return offset <= size_ && size_ - offset >= width; }

  std::uint64_t base_;
  std::uint32_t size_;
  volatile std::uint8_t* map_;
};

}  // namespace tpmrmd::chip

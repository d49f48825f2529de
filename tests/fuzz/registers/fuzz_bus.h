// What the register fuzzers put under the drivers: a RegisterBus whose reads return the input's next bytes,
// and a virtual PollClock in which only the drivers' own sleeps pass time.
//
// Input layout (shared with the seed recorder): the scenario's configuration bytes at the end of the input
// (FuzzedDataProvider takes integers from the end), then, from the start, the value of every register read in
// the order the driver makes them: one byte per 8-bit read, four (little-endian) per 32-bit read. Once the
// input is used up every read returns all-ones and alive() turns false, as for a device that went away, so a
// run ends after a few polls.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>

#include "chip/registers/poll_backoff.h"
#include "chip/registers/register_bus.h"
#include "fuzz_check.h"

namespace tpmrmd::fuzz {

class FuzzBus final : public chip::RegisterBus {
 public:
  FuzzBus(FuzzedDataProvider& in, std::uint32_t size, std::uint64_t physical_base)
      : in_(in), size_(size), base_(physical_base) {}

  std::uint8_t read8(std::uint32_t offset) override {
    check(offset, 1, "read8");
    std::uint8_t v = 0xFF;
    in_.ConsumeData(&v, 1);
    return v;
  }
  std::uint32_t read32(std::uint32_t offset) override {
    check(offset, 4, "read32");
    std::uint8_t b[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    in_.ConsumeData(b, 4);
    return std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 | std::uint32_t{b[3]} << 24;
  }
  void write8(std::uint32_t offset, std::uint8_t) override { check(offset, 1, "write8"); }
  void write32(std::uint32_t offset, std::uint32_t) override { check(offset, 4, "write32"); }
  std::uint64_t physical_base() const override { return base_; }
  std::uint32_t size() const override { return size_; }
  std::string description() const override { return "fuzz bus"; }
  bool alive() const override { return in_.remaining_bytes() > 0; }

 private:
  // The drivers size their accesses from the window they were given: anything outside it is a driver bug
  // (a size from the device that was not clamped, an offset computed past the end).
  void check(std::uint32_t offset, std::uint32_t width, const char* what) const {
    FUZZ_CHECK(offset <= size_ && size_ - offset >= width, "%s at %#x outside the %#x-byte window", what, offset,
               size_);
  }

  FuzzedDataProvider& in_;
  const std::uint32_t size_;
  const std::uint64_t base_;
};

// Time passes only when a driver sleeps: a device that never answers costs polls, not wall-clock time, and a
// run is the same on every machine.
class VirtualClock final : public chip::PollClock {
 public:
  Clock::time_point now() override { return now_; }
  void sleep_for(std::chrono::microseconds duration) override { now_ += duration; }

 private:
  Clock::time_point now_ = Clock::time_point(std::chrono::hours(1));
};

}  // namespace tpmrmd::fuzz

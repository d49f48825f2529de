// One register-fuzzer run: open() a TIS FIFO or CRB driver on a bus, then a few exchange() calls with small
// valid commands, checking each result against the driver's contract. Shared by the fuzz targets (on a
// FuzzBus in virtual time) and by the seed recorder (on an emulated device in front of swtpm, wall-clock
// time), so that a recorded seed walks the same path when the fuzzer replays it.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chip/registers/poll_backoff.h"
#include "chip/registers/register_bus.h"
#include "util/bytes.h"

namespace tpmrmd::fuzz {

// The configuration bytes at the end of the input, first one last.
struct Scenario {
  static constexpr std::size_t kBytes = 6;
  std::array<std::uint8_t, kBytes> config{};

  static Scenario consume(FuzzedDataProvider& in);
  // The input tail that consume() reads back as this scenario.
  Bytes tail() const;

  // config[0]: driver options; config[1]: window and exchange count; config[2..5]: one byte per exchange.
  std::uint32_t window_size(std::uint32_t full) const;
  int exchanges() const { return 1 + ((config[1] >> 2) & 3); }
};

// The scenario's commands, by the low bits of an exchange's byte.
Bytes scenario_command(std::uint8_t selector);

// What a run did, for the recorder to compare a replay with.
struct Outcome {
  std::vector<int> codes;  // open() first, then each exchange: 0 or the errno
  std::string describe() const;
};

// Runs the scenario; every contract violation aborts. `clock` null: the steady clock.
Outcome run_tis(std::shared_ptr<chip::RegisterBus> bus, std::shared_ptr<chip::PollClock> clock, const Scenario& s);
Outcome run_crb(std::shared_ptr<chip::RegisterBus> bus, std::shared_ptr<chip::PollClock> clock, const Scenario& s);

}  // namespace tpmrmd::fuzz

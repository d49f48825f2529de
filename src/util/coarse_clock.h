// A monotonic clock that never reads the clock hardware: CLOCK_MONOTONIC_COARSE is the time of the last timer
// tick, which the vDSO answers on every clock source. steady_clock reads the clock source; where that source
// has no vDSO path (as in the project's QEMU TCG guest) every read is a system call, and the command path
// reads the time several times per command. For deadlines
// and timeouts (milliseconds to minutes) a tick (1-10 ms) is precise enough; durations that are reported or
// charged (latency, fair-queue cost) stay on steady_clock.
#pragma once

#include <time.h>

#include <chrono>

namespace tpmrmd {

struct CoarseClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<CoarseClock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

}  // namespace tpmrmd

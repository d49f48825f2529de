// How the register drivers poll: a short first interval that doubles up to `cap`, so an emulated device
// answers within microseconds and a real one is not hammered for long.
//
// Deadlines and sleeps come from a PollClock when one is given (a fuzzer's virtual time, in which a device that
// never answers costs no real time and a run replays exactly), from the steady clock otherwise.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace tpmrmd::chip {

class PollClock {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~PollClock() = default;
  virtual Clock::time_point now() = 0;
  virtual void sleep_for(std::chrono::microseconds duration) = 0;

  // `clock`'s time, or the steady clock's without one.
  static Clock::time_point now(PollClock* clock) { return clock ? clock->now() : Clock::now(); }
  static void sleep_for(PollClock* clock, std::chrono::microseconds duration) {
    if (clock) {
      clock->sleep_for(duration);
    } else {
      std::this_thread::sleep_for(duration);
    }
  }
};

class PollBackoff {
 public:
  explicit PollBackoff(std::chrono::microseconds cap, PollClock* clock = nullptr) : cap_(cap), clock_(clock) {}
  void wait() {
    PollClock::sleep_for(clock_, next_);
    next_ = std::min(next_ * 2, cap_);
  }

 private:
  std::chrono::microseconds next_{10};
  std::chrono::microseconds cap_;
  PollClock* clock_;
};

}  // namespace tpmrmd::chip

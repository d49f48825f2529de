// How the register drivers poll: a short first interval that doubles up to `cap`, so an emulated device
// answers within microseconds and a real one is not hammered for long.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace tpmrmd::chip {

class PollBackoff {
 public:
  explicit PollBackoff(std::chrono::microseconds cap) : cap_(cap) {}
  void wait() {
    std::this_thread::sleep_for(next_);
    next_ = std::min(next_ * 2, cap_);
  }

 private:
  std::chrono::microseconds next_{10};
  std::chrono::microseconds cap_;
};

}  // namespace tpmrmd::chip

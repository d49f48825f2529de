// Waiting for something another thread or process brings about (a restart, a reaped child), polled: tests
// assert that it happens, never how fast; the limit only ends a test that would otherwise hang.
#pragma once

#include <chrono>
#include <thread>

namespace tpmrmd::testing {

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace tpmrmd::testing

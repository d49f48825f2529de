// Wraps a real driver and injects faults the real swtpm can't be made to produce on demand: RETRY/TESTING/
// YIELDED answers, malformed responses. Also records the command codes that reached it.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "tis/driver.h"
#include "tpm/header.h"

namespace tpmrmd::testing {

// What reached the driver; outlives it, so tests can look after the chip destroyed the driver.
struct DriverLog {
  std::mutex mutex;
  std::vector<Bytes> commands;
};

class FaultInjectingDriver final : public tis::Driver {
 public:
  explicit FaultInjectingDriver(std::unique_ptr<tis::Driver> real,
                                std::shared_ptr<DriverLog> log = std::make_shared<DriverLog>())
      : real_(std::move(real)), log_(std::move(log)) {}

  // The next `times` exchanges answer `rc` without reaching the TPM (times < 0: forever).
  void inject_rc(TPM2_RC rc, int times) {
    std::lock_guard lock(mutex_);
    inject_rc_ = rc;
    inject_times_ = times;
  }
  // The next exchange returns the real response cut to `bytes`.
  void truncate_next_response(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    truncate_to_ = bytes;
  }
  std::vector<TPM2_CC> seen() const {
    std::lock_guard lock(log_->mutex);
    std::vector<TPM2_CC> codes;
    for (const auto& c : log_->commands) codes.push_back(tpm::parse_command_header(c)->code);
    return codes;
  }

  std::string description() const override { return "faulty " + real_->description(); }
  std::string identity() const override { return real_->identity(); }
  Result<void> power_on() override { return real_->power_on(); }
  bool alive() const override { return real_->alive(); }
  std::optional<Bytes> take_late_response() override { return real_->take_late_response(); }

  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override {
    {
      std::lock_guard log_lock(log_->mutex);
      log_->commands.emplace_back(command.begin(), command.end());
    }
    std::unique_lock lock(mutex_);
    if (inject_times_ != 0) {
      if (inject_times_ > 0) --inject_times_;
      return tpm::make_rc_response(inject_rc_);
    }
    std::size_t truncate = std::exchange(truncate_to_, 0);
    lock.unlock();
    auto r = real_->exchange(command, timeout);
    if (r && truncate) r->resize(truncate);
    return r;
  }

 private:
  std::unique_ptr<tis::Driver> real_;
  mutable std::mutex mutex_;
  TPM2_RC inject_rc_ = 0;
  int inject_times_ = 0;
  std::size_t truncate_to_ = 0;
  std::shared_ptr<DriverLog> log_;
};

}  // namespace tpmrmd::testing

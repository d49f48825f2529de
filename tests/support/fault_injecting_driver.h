// Wraps a real driver and injects faults the real swtpm can't be made to produce on demand: RETRY/TESTING/
// YIELDED answers, malformed responses. Also records the command codes that reached it.
#pragma once

#include <atomic>
#include <cerrno>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "chip/driver.h"
#include "tpm/header.h"

namespace tpmrmd::testing {

// What reached the driver; outlives it, so tests can look after the chip destroyed the driver.
struct DriverLog {
  std::mutex mutex;
  std::vector<Bytes> commands;
};

class FaultInjectingDriver final : public chip::Driver {
 public:
  explicit FaultInjectingDriver(std::unique_ptr<chip::Driver> real,
                                std::shared_ptr<DriverLog> log = std::make_shared<DriverLog>())
      : real_(std::move(real)), log_(std::move(log)) {}

  // The next `times` exchanges answer `rc` without reaching the TPM (times < 0: forever).
  void inject_rc(TPM2_RC rc, int times) { inject_response(tpm::make_rc_response(rc), times); }
  // The next `times` exchanges answer `response` without reaching the TPM (times < 0: forever).
  void inject_response(Bytes response, int times) {
    std::lock_guard lock(mutex_);
    inject_response_ = std::move(response);
    inject_times_ = times;
  }
  // The next exchange reaches the TPM, but reports ETIME as if the deadline had passed, and offers the TPM's
  // real answer as the late response the driver drained after its cancel.
  void time_out_next_with_late_response() {
    std::lock_guard lock(mutex_);
    time_out_next_ = true;
  }
  // The next exchange reaches the TPM, but reports ETIME and its response is lost: the cancel "worked" as far
  // as the driver can tell, though the TPM had run the command.
  void time_out_next_losing_response() {
    std::lock_guard lock(mutex_);
    lose_next_ = true;
  }
  // Called with every real command and response; may rewrite the response (e.g. a TPM that pages badly).
  void rewrite_responses(std::function<void(ByteSpan command, Bytes& response)> rewrite) {
    std::lock_guard lock(mutex_);
    rewrite_ = std::move(rewrite);
  }
  int power_ons() const { return power_ons_.load(); }
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
  Result<void> power_on() override {
    ++power_ons_;
    return real_->power_on();
  }
  bool alive() const override { return real_->alive(); }
  std::optional<Bytes> take_late_response() override {
    {
      std::lock_guard lock(mutex_);
      if (late_) return std::exchange(late_, std::nullopt);
    }
    return real_->take_late_response();
  }

  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override {
    {
      std::lock_guard log_lock(log_->mutex);
      log_->commands.emplace_back(command.begin(), command.end());
    }
    std::unique_lock lock(mutex_);
    if (inject_times_ != 0) {
      if (inject_times_ > 0) --inject_times_;
      return inject_response_;
    }
    std::size_t truncate = std::exchange(truncate_to_, 0);
    bool time_out = std::exchange(time_out_next_, false);
    bool lose = std::exchange(lose_next_, false);
    auto rewrite = rewrite_;
    lock.unlock();
    auto r = real_->exchange(command, timeout);
    if (r && rewrite) rewrite(command, *r);
    if (r && truncate) r->resize(truncate);
    if (r && lose) return make_error(ETIME, "injected deadline, response lost");
    if (r && time_out) {
      lock.lock();
      late_ = std::move(*r);
      return make_error(ETIME, "injected deadline");
    }
    return r;
  }

 private:
  std::unique_ptr<chip::Driver> real_;
  mutable std::mutex mutex_;
  Bytes inject_response_;
  int inject_times_ = 0;
  std::size_t truncate_to_ = 0;
  bool time_out_next_ = false;
  bool lose_next_ = false;
  std::optional<Bytes> late_;
  std::function<void(ByteSpan, Bytes&)> rewrite_;
  std::atomic<int> power_ons_{0};
  std::shared_ptr<DriverLog> log_;
};

}  // namespace tpmrmd::testing

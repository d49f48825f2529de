// Fault-case labels (F-Tnn) are defined in docs/registers.md.
#include "support/emulated_tis_device.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "chip/registers/tis_fifo_driver.h"
#include "tpm/endian.h"
#include "tpm/header.h"

namespace tpmrmd::chip {
namespace {

using namespace tis_reg;
using Clock = std::chrono::steady_clock;

// Command and response buffer of the emulated part.
constexpr std::size_t kFifoCapacity = 4096;
// INTF_CAPS: no interrupts implemented, interface version 3 (PTP FIFO).
constexpr std::uint32_t kIntfCapsValue = 3u << 28;
// STS byte 3: tpmFamily = 01 (TPM 2.0).
constexpr std::uint32_t kStsFamilyTpm2 = 1u << 26;

}  // namespace

EmulatedTisDevice::EmulatedTisDevice(std::unique_ptr<Driver> backend, EmulatedTisOptions options)
    : options_(options), created_(Clock::now()), backend_(std::move(backend)), faults_(options.faults) {
  worker_ = std::thread([this] { worker(); });
}

EmulatedTisDevice::~EmulatedTisDevice() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    ++generation_;
  }
  cv_.notify_all();
  worker_.join();
}

std::uint32_t EmulatedTisDevice::size() const { return kWindowSize; }

std::string EmulatedTisDevice::description() const { return "emulated TIS in front of " + backend_->description(); }

std::string EmulatedTisDevice::identity() const { return "emulated:" + backend_->identity(); }

bool EmulatedTisDevice::alive() const { return backend_alive_.load(); }

void EmulatedTisDevice::set_faults(const EmulatedTisFaults& faults) {
  std::lock_guard lock(mutex_);
  faults_ = faults;
  zero_burst_until_ = {};
}

EmulatedDeviceCounters EmulatedTisDevice::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

bool EmulatedTisDevice::take(int& count) {
  if (count == 0) return false;
  if (count > 0) --count;
  return true;
}

bool EmulatedTisDevice::valid_locked() const {
  return !faults_.valid_never && Clock::now() - created_ >= faults_.valid_after;
}

std::uint8_t EmulatedTisDevice::access_locked(int locality) {
  if (!valid_locked()) return 0;
  std::uint8_t v = kAccessValid;
  if (active_ == locality) v |= kAccessActive;
  if (requested_ == locality || (faults_.request_use_stuck && active_ == locality)) v |= kAccessRequestUse;
  if (requested_ >= 0 && requested_ != locality) v |= 0x04;  // pendingRequest
  return v;
}

std::uint16_t EmulatedTisDevice::burst_locked() {
  const std::uint16_t cap = std::max<std::uint16_t>(faults_.max_burst, 1);
  switch (state_) {
    case State::kReady:
    case State::kReception: {
      if (Clock::now() < zero_burst_until_) return 0;
      return static_cast<std::uint16_t>(std::min<std::size_t>(cap, kFifoCapacity - command_.size()));
    }
    case State::kCompletion: {
      if (Clock::now() < zero_burst_until_) return 0;
      if (read_pos_ < served_.size()) return static_cast<std::uint16_t>(std::min<std::size_t>(cap, served_.size() - read_pos_));
      return leftover_ ? 1 : 0;
    }
    default:
      return 0;
  }
}

std::uint32_t EmulatedTisDevice::sts_locked(int locality) {
  if (active_ != locality) return 0xFFFFFFFF;  // real parts commonly read all-ones without the locality
  std::uint8_t b0 = kStsValid;
  switch (state_) {
    case State::kIdle:
      break;
    case State::kReady:
      if (faults_.command_ready_never) return kStsValid;  // F-T05: reads as Idle, Ready never comes
      b0 |= kStsCommandReady;
      break;
    case State::kReception: {
      const bool length_known = command_.size() >= 6;
      if (!early_drop_ && (!length_known || command_.size() < tpm::load_u32(command_, 2))) b0 |= kStsExpect;
      break;
    }
    case State::kReceptionComplete:
      if (expect_stuck_now_) b0 |= kStsExpect;
      break;
    case State::kExecution:
      // Never 0x40, which the kernel's default rule reads as "canceled"; 0x00 for Winbond, whose vendor rule
      // treats 0x80 and 0xC0 as "canceled".
      if (options_.vid == kVidWinbond) b0 = 0x00;
      break;
    case State::kCompletion:
      if (read_pos_ < served_.size() || leftover_) b0 |= kStsDataAvail;
      break;
  }
  if (valid_lost_) b0 &= static_cast<std::uint8_t>(~(kStsValid | kStsExpect | kStsDataAvail));
  if (state_ == State::kExecution && faults_.execution_status) return *faults_.execution_status;
  return b0 | (std::uint32_t{burst_locked()} << 8) | kStsFamilyTpm2;
}

void EmulatedTisDevice::write_access_locked(int locality, std::uint8_t value) {
  if (value == kAccessRequestUse) {
    if (!valid_locked() || faults_.locality_never_granted) {
      requested_ = locality;
      return;
    }
    if (active_ < 0 || active_ == locality) {
      active_ = locality;
      if (requested_ == locality) requested_ = -1;
    } else {
      requested_ = locality;
    }
  } else if (value == kAccessActive) {
    if (active_ != locality) {
      ++counters_.protocol_errors;
      return;
    }
    active_ = -1;
    if (requested_ >= 0 && !faults_.locality_never_granted) {
      active_ = std::exchange(requested_, -1);
    }
  } else {
    ++counters_.protocol_errors;  // seize and friends: not implemented
  }
}

void EmulatedTisDevice::abort_locked() {
  if (state_ == State::kExecution) {
    ++counters_.aborts;
    ++generation_;  // the backend's answer, when it comes, is dropped
    cv_.notify_all();
  }
  command_.clear();
  response_.clear();
  served_.clear();
  read_pos_ = 0;
  leftover_ = false;
  early_drop_ = false;
  expect_stuck_now_ = false;
  valid_lost_ = false;
}

void EmulatedTisDevice::start_response_pass_locked() {
  served_ = response_;
  read_pos_ = 0;
  if (take(faults_.bad_length) && served_.size() >= 6) tpm::store_u32(served_, 2, 5);
  if (take(faults_.short_response)) served_.resize(std::max<std::size_t>(10, served_.size() / 2));
  leftover_ = take(faults_.leftover_data);
  zero_burst_until_ = Clock::now() + faults_.zero_burst;
}

void EmulatedTisDevice::write_sts_locked(int locality, std::uint32_t value) {
  if (active_ != locality) {
    ++counters_.protocol_errors;
    return;
  }
  if (value & kStsCommandCancel) {  // spec: abort a running command, complete with TPM_RC_CANCELED
    if (state_ == State::kExecution) {
      ++counters_.aborts;
      ++generation_;
      cv_.notify_all();
      response_ = tpm::make_rc_response(TPM2_RC_CANCELED);
      state_ = State::kCompletion;
      start_response_pass_locked();
    }
    value &= 0xFF;
    if (value == 0) return;
  }
  const std::uint8_t b0 = static_cast<std::uint8_t>(value);
  const int bits = !!(b0 & kStsCommandReady) + !!(b0 & kStsGo) + !!(b0 & kStsResponseRetry);
  if (bits != 1 || (value & ~0xFFu)) {
    ++counters_.protocol_errors;
    return;
  }
  if (b0 & kStsCommandReady) {
    abort_locked();
    state_ = State::kReady;
    zero_burst_until_ = Clock::now() + faults_.zero_burst;
  } else if (b0 & kStsGo) {
    if (state_ != State::kReceptionComplete || expect_stuck_now_) {
      ++counters_.protocol_errors;
      return;
    }
    state_ = State::kExecution;
    ++counters_.commands;
    jobs_.push_back({generation_, command_, locality});
    cv_.notify_all();
  } else {
    if (state_ != State::kCompletion) {
      ++counters_.protocol_errors;
      return;
    }
    ++counters_.response_retries;
    if (!faults_.response_retry_ignored) start_response_pass_locked();
  }
}

void EmulatedTisDevice::write_fifo_byte_locked(int locality, std::uint8_t value) {
  if (active_ != locality || (state_ != State::kReady && state_ != State::kReception)) {
    ++counters_.protocol_errors;
    return;
  }
  if (state_ == State::kReady) {
    state_ = State::kReception;
    early_drop_ = take(faults_.expect_early_drop);
  }
  if (command_.size() >= kFifoCapacity) {
    ++counters_.protocol_errors;
    return;
  }
  command_.push_back(value);
  if (!valid_lost_ && faults_.sts_valid_lost != 0) valid_lost_ = take(faults_.sts_valid_lost);
  if (command_.size() >= 10 && command_.size() >= tpm::load_u32(command_, 2)) {
    state_ = State::kReceptionComplete;
    expect_stuck_now_ = take(faults_.expect_stuck);
  }
}

std::uint8_t EmulatedTisDevice::read_fifo_byte_locked(int locality) {
  if (active_ != locality || state_ != State::kCompletion || read_pos_ >= served_.size()) {
    ++counters_.protocol_errors;
    return 0xFF;
  }
  return served_[read_pos_++];
}

std::uint8_t EmulatedTisDevice::read8(std::uint32_t offset) {
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize) return 0xFF;
  const int locality = static_cast<int>(offset / kLocalityWindow);
  const std::uint32_t r = offset % kLocalityWindow;
  switch (r) {
    case kAccess:
      return access_locked(locality);
    case kSts:
    case kSts + 1:
    case kSts + 2:
    case kSts + 3:
      return static_cast<std::uint8_t>(sts_locked(locality) >> (8 * (r - kSts)));
    case kDataFifo:
      return read_fifo_byte_locked(locality);
    case kIntVector:
      return int_vector_;
    case kRid:
      return options_.rid;
    default:
      return 0;
  }
}

std::uint32_t EmulatedTisDevice::read32(std::uint32_t offset) {
  {
    std::lock_guard lock(mutex_);
    const std::uint32_t r = offset % kLocalityWindow;
    if (offset < kWindowSize && r != kDataFifo && r != kAccess && r != kRid && r != kIntVector) {
      ++counters_.accesses;
      const int locality = static_cast<int>(offset / kLocalityWindow);
      switch (r) {
        case kSts:
          return sts_locked(locality);
        case kIntEnable:
          return int_enable_;
        case kIntStatus:
          return 0;
        case kIntfCaps:
          return kIntfCapsValue;
        case kInterfaceId:
          return 0;  // interface type 0: FIFO
        case kDidVid:
          return std::uint32_t{options_.did} << 16 | options_.vid;
        default:
          return 0;
      }
    }
    if (offset >= kWindowSize) {
      ++counters_.accesses;
      return 0xFFFFFFFF;
    }
  }
  // Byte registers and the FIFO: a multi-byte access moves consecutive bytes, as a byte stream would.
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    const std::uint32_t r = offset % kLocalityWindow;
    v |= std::uint32_t{read8(r == kDataFifo ? offset : offset + i)} << (8 * i);
  }
  return v;
}

void EmulatedTisDevice::write8(std::uint32_t offset, std::uint8_t value) {
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize) return;
  const int locality = static_cast<int>(offset / kLocalityWindow);
  switch (offset % kLocalityWindow) {
    case kAccess:
      write_access_locked(locality, value);
      return;
    case kSts:
      write_sts_locked(locality, value);
      return;
    case kSts + 3:
      write_sts_locked(locality, std::uint32_t{value} << 24);
      return;
    case kDataFifo:
      write_fifo_byte_locked(locality, value);
      return;
    case kIntVector:
      int_vector_ = value;
      return;
    default:
      ++counters_.protocol_errors;
  }
}

void EmulatedTisDevice::write32(std::uint32_t offset, std::uint32_t value) {
  const std::uint32_t r = offset % kLocalityWindow;
  if (r == kDataFifo) {
    for (int i = 0; i < 4; ++i) write8(offset, static_cast<std::uint8_t>(value >> (8 * i)));
    return;
  }
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize) return;
  const int locality = static_cast<int>(offset / kLocalityWindow);
  switch (r) {
    case kSts:
      write_sts_locked(locality, value);
      return;
    case kIntEnable:
      int_enable_ = value & 0x80000087u;
      return;
    case kIntStatus:
      return;  // write-1-to-clear; nothing is ever pending
    default:
      ++counters_.protocol_errors;
  }
}

void EmulatedTisDevice::complete_locked(Bytes response) {
  response_ = std::move(response);
  state_ = State::kCompletion;
  start_response_pass_locked();
}

void EmulatedTisDevice::worker() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    const int want_locality = job.locality;
    lock.unlock();
    // The backend runs without the lock: register reads during Execution must not wait for swtpm.
    if (want_locality != backend_locality_) {
      if (backend_->set_locality(static_cast<std::uint8_t>(want_locality))) backend_locality_ = want_locality;
    }
    auto response = backend_->exchange(job.command, options_.backend_timeout);
    if (!backend_->alive()) backend_alive_.store(false);
    lock.lock();
    if (!response) {
      // The device stays in Execution: a driver sees a command that never completes, and the transport
      // failure through alive(), as with a real device whose transport broke.
      spdlog::warn("emulated tis: backend failed: {}", describe(response.error()));
      continue;
    }
    if (faults_.response_delay.count() > 0) {
      cv_.wait_for(lock, faults_.response_delay, [&] { return stopping_ || generation_ != job.generation; });
    }
    if (stopping_) return;
    if (generation_ != job.generation || state_ != State::kExecution) continue;  // aborted meanwhile
    complete_locked(std::move(*response));
  }
}

}  // namespace tpmrmd::chip

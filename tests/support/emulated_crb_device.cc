// Fault-case labels (F-Cnn) are defined in docs/registers.md.
#include "support/emulated_crb_device.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "chip/registers/crb_driver.h"
#include "tpm/endian.h"
#include "tpm/header.h"

namespace tpmrmd::chip {
namespace {

using namespace crb_reg;

}  // namespace

EmulatedCrbDevice::EmulatedCrbDevice(std::unique_ptr<Driver> backend, EmulatedCrbOptions options)
    : options_(options), backend_(std::move(backend)), faults_(options.faults), memory_(kWindowSize, 0) {
  if (options_.separate_buffers) {
    cmd_offset_ = kDataBuffer;
    cmd_size_ = 0x800;
    rsp_offset_ = kDataBuffer + 0x800;
    rsp_size_ = kWindowSize - rsp_offset_;
  } else {
    cmd_offset_ = rsp_offset_ = kDataBuffer;
    cmd_size_ = rsp_size_ = kWindowSize - kDataBuffer;
  }
  worker_ = std::thread([this] { worker(); });
}

EmulatedCrbDevice::~EmulatedCrbDevice() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    ++generation_;
  }
  cv_.notify_all();
  worker_.join();
}

std::uint32_t EmulatedCrbDevice::size() const { return kWindowSize; }
std::string EmulatedCrbDevice::description() const { return "emulated CRB in front of " + backend_->description(); }
std::string EmulatedCrbDevice::identity() const { return "emulated:" + backend_->identity(); }

void EmulatedCrbDevice::set_faults(const EmulatedCrbFaults& faults) {
  std::lock_guard lock(mutex_);
  faults_ = faults;
  if (!faults_.cmd_ready_stuck) ctrl_req_ &= ~kReqCmdReady;
  if (!faults_.go_idle_stuck) ctrl_req_ &= ~kReqGoIdle;
}

EmulatedDeviceCounters EmulatedCrbDevice::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

std::uint32_t EmulatedCrbDevice::reg_locked(std::uint32_t offset) {
  const bool hide_addresses = options_.addresses_zero_while_idle && idle_;
  const std::uint64_t cmd_pa = options_.physical_base + cmd_offset_;
  const std::uint64_t rsp_pa = options_.physical_base + rsp_offset_;
  switch (offset) {
    case kLocState:
      return kLocStateValid | (assigned_ ? kLocStateAssigned : 0);  // activeLocality field: 0
    case kLocSts:
      return assigned_ ? 1 : 0;
    case kInterfaceId:
      return 1;  // InterfaceType CRB
    case kInterfaceIdHigh:
      return std::uint32_t{options_.did} << 16 | options_.vid;
    case kCtrlReq:
      return ctrl_req_;
    case kCtrlSts:
      return (faults_.error_bit ? kStsError : 0) | (idle_ ? kStsIdle : 0);
    case kCtrlCancel:
      return (cancel_ || (faults_.device_cancel && start_)) ? 1 : 0;
    case kCtrlStart:
      return start_ ? 1 : 0;
    case kCmdSize:
      return hide_addresses ? 0 : (options_.command_size_override ? options_.command_size_override : cmd_size_);
    case kCmdPaLow:
      return hide_addresses ? 0 : static_cast<std::uint32_t>(cmd_pa);
    case kCmdPaHigh:
      return hide_addresses ? 0 : static_cast<std::uint32_t>(cmd_pa >> 32);
    case kRspSize:
      return hide_addresses ? 0 : (options_.response_size_override ? options_.response_size_override : rsp_size_);
    case kRspPa:
      return hide_addresses ? 0 : static_cast<std::uint32_t>(rsp_pa);
    case kRspPa + 4:
      return hide_addresses ? 0 : static_cast<std::uint32_t>(rsp_pa >> 32);
    default:
      return 0;
  }
}

void EmulatedCrbDevice::start_locked() {
  if (start_ || (idle_ && !faults_.cmd_ready_stuck)) {  // START while busy or idle: counted and ignored
    ++counters_.protocol_errors;
    return;
  }
  const std::uint32_t length = tpm::load_u32(memory_, cmd_offset_ + 2);
  if (length < 10 || length > cmd_size_) {
    ++counters_.protocol_errors;
    return;
  }
  start_ = true;
  ++counters_.commands;
  jobs_.push_back({generation_, Bytes(memory_.begin() + cmd_offset_, memory_.begin() + cmd_offset_ + length)});
  cv_.notify_all();
}

void EmulatedCrbDevice::write_reg_locked(std::uint32_t offset, std::uint32_t value) {
  switch (offset) {
    case kLocCtrl:
      if (value & kLocCtrlRequest && !faults_.locality_never_granted) assigned_ = true;
      if (value & kLocCtrlRelinquish && !faults_.assigned_stuck) assigned_ = false;
      return;
    case kCtrlReq:
      // The bits clear themselves at once, unless a fault keeps them set.
      if (value & kReqCmdReady) {
        idle_ = false;
        if (faults_.cmd_ready_stuck) ctrl_req_ |= kReqCmdReady;
      }
      if (value & kReqGoIdle) {
        if (start_) {
          ++counters_.protocol_errors;
        } else {
          idle_ = true;
        }
        if (faults_.go_idle_stuck) ctrl_req_ |= kReqGoIdle;
      }
      return;
    case kCtrlCancel:
      cancel_ = value & 1;
      if (cancel_ && start_) {  // abort; complete with TPM_RC_CANCELED
        ++counters_.aborts;
        ++generation_;
        cv_.notify_all();
        auto r = tpm::make_rc_response(TPM2_RC_CANCELED);
        std::copy(r.begin(), r.end(), memory_.begin() + rsp_offset_);
        start_ = false;
      }
      return;
    case kCtrlStart:
      if (value & 1) start_locked();
      return;
    default:
      ++counters_.protocol_errors;
  }
}

std::uint8_t EmulatedCrbDevice::read8(std::uint32_t offset) {
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize) return 0xFF;
  if (offset >= kDataBuffer) return memory_[offset];
  return static_cast<std::uint8_t>(reg_locked(offset & ~3u) >> (8 * (offset & 3)));
}

std::uint32_t EmulatedCrbDevice::read32(std::uint32_t offset) {
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize || offset % 4) return 0xFFFFFFFF;
  if (offset >= kDataBuffer) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{memory_[offset + i]} << (8 * i);
    return v;
  }
  return reg_locked(offset);
}

void EmulatedCrbDevice::write8(std::uint32_t offset, std::uint8_t value) {
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize) return;
  if (offset >= kDataBuffer) {
    memory_[offset] = value;
    return;
  }
  if (offset % 4) {
    ++counters_.protocol_errors;
    return;
  }
  write_reg_locked(offset, value);
}

void EmulatedCrbDevice::write32(std::uint32_t offset, std::uint32_t value) {
  std::lock_guard lock(mutex_);
  ++counters_.accesses;
  if (offset >= kWindowSize || offset % 4) return;
  if (offset >= kDataBuffer) {
    for (int i = 0; i < 4; ++i) memory_[offset + i] = static_cast<std::uint8_t>(value >> (8 * i));
    return;
  }
  write_reg_locked(offset, value);
}

void EmulatedCrbDevice::finish_locked(Bytes response) {
  if (faults_.bad_length > 0 || faults_.bad_length < 0) {
    if (faults_.bad_length > 0) --faults_.bad_length;
    if (response.size() >= 6) tpm::store_u32(response, 2, 5);
  }
  const std::size_t n = std::min<std::size_t>(response.size(), rsp_size_);
  if (faults_.start_clears_early) {
    // F-C13: START clears before any of the response reached the buffer, which reads as zeros.
    std::fill(memory_.begin() + rsp_offset_, memory_.begin() + rsp_offset_ + rsp_size_, 0);
  } else {
    std::copy(response.begin(), response.begin() + n, memory_.begin() + rsp_offset_);
  }
  start_ = false;  // only after the complete response is in the buffer: a driver may read it as soon as START clears
}

void EmulatedCrbDevice::worker() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    auto response = backend_->exchange(job.command, options_.backend_timeout);
    if (!backend_->alive()) backend_alive_.store(false);
    lock.lock();
    if (!response) {
      spdlog::warn("emulated crb: backend failed: {}", describe(response.error()));
      continue;  // START stays set: the driver sees a command that never completes, and alive() turns false
    }
    if (faults_.response_delay.count() > 0) {
      cv_.wait_for(lock, faults_.response_delay, [&] { return stopping_ || generation_ != job.generation; });
    }
    if (stopping_) return;
    if (generation_ != job.generation || !start_) continue;
    finish_locked(std::move(*response));
  }
}

}  // namespace tpmrmd::chip

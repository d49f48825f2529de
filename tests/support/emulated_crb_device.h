// Test equipment: an in-process CRB device with locality via LOC_CTRL/LOC_STATE, self-clearing CTRL_REQ,
// START/CANCEL/STS, address and size registers that point into its own window, and a data buffer; each
// START forwards the whole command to a backend Driver (swtpm) asynchronously, writes the complete response and
// only then clears START. Fault injection covers the CRB fault cases; the F-Cnn labels on the knobs below are
// defined in docs/registers.md.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "chip/driver.h"
#include "support/emulated_tis_device.h"
#include "chip/registers/register_bus.h"

namespace tpmrmd::chip {

struct EmulatedCrbFaults {
  bool locality_never_granted = false;          // F-C01
  bool assigned_stuck = false;                  // F-C02
  bool cmd_ready_stuck = false;                 // F-C03
  bool go_idle_stuck = false;                   // F-C04
  std::chrono::milliseconds response_delay{0};  // F-C05 when longer than the deadline
  bool device_cancel = false;                   // F-C06: CANCEL reads 1 while START is set
  bool error_bit = false;                       // F-C07: CTRL_STS.error (stays until reset)
  int bad_length = 0;                           // F-C08: response length field reads 5 (per response)
  bool start_clears_early = false;              // F-C13: START clears before the response is complete
};

struct EmulatedCrbOptions {
  std::uint16_t vid = 0x1014;
  std::uint16_t did = 0x0001;
  std::uint64_t physical_base = 0xFED40000;
  // One overlapping buffer at 0x80 (default), or separate command and response buffers.
  bool separate_buffers = false;
  std::uint32_t command_size_override = 0;   // F-C10/F-C11: reported CMD_SIZE (0: real size)
  std::uint32_t response_size_override = 0;  // F-C10/F-C11: reported RSP_SIZE (0: real size)
  bool addresses_zero_while_idle = false;    // F-C12
  std::chrono::milliseconds backend_timeout{120000};
  EmulatedCrbFaults faults;
};

class EmulatedCrbDevice final : public RegisterBus {
 public:
  EmulatedCrbDevice(std::unique_ptr<Driver> backend, EmulatedCrbOptions options = {});
  ~EmulatedCrbDevice() override;
  EmulatedCrbDevice(const EmulatedCrbDevice&) = delete;
  EmulatedCrbDevice& operator=(const EmulatedCrbDevice&) = delete;

  std::uint8_t read8(std::uint32_t offset) override;
  std::uint32_t read32(std::uint32_t offset) override;
  void write8(std::uint32_t offset, std::uint8_t value) override;
  void write32(std::uint32_t offset, std::uint32_t value) override;
  std::uint64_t physical_base() const override { return options_.physical_base; }
  std::uint32_t size() const override;
  std::string description() const override;
  std::string identity() const override;
  bool alive() const override { return backend_alive_.load(); }

  void set_faults(const EmulatedCrbFaults& faults);
  EmulatedDeviceCounters counters() const;

 private:
  struct Job {
    std::uint64_t generation;
    Bytes command;
  };
  std::uint32_t reg_locked(std::uint32_t offset);
  void write_reg_locked(std::uint32_t offset, std::uint32_t value);
  void start_locked();
  void finish_locked(Bytes response);
  void worker();

  const EmulatedCrbOptions options_;
  std::unique_ptr<Driver> backend_;
  std::uint32_t cmd_offset_, cmd_size_, rsp_offset_, rsp_size_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  EmulatedCrbFaults faults_;
  EmulatedDeviceCounters counters_;
  Bytes memory_;  // the whole window; registers are decoded, the data area lives here
  bool assigned_ = false;
  bool idle_ = true;
  std::uint32_t ctrl_req_ = 0;
  bool cancel_ = false;
  bool start_ = false;
  std::uint64_t generation_ = 0;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::atomic<bool> backend_alive_{true};
  std::thread worker_;
};

}  // namespace tpmrmd::chip

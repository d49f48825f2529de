// Test equipment: an in-process TIS FIFO device with the register behaviour a kernel-style driver relies on
// (locality protocol, the PTP state machine, burstCount, Expect, dataAvail, responseRetry, commandReady aborts) in
// front of a backend Driver (swtpm) that executes each whole command asynchronously. Fault injection covers the
// TIS fault cases; the F-Tnn labels on the knobs below are defined in docs/registers.md.
//
// Thread-safe: register accesses and the backend worker share one mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "chip/driver.h"
#include "chip/registers/register_bus.h"

namespace tpmrmd::chip {

// Counts given as `int` apply to the next N occurrences; -1 means forever, 0 off.
struct EmulatedTisFaults {
  std::chrono::milliseconds valid_after{0};      // F-T01/02: ACCESS.VALID appears this long after creation
  bool valid_never = false;                      // F-T01
  bool locality_never_granted = false;           // F-T03
  bool request_use_stuck = false;                // F-T04
  bool command_ready_never = false;              // F-T05
  std::chrono::milliseconds zero_burst{0};       // F-T06/07: burstCount 0 this long after entering Ready/Completion
  std::uint16_t max_burst = 64;                  // F-T08
  int sts_valid_lost = 0;                        // F-T09: stsValid drops after a FIFO write, until commandReady
  int expect_early_drop = 0;                     // F-T10: Expect reads 0 in Reception (per send attempt)
  int expect_stuck = 0;                          // F-T11/12: Expect stays 1 after the last byte (per attempt)
  std::chrono::milliseconds response_delay{0};   // F-T13: the response is held back this long
  std::optional<std::uint8_t> execution_status;  // F-T14/15: STS byte 0 during Execution (e.g. 0x40, 0xFF)
  int bad_length = 0;                            // F-T16/19: header length reads 5 (per response pass)
  bool response_retry_ignored = false;           // F-T20
  int short_response = 0;                        // F-T17: dataAvail drops half-way (per response pass)
  int leftover_data = 0;                         // F-T18: dataAvail stays set after the last byte (per pass)
};

struct EmulatedTisOptions {
  std::uint16_t vid = 0x1014;  // no VID the kernel has a quirk for, so the default device gets the plain rules
  std::uint16_t did = 0x0001;
  std::uint8_t rid = 0x01;
  std::uint64_t physical_base = 0xFED40000;
  std::chrono::milliseconds backend_timeout{120000};
  EmulatedTisFaults faults;
};

struct EmulatedDeviceCounters {
  std::uint64_t accesses = 0;         // every register access, reads and writes
  std::uint64_t commands = 0;         // whole commands forwarded to the backend
  std::uint64_t aborts = 0;           // commands aborted by commandReady/cancel while executing
  std::uint64_t protocol_errors = 0;  // accesses a correct driver never makes (ignored by the device, but counted)
  std::uint64_t response_retries = 0;
};

class EmulatedTisDevice final : public RegisterBus {
 public:
  EmulatedTisDevice(std::unique_ptr<Driver> backend, EmulatedTisOptions options = {});
  ~EmulatedTisDevice() override;
  EmulatedTisDevice(const EmulatedTisDevice&) = delete;
  EmulatedTisDevice& operator=(const EmulatedTisDevice&) = delete;

  std::uint8_t read8(std::uint32_t offset) override;
  std::uint32_t read32(std::uint32_t offset) override;
  void write8(std::uint32_t offset, std::uint8_t value) override;
  void write32(std::uint32_t offset, std::uint32_t value) override;
  std::uint64_t physical_base() const override { return options_.physical_base; }
  std::uint32_t size() const override;
  std::string description() const override;
  std::string identity() const override;
  bool alive() const override;

  void set_faults(const EmulatedTisFaults& faults);
  EmulatedDeviceCounters counters() const;

 private:
  enum class State { kIdle, kReady, kReception, kReceptionComplete, kExecution, kCompletion };
  struct Job {
    std::uint64_t generation;
    Bytes command;
    int locality;
  };

  std::uint8_t access_locked(int locality);
  std::uint32_t sts_locked(int locality);
  std::uint16_t burst_locked();
  void write_access_locked(int locality, std::uint8_t value);
  void write_sts_locked(int locality, std::uint32_t value);
  void write_fifo_byte_locked(int locality, std::uint8_t value);
  std::uint8_t read_fifo_byte_locked(int locality);
  void abort_locked();
  void start_response_pass_locked();
  void complete_locked(Bytes response);
  bool valid_locked() const;
  void worker();
  static bool take(int& count);

  const EmulatedTisOptions options_;
  const std::chrono::steady_clock::time_point created_;
  std::unique_ptr<Driver> backend_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  EmulatedTisFaults faults_;
  EmulatedDeviceCounters counters_;
  int active_ = -1;        // active locality
  int requested_ = -1;     // a request that was not granted (yet)
  State state_ = State::kIdle;
  Bytes command_;
  Bytes response_;         // what the backend answered
  Bytes served_;           // what this pass serves (response_ with faults applied)
  std::size_t read_pos_ = 0;
  bool leftover_ = false;
  bool early_drop_ = false;
  bool expect_stuck_now_ = false;
  bool valid_lost_ = false;
  std::chrono::steady_clock::time_point zero_burst_until_{};
  std::uint64_t generation_ = 0;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::atomic<bool> backend_alive_{true};
  int backend_locality_ = 0;
  std::uint32_t int_enable_ = 0;
  std::uint8_t int_vector_ = 0;
  std::thread worker_;
};

}  // namespace tpmrmd::chip

// Userspace TIS FIFO driver (PTP FIFO interface) over a RegisterBus, polling only. Follows the kernel's
// tpm_tis_core flows for locality, send, completion and receive, but avoids the kernel's pitfalls (labels P-1..P-6,
// defined in docs/registers.md): one error table decides retries (P-1), one burstCount deadline (P-2), device
// timeouts are ETIME (P-3), an invalid status means "locality lost" and fails at once (P-4), a command counts as
// cancelled only after our own cancel (P-5), and every exchange is bounded by its duration plus a transport
// allowance (P-6).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "chip/driver.h"
#include "chip/registers/poll_backoff.h"
#include "chip/registers/register_bus.h"

namespace tpmrmd::chip {

// Register offsets inside one locality's 4 KiB window, and their bits.
namespace tis_reg {
inline constexpr std::uint32_t kAccess = 0x000;
inline constexpr std::uint32_t kIntEnable = 0x008;
inline constexpr std::uint32_t kIntVector = 0x00C;
inline constexpr std::uint32_t kIntStatus = 0x010;
inline constexpr std::uint32_t kIntfCaps = 0x014;
inline constexpr std::uint32_t kSts = 0x018;
inline constexpr std::uint32_t kDataFifo = 0x024;
inline constexpr std::uint32_t kInterfaceId = 0x030;
inline constexpr std::uint32_t kDidVid = 0xF00;
inline constexpr std::uint32_t kRid = 0xF04;
inline constexpr std::uint32_t kLocalityWindow = 0x1000;
inline constexpr std::uint32_t kWindowSize = 5 * kLocalityWindow;

inline constexpr std::uint8_t kAccessValid = 0x80;
inline constexpr std::uint8_t kAccessActive = 0x20;  // write: relinquish
inline constexpr std::uint8_t kAccessRequestUse = 0x02;

inline constexpr std::uint8_t kStsValid = 0x80;
inline constexpr std::uint8_t kStsCommandReady = 0x40;
inline constexpr std::uint8_t kStsGo = 0x20;
inline constexpr std::uint8_t kStsDataAvail = 0x10;
inline constexpr std::uint8_t kStsExpect = 0x08;
inline constexpr std::uint8_t kStsResponseRetry = 0x02;
inline constexpr std::uint8_t kStsMustBeZero = 0x23;
inline constexpr std::uint32_t kStsCommandCancel = 1u << 24;

// Vendor IDs the kernel gives special treatment: Intel (iTPM Expect workaround), Winbond and STM (own "canceled"
// status values), Atmel (TPM 1.2 status polling), Infineon (stsValid timeouts retried).
inline constexpr std::uint16_t kVidIntel = 0x8086;
inline constexpr std::uint16_t kVidWinbond = 0x1050;
inline constexpr std::uint16_t kVidStm = 0x104A;
inline constexpr std::uint16_t kVidAtmel = 0x1114;
inline constexpr std::uint16_t kVidInfineon = 0x15D1;
}  // namespace tis_reg

struct TisFifoOptions {
  std::uint8_t locality = 0;
  std::chrono::milliseconds timeout_a{750};     // startup VALID, locality grant
  std::chrono::milliseconds timeout_b{4000};    // commandReady at the start of a send
  std::chrono::milliseconds timeout_c{200};     // stsValid after writes, dataAvail before reads
  std::chrono::milliseconds burst_timeout{750}; // burstCount non-zero (P-2: one value for every family)
  // Added to the command's duration to bound the whole exchange (P-6).
  std::chrono::milliseconds transport_allowance{2000};
  int send_attempts = 50;
  int receive_attempts = 50;
  std::size_t max_response = 4096;
  // Retry sends whose stsValid wait timed out. Default: on for Infineon's VID (what the kernel meant, P-1).
  std::optional<bool> status_valid_retry;
  // Winbond/STM "canceled" status values (P-5): off unless asked for, and then only for those VIDs.
  bool vendor_cancel_quirks = false;
  // iTPM workaround: don't check Expect.
  bool ignore_expect = false;
  // Time for deadlines and polling sleeps; none: the steady clock.
  std::shared_ptr<PollClock> clock;
};

struct TisFifoCounters {
  std::uint64_t send_retries = 0;
  std::uint64_t receive_retries = 0;
  std::uint64_t invalid_status = 0;  // status read with a must-be-zero bit: locality lost (P-4)
  std::uint64_t cancels = 0;         // commandReady written to abort a command past its deadline
};

class TisFifoDriver final : public Driver {
 public:
  // Probes the window: waits for ACCESS.VALID (ENODEV after timeout A), reads DID_VID and RID.
  static Result<std::unique_ptr<TisFifoDriver>> open(std::shared_ptr<RegisterBus> bus, TisFifoOptions options = {});

  std::string description() const override;
  std::string identity() const override;
  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override;
  Result<void> set_locality(std::uint8_t locality) override;
  bool alive() const override { return bus_->alive(); }

  std::uint16_t vendor_id() const { return vid_; }
  std::uint16_t device_id() const { return did_; }
  std::uint8_t revision_id() const { return rid_; }
  const TisFifoCounters& counters() const { return counters_; }

 private:
  TisFifoDriver(std::shared_ptr<RegisterBus> bus, TisFifoOptions options);
  std::uint32_t reg(std::uint32_t offset) const { return options_.locality * tis_reg::kLocalityWindow + offset; }
  PollClock::Clock::time_point now() const { return PollClock::now(options_.clock.get()); }
  PollBackoff backoff(std::chrono::microseconds cap) const { return PollBackoff(cap, options_.clock.get()); }

  Result<std::uint8_t> status();
  Result<std::uint8_t> wait_status(std::uint8_t mask, std::uint8_t value, std::chrono::milliseconds timeout,
                                   int timeout_code, const char* what);
  Result<std::uint16_t> wait_burst();
  Result<void> request_locality();
  void relinquish_locality();
  Result<void> send_data(ByteSpan command);
  Result<void> send(ByteSpan command);
  Result<void> wait_complete(std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout);
  Result<Bytes> recv_data();
  Result<Bytes> receive();
  Result<void> read_chunk(Bytes& out, std::size_t target);
  Result<Bytes> exchange_held(ByteSpan command, std::chrono::milliseconds timeout);

  std::shared_ptr<RegisterBus> bus_;
  TisFifoOptions options_;
  std::uint16_t vid_ = 0, did_ = 0;
  std::uint8_t rid_ = 0;
  std::chrono::steady_clock::time_point exchange_deadline_;  // P-6 bound of the exchange in progress
  TisFifoCounters counters_;
};

}  // namespace tpmrmd::chip

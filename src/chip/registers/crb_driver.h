// Userspace CRB driver (start method 7: register start, polling) over a RegisterBus. Follows the kernel's tpm_crb
// flows, hardened where firmware and parts are known to misbehave: cmdReady before reading the buffer registers at
// probe (some parts lose them while idle), sizes clamped to the mapped window and overlapping buffers checked (the
// firmware's values are not trusted), CANCEL cleared before every start (a stale 1 would cancel the next command),
// one re-read of a bad response header. CTRL_STS.error marks the device failed (fault case F-C07 in
// docs/registers.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "chip/driver.h"
#include "chip/registers/poll_backoff.h"
#include "chip/registers/register_bus.h"

namespace tpmrmd::chip {

namespace crb_reg {
inline constexpr std::uint32_t kLocState = 0x00;
inline constexpr std::uint32_t kLocCtrl = 0x08;
inline constexpr std::uint32_t kLocSts = 0x0C;
inline constexpr std::uint32_t kInterfaceId = 0x30;
inline constexpr std::uint32_t kInterfaceIdHigh = 0x34;  // VID (low 16) and DID (high 16)
inline constexpr std::uint32_t kCtrlReq = 0x40;
inline constexpr std::uint32_t kCtrlSts = 0x44;
inline constexpr std::uint32_t kCtrlCancel = 0x48;
inline constexpr std::uint32_t kCtrlStart = 0x4C;
inline constexpr std::uint32_t kCmdSize = 0x58;
inline constexpr std::uint32_t kCmdPaLow = 0x5C;
inline constexpr std::uint32_t kCmdPaHigh = 0x60;
inline constexpr std::uint32_t kRspSize = 0x64;
inline constexpr std::uint32_t kRspPa = 0x68;  // 64-bit
inline constexpr std::uint32_t kDataBuffer = 0x80;
inline constexpr std::uint32_t kWindowSize = 0x1000;

inline constexpr std::uint32_t kLocStateValid = 0x80;
inline constexpr std::uint32_t kLocStateAssigned = 0x02;
inline constexpr std::uint32_t kLocCtrlRequest = 0x01;
inline constexpr std::uint32_t kLocCtrlRelinquish = 0x02;
inline constexpr std::uint32_t kReqCmdReady = 0x01;
inline constexpr std::uint32_t kReqGoIdle = 0x02;
inline constexpr std::uint32_t kStsError = 0x01;
inline constexpr std::uint32_t kStsIdle = 0x02;
}  // namespace crb_reg

struct CrbOptions {
  std::chrono::milliseconds timeout_c{200};  // locality, cmdReady/goIdle
  std::chrono::milliseconds transport_allowance{2000};
  // Time for deadlines and polling sleeps; none: the steady clock.
  std::shared_ptr<PollClock> clock;
};

struct CrbCounters {
  std::uint64_t cancels = 0;
  std::uint64_t header_rereads = 0;
  std::uint64_t clamped_sizes = 0;
};

class CrbDriver final : public Driver {
 public:
  // Probe: locality, cmdReady, buffer registers (translated to window offsets, clamped), goIdle, relinquish.
  static Result<std::unique_ptr<CrbDriver>> open(std::shared_ptr<RegisterBus> bus, CrbOptions options = {});

  std::string description() const override;
  std::string identity() const override;
  Result<Bytes> exchange(ByteSpan command, std::chrono::milliseconds timeout) override;
  std::optional<Bytes> take_late_response() override { return std::exchange(late_response_, std::nullopt); }
  bool alive() const override { return !failed_ && bus_->alive(); }

  std::uint32_t command_offset() const { return cmd_offset_; }
  std::uint32_t command_size() const { return cmd_size_; }
  std::uint32_t response_offset() const { return rsp_offset_; }
  std::uint32_t response_size() const { return rsp_size_; }
  const CrbCounters& counters() const { return counters_; }

 private:
  CrbDriver(std::shared_ptr<RegisterBus> bus, CrbOptions options) : bus_(std::move(bus)), options_(options) {}
  PollClock::Clock::time_point now() const { return PollClock::now(options_.clock.get()); }
  PollBackoff backoff(std::chrono::microseconds cap) const { return PollBackoff(cap, options_.clock.get()); }

  Result<void> wait_clear(std::uint32_t offset, std::uint32_t bit, const char* what);
  Result<void> request_locality();
  Result<void> relinquish_locality();
  Result<void> control_request(std::uint32_t bit, const char* what);
  // CANCEL = 1 until START clears, then CANCEL = 0.
  Result<void> cancel();
  Result<Bytes> run(ByteSpan command, std::chrono::milliseconds timeout);
  Result<Bytes> read_response();
  Result<void> map_buffers();

  std::shared_ptr<RegisterBus> bus_;
  CrbOptions options_;
  std::uint32_t cmd_offset_ = 0, cmd_size_ = 0, rsp_offset_ = 0, rsp_size_ = 0;
  std::uint16_t vid_ = 0, did_ = 0;
  std::chrono::steady_clock::time_point exchange_deadline_;
  std::optional<Bytes> late_response_;
  bool failed_ = false;
  CrbCounters counters_;
};

}  // namespace tpmrmd::chip

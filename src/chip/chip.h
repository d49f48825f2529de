// Chip: one TPM behind one Driver, shared by everything above it. Modelled on the kernel's tpm_chip:
//
//  * Lifetime: the driver (`ops`) pointer, guarded by a reader/writer lock, is the one truth about whether
//    the chip is there. transmit() holds it shared; unregister() takes it exclusively (so it waits for the
//    command in flight), optionally sends TPM2_Shutdown, clears the pointer and destroys the driver. Every
//    entry point after that fails with ENODEV before touching driver memory. A driver whose transport breaks
//    makes the chip unregister itself; nothing is called back, the loss is a state others observe (lost()).
//  * Start-up: probe (TPM2 tag), Startup(CLEAR) on TPM_RC_INITIALIZE, SelfTest, read TpmInfo.
//  * Transmit: whole command in, whole response out; size checks; bounded retry of RETRY/TESTING/YIELDED;
//    per-command deadline from the kernel's duration table; one command at a time.
//
// A TPM response with a non-zero rc is a successful transmit. Errors are transport/lifetime failures:
// ENODEV (unregistered), ETIME (deadline; the command was cancelled), EINVAL/E2BIG (malformed command),
// EIO (malformed response or broken transport).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "chip/driver.h"
#include "tpm/tpm_info.h"
#include "util/bytes.h"
#include "util/result.h"

namespace tpmrmd::chip {

enum class ShutdownMode { kNone, kClear, kState };

struct ChipOptions {
  // Multiplies every command duration; tests shrink it to provoke deadlines.
  double duration_scale = 1.0;
  // RETRY/TESTING/YIELDED back-off: first sleep and the cap past which the chip gives up (kernel: 20/2000 ms).
  std::chrono::milliseconds retry_initial_delay{20};
  std::chrono::milliseconds retry_max_delay{2000};
  // A command past its deadline whose response the driver still drained (the cancel came too late) did run.
  // false: the caller gets ETIME and the chip flushes what the command created. true: the caller gets that
  // response, as if it had come in time (the RM, which keeps its tables in step with every response).
  bool return_late_responses = false;
};

struct ChipCounters {
  std::uint64_t commands = 0;     // commands sent to the driver (retries and start-up traffic included)
  std::uint64_t retries = 0;      // resends after RETRY/TESTING/YIELDED
  std::uint64_t timeouts = 0;     // deadlines hit (cancelled)
  std::uint64_t late_flushes = 0; // objects/sessions created by a cancelled command and flushed
  std::uint64_t late_returned = 0; // responses drained after a deadline and returned (return_late_responses)
  std::uint64_t resets_seen = 0;  // the TPM answered TPM_RC_INITIALIZE while serving: reset behind the daemon
  std::uint64_t power_ons = 0;    // the driver initialised an uninitialised TPM (swtpm CMD_INIT)
  std::uint64_t startups = 0;     // TPM2_Startup(CLEAR) sent because the TPM answered TPM_RC_INITIALIZE
};

class Chip {
 public:
  explicit Chip(std::unique_ptr<Driver> driver, ChipOptions options = {});
  ~Chip();  // unregisters with ShutdownMode::kNone if still registered
  Chip(const Chip&) = delete;
  Chip& operator=(const Chip&) = delete;

  // Probe, auto-startup and reading of TpmInfo. A TPM in failure or upgrade mode is an error (EIO) with a
  // message that says so; the chip stays registered but refuses to serve (transmit returns EIO).
  Result<void> startup();

  // Valid after a successful startup().
  const tpm::TpmInfo& info() const { return info_; }

  // Sends one whole command. Thread-safe; commands are serialised. A TPM that answers TPM_RC_INITIALIZE after
  // start-up was reset behind the daemon: nothing it held before exists, so the chip unregisters itself (the
  // caller gets ENODEV) and whoever supervises it starts a new generation.
  Result<Bytes> transmit(ByteSpan command);

  // Waits for the command in flight, sends TPM2_Shutdown(mode) unless kNone, then drops the driver. Later
  // calls of any entry point fail with ENODEV. Idempotent.
  void unregister(ShutdownMode mode = ShutdownMode::kClear);

  // Lock-free views of the driver pointer, for pollers and gates that must not wait for a command in flight.
  // registered() turns false once, when the driver is dropped, and never back.
  bool registered() const { return presence_.load(std::memory_order_acquire) == Presence::kRegistered; }
  // Why the chip unregistered itself (its transport broke); nullopt while registered and after an explicit
  // unregister() that came first. Set before the failing call returns, so whoever got that error sees it.
  std::optional<Error> lost() const;

  // Scales every command duration from now on (tests shrink it to provoke deadlines).
  void set_duration_scale(double scale) { duration_scale_.store(scale); }

  std::string description() const;  // the driver's, or "unregistered"
  std::string identity() const;
  ChipCounters counters() const;

 private:
  // Deadline for `code` from the kernel's duration table, scaled by options_.duration_scale.
  std::chrono::milliseconds duration_for(TPM2_CC code) const;
  // The retry loop around one driver exchange. Caller holds tpm_mutex_, ops_lock_ (shared or exclusive) and
  // driver_ != null.
  Result<Bytes> transmit_locked(ByteSpan command);
  // After a cancelled command: flush what its late, successful response created.
  void flush_late_response(TPM2_CC code);
  Result<void> startup_locked();
  Result<void> read_info_locked();
  // The one place the driver is dropped. ops_lock_ held exclusively, driver_ != null. `cause` is set when the
  // transport broke.
  void drop_driver_locked(std::optional<Error> cause);

  enum class Presence { kRegistered, kUnregistered, kLost };

  ChipOptions options_;
  std::atomic<double> duration_scale_;
  tpm::TpmInfo info_;
  bool serving_ = false;  // startup() succeeded and the TPM is not in failure mode

  // Taken before ops_lock_ by every command, so callers queue here and unregister() only ever waits for the
  // one command in flight (a reader-preferring rwlock would otherwise let a stream of callers starve it).
  std::mutex tpm_mutex_;
  mutable std::shared_mutex ops_lock_;  // guards driver_: shared for use, exclusive to clear
  std::unique_ptr<Driver> driver_;
  std::atomic<Presence> presence_{Presence::kRegistered};  // mirrors driver_, written by drop_driver_locked()
  mutable std::mutex lost_mutex_;
  std::optional<Error> lost_;
  mutable std::mutex counters_mutex_;
  ChipCounters counters_;
};

}  // namespace tpmrmd::chip

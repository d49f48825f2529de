// One registered TPM backend as the device sees it: a started Chip, the RM's worker Dispatcher in front of it,
// and the Connections opened on it. A backend lives from registration until it is lost (transport broke,
// embedded swtpm died) or stopped (daemon shutdown); after either, its connections are dead (ENODEV) for good
// and new opens must go to a newer backend, as the kernel treats a re-bound TPM as a new chip.
//
// Lifetime: whether the backend is there is the chip's driver pointer (ENODEV once it is dropped) plus one gate
// of the backend's own, closed by stop(). Nothing is called back when the chip is lost; owners poll gone() or
// lost(). Connections own the backend (through their dispatcher and gate), so a late call on any thread finds
// live memory; the worker thread itself is joined by stop(), on the owner's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "chip/chip.h"
#include "chip/driver.h"
#include "device/connection.h"
#include "rm/rm_options.h"
#include "rm/snapshot.h"
#include "rm/tpm_port.h"
#include "util/result.h"

namespace tpmrmd::rm {
class WorkerDispatcher;
}

namespace tpmrmd::daemon {

class PcapngWriter;

class Backend final : public device::BackendGate, public std::enable_shared_from_this<Backend> {
 public:
  // What runs on the started chip before the RM (and so any client) sees it: the platform's own set-up.
  using Provision = std::function<Result<void>(chip::Chip&)>;

  // Starts the chip (probe, Startup if needed), runs `provision` if given, then starts the RM worker. A
  // failed provision fails the start: no client is served by a TPM left half set up.
  // With `capture`, the traffic of the RM with the TPM and of every connection with the RM is written to it
  // (what `provision` sends is not: the platform's secret stays out of the file).
  static Result<std::shared_ptr<Backend>> start(std::unique_ptr<chip::Driver> driver, rm::RmOptions rm_options,
                                                chip::ChipOptions chip_options = {}, const Provision& provision = {},
                                                std::shared_ptr<PcapngWriter> capture = nullptr);
  // stop(kNone). The owner stops the backend before it lets go of it, so that the last reference, which may be
  // a connection's dropped on the worker thread, never has a thread to join.
  ~Backend() override;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // A new Connection on this backend. ENODEV once the backend is gone.
  Result<std::shared_ptr<device::Connection>> open(const rm::ClientInfo& client, device::ConnectionOptions options);

  // Ends the backend: closes the gate (every open connection turns dead: ENODEV; a response already stored
  // stays readable) and wakes pollers, answers queued commands with ENODEV, flushes what clients held in the TPM
  // while it is still reachable, joins the worker, then TPM2_Shutdown(`mode`) and the driver is dropped.
  // Idempotent; must not run on the worker thread.
  void stop(chip::ShutdownMode mode);

  // True once stop() began or the chip unregistered (lost). Lock-free.
  bool gone() const override;
  // Why the chip unregistered itself, if it did.
  std::optional<Error> lost() const { return chip_->lost(); }

  std::string description() const { return description_; }
  std::string identity() const { return identity_; }
  rm::Counters counters();
  // counters() if the RM worker answers within `within`; nothing while it is busy or stuck (see the watchdog).
  std::optional<rm::Counters> counters(std::chrono::milliseconds within);
  // Taken on the RM's worker thread; zeros once stopped; nothing if the worker did not answer within `within`.
  std::optional<rm::Snapshot> snapshot(std::chrono::milliseconds within);
  std::size_t flush_abandoned();  // on the worker; how many abandoned sessions were flushed

 private:
  Backend() = default;

  std::unique_ptr<chip::Chip> chip_;
  std::unique_ptr<rm::TpmPort> port_;
  std::unique_ptr<rm::WorkerDispatcher> worker_;
  std::unique_ptr<rm::Dispatcher> capturing_;  // in front of worker_ with a capture; what connections use
  std::string description_;
  std::string identity_;
  std::atomic<bool> closed_{false};  // the generation gate; see stop()
  std::mutex mutex_;
  std::vector<std::weak_ptr<device::Connection>> connections_;  // only to wake their pollers in stop()
};

}  // namespace tpmrmd::daemon

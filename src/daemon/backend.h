// One registered TPM backend as the device sees it: a started Chip, the RM's worker Dispatcher in front of it,
// and the Connections opened on it. A backend lives from registration until it is lost (transport broke,
// embedded swtpm died) or stopped (daemon shutdown); after either, its connections are dead (ENODEV) for good
// and new opens must go to a newer backend, as the kernel treats a re-bound TPM as a new chip.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "device/connection.h"
#include "rm/rm_options.h"
#include "rm/tpm_port.h"
#include "chip/chip.h"
#include "chip/driver.h"
#include "util/result.h"

namespace tpmrmd::daemon {

class GatedDispatcher;

class Backend {
 public:
  // Starts the chip (probe, Startup if needed) and the RM worker. `on_lost` runs on whatever thread noticed the
  // transport breaking; it must only hand the news to another thread (never stop() from inside it).
  static Result<std::shared_ptr<Backend>> start(std::unique_ptr<chip::Driver> driver, rm::RmOptions rm_options,
                                                std::function<void(const Error&)> on_lost,
                                                chip::ChipOptions chip_options = {});
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // A new Connection on this backend. ENODEV once the backend is lost or stopped.
  Result<std::shared_ptr<device::Connection>> open(const rm::ClientInfo& client, device::ConnectionOptions options);

  // Ends the backend. Every open connection turns dead (ENODEV; a response already stored stays readable);
  // queued commands fail with ENODEV; what clients held in the TPM is flushed while the TPM is still
  // reachable; then TPM2_Shutdown(`mode`) and the driver is dropped. Idempotent; must not run on the worker.
  void stop(chip::ShutdownMode mode);

  bool stopped() const;
  std::string description() const { return description_; }
  std::string identity() const { return identity_; }
  rm::Counters counters();

 private:
  Backend() = default;
  void mark_connections_lost();

  std::unique_ptr<chip::Chip> chip_;
  std::unique_ptr<rm::TpmPort> port_;
  std::shared_ptr<GatedDispatcher> dispatcher_;
  std::string description_;
  std::string identity_;
  mutable std::mutex mutex_;
  bool stopped_ = false;
  std::vector<std::weak_ptr<device::Connection>> connections_;
};

}  // namespace tpmrmd::daemon

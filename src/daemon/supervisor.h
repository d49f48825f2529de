// Owns the current backend and replaces it when it is lost: the embedded swtpm is restarted, an external
// backend is reconnected. Every registration is a new generation; connections stay bound to the generation they
// were opened on, so after a loss old fds get ENODEV for good while new opens go to the newest backend. Between
// a loss and the next registration, opens fail with ENODEV.
//
// The supervisor learns of a loss by polling the backend's state (Backend::gone(), the embedded swtpm's exit),
// never from a callback: nothing of the daemon runs on the TPM worker's stack.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "chip/chip.h"
#include "daemon/backend.h"
#include "daemon/embedded_swtpm.h"
#include "daemon/pcapng_writer.h"
#include "daemon/platform_auth.h"
#include "device/connection.h"
#include "rm/rm_options.h"
#include "rm/snapshot.h"
#include "util/result.h"

namespace tpmrmd::daemon {

// The embedded swtpm's platform authorization (see platform_auth.h); external backends are never touched.
enum class PlatformAuthMode {
  kRandom,  // a random secret set for every generation before clients are served, as firmware does
  kEmpty,   // left empty: test rigs that act as the platform (tpm2_clear -c p)
};

struct SupervisorOptions {
  std::string tpm;  // backend spec; unused when an embedded swtpm is given
  rm::RmOptions rm;
  double duration_scale = 0;  // 0: 10 for the embedded swtpm, 1 for any other backend
  // A TPM (or a swtpm under emulation) can be slow to answer its very first command: start() tries this often,
  // this far apart, before giving up. A held TPM lock (EBUSY) is final.
  int first_attempts = 3;
  std::chrono::milliseconds first_retry{1000};
  std::chrono::milliseconds poll_interval{200};   // how often the backend's state is looked at
  std::chrono::milliseconds retry_interval{2000};  // between failed re-registrations
  PlatformAuthMode platform_auth = PlatformAuthMode::kRandom;
  // --capture: every generation's traffic goes to this one file (docs/daemon.md, "Capturing traffic").
  std::shared_ptr<PcapngWriter> capture;
};

// The current backend as the control server shows it.
struct BackendSnapshot {
  std::uint64_t generation = 0;
  std::string description;
  std::string identity;
  std::chrono::system_clock::time_point registered_at{};
  bool responsive = true;  // false: the RM worker did not answer in time and `rm` is empty
  rm::Snapshot rm;
};

class Supervisor {
 public:
  // `swtpm`, if given, must outlive the supervisor; it is started for every generation and stopped on shutdown.
  explicit Supervisor(SupervisorOptions options, EmbeddedSwtpm* swtpm = nullptr);
  ~Supervisor();  // shutdown(kNone) unless shut down already
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Runs with the identity of each new driver before its chip is started (the one-daemon-per-TPM lock). Set
  // before start().
  void set_identity_check(std::function<Result<void>(const std::string&)> check) { identity_check_ = std::move(check); }

  // Registers the first backend, then supervises it on a thread of its own.
  Result<void> start();

  // A connection on the current backend; ENODEV while there is none or it is gone.
  Result<std::shared_ptr<device::Connection>> open(const rm::ClientInfo& client, device::ConnectionOptions options);

  // The current backend's generation (1 for the first registration); 0 while none is registered.
  std::uint64_t generation() const;

  // A summary for the service manager's STATUS= and watchdog: nothing while no backend is registered; else its
  // generation and, when its RM worker answered within `within`, connection and command counts (`responsive`
  // false: the worker is busy with one long command or stuck). Another richer snapshot API may supersede this.
  struct Status {
    std::uint64_t generation = 0;
    bool responsive = false;
    std::uint64_t connections = 0;
    std::uint64_t client_commands = 0;
  };
  std::optional<Status> status(std::chrono::milliseconds within) const;
  // A snapshot of the current backend (its RM's taken on the worker thread, if it answers within `within`);
  // nullopt while none is registered.
  std::optional<BackendSnapshot> snapshot(std::chrono::milliseconds within = std::chrono::seconds(5));
  // Flushes the current backend's abandoned sessions; how many (0 without a backend).
  std::size_t flush_abandoned();

  // Stops supervising (joins the thread), then ends the current backend (flush, TPM2_Shutdown(mode)) and the
  // embedded swtpm. Idempotent.
  void shutdown(chip::ShutdownMode mode);

 private:
  struct Current {
    std::shared_ptr<Backend> backend;
    std::uint64_t generation = 0;
    std::chrono::system_clock::time_point registered_at{};
  };

  Result<void> register_backend();
  void loop();
  // Ends the current backend after a loss; mutex_ not held.
  void retire(Current current, bool swtpm_died);

  const SupervisorOptions options_;
  EmbeddedSwtpm* const swtpm_;
  std::function<Result<void>(const std::string&)> identity_check_;
  std::optional<PlatformAuth> platform_auth_;  // the embedded swtpm's, made by start(); in memory only
  mutable std::mutex mutex_;
  std::mutex warn_mutex_;
  rm::WarnThrottle open_failures_{rm::WarnLimits{}};  // per uid; warn_mutex_
  std::condition_variable wake_;
  Current current_;
  std::uint64_t generations_ = 0;  // registrations so far
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tpmrmd::daemon

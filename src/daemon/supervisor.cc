#include "daemon/supervisor.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "chip/driver_factory.h"
#include "rm/audit_log.h"

namespace tpmrmd::daemon {

Supervisor::Supervisor(SupervisorOptions options, EmbeddedSwtpm* swtpm) : options_(std::move(options)), swtpm_(swtpm) {}

Supervisor::~Supervisor() { shutdown(chip::ShutdownMode::kNone); }

Result<void> Supervisor::start() {
  if (swtpm_ && options_.platform_auth == PlatformAuthMode::kRandom && !platform_auth_) {
    auto secret = PlatformAuth::random();
    if (!secret) return secret.error();
    platform_auth_.emplace(*secret);
  }
  Result<void> registered = register_backend();
  for (int attempt = 2; !registered && registered.error().code != EBUSY && attempt <= options_.first_attempts;
       ++attempt) {
    spdlog::warn("event=backend-register-failed attempt={} error=\"{}\"", attempt - 1, describe(registered.error()));
    std::this_thread::sleep_for(options_.first_retry);
    registered = register_backend();
  }
  if (!registered) return registered;
  thread_ = std::thread([this] { loop(); });
  return {};
}

Result<void> Supervisor::register_backend() {
  if (swtpm_) {
    if (auto r = swtpm_->start(); !r) return r;
  }
  auto spec = swtpm_ ? swtpm_->spec() : options_.tpm;
  auto driver = chip::make_driver(spec);
  if (!driver) return driver.error();
  if (identity_check_) {
    if (auto r = identity_check_((*driver)->identity()); !r) return r;
  }
  chip::ChipOptions chip_options;
  // A freshly started emulator on a loaded (or emulated) machine can answer its first commands far later than
  // hardware deadlines allow; it is a local process, not a bus device, so its deadlines are relaxed.
  chip_options.duration_scale = options_.duration_scale > 0 ? options_.duration_scale : (swtpm_ ? 10.0 : 1.0);
  // Only the embedded swtpm is ours to set up as its platform: an external TPM's platform auth belongs to its
  // firmware (or whoever runs that swtpm), and a second secret would lock them out of their own platform.
  Backend::Provision provision;
  if (swtpm_ && platform_auth_) provision = [this](chip::Chip& chip) { return platform_auth_->apply(chip); };
  auto backend = Backend::start(std::move(*driver), options_.rm, chip_options, provision, options_.capture);
  if (!backend) return backend.error();
  std::lock_guard lock(mutex_);
  current_ = Current{std::move(*backend), ++generations_, std::chrono::system_clock::now()};
  spdlog::info("event=backend-registered generation={} backend=\"{}\" identity=\"{}\"", current_.generation,
               current_.backend->description(), current_.backend->identity());
  return {};
}

Result<std::shared_ptr<device::Connection>> Supervisor::open(const rm::ClientInfo& client,
                                                            device::ConnectionOptions options) {
  std::shared_ptr<Backend> backend;
  {
    std::lock_guard lock(mutex_);
    backend = current_.backend;
  }
  if (!backend) return make_error(ENODEV, "no TPM backend is registered (it is being restarted)");
  auto c = backend->open(client, options);
  // The open itself is logged by the RM (event=open, at debug), on the worker with its connection id. Refused
  // opens come in floods from a client that retries: at most one line per uid and interval.
  if (!c) {
    std::lock_guard lock(warn_mutex_);
    if (const auto w = open_failures_.record(client.uid, std::chrono::steady_clock::now()); w.log) {
      spdlog::warn("event=open-failed pid={} uid={} comm=\"{}\" errno={} error=\"{}\" failures={} suppressed_warnings={}",
                   client.pid, client.uid, rm::log_quoted(client.comm), c.error().code,
                   rm::log_quoted(describe(c.error())), w.since_last, w.suppressed);
    }
  }
  return c;
}

std::optional<Supervisor::Status> Supervisor::status(std::chrono::milliseconds within) const {
  Current current;
  {
    std::lock_guard lock(mutex_);
    current = current_;
  }
  if (!current.backend || current.backend->gone()) return std::nullopt;
  Status status{.generation = current.generation};
  if (auto counters = current.backend->counters(within)) {
    status.responsive = true;
    status.connections = counters->connections_open;
    status.client_commands = counters->client_commands;
  }
  return status;
}

std::uint64_t Supervisor::generation() const {
  std::lock_guard lock(mutex_);
  return current_.backend ? current_.generation : 0;
}

std::optional<BackendSnapshot> Supervisor::snapshot(std::chrono::milliseconds within) {
  Current current;
  {
    std::lock_guard lock(mutex_);
    current = current_;
  }
  // Outside mutex_: the worker answers while the supervisor goes on polling.
  if (!current.backend) return std::nullopt;
  auto rm = current.backend->snapshot(within);
  return BackendSnapshot{current.generation, current.backend->description(), current.backend->identity(),
                         current.registered_at, rm.has_value(), rm ? std::move(*rm) : rm::Snapshot{}};
}

std::size_t Supervisor::flush_abandoned() {
  std::shared_ptr<Backend> backend;
  {
    std::lock_guard lock(mutex_);
    backend = current_.backend;
  }
  return backend ? backend->flush_abandoned() : 0;
}

void Supervisor::shutdown(chip::ShutdownMode mode) {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  Current current;
  {
    std::lock_guard lock(mutex_);
    current = std::exchange(current_, Current{});
  }
  if (current.backend) current.backend->stop(mode);
  if (swtpm_) swtpm_->stop();
}

void Supervisor::loop() {
  std::unique_lock lock(mutex_);
  auto retry_at = std::chrono::steady_clock::now();
  while (!stopping_) {
    wake_.wait_for(lock, options_.poll_interval, [this] { return stopping_; });
    if (stopping_) break;
    const bool swtpm_died = swtpm_ && swtpm_->reap_if_exited();
    if (swtpm_died || (current_.backend && current_.backend->gone())) {
      Current lost = std::exchange(current_, Current{});
      lock.unlock();
      retire(std::move(lost), swtpm_died);
      lock.lock();
    }
    if (!current_.backend && std::chrono::steady_clock::now() >= retry_at) {
      lock.unlock();
      auto r = register_backend();
      lock.lock();
      if (!r) {
        spdlog::error("event=backend-register-failed error=\"{}\" retry_in={}ms", describe(r.error()),
                      options_.retry_interval.count());
        retry_at = std::chrono::steady_clock::now() + options_.retry_interval;
      }
    }
  }
}

void Supervisor::retire(Current current, bool swtpm_died) {
  if (current.backend) {
    auto cause = current.backend->lost();
    spdlog::error("event=backend-lost generation={} cause=\"{}\"", current.generation,
                  cause ? describe(*cause) : (swtpm_died ? "swtpm exited" : "unregistered"));
    current.backend->stop(chip::ShutdownMode::kNone);
    spdlog::warn("event=backend-unregistered generation={} backend=\"{}\" open_fds=ENODEV", current.generation,
                 current.backend->description());
  }
  // A lost transport to a still-running embedded swtpm: start afresh.
  if (swtpm_ && !swtpm_died) swtpm_->stop();
}

}  // namespace tpmrmd::daemon

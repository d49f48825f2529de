// tpmrmd: serves a /dev/tpmrm0-compatible CUSE device backed by the resource manager and one TPM.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "cuse/cuse_device.h"
#include "daemon/backend.h"
#include "daemon/embedded_swtpm.h"
#include "daemon/tpm_lock.h"
#include "chip/driver_factory.h"

namespace tpmrmd::daemon {
namespace {

struct Settings {
  std::string tpm;
  std::string name = "tpmrm0";
  std::string mode = "0660";
  std::string owner;
  std::string group;
  std::string runas;
  bool foreground = false;
  std::string state_dir = "/var/lib/tpmrmd";
  std::string lock_dir = "/run/tpmrmd";
  std::string log_level = "info";
  std::string shutdown = "clear";
  std::string swtpm = "swtpm";
  double discard_timeout = 120;
  double duration_scale = 0;  // 0: 10 for the embedded swtpm, 1 for any other backend
  std::size_t max_command = 4096;
  rm::RmOptions rm;
  bool fuse_debug = false;
};

Result<uid_t> lookup_user(const std::string& name, gid_t* primary_gid = nullptr) {
  struct passwd* pw = ::getpwnam(name.c_str());
  if (!pw) {
    char* end = nullptr;
    unsigned long n = std::strtoul(name.c_str(), &end, 10);
    if (!name.empty() && end && *end == '\0') return static_cast<uid_t>(n);
    return make_error(EINVAL, "unknown user '" + name + "'");
  }
  if (primary_gid) *primary_gid = pw->pw_gid;
  return pw->pw_uid;
}

Result<gid_t> lookup_group(const std::string& name) {
  struct group* gr = ::getgrnam(name.c_str());
  if (!gr) {
    char* end = nullptr;
    unsigned long n = std::strtoul(name.c_str(), &end, 10);
    if (!name.empty() && end && *end == '\0') return static_cast<gid_t>(n);
    return make_error(EINVAL, "unknown group '" + name + "'");
  }
  return gr->gr_gid;
}

// Owns the current backend and replaces it when it is lost: the embedded swtpm is restarted, an external
// backend is reconnected. Between the two, opens fail with ENODEV.
class Supervisor {
 public:
  Supervisor(const Settings& settings, std::optional<EmbeddedSwtpm>& swtpm) : settings_(settings), swtpm_(swtpm) {}

  // Runs with the identity of each new driver before the chip is started (the one-daemon-per-TPM lock).
  void set_identity_check(std::function<Result<void>(const std::string&)> check) { identity_check_ = std::move(check); }

  Result<void> register_backend() {
    if (swtpm_) {
      if (auto r = swtpm_->start(); !r) return r;
    }
    auto spec = swtpm_ ? swtpm_->spec() : settings_.tpm;
    auto driver = chip::make_driver(spec);
    if (!driver) return driver.error();
    if (identity_check_) {
      if (auto r = identity_check_((*driver)->identity()); !r) return r;
    }
    std::uint64_t generation = ++generation_;
    chip::ChipOptions chip_options;
    // A freshly started emulator on a loaded (or emulated) machine can answer its first commands far later
    // than hardware deadlines allow; it is a local process, not a bus device, so its deadlines are relaxed.
    chip_options.duration_scale = settings_.duration_scale > 0 ? settings_.duration_scale : (swtpm_ ? 10.0 : 1.0);
    auto backend = Backend::start(std::move(*driver), settings_.rm, [this, generation](const Error& cause) {
      spdlog::error("event=backend-lost generation={} cause=\"{}\"", generation, describe(cause));
      std::lock_guard lock(mutex_);
      lost_ = true;
      wake_.notify_all();
    }, chip_options);
    if (!backend) return backend.error();
    spdlog::info("event=backend-registered generation={} backend=\"{}\" identity=\"{}\"", generation,
                 (*backend)->description(), (*backend)->identity());
    std::lock_guard lock(mutex_);
    current_ = std::move(*backend);
    lost_ = false;
    return {};
  }

  Result<std::shared_ptr<device::Connection>> open(const rm::ClientInfo& client, device::ConnectionOptions options) {
    std::shared_ptr<Backend> backend;
    {
      std::lock_guard lock(mutex_);
      backend = current_;
    }
    if (!backend) return make_error(ENODEV, "no TPM backend is registered (it is being restarted)");
    auto c = backend->open(client, options);
    if (c) {
      spdlog::debug("event=open pid={} uid={} gid={} connection={}", client.pid, client.uid, client.gid,
                    (*c)->id());
    } else {
      spdlog::warn("event=open-failed pid={} uid={} error=\"{}\"", client.pid, client.uid, describe(c.error()));
    }
    return c;
  }

  void run() {
    thread_ = std::thread([this] { loop(); });
  }

  // Stops supervising and ends the current backend (flush, TPM2_Shutdown(mode)).
  void shutdown(chip::ShutdownMode mode) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      wake_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    std::shared_ptr<Backend> backend;
    {
      std::lock_guard lock(mutex_);
      backend = std::move(current_);
    }
    if (backend) backend->stop(mode);
    if (swtpm_) swtpm_->stop();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    auto retry_at = std::chrono::steady_clock::now();
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(200));
      if (stopping_) break;
      bool swtpm_died = swtpm_ && swtpm_->reap_if_exited();
      if (swtpm_died || lost_) {
        auto backend = std::move(current_);
        lost_ = false;
        lock.unlock();
        if (backend) {
          backend->stop(chip::ShutdownMode::kNone);
          spdlog::warn("event=backend-unregistered backend=\"{}\" open_fds=ENODEV", backend->description());
        }
        // A lost transport to a still-running embedded swtpm: start afresh.
        if (swtpm_ && !swtpm_died) swtpm_->stop();
        lock.lock();
      }
      if (!current_ && std::chrono::steady_clock::now() >= retry_at) {
        lock.unlock();
        auto r = register_backend();
        lock.lock();
        if (!r) {
          spdlog::error("event=backend-register-failed error=\"{}\" retry_in=2s", describe(r.error()));
          retry_at = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        }
      }
    }
  }

  const Settings& settings_;
  std::optional<EmbeddedSwtpm>& swtpm_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Backend> current_;
  std::uint64_t generation_ = 0;
  bool lost_ = false;
  bool stopping_ = false;
  std::thread thread_;
  std::function<Result<void>(const std::string&)> identity_check_;
};

// Without --foreground: fork, and let the parent exit with 0 once the device is ready (or 1 with the error).
class Backgrounder {
 public:
  Result<void> detach() {
    int fds[2];
    if (::pipe(fds) != 0) return make_error(errno, "pipe");
    pid_t pid = ::fork();
    if (pid < 0) return make_error(errno, "fork");
    if (pid > 0) {
      ::close(fds[1]);
      char status = 1;
      if (::read(fds[0], &status, 1) != 1) status = 1;
      std::_Exit(status);
    }
    ::close(fds[0]);
    ::setsid();
    fd_ = fds[1];
    return {};
  }
  void report(bool ok) {
    if (fd_ < 0) return;
    char status = ok ? 0 : 1;
    if (::write(fd_, &status, 1) != 1) { /* parent gone */ }
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

int run(const Settings& s) {
  auto level = spdlog::level::from_str(s.log_level);
  spdlog::set_default_logger(spdlog::stderr_logger_mt("tpmrmd"));
  spdlog::set_level(level);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");

  unsigned long mode = std::strtoul(s.mode.c_str(), nullptr, 8);
  if (mode > 07777) {
    spdlog::critical("event=bad-option option=--mode value={}", s.mode);
    return 2;
  }
  cuse::CuseDeviceOptions device_options;
  device_options.name = s.name;
  device_options.mode = static_cast<mode_t>(mode);
  device_options.debug = s.fuse_debug;
  device_options.connection.max_command = s.max_command;
  device_options.connection.discard_after =
      std::chrono::milliseconds(static_cast<long long>(s.discard_timeout * 1000));
  std::optional<uid_t> runas_uid;
  std::optional<gid_t> runas_gid;
  if (!s.owner.empty()) {
    auto u = lookup_user(s.owner);
    if (!u) return spdlog::critical("{}", describe(u.error())), 2;
    device_options.owner = *u;
  }
  if (!s.group.empty()) {
    auto g = lookup_group(s.group);
    if (!g) return spdlog::critical("{}", describe(g.error())), 2;
    device_options.group = *g;
  }
  if (!s.runas.empty()) {
    gid_t gid = 0;
    auto u = lookup_user(s.runas, &gid);
    if (!u) return spdlog::critical("{}", describe(u.error())), 2;
    runas_uid = *u;
    runas_gid = gid;
  }
  chip::ShutdownMode shutdown_mode = s.shutdown == "none"    ? chip::ShutdownMode::kNone
                                    : s.shutdown == "state" ? chip::ShutdownMode::kState
                                                            : chip::ShutdownMode::kClear;

  if (auto env = cuse::CuseDevice::check_environment(s.name); !env) {
    spdlog::critical("event=startup-failed error=\"{}\"", describe(env.error()));
    return 1;
  }

  Backgrounder background;
  if (!s.foreground) {
    if (auto r = background.detach(); !r) return spdlog::critical("{}", describe(r.error())), 1;
  }

  std::optional<EmbeddedSwtpm> swtpm;
  std::optional<TpmLock> lock;
  if (s.tpm.empty()) {
    swtpm.emplace(EmbeddedSwtpmOptions{s.state_dir, s.swtpm, runas_uid, runas_gid});
    auto l = TpmLock::acquire(s.lock_dir, swtpm->identity());
    if (!l) return spdlog::critical("event=startup-failed error=\"{}\"", describe(l.error())), background.report(false), 1;
    lock.emplace(std::move(*l));
  }
  Supervisor supervisor(s, swtpm);
  if (!lock) {
    supervisor.set_identity_check([&](const std::string& identity) -> Result<void> {
      if (lock) return {};
      auto l = TpmLock::acquire(s.lock_dir, identity);
      if (!l) return l.error();
      lock.emplace(std::move(*l));
      return {};
    });
  }
  // A TPM (or a swtpm under emulation) can be slow to answer its very first command; a few attempts before
  // giving up. A held lock is final.
  Result<void> registered = supervisor.register_backend();
  for (int attempt = 2; !registered && registered.error().code != EBUSY && attempt <= 3; ++attempt) {
    spdlog::warn("event=backend-register-failed attempt={} error=\"{}\"", attempt - 1, describe(registered.error()));
    std::this_thread::sleep_for(std::chrono::seconds(1));
    registered = supervisor.register_backend();
  }
  if (auto r = registered; !r) {
    spdlog::critical("event=startup-failed error=\"{}\"", describe(r.error()));
    background.report(false);
    return 1;
  }
  supervisor.run();

  cuse::CuseDevice device(device_options, [&supervisor, &device_options](const rm::ClientInfo& client) {
    return supervisor.open(client, device_options.connection);
  });
  auto result = device.run([&] {
    if (runas_uid) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(*runas_gid) != 0 || ::setuid(*runas_uid) != 0) {
        spdlog::critical("event=runas-failed user={} error=\"{}\"", s.runas, std::strerror(errno));
        device.stop();
        return;
      }
      spdlog::info("event=privileges-dropped uid={} gid={}", *runas_uid, *runas_gid);
    }
    spdlog::info("event=ready device=/dev/{} pid={}", s.name, ::getpid());
    background.report(true);
  });
  spdlog::info("event=stopping device=/dev/{}", s.name);
  supervisor.shutdown(shutdown_mode);
  background.report(false);
  if (!result) {
    spdlog::critical("event=cuse-failed error=\"{}\"", describe(result.error()));
    return 1;
  }
  spdlog::info("event=stopped");
  return 0;
}

}  // namespace
}  // namespace tpmrmd::daemon

int main(int argc, char** argv) {
  tpmrmd::daemon::Settings s;
  CLI::App app{"tpmrmd: a userspace TPM 2.0 resource manager serving a /dev/tpmrm0-compatible CUSE device.\n"
               "Without --tpm it starts and supervises its own swtpm (state in --state-dir)."};
  app.set_version_flag("--version", std::string("tpmrmd ") + TPMRMD_VERSION);
  app.add_option("--tpm", s.tpm, "Backend TPM: " + tpmrmd::chip::backend_spec_help() +
                                     " (default: an embedded swtpm)");
  app.add_option("--name", s.name, "Device node name under /dev")->capture_default_str();
  app.add_option("--mode", s.mode, "Node permissions (octal)")->capture_default_str();
  app.add_option("--owner", s.owner, "Node owner (user name or uid)");
  app.add_option("--group", s.group, "Node group (group name or gid), e.g. tss");
  app.add_option("--runas", s.runas, "Drop privileges to this user once the device exists and the TPM is open");
  app.add_flag("--foreground,-f", s.foreground, "Stay in the foreground (systemd, tests)");
  app.add_option("--state-dir", s.state_dir, "Embedded swtpm state")->capture_default_str();
  app.add_option("--lock-dir", s.lock_dir, "Where the one-daemon-per-TPM locks live")->capture_default_str();
  app.add_option("--log-level", s.log_level, "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_option("--shutdown", s.shutdown, "TPM2_Shutdown sent when the daemon stops")
      ->check(CLI::IsMember({"none", "clear", "state"}))
      ->capture_default_str();
  app.add_option("--swtpm", s.swtpm, "swtpm program for the embedded default")->capture_default_str();
  app.add_option("--discard-timeout", s.discard_timeout, "Seconds before an unread response is discarded (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--duration-scale", s.duration_scale,
                 "Multiplies every TPM command deadline (0: 10 for the embedded swtpm, 1 otherwise)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--max-command", s.max_command, "Largest accepted write (E2BIG above)")
      ->check(CLI::Range(10, 65536))
      ->capture_default_str();
  app.add_option("--max-objects", s.rm.max_objects_per_connection, "Transient objects per connection")
      ->capture_default_str();
  app.add_option("--max-sessions", s.rm.max_sessions_per_connection, "Sessions per connection")
      ->capture_default_str();
  app.add_option("--max-connections", s.rm.max_connections, "Open connections in total")->capture_default_str();
  app.add_option("--max-abandoned-sessions", s.rm.max_abandoned_sessions,
                 "Client-saved sessions kept after their connection closed")
      ->capture_default_str();
  app.add_flag("--rc-mode", s.rm.rc_mode, "Report RM errors as RM-layer response codes instead of errno");
  app.add_flag("--fuse-debug", s.fuse_debug, "libfuse request tracing");
  CLI11_PARSE(app, argc, argv);
  return tpmrmd::daemon::run(s);
}

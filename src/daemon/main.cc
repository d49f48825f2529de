// tpmrmd: serves a /dev/tpmrm0-compatible CUSE device backed by the resource manager and one TPM.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "chip/backend_spec.h"
#include "cuse/cuse_device.h"
#include "daemon/control_server.h"
#include "daemon/embedded_swtpm.h"
#include "daemon/logging.h"
#include "daemon/node_watchdog.h"
#include "daemon/pcapng_writer.h"
#include "daemon/options.h"
#include "daemon/service_notifier.h"
#include "daemon/supervisor.h"
#include "daemon/tpm_lock.h"
#include "daemon/user_lookup.h"
#include "socket/socket_front_end.h"
#include "rm/audit_log.h"
#include "rm/command_policy_file.h"

namespace tpmrmd::daemon {
namespace {

// --policy FILE, or --profile NAME (default: "default"); --policy-group names the group class for either.
Result<rm::CommandPolicy> command_policy(const Settings& s) {
  rm::CommandPolicy policy;
  if (!s.policy_file.empty()) {
    auto loaded = rm::load_command_policy(s.policy_file);
    if (!loaded) return loaded.error();
    policy = std::move(*loaded);
  } else {
    policy = rm::CommandPolicy::from_profile(
        rm::policy_profile_from_name(s.profile).value_or(rm::PolicyProfile::kDefault));
  }
  if (!s.policy_group.empty()) {
    auto gid = rm::resolve_group(s.policy_group);
    if (!gid) return make_error(EINVAL, "--policy-group: unknown group '" + s.policy_group + "'");
    policy.set_group(*gid, s.policy_group);
  }
  return policy;
}

// --leftovers auto: a TPM only this daemon talks to (its embedded swtpm, a swtpm socket, TIS/CRB registers) is
// cleaned of what a crashed earlier run left; a device node or TCTI may be shared, so others' handles stay.
rm::Leftovers leftover_policy(const Settings& s) {
  if (s.leftovers == "flush") return rm::Leftovers::kFlush;
  if (s.leftovers == "keep") return rm::Leftovers::kKeep;
  if (s.tpm.empty()) return rm::Leftovers::kFlush;
  auto spec = chip::split_backend_spec(s.tpm);
  const bool owned = spec && (spec->kind == "swtpm" || spec->kind == "tis" || spec->kind == "crb");
  return owned ? rm::Leftovers::kFlush : rm::Leftovers::kKeep;
}

// A device node is shared with the kernel's own TPM users (its /dev/tpmrm0, trusted keys): by default one object
// and one session slot stay free for them between commands. A TPM only tpmrmd talks to needs no reserve.
void plan_reserve(const Settings& s, rm::RmOptions& rm) {
  auto spec = chip::split_backend_spec(s.tpm);
  const std::uint32_t shared = !s.tpm.empty() && spec && spec->kind == "device" ? 1 : 0;
  rm.reserve_object_slots = s.reserve_object_slots.value_or(shared);
  rm.reserve_session_slots = s.reserve_session_slots.value_or(shared);
}

// Without --foreground: fork, and let the parent exit with 0 once the device is ready (or 1 with the error).
class Backgrounder {
 public:
  Result<void> detach() {
    int fds[2];
    // Close-on-exec: a helper the daemon starts must not keep the parent waiting after the daemon died.
    if (::pipe2(fds, O_CLOEXEC) != 0) return make_error(errno, "pipe");
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

Result<cuse::CuseDeviceOptions> device_options(const Settings& s) {
  cuse::CuseDeviceOptions options;
  options.name = s.name;
  options.mode = static_cast<mode_t>(std::stoul(s.mode, nullptr, 8));
  options.debug = s.fuse_debug;
  options.connection.max_command = s.max_command;
  options.connection.discard_after = std::chrono::milliseconds(static_cast<long long>(s.discard_timeout * 1000));
  if (!s.owner.empty()) {
    auto u = lookup_user(s.owner);
    if (!u) return u.error();
    options.owner = *u;
  }
  if (!s.group.empty()) {
    auto g = lookup_group(s.group);
    if (!g) return g.error();
    options.group = *g;
  } else if (const ::group* tss = ::getgrnam(kDefaultNodeGroup)) {
    options.group = tss->gr_gid;  // the tpm2-tss udev convention for the kernel's node: tss, 0660
  }
  if (s.major) {
    options.dev_major = *s.major;
    options.dev_minor = s.minor.value_or(0);
  }
  return options;
}

// --socket and --mssim: the socket front-end's listeners, with the node's mode and group.
Result<socket::SocketFrontEndOptions> socket_options(const Settings& s, const cuse::CuseDeviceOptions& device) {
  socket::SocketFrontEndOptions options;
  if (!s.socket.empty()) {
    auto e = socket::parse_endpoint(s.socket);
    if (!e) return make_error(EINVAL, "--socket: " + e.error().message);
    if (e->kind != socket::Endpoint::Kind::kUnix) {
      return make_error(EINVAL, "--socket takes a unix socket path (with a '/'); TCP is offered by --mssim only");
    }
    options.swtpm = std::move(*e);
  }
  if (!s.mssim.empty()) {
    auto e = socket::parse_endpoint(s.mssim);
    if (!e) return make_error(EINVAL, "--mssim: " + e.error().message);
    options.mssim = std::move(*e);
  }
  if (s.no_cuse && !options.swtpm && !options.mssim) {
    return make_error(EINVAL, "--no-cuse needs --socket or --mssim: there would be nothing to serve");
  }
  options.mode = device.mode;
  options.group = device.group;
  options.max_command = device.connection.max_command;
  return options;
}

// With --no-cuse nobody installs signal handlers: the termination signals are blocked in every thread (from
// before the first one starts) and main waits for them.
sigset_t termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  return set;
}

// How long CUSE may take from start to a usable node (libfuse's init, devtmpfs, chmod and chown).
constexpr std::chrono::seconds kNodeLimit{30};

int run(const Settings& s) {
  setup_logging(spdlog::level::from_str(s.log_level));
  const sigset_t termination = termination_signals();
  if (s.no_cuse) pthread_sigmask(SIG_BLOCK, &termination, nullptr);

  auto device_opts = device_options(s);
  if (!device_opts) return spdlog::critical("event=bad-option error=\"{}\"", describe(device_opts.error())), kExitUsage;
  auto socket_opts = socket_options(s, *device_opts);
  if (!socket_opts) return spdlog::critical("event=bad-option error=\"{}\"", describe(socket_opts.error())), kExitUsage;
  auto user = runas_user(s.runas);
  if (!user) return spdlog::critical("event=bad-option error=\"{}\"", describe(user.error())), kExitUsage;
  const std::optional<RunAs> run_as = *user;
  auto policy = command_policy(s);
  if (!policy) return spdlog::critical("event=bad-policy error=\"{}\"", describe(policy.error())), kExitUsage;
  spdlog::info("event=command-policy {}", policy->describe());
  auto swtpm_as = swtpm_user(s.swtpm_user, run_as);
  if (!swtpm_as) return spdlog::critical("event=bad-option error=\"{}\"", describe(swtpm_as.error())), kExitUsage;
  // What clients send (keys, auth values) lands in a capture: only a daemon started by root may write one.
  if (!s.capture.empty() && ::geteuid() != 0) {
    return spdlog::critical("event=bad-option error=\"--capture needs root\""), kExitUsage;
  }

  if (auto env = s.no_cuse ? Result<void>{} : cuse::CuseDevice::check_environment(s.name); !env) {
    spdlog::critical("event=startup-failed error=\"{}\"", describe(env.error()));
    return kExitRuntime;
  }
  std::shared_ptr<PcapngWriter> capture;
  if (!s.capture.empty()) {
    auto c = PcapngWriter::create(s.capture);
    if (!c) return spdlog::critical("event=startup-failed error=\"{}\"", describe(c.error())), kExitRuntime;
    capture = std::move(*c);
    spdlog::warn("event=capture-started file=\"{}\" mode=0600", rm::log_quoted(s.capture));
  }

  Backgrounder background;
  if (!s.foreground) {
    if (auto r = background.detach(); !r) {
      return spdlog::critical("event=startup-failed error=\"{}\"", describe(r.error())), kExitRuntime;
    }
  }

  std::optional<EmbeddedSwtpm> swtpm;
  std::optional<TpmLock> lock;
  if (s.tpm.empty()) {
    swtpm.emplace(EmbeddedSwtpmOptions{.state_dir = s.state_dir,
                                       .program = s.swtpm,
                                       .run_uid = *swtpm_as ? std::optional((*swtpm_as)->uid) : std::nullopt,
                                       .run_gid = *swtpm_as ? std::optional((*swtpm_as)->gid) : std::nullopt,
                                       .provision = s.provision == "ek-cert"});
    auto l = TpmLock::acquire(s.lock_dir, swtpm->identity());
    if (!l) {
      spdlog::critical("event=startup-failed error=\"{}\"", describe(l.error()));
      background.report(false);
      return kExitRuntime;
    }
    lock.emplace(std::move(*l));
  }
  rm::RmOptions rm_options = s.rm;
  rm_options.leftovers = leftover_policy(s);
  plan_reserve(s, rm_options);
  rm_options.policy = std::move(*policy);
  Supervisor supervisor(SupervisorOptions{.tpm = s.tpm,
                                          .rm = rm_options,
                                          .duration_scale = s.duration_scale,
                                          .platform_auth = s.platform_auth == "empty" ? PlatformAuthMode::kEmpty
                                                                                      : PlatformAuthMode::kRandom,
                                          .capture = capture},
                        swtpm ? &*swtpm : nullptr);
  if (!lock) {
    supervisor.set_identity_check([&](const std::string& identity) -> Result<void> {
      if (lock) return {};
      auto l = TpmLock::acquire(s.lock_dir, identity);
      if (!l) return l.error();
      lock.emplace(std::move(*l));
      return {};
    });
  }
  if (auto r = supervisor.start(); !r) {
    spdlog::critical("event=startup-failed error=\"{}\"", describe(r.error()));
    background.report(false);
    return kExitRuntime;
  }

  // Before the privilege drop (in device.run below): see control_server.h for why.
  std::unique_ptr<ControlServer> control;
  if (const std::string path = s.control_socket.value_or(s.lock_dir + "/control"); !path.empty()) {
    auto started = ControlServer::start({.path = path, .group = device_opts->group},
                                        {.snapshot = [&supervisor] { return supervisor.snapshot(); },
                                         .flush_abandoned = [&supervisor] { return supervisor.flush_abandoned(); }});
    if (started) control = std::move(*started);
    else spdlog::error("event=control-socket-failed error=\"{}\"", describe(started.error()));
  }
  const device::ConnectionOptions connection_options = device_opts->connection;
  auto open_connection = [&supervisor, connection_options](const rm::ClientInfo& client) {
    return supervisor.open(client, connection_options);
  };
  // Also before the privilege drop: the socket files get the node's group, in directories root may own.
  std::unique_ptr<socket::SocketFrontEnd> sockets;
  if (socket_opts->swtpm || socket_opts->mssim) {
    auto started = socket::SocketFrontEnd::start(*socket_opts, open_connection);
    if (!started) {
      spdlog::critical("event=startup-failed error=\"{}\"", describe(started.error()));
      if (control) control->stop();
      supervisor.shutdown(s.shutdown);
      background.report(false);
      return kExitRuntime;
    }
    sockets = std::move(*started);
  }
  std::optional<cuse::CuseDevice> device;
  if (!s.no_cuse) device.emplace(*device_opts, open_connection);
  // Ends serving: the CUSE session, or main's wait for a termination signal.
  auto stop_serving = [&device] {
    if (device) device->stop();
    else ::kill(::getpid(), SIGTERM);
  };
  const std::string served = s.no_cuse ? std::string("sockets") : "/dev/" + s.name;
  // The node is set up (and privileges dropped) from the device's own thread once CUSE is initialised; if that
  // never happens the daemon must not go on serving, as root, a node nobody can reach.
  NodeWatchdog watchdog(kNodeLimit, [&] {
    spdlog::critical("event=startup-failed error=\"/dev/{} did not appear within {} s\"", s.name,
                     kNodeLimit.count());
    stop_serving();
  });
  // Type=notify: READY=1 once the node serves, STATUS= and the watchdog's keep-alive while the RM worker answers.
  ServiceNotifier notifier;
  bool drop_failed = false;
  auto on_ready = [&] {
    if (!watchdog.cancel()) return;  // too late: start-up has already failed
    if (run_as) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(run_as->gid) != 0 || ::setuid(run_as->uid) != 0 ||
          ::getuid() != run_as->uid || ::geteuid() != run_as->uid || ::getegid() != run_as->gid) {
        spdlog::critical("event=runas-failed user={} error=\"{}\"", s.runas, std::strerror(errno));
        drop_failed = true;
        stop_serving();
        return;
      }
      spdlog::info("event=privileges-dropped uid={} gid={}", run_as->uid, run_as->gid);
    }
    spdlog::info("event=ready device={} pid={}", served, ::getpid());
    background.report(true);
    const std::string node = served;
    // The probe waits for the worker at most a quarter of a tick: a command running longer than that (or a stuck
    // worker) withholds that tick's keep-alive; WatchdogSec= bounds how long that may last.
    const auto probe_wait = notifier.tick() / 4;
    notifier.ready("serving " + node + ", generation " + std::to_string(supervisor.generation()),
                   [&supervisor, node, probe_wait] {
                     auto st = supervisor.status(probe_wait);
                     if (!st) return ServiceNotifier::Probe{"serving " + node + ", waiting for the TPM backend", false};
                     std::string line = "serving " + node + ", generation " + std::to_string(st->generation);
                     if (!st->responsive) return ServiceNotifier::Probe{line + ", TPM worker busy", false};
                     return ServiceNotifier::Probe{line + ", " + std::to_string(st->connections) + " connections, " +
                                                       std::to_string(st->client_commands) + " commands",
                                                   true};
                   });
  };
  Result<void> result;
  if (device) {
    result = device->run(on_ready);
  } else {
    on_ready();
    int sig = 0;
    while (sigwait(&termination, &sig) != 0) {
    }
    spdlog::info("event=signal signal={}", sig);
  }
  const bool node_missing = watchdog.finish();
  notifier.stopping();
  spdlog::info("event=stopping device={}", served);
  // Sessions end and their spaces close (flushing what clients held) while the backend still runs.
  if (sockets) sockets->stop();
  if (control) control->stop();
  supervisor.shutdown(s.shutdown);
  background.report(false);
  if (drop_failed || node_missing) return kExitRuntime;
  if (!result) {
    spdlog::critical("event=cuse-failed error=\"{}\"", describe(result.error()));
    return kExitRuntime;
  }
  spdlog::info("event=stopped");
  return kExitOk;
}

}  // namespace
}  // namespace tpmrmd::daemon

int main(int argc, char** argv) {
  tpmrmd::daemon::Settings s;
  auto app = tpmrmd::daemon::make_app(s);
  if (auto exit = tpmrmd::daemon::parse_command_line(*app, argc, argv)) return *exit;
  return tpmrmd::daemon::run(s);
}

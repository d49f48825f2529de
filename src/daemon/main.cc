// tpmrmd: serves a /dev/tpmrm0-compatible CUSE device backed by the resource manager and one TPM.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "chip/backend_spec.h"
#include "chip/driver_factory.h"
#include "cuse/cuse_device.h"
#include "daemon/control_server.h"
#include "daemon/embedded_swtpm.h"
#include "daemon/logging.h"
#include "daemon/node_watchdog.h"
#include "daemon/supervisor.h"
#include "daemon/tpm_lock.h"
#include "daemon/user_lookup.h"
#include "rm/command_policy_file.h"

namespace tpmrmd::daemon {
namespace {

// Exit status: the one scheme tpmrmd uses, also stated in --help.
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;  // start-up or run-time failure (no /dev/cuse, TPM lock held, backend down, ...)
constexpr int kExitUsage = 2;    // bad command line or configuration (parse errors, unknown user/group)

struct Settings {
  std::string tpm;
  std::string name = "tpmrm0";
  std::string mode = "0660";  // validated by the octal validator below
  std::string owner;
  std::string group;
  std::string runas;
  std::string swtpm_user;  // empty: the --runas user (or the daemon's own user without --runas)
  std::string platform_auth = "random";
  std::string provision = "none";
  bool foreground = false;
  std::string state_dir = "/var/lib/tpmrmd";
  std::string lock_dir = "/run/tpmrmd";
  std::string log_level = "info";
  chip::ShutdownMode shutdown = chip::ShutdownMode::kClear;
  std::string swtpm = "swtpm";
  double discard_timeout = 120;
  double duration_scale = 0;  // 0: 10 for the embedded swtpm, 1 for any other backend
  std::size_t max_command = 4096;
  rm::RmOptions rm;
  std::string leftovers = "auto";
  std::optional<std::uint32_t> reserve_object_slots;  // unset: 1 on device: (shared with the kernel), else 0
  std::optional<std::uint32_t> reserve_session_slots;
  bool fuse_debug = false;
  std::string policy_file;
  std::string profile;
  std::string policy_group;
  std::optional<std::string> control_socket;  // unset: <lock-dir>/control; empty: none
};

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

// A permission mode: octal digits only, at most 07777.
CLI::Validator octal_mode() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (value.empty() || value.size() > 5 || value.find_first_not_of("01234567") != std::string::npos) {
          return "'" + value + "' is not an octal mode";
        }
        if (std::stoul(value, nullptr, 8) > 07777) return "'" + value + "' is above 07777";
        return {};
      },
      "OCTAL<=07777");
}

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
  }
  return options;
}

// How long CUSE may take from start to a usable node (libfuse's init, devtmpfs, chmod and chown).
constexpr std::chrono::seconds kNodeLimit{30};

int run(const Settings& s) {
  setup_logging(spdlog::level::from_str(s.log_level));

  auto device_opts = device_options(s);
  if (!device_opts) return spdlog::critical("{}", describe(device_opts.error())), kExitUsage;
  auto user = runas_user(s.runas);
  if (!user) return spdlog::critical("{}", describe(user.error())), kExitUsage;
  const std::optional<RunAs> run_as = *user;
  auto policy = command_policy(s);
  if (!policy) return spdlog::critical("event=bad-policy error=\"{}\"", describe(policy.error())), kExitUsage;
  spdlog::info("event=command-policy {}", policy->describe());
  auto swtpm_as = swtpm_user(s.swtpm_user, run_as);
  if (!swtpm_as) return spdlog::critical("{}", describe(swtpm_as.error())), kExitUsage;

  if (auto env = cuse::CuseDevice::check_environment(s.name); !env) {
    spdlog::critical("event=startup-failed error=\"{}\"", describe(env.error()));
    return kExitRuntime;
  }

  Backgrounder background;
  if (!s.foreground) {
    if (auto r = background.detach(); !r) return spdlog::critical("{}", describe(r.error())), kExitRuntime;
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
                                                                                      : PlatformAuthMode::kRandom},
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
  cuse::CuseDevice device(*device_opts, [&supervisor, connection_options](const rm::ClientInfo& client) {
    return supervisor.open(client, connection_options);
  });
  // The node is set up (and privileges dropped) from the device's own thread once CUSE is initialised; if that
  // never happens the daemon must not go on serving, as root, a node nobody can reach.
  NodeWatchdog watchdog(kNodeLimit, [&] {
    spdlog::critical("event=startup-failed error=\"/dev/{} did not appear within {} s\"", s.name,
                     kNodeLimit.count());
    device.stop();
  });
  bool drop_failed = false;
  auto result = device.run([&] {
    if (!watchdog.cancel()) return;  // too late: start-up has already failed
    if (run_as) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(run_as->gid) != 0 || ::setuid(run_as->uid) != 0 ||
          ::getuid() != run_as->uid || ::geteuid() != run_as->uid || ::getegid() != run_as->gid) {
        spdlog::critical("event=runas-failed user={} error=\"{}\"", s.runas, std::strerror(errno));
        drop_failed = true;
        device.stop();
        return;
      }
      spdlog::info("event=privileges-dropped uid={} gid={}", run_as->uid, run_as->gid);
    }
    spdlog::info("event=ready device=/dev/{} pid={}", s.name, ::getpid());
    background.report(true);
  });
  const bool node_missing = watchdog.finish();
  spdlog::info("event=stopping device=/dev/{}", s.name);
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
  CLI::App app{"tpmrmd: a userspace TPM 2.0 resource manager serving a /dev/tpmrm0-compatible CUSE device.\n"
               "Without --tpm it starts and supervises its own swtpm (state in --state-dir)."};
  app.set_version_flag("--version", std::string("tpmrmd ") + TPMRMD_VERSION);
  app.add_option("--tpm", s.tpm, "Backend TPM: " + tpmrmd::chip::backend_spec_help() +
                                     " (default: an embedded swtpm)");
  app.add_option("--name", s.name, "Device node name under /dev")->capture_default_str();
  app.add_option("--mode", s.mode, "Node permissions (octal, at most 07777)")->check(tpmrmd::daemon::octal_mode())->capture_default_str();
  app.add_option("--owner", s.owner, "Node owner (user name or uid)");
  app.add_option("--group", s.group, "Node group (group name or gid), e.g. tss");
  app.add_option("--runas", s.runas,
                 "Drop privileges to this user (name or uid; a uid without passwd entry gets the same number as "
                 "gid) once the device exists and the TPM is open");
  app.add_option("--swtpm-user", s.swtpm_user,
                 "User the embedded swtpm runs as (default: the --runas user; must be it when --runas is given)");
  app.add_option("--platform-auth", s.platform_auth,
                 "Embedded swtpm's platform auth: random (set at every start, kept in memory, as firmware does) or "
                 "empty (test rigs)")
      ->check(CLI::IsMember({"random", "empty"}))
      ->capture_default_str();
  app.add_option("--provision", s.provision,
                 "Embedded swtpm at first start (empty state): ek-cert (swtpm_setup: EKs, EK and platform "
                 "certificates from a local CA in the state dir, NV locked) or none")
      ->check(CLI::IsMember({"none", "ek-cert"}))
      ->capture_default_str();
  app.add_flag("--foreground,-f", s.foreground, "Stay in the foreground (systemd, tests)");
  app.add_option("--state-dir", s.state_dir, "Embedded swtpm state")->capture_default_str();
  app.add_option("--lock-dir", s.lock_dir, "Where the one-daemon-per-TPM locks live")->capture_default_str();
  app.add_option("--log-level", s.log_level, "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  const std::map<std::string, tpmrmd::chip::ShutdownMode> shutdown_modes = {
      {"none", tpmrmd::chip::ShutdownMode::kNone},
      {"clear", tpmrmd::chip::ShutdownMode::kClear},
      {"state", tpmrmd::chip::ShutdownMode::kState}};
  app.add_option("--shutdown", s.shutdown, "TPM2_Shutdown sent when the daemon stops: none, clear, state")
      ->transform(CLI::CheckedTransformer(shutdown_modes, CLI::ignore_case))
      ->default_str("clear");
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
  app.add_option("--max-connections-per-uid", s.rm.max_connections_per_uid,
                 "Open connections one uid may hold (0: half of --max-connections)")
      ->capture_default_str();
  app.add_option("--max-objects-per-uid", s.rm.max_objects_per_uid,
                 "Transient objects one uid may hold over all its connections (0: no per-uid limit)")
      ->capture_default_str();
  app.add_option("--max-sessions-per-uid", s.rm.max_sessions_per_uid,
                 "Sessions one uid may hold over all its connections (0: half of the TPM's active sessions)")
      ->capture_default_str();
  app.add_flag("--root-exempt-from-uid-caps", s.rm.root_exempt_from_uid_caps,
               "Hold root to the global limits only, not to the per-uid connection and object caps (root still "
               "gets only its share of sessions and of the TPM's time)");
  app.add_option("--max-abandoned-sessions", s.rm.max_abandoned_sessions,
                 "Client-saved sessions kept after their connection closed")
      ->capture_default_str();
  app.add_option("--leftovers", s.leftovers,
                 "Handles already in the TPM at each registration: flush (a TPM only tpmrmd uses), keep (a shared "
                 "one: left alone, their slots not used), auto (flush for the embedded swtpm, swtpm:, tis:, crb:; "
                 "keep for device:, tcti:)")
      ->check(CLI::IsMember({"auto", "flush", "keep"}))
      ->capture_default_str();
  app.add_option("--reserve-object-slots", s.reserve_object_slots,
                 "TPM object slots kept free between commands for other users of a shared TPM (default: 1 on "
                 "device:, 0 otherwise)");
  app.add_option("--reserve-session-slots", s.reserve_session_slots,
                 "TPM session slots kept free the same way (default: 1 on device:, 0 otherwise)");
  app.add_flag("--rc-mode", s.rm.rc_mode, "Report RM errors as RM-layer response codes instead of errno");
  auto* policy_opt = app.add_option("--policy", s.policy_file,
                                    "Command policy file (JSON; docs/rm.md, \"Command policy\"): which commands root, "
                                    "the --policy-group and everyone else may run")
                         ->check(CLI::ExistingFile);
  app.add_option("--profile", s.profile,
                 "Built-in command policy when there is no --policy: default (every command, as the kernel's "
                 "/dev/tpmrm0) or strict (non-root callers may not run the commands that change the TPM for "
                 "everyone, nor unknown or vendor commands)")
      ->check(CLI::IsMember({"default", "strict"}))
      ->excludes(policy_opt)
      ->default_str("default");
  app.add_option("--policy-group", s.policy_group,
                 "Group (name or gid) whose members, by primary or supplementary group, form the policy's group "
                 "class; overrides the file's \"group\"");
  app.add_option("--control-socket", s.control_socket,
                 "tpmrmctl's control socket (0660, the --group's; empty: none; default: <lock-dir>/control)");
  app.add_flag("--fuse-debug", s.fuse_debug, "libfuse request tracing");
  app.footer("Exit status: 0 ok, 1 run-time failure (start-up refused, backend or CUSE failed), 2 usage or\n"
             "configuration error (bad option or value, unknown user or group).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; every real parse error is a usage error.
    const int printed = app.exit(e);
    return printed == 0 ? tpmrmd::daemon::kExitOk : tpmrmd::daemon::kExitUsage;
  }
  return tpmrmd::daemon::run(s);
}

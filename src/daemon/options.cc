#include "daemon/options.h"

#include <map>

#include "chip/backend_spec.h"
#include "chip/driver_factory.h"

namespace tpmrmd::daemon {
namespace {

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

}  // namespace

std::unique_ptr<CLI::App> make_app(Settings& s, const std::string& default_config) {
  auto app = std::make_unique<CLI::App>("tpmrmd: a userspace TPM 2.0 resource manager serving a /dev/tpmrm0-compatible CUSE device.\n"
               "Without --tpm it starts and supervises its own swtpm (state in --state-dir).");
  app->set_version_flag("--version", std::string("tpmrmd ") + TPMRMD_VERSION);
  app->add_option("--tpm", s.tpm, "Backend TPM: " + chip::backend_spec_help() +
                                     " (default: an embedded swtpm)");
  app->add_option("--name", s.name, "Device node name under /dev")->capture_default_str();
  app->add_option("--mode", s.mode, "Node permissions (octal, at most 07777)")->check(octal_mode())->capture_default_str();
  app->add_option("--owner", s.owner, "Node owner (user name or uid)");
  app->add_option("--group", s.group,
                  std::string("Node group (group name or gid); default: ") + kDefaultNodeGroup +
                      " if that group exists (the tpm2-tss udev convention), else root");
  auto* major = app->add_option("--major", s.major,
                                "Fixed device number, major part (e.g. 240, a 'local/experimental' major), so the "
                                "node can be handed to a container; default: the kernel picks one")
                    ->check(CLI::Range(1u, 4095u));
  app->add_option("--minor", s.minor, "Fixed device number, minor part (with --major; default 0)")
      ->check(CLI::Range(0u, 1048575u))
      ->needs(major);
  app->add_option("--runas", s.runas,
                 "Drop privileges to this user (name or uid; a uid without passwd entry gets the same number as "
                 "gid) once the device exists and the TPM is open");
  app->add_option("--swtpm-user", s.swtpm_user,
                 "User the embedded swtpm runs as (default: the --runas user; must be it when --runas is given)");
  app->add_option("--platform-auth", s.platform_auth,
                 "Embedded swtpm's platform auth: random (set at every start, kept in memory, as firmware does) or "
                 "empty (test rigs)")
      ->check(CLI::IsMember({"random", "empty"}))
      ->capture_default_str();
  app->add_option("--provision", s.provision,
                 "Embedded swtpm at first start (empty state): ek-cert (swtpm_setup: EKs, EK and platform "
                 "certificates from a local CA in the state dir, NV locked) or none")
      ->check(CLI::IsMember({"none", "ek-cert"}))
      ->capture_default_str();
  app->add_flag("--foreground,-f", s.foreground, "Stay in the foreground (systemd, tests)");
  app->add_option("--state-dir", s.state_dir, "Embedded swtpm state")->capture_default_str();
  app->add_option("--lock-dir", s.lock_dir, "Where the one-daemon-per-TPM locks live")->capture_default_str();
  app->add_option("--log-level", s.log_level, "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  static const std::map<std::string, chip::ShutdownMode> shutdown_modes = {
      {"none", chip::ShutdownMode::kNone},
      {"clear", chip::ShutdownMode::kClear},
      {"state", chip::ShutdownMode::kState}};
  app->add_option("--shutdown", s.shutdown, "TPM2_Shutdown sent when the daemon stops: none, clear, state")
      ->transform(CLI::CheckedTransformer(shutdown_modes, CLI::ignore_case))
      ->default_str("clear");
  app->add_option("--swtpm", s.swtpm, "swtpm program for the embedded default")->capture_default_str();
  app->add_option("--discard-timeout", s.discard_timeout, "Seconds before an unread response is discarded (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--duration-scale", s.duration_scale,
                 "Multiplies every TPM command deadline (0: 10 for the embedded swtpm, 1 otherwise)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--max-command", s.max_command, "Largest accepted write (E2BIG above)")
      ->check(CLI::Range(10, 65536))
      ->capture_default_str();
  app->add_option("--max-objects", s.rm.max_objects_per_connection, "Transient objects per connection")
      ->capture_default_str();
  app->add_option("--max-sessions", s.rm.max_sessions_per_connection, "Sessions per connection")
      ->capture_default_str();
  app->add_option("--max-connections", s.rm.max_connections, "Open connections in total")->capture_default_str();
  app->add_option("--max-connections-per-uid", s.rm.max_connections_per_uid,
                 "Open connections one uid may hold (0: half of --max-connections)")
      ->capture_default_str();
  app->add_option("--max-objects-per-uid", s.rm.max_objects_per_uid,
                 "Transient objects one uid may hold over all its connections (0: no per-uid limit)")
      ->capture_default_str();
  app->add_option("--max-sessions-per-uid", s.rm.max_sessions_per_uid,
                 "Sessions one uid may hold over all its connections (0: half of the TPM's active sessions)")
      ->capture_default_str();
  app->add_flag("--root-exempt-from-uid-caps", s.rm.root_exempt_from_uid_caps,
               "Hold root to the global limits only, not to the per-uid connection and object caps (root still "
               "gets only its share of sessions and of the TPM's time)");
  app->add_option("--max-abandoned-sessions", s.rm.max_abandoned_sessions,
                 "Client-saved sessions kept after their connection closed")
      ->capture_default_str();
  app->add_option("--leftovers", s.leftovers,
                 "Handles already in the TPM at each registration: flush (a TPM only tpmrmd uses), keep (a shared "
                 "one: left alone, their slots not used), auto (flush for the embedded swtpm, swtpm:, tis:, crb:; "
                 "keep for device:, tcti:)")
      ->check(CLI::IsMember({"auto", "flush", "keep"}))
      ->capture_default_str();
  app->add_option("--reserve-object-slots", s.reserve_object_slots,
                 "TPM object slots kept free between commands for other users of a shared TPM (default: 1 on "
                 "device:, 0 otherwise)");
  app->add_option("--reserve-session-slots", s.reserve_session_slots,
                 "TPM session slots kept free the same way (default: 1 on device:, 0 otherwise)");
  app->add_flag("--rc-mode", s.rm.rc_mode, "Report RM errors as RM-layer response codes instead of errno");
  auto* policy_opt = app->add_option("--policy", s.policy_file,
                                    "Command policy file (JSON; docs/rm.md, \"Command policy\"): which commands root, "
                                    "the --policy-group and everyone else may run")
                         ->check(CLI::ExistingFile);
  app->add_option("--profile", s.profile,
                 "Built-in command policy when there is no --policy: default (every command, as the kernel's "
                 "/dev/tpmrm0) or strict (non-root callers may not run the commands that change the TPM for "
                 "everyone, nor unknown or vendor commands)")
      ->check(CLI::IsMember({"default", "strict"}))
      ->excludes(policy_opt)
      ->default_str("default");
  app->add_option("--policy-group", s.policy_group,
                 "Group (name or gid) whose members, by primary or supplementary group, form the policy's group "
                 "class; overrides the file's \"group\"");
  app->add_option("--control-socket", s.control_socket,
                  "tpmrmctl's control socket (0660, the --group's; empty: none; default: <lock-dir>/control)");
  app->add_option("--socket", s.socket,
                  "Also serve the RM on this unix socket in the swtpm protocol (TCTI swtpm:path=PATH), with its "
                  "control channel at PATH.ctrl; the node's --mode and --group");
  app->add_option("--mssim", s.mssim,
                  "Also serve the RM in the Microsoft simulator protocol (TCTI mssim:): a unix socket PATH (platform "
                  "socket PATH.ctrl) or HOST:PORT / PORT on TCP (platform PORT+1; PORT alone binds 127.0.0.1; TCP "
                  "clients have no credentials and all count as uid 65534)");
  app->add_flag("--no-cuse", s.no_cuse,
                "Serve no CUSE node (no /dev/cuse needed): only the --socket and --mssim sockets");
  app->add_flag("--fuse-debug", s.fuse_debug, "libfuse request tracing");
  app->add_option("--capture", s.capture,
                  "Write every client's and the TPM's traffic to this new pcapng file (0600; root only; holds "
                  "secrets: for debugging a client)");
  app->allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not ignored
  app->set_config("--config", default_config,
                  std::string("Configuration file: the long options by name, 'name = value' (TOML); options "
                              "given here override it. The default (") +
                      default_config + ") is skipped when absent; a file named here must exist");
  app->footer("Exit status: 0 ok, 1 run-time failure (start-up refused, backend or CUSE failed), 2 usage or\n"
             "configuration error (bad option or value, unknown user or group).");
  return app;
}

std::optional<int> parse_command_line(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; every real parse error (the config file's included)
    // is a usage error.
    const int printed = app.exit(e);
    return printed == 0 ? kExitOk : kExitUsage;
  }
  return std::nullopt;
}

}  // namespace tpmrmd::daemon

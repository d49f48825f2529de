// tpmrmd's command line and configuration file: Settings, and the CLI11 app that fills them. The config file
// (--config, default /etc/tpmrmd/tpmrmd.conf) holds the same options by their long names ("max-command =
// 4096"); options given on the command line override it.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "chip/chip.h"
#include "rm/rm_options.h"

namespace tpmrmd::daemon {

// Exit status: the one scheme tpmrmd uses, also stated in --help.
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;  // start-up or run-time failure (no /dev/cuse, TPM lock held, backend down, ...)
constexpr int kExitUsage = 2;    // bad command line or configuration (parse errors, unknown user/group)

// Read when present; a missing default is no error (an explicitly given --config must exist).
#ifndef TPMRMD_DEFAULT_CONFIG
#define TPMRMD_DEFAULT_CONFIG "/etc/tpmrmd/tpmrmd.conf"  // meson: SYSCONFDIR/tpmrmd/tpmrmd.conf
#endif
constexpr const char* kDefaultConfigFile = TPMRMD_DEFAULT_CONFIG;
// The node's group when --group is not given and this group exists (the tpm2-tss udev rules' convention).
constexpr const char* kDefaultNodeGroup = "tss";

struct Settings {
  std::string tpm;
  std::string name = "tpmrm0";
  std::string mode = "0660";  // validated by the octal validator
  std::string owner;
  std::string group;  // empty: kDefaultNodeGroup if it exists, else root's
  std::optional<unsigned> major;  // fixed device number; unset: the kernel picks one
  std::optional<unsigned> minor;
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
  std::string capture;  // --capture FILE: pcapng of the traffic; root only
  bool fuse_debug = false;
  std::string policy_file;
  std::string profile;
  std::string policy_group;
  std::optional<std::string> control_socket;  // unset: <lock-dir>/control; empty: none
  // The socket front-end (docs/socket.md): swtpm protocol on a unix socket, mssim protocol on a unix socket or
  // TCP; with --no-cuse the daemon serves no node and needs no /dev/cuse.
  std::string socket;
  std::string mssim;
  bool no_cuse = false;
};

// The app filling `s` (which must outlive it); `default_config` is --config's default (tests pass their own).
std::unique_ptr<CLI::App> make_app(Settings& s, const std::string& default_config = kDefaultConfigFile);

// Parses; nothing to do but run() when it returns nothing, else the exit status (after --help, --version or a
// usage or configuration error, whose message it printed).
std::optional<int> parse_command_line(CLI::App& app, int argc, const char* const* argv);

}  // namespace tpmrmd::daemon

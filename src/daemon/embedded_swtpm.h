// The swtpm tpmrmd starts and supervises when no --tpm is given: state and unix sockets in the state dir, the
// TPM powered on and started by swtpm itself. At first start (no TPM state yet) it can be provisioned the way a
// platform vendor would: swtpm_setup creates the EKs, their certificates and a platform certificate from a local
// CA kept under the state dir, and locks those NV indices. swtpm runs as its own user (the --runas user when the
// daemon drops privileges) with its seccomp profile enforcing, forked from a long-lived thread (see spawner.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "daemon/spawner.h"
#include "util/result.h"

namespace tpmrmd::daemon {

struct EmbeddedSwtpmOptions {
  std::string state_dir;
  std::string program = "swtpm";
  // swtpm (and swtpm_setup) run as this user, and the state dir and its files belong to it, so that a swtpm
  // restarted by the unprivileged daemon can still open them. Unset: as the daemon's own user.
  std::optional<uid_t> run_uid = std::nullopt;
  std::optional<gid_t> run_gid = std::nullopt;  // unset: the uid's number
  // swtpm_setup at first start: EKs, EK and platform certificates, locked NV (see provision()). Off by
  // default: under emulation (the QEMU guest) it takes over a minute.
  bool provision = false;
  std::string setup_program = "swtpm_setup";
};

class EmbeddedSwtpm {
 public:
  explicit EmbeddedSwtpm(EmbeddedSwtpmOptions options);
  ~EmbeddedSwtpm();  // stop()
  EmbeddedSwtpm(const EmbeddedSwtpm&) = delete;
  EmbeddedSwtpm& operator=(const EmbeddedSwtpm&) = delete;

  // Creates the state dir if needed, provisions a new TPM, starts swtpm and waits (bounded) until its sockets
  // accept.
  Result<void> start();
  // True (once) when the child has exited since start(); reaps it.
  bool reap_if_exited();
  // SIGTERM, bounded wait, SIGKILL; idempotent.
  void stop();
  pid_t pid() const { return pid_; }

  // Backend spec for make_driver().
  std::string spec() const;
  // The same string the swtpm driver's identity() gives for this endpoint, usable before swtpm runs.
  std::string identity() const;

 private:
  Result<void> prepare_state_dir();
  Result<void> provision();
  ChildCredentials credentials() const { return {options_.run_uid, options_.run_gid}; }

  EmbeddedSwtpmOptions options_;
  std::string data_path_;
  std::string ctrl_path_;
  pid_t pid_ = -1;
  Spawner spawner_;  // declared last: destroyed first, after the destructor's stop()
};

}  // namespace tpmrmd::daemon

// The swtpm tpmrmd starts and supervises when no --tpm is given: state and unix sockets in the state dir, the
// TPM powered on and started by swtpm itself, the child killed if the daemon dies (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "util/result.h"

namespace tpmrmd::daemon {

struct EmbeddedSwtpmOptions {
  std::string state_dir;
  std::string program = "swtpm";
  std::optional<uid_t> run_uid;  // swtpm runs as this user (the --runas user), so it can be restarted later
  std::optional<gid_t> run_gid;
};

class EmbeddedSwtpm {
 public:
  explicit EmbeddedSwtpm(EmbeddedSwtpmOptions options);
  ~EmbeddedSwtpm();  // stop()
  EmbeddedSwtpm(const EmbeddedSwtpm&) = delete;
  EmbeddedSwtpm& operator=(const EmbeddedSwtpm&) = delete;

  // Creates the state dir if needed, starts swtpm and waits (bounded) until its data socket accepts.
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
  EmbeddedSwtpmOptions options_;
  std::string data_path_;
  std::string ctrl_path_;
  pid_t pid_ = -1;
};

}  // namespace tpmrmd::daemon

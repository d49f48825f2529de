// Starts helper programs (swtpm, swtpm_setup) from one long-lived thread of its own. A child's PR_SET_PDEATHSIG
// fires when the *thread* that forked it exits, not the process: forking from whichever thread happens to
// restart swtpm (the supervisor's, joined before the final TPM2_Shutdown) would kill the child too early. The
// spawner's thread lives until the Spawner is destroyed, which its owner does only after stopping the children.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "util/result.h"

namespace tpmrmd::daemon {

// Who the child runs as. Applied only when the spawner runs as root; an unprivileged daemon (after --runas)
// starts children as itself, which is why the child user must then be the --runas user.
struct ChildCredentials {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};

class Spawner {
 public:
  Spawner();
  ~Spawner();  // joins the thread; children still running get their parent-death signal
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Forks and execs argv[0] (PATH search) with stdin/stdout on /dev/null, stderr inherited, every other fd
  // closed, default signal mask and SIGPIPE, SIGTERM on the death of the spawner's thread. The caller reaps.
  Result<pid_t> spawn(const std::vector<std::string>& argv, const ChildCredentials& credentials);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> task_;  // at most one at a time: spawn() waits for its own
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tpmrmd::daemon

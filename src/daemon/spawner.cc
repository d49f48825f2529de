#include "daemon/spawner.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

namespace tpmrmd::daemon {
namespace {

// Runs in the child between fork and exec: async-signal-safe calls only.
[[noreturn]] void exec_child(char* const* argv, const ChildCredentials& credentials, pid_t parent) {
  // A descriptor of the daemon's (/dev/cuse, the background pipe, the TPM lock, sockets) must not outlive it in
  // a child: close everything above stderr first.
  if (::close_range(3, ~0U, 0) != 0) {
    struct rlimit limit{};
    const int top = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536
                        ? static_cast<int>(limit.rlim_cur)
                        : 65536;
    for (int fd = 3; fd < top; ++fd) ::close(fd);
  }
  if (::geteuid() == 0 && credentials.uid && *credentials.uid != 0) {
    const gid_t gid = credentials.gid.value_or(static_cast<gid_t>(*credentials.uid));
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(*credentials.uid) != 0) ::_exit(126);
  }
  // After the credential change: the kernel clears the parent-death signal when credentials change.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(127);
  // The daemon blocks or handles signals on its threads; the child starts with defaults.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  const int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    if (devnull > 2) ::close(devnull);
  }
  ::execvp(argv[0], argv);
  ::_exit(127);
}

}  // namespace

Spawner::Spawner() : thread_([this] { loop(); }) {}

Spawner::~Spawner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Spawner::loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || task_; });
    if (task_) {
      auto task = std::exchange(task_, nullptr);
      lock.unlock();
      task();
      lock.lock();
      wake_.notify_all();
      continue;
    }
    if (stopping_) return;
  }
}

Result<pid_t> Spawner::spawn(const std::vector<std::string>& argv, const ChildCredentials& credentials) {
  if (argv.empty()) return make_error(EINVAL, "spawn: empty command");
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (auto& a : args) raw.push_back(a.data());
  raw.push_back(nullptr);
  std::promise<Result<pid_t>> done;
  auto task = [&] {
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) exec_child(raw.data(), credentials, parent);
    if (pid < 0) {
      done.set_value(make_error(errno, std::string("fork: ") + std::strerror(errno)));
    } else {
      done.set_value(pid);
    }
  };
  {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return !task_ || stopping_; });
    if (stopping_) return make_error(ESHUTDOWN, "spawner is stopping");
    task_ = task;
  }
  wake_.notify_all();
  return done.get_future().get();
}

}  // namespace tpmrmd::daemon

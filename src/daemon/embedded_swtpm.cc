#include "daemon/embedded_swtpm.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "util/unique_fd.h"

namespace tpmrmd::daemon {
namespace {

bool socket_accepts(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

std::string absolute(const std::string& dir) {
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real)) return real;
  return dir;
}

}  // namespace

EmbeddedSwtpm::EmbeddedSwtpm(EmbeddedSwtpmOptions options) : options_(std::move(options)) {
  data_path_ = options_.state_dir + "/swtpm.sock";
  ctrl_path_ = options_.state_dir + "/swtpm.ctrl";
}

EmbeddedSwtpm::~EmbeddedSwtpm() { stop(); }

std::string EmbeddedSwtpm::spec() const { return "swtpm:path=" + data_path_ + ",ctrl=" + ctrl_path_; }

std::string EmbeddedSwtpm::identity() const {
  return "swtpm:unix:" + absolute(options_.state_dir) + "/swtpm.sock";
}

Result<void> EmbeddedSwtpm::start() {
  if (pid_ > 0) return {};
  if (::mkdir(options_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(errno, "cannot create state dir " + options_.state_dir + ": " + std::strerror(errno));
  }
  if (options_.run_uid && ::chown(options_.state_dir.c_str(), *options_.run_uid,
                                  options_.run_gid.value_or(static_cast<gid_t>(-1))) != 0) {
    return make_error(errno, "cannot hand state dir " + options_.state_dir + " to the --runas user: " +
                                 std::strerror(errno));
  }
  ::unlink(data_path_.c_str());
  ::unlink(ctrl_path_.c_str());
  std::vector<std::string> args = {options_.program, "socket", "--tpm2",
                                   "--tpmstate", "dir=" + options_.state_dir,
                                   "--server", "type=unixio,path=" + data_path_,
                                   "--ctrl", "type=unixio,path=" + ctrl_path_,
                                   "--flags", "not-need-init,startup-clear",
                                   "--log", "file=" + options_.state_dir + "/swtpm.log,level=1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return make_error(errno, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    // The daemon blocks or handles signals on its threads; swtpm starts with defaults.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return make_error(ECHILD, "swtpm (" + options_.program + ") exited during start-up with status " +
                                    std::to_string(status) + "; see " + options_.state_dir + "/swtpm.log");
    }
    if (socket_accepts(data_path_) && socket_accepts(ctrl_path_)) {
      spdlog::info("event=swtpm-started pid={} state_dir={}", pid_, options_.state_dir);
      return {};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop();
  return make_error(ETIMEDOUT, "swtpm did not open its sockets within 10 s");
}

bool EmbeddedSwtpm::reap_if_exited() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
  spdlog::error("event=swtpm-exited pid={} status={}", pid_, status);
  pid_ = -1;
  return true;
}

void EmbeddedSwtpm::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace tpmrmd::daemon

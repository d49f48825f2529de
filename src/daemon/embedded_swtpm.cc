#include "daemon/embedded_swtpm.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "daemon/canonical_path.h"
#include "rm/audit_log.h"
#include "util/unique_fd.h"

namespace tpmrmd::daemon {
namespace {

// swtpm_setup on a machine under emulation (the QEMU guest) takes tens of seconds; a hung one must not hang
// the daemon's start-up forever.
constexpr auto kProvisionLimit = std::chrono::seconds(300);

bool socket_accepts(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<void> write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return make_error(EIO, "cannot write " + path);
  return {};
}

// Waits for `pid` up to `limit`; SIGKILL after that. The exit status, or -1 on a timeout.
int wait_bounded(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return status;
}

// swtpm_setup execs its --tpm without a PATH search: it needs the program's full path.
std::string find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return program;
}

}  // namespace

EmbeddedSwtpm::EmbeddedSwtpm(EmbeddedSwtpmOptions options) : options_(std::move(options)) {
  data_path_ = options_.state_dir + "/swtpm.sock";
  ctrl_path_ = options_.state_dir + "/swtpm.ctrl";
}

EmbeddedSwtpm::~EmbeddedSwtpm() { stop(); }

std::string EmbeddedSwtpm::spec() const { return "swtpm:path=" + data_path_ + ",ctrl=" + ctrl_path_; }

std::string EmbeddedSwtpm::identity() const { return "swtpm:unix:" + canonical_path(data_path_); }

// The state dir and everything in it belong to swtpm's user: a swtpm started by root before the privilege drop
// and one restarted by the unprivileged daemon afterwards must both open the same 0640 state files. Files a
// root-run swtpm of an earlier version left are handed over too; symlinks are changed, never followed.
Result<void> EmbeddedSwtpm::prepare_state_dir() {
  if (::mkdir(options_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(errno, "cannot create state dir " + options_.state_dir + ": " + std::strerror(errno));
  }
  if (!options_.run_uid || ::geteuid() != 0) return {};
  const uid_t uid = *options_.run_uid;
  const gid_t gid = options_.run_gid.value_or(static_cast<gid_t>(uid));
  if (::lchown(options_.state_dir.c_str(), uid, gid) != 0) {
    return make_error(errno, "cannot hand state dir " + options_.state_dir + " to uid " + std::to_string(uid) +
                                 ": " + std::strerror(errno));
  }
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(options_.state_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (::lchown(it->path().c_str(), uid, gid) != 0) {
      return make_error(errno, "cannot hand " + it->path().string() + " to uid " + std::to_string(uid) + ": " +
                                   std::strerror(errno));
    }
  }
  if (ec) return make_error(ec.value(), "cannot list state dir " + options_.state_dir + ": " + ec.message());
  return {};
}

// swtpm_setup with configuration files of our own: Debian's defaults keep the local CA in
// /var/lib/swtpm-localca, shared machine-wide and owned by another user; ours lives in <state>/localca.
Result<void> EmbeddedSwtpm::provision() {
  const std::string ca = options_.state_dir + "/localca";
  if (::mkdir(ca.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(errno, "cannot create " + ca + ": " + std::strerror(errno));
  }
  const std::string setup_conf = ca + "/swtpm_setup.conf";
  const std::string ca_conf = ca + "/swtpm-localca.conf";
  const std::string ca_options = ca + "/swtpm-localca.options";
  const std::string log = options_.state_dir + "/swtpm_setup.log";
  const std::pair<std::string, std::string> files[] = {
      {setup_conf, "create_certs_tool = swtpm_localca\n"
                   "create_certs_tool_config = " + ca_conf + "\n"
                   "create_certs_tool_options = " + ca_options + "\n"},
      {ca_conf, "statedir = " + ca + "\n"
                "signingkey = " + ca + "/signkey.pem\n"
                "issuercert = " + ca + "/issuercert.pem\n"
                "certserial = " + ca + "/certserial\n"},
      {ca_options, "--platform-manufacturer tpmrmd\n--platform-version 2.1\n--platform-model swtpm\n"},
  };
  for (const auto& [path, text] : files) {
    if (auto r = write_file(path, text); !r) return r;
  }
  ::unlink(log.c_str());
  if (auto r = prepare_state_dir(); !r) return r;
  // --pcr-banks -: libtpms' default banks, as the unprovisioned swtpm had them (clients and tests expect sha1
  // and sha256).
  const std::vector<std::string> args = {options_.setup_program, "--tpm2",
                                         "--tpmstate", options_.state_dir,
                                         "--tpm", find_program(options_.program) + " socket",
                                         "--config", setup_conf,
                                         "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
                                         "--pcr-banks", "-",
                                         "--not-overwrite",
                                         "--logfile", log};
  const auto began = std::chrono::steady_clock::now();
  auto pid = spawner_.spawn(args, credentials());
  if (!pid) return pid.error();
  const int status = wait_bounded(*pid, kProvisionLimit);
  if (status != 0) {
    // A half-written state would pass for a provisioned one at the next start.
    ::unlink((options_.state_dir + "/tpm2-00.permall").c_str());
    return make_error(EIO, "swtpm_setup (" + options_.setup_program + ") failed with status " +
                               std::to_string(status) + "; see " + log);
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
  std::ifstream in(log);
  std::string line;
  std::string what;
  while (std::getline(in, line)) {
    if (line.rfind("Successfully created ", 0) != 0) continue;
    if (!what.empty()) what += "; ";
    what += line.substr(std::strlen("Successfully created "));
    if (!what.empty() && what.back() == '.') what.pop_back();
  }
  spdlog::info("event=swtpm-provisioned state_dir=\"{}\" ca=\"{}\" nvram=locked duration_ms={} created=\"{}\"",
               rm::log_quoted(options_.state_dir), rm::log_quoted(ca), ms, rm::log_quoted(what));
  return {};
}

Result<void> EmbeddedSwtpm::start() {
  if (pid_ > 0) return {};
  if (auto r = prepare_state_dir(); !r) return r;
  if (options_.provision && !exists(options_.state_dir + "/tpm2-00.permall")) {
    if (auto r = provision(); !r) return r;
  }
  ::unlink(data_path_.c_str());
  ::unlink(ctrl_path_.c_str());
  // The user change is ours, not swtpm's --runas: after the daemon's own drop it cannot change users any more,
  // and swtpm would create its sockets as root first.
  const std::vector<std::string> args = {options_.program, "socket", "--tpm2",
                                         "--tpmstate", "dir=" + options_.state_dir,
                                         "--server", "type=unixio,path=" + data_path_,
                                         "--ctrl", "type=unixio,path=" + ctrl_path_,
                                         "--flags", "not-need-init,startup-clear",
                                         "--seccomp", "action=kill",
                                         "--log", "file=" + options_.state_dir + "/swtpm.log,level=1"};
  auto pid = spawner_.spawn(args, credentials());
  if (!pid) return pid.error();
  pid_ = *pid;
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return make_error(ECHILD, "swtpm (" + options_.program + ") exited during start-up with status " +
                                    std::to_string(status) + "; see " + options_.state_dir + "/swtpm.log");
    }
    if (socket_accepts(data_path_) && socket_accepts(ctrl_path_)) {
      spdlog::info("event=swtpm-started pid={} uid={} state_dir=\"{}\"", pid_,
                   options_.run_uid && ::geteuid() == 0 ? *options_.run_uid : ::geteuid(),
                   rm::log_quoted(options_.state_dir));
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

#include "support/swtpm_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "util/unique_fd.h"

namespace tpmrmd::testing {
namespace {

bool tcp_port_free(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

// A port P with P and P+1 free, from a range far from swtpm's defaults (2321/2322).
int pick_port_pair() {
  std::random_device rd;
  std::mt19937 gen(rd() ^ static_cast<unsigned>(::getpid()));
  std::uniform_int_distribution<int> dist(20000, 59998);
  for (int i = 0; i < 200; ++i) {
    int p = dist(gen);
    if (tcp_port_free(p) && tcp_port_free(p + 1)) return p;
  }
  return 0;
}

bool can_connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

bool can_connect_tcp(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

}  // namespace

SwtpmProcess::SwtpmProcess(SwtpmOptions options) : options_(options) {}

SwtpmProcess::~SwtpmProcess() {
  stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Result<void> SwtpmProcess::start() {
  if (dir_.empty()) {
    std::string tmpl = (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + std::string("/swtpm-test-XXXXXX");
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) return make_error(errno, "mkdtemp failed");
    dir_ = buf.data();
    std::filesystem::create_directory(dir_ + "/state");
  }
  data_path_ = dir_ + "/data.sock";
  ctrl_path_ = dir_ + "/ctrl.sock";

  std::vector<std::string> args = {"swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + dir_ + "/state",
                                   "--log", "file=" + dir_ + "/swtpm.log,level=2"};
  if (options_.transport == SwtpmOptions::Transport::kTcp) {
    port_ = pick_port_pair();
    if (port_ == 0) return make_error(EADDRINUSE, "no free TCP port pair for swtpm");
    args.insert(args.end(), {"--server", "type=tcp,port=" + std::to_string(port_) + ",bindaddr=127.0.0.1"});
    if (options_.control_channel) {
      args.insert(args.end(), {"--ctrl", "type=tcp,port=" + std::to_string(port_ + 1) + ",bindaddr=127.0.0.1"});
    }
  } else {
    args.insert(args.end(), {"--server", "type=unixio,path=" + data_path_});
    if (options_.control_channel) args.insert(args.end(), {"--ctrl", "type=unixio,path=" + ctrl_path_});
  }
  if (options_.startup_clear) args.insert(args.end(), {"--flags", "not-need-init,startup-clear"});

  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return make_error(errno, "fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::execvp("swtpm", argv.data());
    ::_exit(127);
  }
  pid_ = pid;

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return make_error(ECHILD, "swtpm exited during start-up; log: " + log());
    }
    bool ready = options_.transport == SwtpmOptions::Transport::kTcp
                     ? can_connect_tcp(port_) && (!options_.control_channel || can_connect_tcp(port_ + 1))
                     : can_connect_unix(data_path_) && (!options_.control_channel || can_connect_unix(ctrl_path_));
    if (ready) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop();
  return make_error(ETIMEDOUT, "swtpm did not open its sockets within 10 s");
}

void SwtpmProcess::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void SwtpmProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill_hard();
}

std::string SwtpmProcess::spec() const {
  if (options_.transport == SwtpmOptions::Transport::kTcp) {
    return "swtpm:host=127.0.0.1,port=" + std::to_string(port_);
  }
  std::string s = "swtpm:path=" + data_path_;
  if (options_.control_channel) s += ",ctrl=" + ctrl_path_;
  return s;
}

std::string SwtpmProcess::tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }

std::string SwtpmProcess::log() const {
  std::ifstream in(dir_ + "/swtpm.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace tpmrmd::testing

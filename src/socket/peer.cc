#include "socket/peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; older kernels answer ENOPROTOOPT and pidfd_open is used
#endif

namespace tpmrmd::socket {
namespace {

std::string proc_comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

// The "Groups:" line of /proc/PID/status (ids as our user namespace sees them).
std::vector<gid_t> proc_groups(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::vector<gid_t> groups;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream ids(line.substr(7));
    for (unsigned long id; ids >> id;) groups.push_back(static_cast<gid_t>(id));
    break;
  }
  return groups;
}

}  // namespace

Result<rm::ClientInfo> unix_peer(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return make_error(errno, "SO_PEERCRED");
  // pid 0: the peer lives in a pid namespace we cannot see into; its ids are still the kernel's.
  if (cred.pid <= 0) return rm::ClientInfo(cred.uid, cred.gid, 0);
  return rm::ClientInfo(cred.uid, cred.gid, cred.pid, proc_groups(cred.pid), proc_comm(cred.pid));
}

rm::ClientInfo tcp_peer(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  std::string comm = "tcp";
  char text[INET6_ADDRSTRLEN] = {};
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    if (addr.ss_family == AF_INET) {
      const auto* in4 = reinterpret_cast<const sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text);
      comm += ":" + std::string(text) + ":" + std::to_string(ntohs(in4->sin_port));
    } else if (addr.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      comm += ":[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
  }
  return rm::ClientInfo(kAnonymousUid, kAnonymousGid, 0, {}, comm);
}

UniqueFd peer_pidfd(int fd, pid_t pid) {
  int pidfd = -1;
  socklen_t len = sizeof pidfd;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0) return UniqueFd(pidfd);
  if (pid <= 0) return UniqueFd();
  // Without SO_PEERPIDFD the pid could in theory have been reused between connect() and here; the process
  // then named is alive and sharing that peer's uid is checked by the caller.
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

}  // namespace tpmrmd::socket

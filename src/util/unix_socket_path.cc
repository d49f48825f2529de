#include "util/unix_socket_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/unique_fd.h"

namespace tpmrmd {

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error(ENAMETOOLONG, "socket path '" + path + "' is empty or too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT ? Result<void>{} : make_error(errno, "lstat " + path);
  if (!S_ISSOCK(st.st_mode)) return make_error(EEXIST, "refusing to replace " + path + ": it is not a socket");
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return make_error(errno, "socket");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    return make_error(EADDRINUSE, path + " is served by another running process");
  }
  if (errno != ECONNREFUSED) return make_error(errno, "probing the existing socket " + path);
  if (::unlink(path.c_str()) != 0) return make_error(errno, "removing the stale socket " + path);
  return {};
}

}  // namespace tpmrmd

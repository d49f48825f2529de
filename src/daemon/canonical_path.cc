#include "daemon/canonical_path.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

namespace tpmrmd::daemon {

std::string canonical_path(const std::string& path) {
  if (path.empty()) return path;
  std::string absolute = path;
  if (absolute.front() != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof(cwd))) absolute = std::string(cwd) + "/" + path;
  }
  // Walk back from the full path to the first prefix that resolves; '..' in the unresolved rest stays as is.
  std::string head = absolute;
  std::string tail;
  while (true) {
    char real[PATH_MAX];
    if (::realpath(head.c_str(), real)) {
      std::string out = real;
      if (!tail.empty()) out += (out == "/" ? "" : "/") + tail;
      return out;
    }
    const auto slash = head.find_last_of('/');
    if (slash == std::string::npos || head == "/") return absolute;
    std::string last = head.substr(slash + 1);
    if (!last.empty()) tail = tail.empty() ? last : last + "/" + tail;
    head = slash == 0 ? "/" : head.substr(0, slash);
  }
}

std::string canonical_identity(const std::string& identity) {
  const auto slash = identity.find('/');
  if (slash == std::string::npos) return identity;
  return identity.substr(0, slash) + canonical_path(identity.substr(slash));
}

}  // namespace tpmrmd::daemon

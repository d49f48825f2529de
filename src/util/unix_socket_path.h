// Unix socket paths for the daemon's listeners (the control socket, the socket front-end): the address, and a
// socket file an earlier daemon left behind.
#pragma once

#include <sys/un.h>

#include <string>

#include "util/result.h"

namespace tpmrmd {

// ENAMETOOLONG for an empty path or one that does not fit sun_path.
Result<sockaddr_un> unix_address(const std::string& path);

// Nothing at `path`: fine. A socket nobody answers on: removed. A live socket: EADDRINUSE (another daemon's).
// Anything else: EEXIST, never replaced.
Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& addr);

}  // namespace tpmrmd

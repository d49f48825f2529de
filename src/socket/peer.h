// Who is on the other end of an accepted socket, as the RM's quotas, command policy and audit trail need it.
//
// A unix socket has kernel-given credentials (SO_PEERCRED: the connecting process's pid, uid and gid as this
// daemon's namespaces see them), plus its supplementary groups and comm from /proc. TCP has none: every TCP
// client is "anyone", kAnonymousUid/kAnonymousGid (the kernel's overflow ids, which name no real user), so the
// per-uid quotas and the command policy treat it as an unprivileged stranger. It is never root.
#pragma once

#include <sys/types.h>

#include <string>

#include "rm/dispatcher.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace tpmrmd::socket {

inline constexpr uid_t kAnonymousUid = 65534;
inline constexpr gid_t kAnonymousGid = 65534;

// A unix socket's peer; EINVAL-free: fails only when the kernel gives no credentials.
Result<rm::ClientInfo> unix_peer(int fd);

// A TCP peer: the anonymous ids, comm "tcp:ADDRESS:PORT" for the log lines.
rm::ClientInfo tcp_peer(int fd);

// A descriptor that refers to the peer process itself (SO_PEERPIDFD, else pidfd_open of its pid): readable
// once that process has exited. Invalid when the kernel cannot say (no pid in our namespace, a gone process).
UniqueFd peer_pidfd(int fd, pid_t pid);

}  // namespace tpmrmd::socket

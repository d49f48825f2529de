// Who may use which verb of the control socket: decided from the peer's credentials (SO_PEERCRED, and its
// supplementary groups from /proc/PID/status), as a pure function so it is tested without sockets.
//
// Root may use every verb. Members of the node's group (--group), by primary or supplementary group, may use
// the read-only verbs. Everyone else is refused (the socket's 0660 mode normally stops them at connect()).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tpmrmd::daemon {

enum class ControlAccess { kNone, kReadOnly, kAll };

struct ControlPeer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary
};

// `group`: the node's group; nullopt when none was given (then only root is allowed).
ControlAccess control_access(const ControlPeer& peer, std::optional<gid_t> group);

// status, clients, metrics: read-only. flush-abandoned, log-level: root only. Unknown verbs: not read-only.
bool is_read_only_verb(std::string_view verb);

// Whether `access` may run `verb`; if not, the error message the client gets.
std::optional<std::string> refuse_verb(const ControlPeer& peer, ControlAccess access, std::string_view verb);

// The supplementary groups of `pid` from the "Groups:" line of /proc/PID/status; nullopt if it cannot be read.
std::optional<std::vector<gid_t>> process_groups(pid_t pid);

}  // namespace tpmrmd::daemon

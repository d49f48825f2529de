#include "daemon/control_access.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace tpmrmd::daemon {

ControlAccess control_access(const ControlPeer& peer, std::optional<gid_t> group) {
  if (peer.uid == 0) return ControlAccess::kAll;
  if (group && (peer.gid == *group || std::find(peer.groups.begin(), peer.groups.end(), *group) != peer.groups.end())) {
    return ControlAccess::kReadOnly;
  }
  return ControlAccess::kNone;
}

bool is_read_only_verb(std::string_view verb) { return verb == "status" || verb == "clients" || verb == "metrics"; }

std::optional<std::string> refuse_verb(const ControlPeer& peer, ControlAccess access, std::string_view verb) {
  switch (access) {
    case ControlAccess::kAll:
      return std::nullopt;
    case ControlAccess::kReadOnly:
      if (is_read_only_verb(verb)) return std::nullopt;
      return fmt::format("permission denied: '{}' changes the daemon and is for root only (uid {} may use the "
                         "read-only verbs status, clients, metrics)",
                         verb, peer.uid);
    case ControlAccess::kNone:
      break;
  }
  return fmt::format("permission denied: uid {} is neither root nor a member of the TPM node's group", peer.uid);
}

std::optional<std::vector<gid_t>> process_groups(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream fields(line.substr(7));
    std::vector<gid_t> groups;
    unsigned long g = 0;
    while (fields >> g) groups.push_back(static_cast<gid_t>(g));
    return groups;
  }
  return std::nullopt;
}

}  // namespace tpmrmd::daemon

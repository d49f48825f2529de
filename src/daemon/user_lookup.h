// Users and groups named on the command line (--owner, --group, --runas, --swtpm-user): names or numbers.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "util/result.h"

namespace tpmrmd::daemon {

// A user name, or a uid. A uid without a passwd entry has no primary group to take: `primary_gid` gets the same
// number (as systemd's DynamicUser= does), never the gid 0 the daemon started with. EINVAL for an unknown name.
Result<uid_t> lookup_user(const std::string& name, gid_t* primary_gid = nullptr);
// A group name, or a gid. EINVAL for an unknown name.
Result<gid_t> lookup_group(const std::string& name);

struct RunAs {
  uid_t uid;
  gid_t gid;
};

// --runas: nothing for "", else the user and its primary group (see lookup_user()). Root (uid or gid 0) is
// refused: dropping to it would drop nothing.
Result<std::optional<RunAs>> runas_user(const std::string& user);

// --swtpm-user: `user`, or the daemon's --runas user when empty. With --runas it must be that user: the
// unprivileged daemon restarts swtpm as itself.
Result<std::optional<RunAs>> swtpm_user(const std::string& user, const std::optional<RunAs>& daemon_user);

}  // namespace tpmrmd::daemon

// Who is opening the device, as the command policy and the audit trail need it: the request's uid, gid and
// pid, the opener's supplementary groups and its comm. Read once per open(), not per command.
#pragma once

#include <fuse_lowlevel.h>

#include <string>

#include "rm/dispatcher.h"

namespace tpmrmd::cuse {

rm::ClientInfo client_info(fuse_req_t req);

// /proc/PID/comm without its newline; empty if the process is gone or /proc is not mounted.
std::string process_comm(pid_t pid);

}  // namespace tpmrmd::cuse

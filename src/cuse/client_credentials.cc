#define FUSE_USE_VERSION 31
#include "cuse/client_credentials.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <vector>

namespace tpmrmd::cuse {

std::string process_comm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

rm::ClientInfo client_info(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  rm::ClientInfo client{ctx->uid, ctx->gid, ctx->pid};
  // libfuse reads them from /proc/PID/task/PID/status; it returns how many there are, which may exceed the
  // buffer it was given.
  std::vector<gid_t> groups(64);
  int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  if (n > static_cast<int>(groups.size())) {
    groups.resize(static_cast<std::size_t>(n));
    n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  }
  if (n >= 0) {
    groups.resize(std::min(static_cast<std::size_t>(n), groups.size()));
    client.groups = std::move(groups);
  } else {
    // The opener exited already, or /proc is unavailable: it counts as in no supplementary group.
    spdlog::debug("event=groups-unknown pid={} error=\"{}\"", ctx->pid, std::strerror(-n));
  }
  client.comm = process_comm(ctx->pid);
  return client;
}

}  // namespace tpmrmd::cuse

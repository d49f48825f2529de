#include "daemon/user_lookup.h"

#include <grp.h>
#include <pwd.h>

#include <cerrno>
#include <cstdlib>

namespace tpmrmd::daemon {
namespace {

// Decimal digits only, and small enough not to be the "no change" id (uid_t)-1.
std::optional<unsigned long> plain_id(const std::string& text) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return {};
  const unsigned long n = std::strtoul(text.c_str(), nullptr, 10);
  if (n >= static_cast<unsigned long>(static_cast<uid_t>(-1))) return {};
  return n;
}

}  // namespace

Result<uid_t> lookup_user(const std::string& name, gid_t* primary_gid) {
  const struct passwd* pw = ::getpwnam(name.c_str());
  if (!pw) {
    auto n = plain_id(name);
    if (!n) return make_error(EINVAL, "unknown user '" + name + "'");
    pw = ::getpwuid(static_cast<uid_t>(*n));
    if (!pw) {
      if (primary_gid) *primary_gid = static_cast<gid_t>(*n);
      return static_cast<uid_t>(*n);
    }
  }
  if (primary_gid) *primary_gid = pw->pw_gid;
  return pw->pw_uid;
}

Result<gid_t> lookup_group(const std::string& name) {
  if (const struct group* gr = ::getgrnam(name.c_str())) return gr->gr_gid;
  auto n = plain_id(name);
  if (!n) return make_error(EINVAL, "unknown group '" + name + "'");
  return static_cast<gid_t>(*n);
}

Result<std::optional<RunAs>> runas_user(const std::string& user) {
  if (user.empty()) return std::optional<RunAs>{};
  gid_t gid = 0;
  auto uid = lookup_user(user, &gid);
  if (!uid) return uid.error();
  if (*uid == 0 || gid == 0) {
    return make_error(EINVAL, "user '" + user + "' is root or has group 0; a dropped daemon must not keep either");
  }
  return std::optional<RunAs>(RunAs{*uid, gid});
}

Result<std::optional<RunAs>> swtpm_user(const std::string& user, const std::optional<RunAs>& daemon_user) {
  if (user.empty()) return daemon_user;
  auto as = runas_user(user);
  if (!as) return as.error();
  if (daemon_user && ((*as)->uid != daemon_user->uid || (*as)->gid != daemon_user->gid)) {
    return make_error(EINVAL, "--swtpm-user '" + user + "' must be the --runas user: after the privilege drop "
                              "the daemon restarts swtpm as itself");
  }
  return as;
}

}  // namespace tpmrmd::daemon

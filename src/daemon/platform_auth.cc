#include "daemon/platform_auth.h"

#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "tpm/commands.h"
#include "tpm/rc_names.h"
#include "tpm/responses.h"

namespace tpmrmd::daemon {

Result<PlatformAuth> PlatformAuth::random() {
  PlatformAuth auth;
  std::size_t have = 0;
  while (have < kSize) {
    const ssize_t n = ::getrandom(auth.secret_.data() + have, kSize - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(errno ? errno : EIO, std::string("getrandom: ") + std::strerror(errno));
    have += static_cast<std::size_t>(n);
  }
  return auth;
}

PlatformAuth::~PlatformAuth() { explicit_bzero(secret_.data(), secret_.size()); }

Result<void> PlatformAuth::apply(chip::Chip& chip) const {
  auto change = [&](ByteSpan password) -> Result<TPM2_RC> {
    Bytes command = tpm::make_hierarchy_change_auth(TPM2_RH_PLATFORM, password, secret_);
    auto response = chip.transmit(command);
    explicit_bzero(command.data(), command.size());
    if (!response) return response.error();
    return tpm::response_code(*response);
  };
  auto rc = change({});
  if (rc && tpm::rc_base(*rc) == TPM2_RC_BAD_AUTH) {
    rc = change(secret_);
    if (rc && *rc == TPM2_RC_SUCCESS) {
      spdlog::info("event=platform-auth-set hierarchy=platform secret=random already=yes");
      return {};
    }
  }
  if (!rc) return make_error(rc.error().code, "cannot set the platform auth: " + rc.error().message);
  if (*rc != TPM2_RC_SUCCESS) {
    return make_error(EIO, "cannot set the platform auth: TPM2_HierarchyChangeAuth answered " + tpm::rc_name(*rc));
  }
  spdlog::info("event=platform-auth-set hierarchy=platform secret=random");
  return {};
}

}  // namespace tpmrmd::daemon

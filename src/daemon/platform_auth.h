// Platform authorization as firmware leaves it: a random secret only the platform knows. A TPM starts each boot
// (TPM2_Startup(CLEAR)) with an empty platformAuth and firmware sets it before the OS runs, so no OS program can
// act as the platform (TPM2_Clear through the platform hierarchy, platform NV indices, disabling hierarchies).
// The embedded swtpm has no firmware: tpmrmd plays that part for every generation, before any client is
// served. The secret lives in this object only, is never written or logged, and is wiped on destruction.
// External backends are left alone: their platform auth belongs to their own firmware (or their owner).
#pragma once

#include <array>
#include <cstdint>

#include "chip/chip.h"
#include "util/result.h"

namespace tpmrmd::daemon {

class PlatformAuth {
 public:
  static constexpr std::size_t kSize = 32;

  // A fresh secret from getrandom(2).
  static Result<PlatformAuth> random();
  ~PlatformAuth();
  PlatformAuth(const PlatformAuth& other) = default;
  PlatformAuth& operator=(const PlatformAuth&) = delete;

  // TPM2_HierarchyChangeAuth(TPM_RH_PLATFORM) to the secret, authorized with the empty auth a TPM has after
  // TPM2_Startup(CLEAR); when that is refused because the secret is already set (a TPM that was not reset),
  // authorized with the secret itself.
  Result<void> apply(chip::Chip& chip) const;

 private:
  PlatformAuth() = default;
  std::array<std::uint8_t, kSize> secret_{};
};

}  // namespace tpmrmd::daemon

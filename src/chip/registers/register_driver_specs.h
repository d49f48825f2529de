// Backend specs of the register-level drivers, for the driver factory:
//
//   tis:mmio=ADDR[,locality=N]        TIS FIFO over /dev/mem at ADDR (e.g. 0xFED40000), window 0x5000
//   crb:mmio=ADDR[,size=BYTES]        CRB over /dev/mem at ADDR, window BYTES (default 0x1000)
//   tis:emulated[,vid=V],backend=SPEC the in-process emulated TIS device in front of the backend SPEC
//   crb:emulated[,vid=V],backend=SPEC the in-process emulated CRB device in front of the backend SPEC
//
// `backend=` comes last and takes the whole rest of the string, commas included, so any spec nests:
// `tis:emulated,backend=swtpm:path=/run/swtpm.sock,ctrl=/run/swtpm.ctrl`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "chip/backend_spec.h"
#include "chip/driver.h"
#include "chip/registers/register_bus.h"
#include "util/result.h"

namespace tpmrmd::chip {

// Builds the register device for "KIND:emulated" specs around `backend`. Emulated devices are test equipment:
// the daemon installs none (such specs are refused), tests and benches install theirs.
using EmulatedBusMaker = std::function<Result<std::shared_ptr<RegisterBus>>(
    std::string_view kind, std::optional<std::uint16_t> vid, std::unique_ptr<Driver> backend)>;
void set_emulated_bus_maker(EmulatedBusMaker maker);

Result<std::unique_ptr<Driver>> make_tis_driver(const BackendSpec& spec);
Result<std::unique_ptr<Driver>> make_crb_driver(const BackendSpec& spec);

inline constexpr const char* kTisSpecUsage = "tis:mmio=ADDR[,locality=N] | tis:emulated[,vid=V],backend=SPEC";
inline constexpr const char* kCrbSpecUsage = "crb:mmio=ADDR[,size=BYTES] | crb:emulated[,vid=V],backend=SPEC";

}  // namespace tpmrmd::chip

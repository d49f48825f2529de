#include "support/emulated_register_specs.h"

#include "chip/registers/register_driver_specs.h"
#include "support/emulated_crb_device.h"
#include "support/emulated_tis_device.h"

namespace tpmrmd::chip {

void install_emulated_register_specs() {
  set_emulated_bus_maker([](std::string_view kind, std::optional<std::uint16_t> vid,
                            std::unique_ptr<Driver> backend) -> Result<std::shared_ptr<RegisterBus>> {
    if (kind == "tis") {
      EmulatedTisOptions options;
      if (vid) options.vid = *vid;
      return std::shared_ptr<RegisterBus>(std::make_shared<EmulatedTisDevice>(std::move(backend), options));
    }
    EmulatedCrbOptions options;
    if (vid) options.vid = *vid;
    return std::shared_ptr<RegisterBus>(std::make_shared<EmulatedCrbDevice>(std::move(backend), options));
  });
}

}  // namespace tpmrmd::chip

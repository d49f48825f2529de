// Turns a backend spec string into a Driver. New transports add one entry to the table in driver_factory.cc.
#pragma once

#include <memory>
#include <string_view>

#include "chip/driver.h"
#include "util/result.h"

namespace tpmrmd::chip {

Result<std::unique_ptr<Driver>> make_driver(std::string_view spec);

// One line per backend kind, e.g. "swtpm:host=H,port=P | swtpm:path=SOCK[,ctrl=SOCK]", for --help texts.
std::string backend_spec_help();

}  // namespace tpmrmd::chip

// Fuzzes the TIS FIFO driver against a device whose every register read the input chooses (fuzz_bus.h): open(),
// then up to four exchange() calls with small valid commands, in virtual time. Checked (register_scenario.cc):
// no crash, hang or access outside the window; a successful response is framed (header size = length, at
// most the driver's bound); every failure is an errno the driver documents.
#include <fuzzer/FuzzedDataProvider.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "chip/registers/tis_fifo_driver.h"
#include "fuzz_bus.h"
#include "register_scenario.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tpmrmd;
  FuzzedDataProvider in(data, size);
  const auto scenario = fuzz::Scenario::consume(in);
  auto bus = std::make_shared<fuzz::FuzzBus>(in, scenario.window_size(chip::tis_reg::kWindowSize), 0xFED40000);
  (void)fuzz::run_tis(bus, std::make_shared<fuzz::VirtualClock>(), scenario);
  return 0;
}

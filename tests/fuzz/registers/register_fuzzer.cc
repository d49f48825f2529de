// Fuzzes a register driver against a device whose every register read the input chooses (fuzz_bus.h): open(),
// then up to four exchange() calls with small valid commands, in virtual time. Checked (register_scenario.cc):
// no crash, hang or access outside the window; a successful response is framed (header size = length, at
// most the driver's bound); every failure is an errno the driver documents.
//
// Built twice (meson.build): tis_fuzzer for the TIS FIFO driver, crb_fuzzer (FUZZ_CRB) for the CRB driver.
#include <fuzzer/FuzzedDataProvider.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "chip/registers/crb_driver.h"
#include "chip/registers/tis_fifo_driver.h"
#include "fuzz_bus.h"
#include "register_scenario.h"

namespace {
#ifdef FUZZ_CRB
constexpr std::size_t kWindowSize = tpmrmd::chip::crb_reg::kWindowSize;
constexpr auto kRun = tpmrmd::fuzz::run_crb;
#else
constexpr std::size_t kWindowSize = tpmrmd::chip::tis_reg::kWindowSize;
constexpr auto kRun = tpmrmd::fuzz::run_tis;
#endif
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tpmrmd;
  FuzzedDataProvider in(data, size);
  const auto scenario = fuzz::Scenario::consume(in);
  auto bus = std::make_shared<fuzz::FuzzBus>(in, scenario.window_size(kWindowSize), 0xFED40000);
  (void)kRun(bus, std::make_shared<fuzz::VirtualClock>(), scenario);
  return 0;
}

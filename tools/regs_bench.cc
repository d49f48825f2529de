// regs_bench: per-command cost of the register-level path (our TIS FIFO / CRB driver -> emulated device ->
// swtpm) next to the direct swtpm socket path, on the same swtpm. Prints timings; asserts nothing.
//
//   regs_bench --tpm swtpm:path=/run/swtpm.sock[,ctrl=...] [--commands 2000]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "support/tpm_commands.h"
#include "chip/chip.h"
#include "chip/registers/crb_driver.h"
#include "chip/driver_factory.h"
#include "support/emulated_crb_device.h"
#include "support/emulated_tis_device.h"
#include "chip/registers/tis_fifo_driver.h"
#include "tpm/rc_names.h"
#include "tpm/responses.h"

namespace {

using namespace tpmrmd;
using Clock = std::chrono::steady_clock;

struct Path {
  std::string name;
  std::function<Result<std::unique_ptr<chip::Driver>>()> open;
  std::function<std::uint64_t()> accesses;  // register accesses so far (0 for the socket path)
};

int run(const Path& path, const std::string& label, const Bytes& command, int count) {
  auto driver = path.open();
  if (!driver) {
    fmt::print(stderr, "{}: {}\n", path.name, describe(driver.error()));
    return 1;
  }
  chip::Chip chip(std::move(*driver));
  if (auto s = chip.startup(); !s) {
    fmt::print(stderr, "{}: start-up: {}\n", path.name, describe(s.error()));
    return 1;
  }
  for (int i = 0; i < 20; ++i) (void)chip.transmit(command);  // warm-up
  std::vector<double> us;
  us.reserve(count);
  const auto accesses_before = path.accesses();
  for (int i = 0; i < count; ++i) {
    const auto t0 = Clock::now();
    auto r = chip.transmit(command);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    auto rc = r ? tpm::response_code(*r) : Result<TPM2_RC>(r.error());
    if (!rc || *rc != TPM2_RC_SUCCESS) {
      fmt::print(stderr, "{}: command failed: {}\n", path.name, rc ? tpm::rc_name(*rc) : describe(rc.error()));
      return 1;
    }
  }
  const auto accesses = path.accesses() - accesses_before;
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  fmt::print("{:<26} {:<14} n={:<6} mean={:8.1f} us  median={:8.1f} us  p99={:8.1f} us  register accesses/cmd={:.1f}\n",
             path.name, label, count, sum / count, us[us.size() / 2], us[us.size() * 99 / 100],
             double(accesses) / count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Per-command cost of the TIS/CRB register path vs the swtpm socket path"};
  std::string spec;
  int count = 2000;
  app.add_option("--tpm", spec, "backend spec of a swtpm (swtpm:path=... or swtpm:host=...,port=...)")->required();
  app.add_option("--commands", count, "commands per measurement")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  std::shared_ptr<chip::EmulatedTisDevice> tis_device;
  std::shared_ptr<chip::EmulatedCrbDevice> crb_device;
  const std::vector<Path> paths = {
      {"swtpm socket (direct)", [&] { return chip::make_driver(spec); }, [] { return std::uint64_t{0}; }},
      {"TIS FIFO -> emulated TIS",
       [&]() -> Result<std::unique_ptr<chip::Driver>> {
         auto backend = chip::make_driver(spec);
         if (!backend) return backend.error();
         tis_device = std::make_shared<chip::EmulatedTisDevice>(std::move(*backend));
         auto d = chip::TisFifoDriver::open(tis_device);
         if (!d) return d.error();
         return std::unique_ptr<chip::Driver>(std::move(*d));
       },
       [&] { return tis_device->counters().accesses; }},
      {"CRB -> emulated CRB",
       [&]() -> Result<std::unique_ptr<chip::Driver>> {
         auto backend = chip::make_driver(spec);
         if (!backend) return backend.error();
         crb_device = std::make_shared<chip::EmulatedCrbDevice>(std::move(*backend));
         auto d = chip::CrbDriver::open(crb_device);
         if (!d) return d.error();
         return std::unique_ptr<chip::Driver>(std::move(*d));
       },
       [&] { return crb_device->counters().accesses; }},
  };
  const std::pair<const char*, Bytes> commands[] = {
      {"GetRandom(16)", testing::get_random(16)},
      {"GetRandom(48)", testing::get_random(48)},
  };
  for (const auto& [label, command] : commands) {
    for (const auto& path : paths) {
      // One path at a time: swtpm serves one connection at a time, so each chip (and device) is gone before the
      // next opens.
      if (run(path, label, command, count) != 0) return 1;
      tis_device.reset();
      crb_device.reset();
    }
  }
  return 0;
}

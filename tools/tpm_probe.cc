// tpm-probe: starts up a TPM through tpmrmd's access layer and prints what start-up learned.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <iostream>

#include "chip/chip.h"
#include "chip/driver_factory.h"

namespace {

std::string family_text(std::uint32_t family) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) {
    char c = static_cast<char>((family >> shift) & 0xff);
    if (c) s.push_back(c);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tpmrmd;
  CLI::App app{"Start up a TPM through tpmrmd's TPM access layer and print its identity and the properties a "
               "resource manager needs."};
  std::string spec;
  bool json = false;
  bool verbose = false;
  bool shutdown = false;
  app.add_option("--tpm", spec, "Backend spec:\n" + chip::backend_spec_help())->required();
  app.add_flag("--json", json, "Print JSON instead of text");
  app.add_flag("--shutdown", shutdown, "Send TPM2_Shutdown(CLEAR) when done (default: leave the TPM running)");
  app.add_flag("-v,--verbose", verbose, "Log start-up steps to stderr");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(verbose ? spdlog::level::info : spdlog::level::warn);

  auto driver = chip::make_driver(spec);
  if (!driver) {
    std::cerr << "tpm-probe: " << describe(driver.error()) << "\n";
    return 1;
  }
  chip::Chip chip(std::move(*driver));
  if (auto started = chip.startup(); !started) {
    std::cerr << "tpm-probe: start-up of " << spec << " failed: " << describe(started.error()) << "\n";
    return 1;
  }
  const auto& info = chip.info();
  auto counters = chip.counters();
  if (json) {
    nlohmann::json j = {
        {"backend", chip.description()},
        {"identity", chip.identity()},
        {"manufacturer", info.manufacturer},
        {"vendor_string", info.vendor_string},
        {"firmware_version", fmt::format("{}.{}.{}.{}", info.firmware_version >> 48, (info.firmware_version >> 32) & 0xffff,
                                         (info.firmware_version >> 16) & 0xffff, info.firmware_version & 0xffff)},
        {"family", family_text(info.family)},
        {"revision", info.revision},
        {"max_command_size", info.max_command_size},
        {"max_response_size", info.max_response_size},
        {"max_object_context", info.max_object_context},
        {"max_session_context", info.max_session_context},
        {"hr_transient_min", info.hr_transient_min},
        {"hr_loaded_min", info.hr_loaded_min},
        {"active_sessions_max", info.active_sessions_max},
        {"context_gap_max", info.context_gap_max},
        {"total_commands", info.total_commands},
        {"commands", info.commands.size()},
        {"startup_sent", counters.startups > 0},
        {"startup_commands", counters.commands},
    };
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format(
        "backend:            {}\n"
        "identity:           {}\n"
        "manufacturer:       {} ({})\n"
        "family / revision:  {} / {}\n"
        "firmware:           {:#018x}\n"
        "max command/resp:   {} / {} bytes\n"
        "object slots:       {} (HR_TRANSIENT_MIN)\n"
        "session slots:      {} loaded (HR_LOADED_MIN), {} active (ACTIVE_SESSIONS_MAX)\n"
        "context gap max:    {:#x}\n"
        "max context size:   object {} / session {} bytes\n"
        "commands:           {} in the command table (TOTAL_COMMANDS {})\n"
        "start-up:           {} ({} commands sent)\n",
        chip.description(), chip.identity(), info.manufacturer, info.vendor_string, family_text(info.family),
        info.revision, info.firmware_version, info.max_command_size, info.max_response_size, info.hr_transient_min,
        info.hr_loaded_min, info.active_sessions_max, info.context_gap_max, info.max_object_context,
        info.max_session_context, info.commands.size(), info.total_commands,
        counters.startups ? "TPM2_Startup(CLEAR) sent by tpm-probe" : "TPM was already started", counters.commands);
  }
  chip.unregister(shutdown ? chip::ShutdownMode::kClear : chip::ShutdownMode::kNone);
  return 0;
}

// rm_scale_bench: the RM's own per-command cost as the number of objects it manages grows. The TPM is the
// in-memory fake (3 object slots), so what is measured is the RM: admission, residency (LRU eviction, loads,
// saves) and response mapping, not a TPM's cryptography.
//
// One connection cycles ReadPublic over a working set of keys larger than the TPM's slots (every command evicts
// one key and loads another); beside it, idle keys that are never used. The per-command time should not depend
// on how many idle keys there are.
//
//   rm_scale_bench [--idle 0,1000,10000] [--working-set 8] [--commands 20000] [--idle-connections 1]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "rm/resource_manager.h"
#include "support/fake_tpm.h"
#include "support/tpm_commands.h"

namespace {

using namespace tpmrmd;
using Clock = std::chrono::steady_clock;

struct Settings {
  std::vector<std::size_t> idle = {0, 1000, 10000};
  std::size_t working_set = 8;
  std::size_t commands = 20000;
  std::size_t idle_connections = 1;  // the idle keys are spread over this many connections of their own
};

bool succeeded(const Result<Bytes>& r) { return r && testing::rc_of(*r) == TPM2_RC_SUCCESS; }

std::vector<TPM2_HANDLE> make_keys(rm::ResourceManager& rm, rm::ConnectionId id, std::size_t n) {
  std::vector<TPM2_HANDLE> out;
  for (std::size_t i = 0; i < n; ++i) {
    auto r = rm.execute(id, testing::create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(i)));
    if (!succeeded(r)) {
      std::fprintf(stderr, "CreatePrimary %zu failed\n", i);
      std::exit(1);
    }
    out.push_back(testing::handle_of(*r));
  }
  return out;
}

// Microseconds per ReadPublic with `idle` unused keys beside the working set.
double measure(const Settings& s, std::size_t idle) {
  testing::FakeTpm tpm;
  rm::RmOptions options;
  options.max_objects_per_connection = static_cast<std::uint32_t>(idle + s.working_set + 1);
  rm::ResourceManager rm(tpm, options);
  const std::size_t per_connection = s.idle_connections ? (idle + s.idle_connections - 1) / s.idle_connections : 0;
  for (std::size_t made = 0, c = 0; made < idle; ++c) {
    auto id = rm.open(rm::ClientInfo{1000 + static_cast<uid_t>(c), 0, 0});
    if (!id) std::exit(1);
    const std::size_t n = std::min(per_connection, idle - made);
    make_keys(rm, *id, n);
    made += n;
  }
  auto active = rm.open(rm::ClientInfo{0, 0, 0});
  if (!active) std::exit(1);
  const auto keys = make_keys(rm, *active, s.working_set);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < s.commands; ++i) {
    if (!succeeded(rm.execute(*active, testing::read_public(keys[i % keys.size()])))) {
      std::fprintf(stderr, "ReadPublic failed at %zu\n", i);
      std::exit(1);
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return seconds * 1e6 / double(s.commands);
}

}  // namespace

int main(int argc, char** argv) {
  setenv("TSS2_LOG", "all+NONE", 0);
  Settings s;
  CLI::App app{"rm_scale_bench: the RM's per-command cost (fake TPM) as the number of idle objects grows"};
  app.add_option("--idle", s.idle, "Idle object counts to measure at")->delimiter(',')->capture_default_str();
  app.add_option("--working-set", s.working_set, "Keys the measured connection cycles over (> 3 slots)")
      ->check(CLI::Range(4, 200))
      ->capture_default_str();
  app.add_option("--commands", s.commands, "ReadPublic commands per measurement")->capture_default_str();
  app.add_option("--idle-connections", s.idle_connections, "Connections (one uid each) holding the idle keys")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::printf("%-10s %s\n", "idle", "us/command (ReadPublic, one eviction + one load each)");
  for (std::size_t idle : s.idle) std::printf("%-10zu %.2f\n", idle, measure(s, idle));
  return 0;
}

// rm_bench: TPM traffic and latency of the RM against a real TPM, next to the kernel RM's algorithm replayed on
// the same chip (ContextLoad + command + ContextSave + FlushContext per object use).
//
//   rm_bench --tpm swtpm:path=/run/swtpm.sock[,ctrl=...] [--uses 1000] [--keys 6] [--connections 2]
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "support/tpm_commands.h"
#include "rm/resource_manager.h"
#include "daemon/chip_port.h"
#include "rm/tpm_port.h"
#include "chip/chip.h"
#include "chip/driver_factory.h"
#include "tpm/commands.h"
#include "tpm/rc_names.h"
#include "tpm/responses.h"

namespace {

using namespace tpmrmd;
using Clock = std::chrono::steady_clock;

struct Measure {
  std::uint64_t client = 0;
  std::uint64_t tpm = 0;
  double seconds = 0;
};

void print(const char* name, const char* algorithm, const Measure& m) {
  std::printf("%-28s %-8s client=%-7llu tpm=%-7llu tpm/client=%.2f  %.1f us/client command\n", name, algorithm,
              static_cast<unsigned long long>(m.client), static_cast<unsigned long long>(m.tpm),
              m.client ? double(m.tpm) / double(m.client) : 0.0, m.client ? m.seconds * 1e6 / double(m.client) : 0.0);
}

bool check(const Result<Bytes>& r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, describe(r.error()).c_str());
    return false;
  }
  auto rc = tpm::response_code(*r);
  if (!rc || *rc != TPM2_RC_SUCCESS) {
    const std::string why = rc ? "rc " + tpm::rc_name(*rc) : describe(rc.error());
    std::fprintf(stderr, "%s: %s\n", what, why.c_str());
    return false;
  }
  return true;
}

// The TPMS_CONTEXT of a ContextSave response that check() has passed.
bool take_context(const Bytes& response, Bytes& blob) {
  auto context = tpm::context_from_save_response(response);
  if (!context) {
    std::fprintf(stderr, "ContextSave: %s\n", describe(context.error()).c_str());
    return false;
  }
  blob = std::move(*context);
  return true;
}

// `connections` x `keys` keys, each used `uses` times round-robin, through the RM.
bool bench_rm(rm::TpmPort& port, int connections, int keys, int uses, Measure& out) {
  rm::ResourceManager rm(port);
  std::vector<rm::ConnectionId> conns;
  std::vector<std::vector<TPM2_HANDLE>> handles(connections);
  for (int c = 0; c < connections; ++c) {
    conns.push_back(*rm.open(rm::ClientInfo{}));
    for (int k = 0; k < keys; ++k) {
      auto r = rm.execute(conns[c], testing::create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(c * 32 + k)));
      if (!check(r, "CreatePrimary")) return false;
      handles[c].push_back(testing::handle_of(*r));
    }
  }
  const auto before = rm.counters();
  const auto start = Clock::now();
  for (int u = 0; u < uses; ++u) {
    for (int k = 0; k < keys; ++k) {
      for (int c = 0; c < connections; ++c) {
        if (!check(rm.execute(conns[c], testing::read_public(handles[c][k])), "ReadPublic")) return false;
      }
    }
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto after = rm.counters();
  out.client = static_cast<std::uint64_t>(uses) * keys * connections;
  out.tpm = after.tpm_commands() - before.tpm_commands();
  return true;
}

// The kernel's algorithm for the same workload on the raw chip: nothing stays loaded between commands.
bool bench_kernel(chip::Chip& chip, int connections, int keys, int uses, Measure& out) {
  std::vector<Bytes> blobs;
  for (int i = 0; i < connections * keys; ++i) {
    auto r = chip.transmit(testing::create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(100 + i)));
    if (!check(r, "CreatePrimary")) return false;
    TPM2_HANDLE h = testing::handle_of(*r);
    auto saved = chip.transmit(tpm::make_context_save(h));
    if (!check(saved, "ContextSave")) return false;
    if (!take_context(*saved, blobs.emplace_back())) return false;
    if (!check(chip.transmit(tpm::make_flush_context(h)), "FlushContext")) return false;
  }
  const auto before = chip.counters().commands;
  const auto start = Clock::now();
  for (int u = 0; u < uses; ++u) {
    for (auto& blob : blobs) {
      auto loaded = chip.transmit(tpm::make_context_load(blob));
      if (!check(loaded, "ContextLoad")) return false;
      TPM2_HANDLE h = testing::handle_of(*loaded);
      if (!check(chip.transmit(testing::read_public(h)), "ReadPublic")) return false;
      auto saved = chip.transmit(tpm::make_context_save(h));
      if (!check(saved, "ContextSave")) return false;
      if (!take_context(*saved, blob)) return false;
      if (!check(chip.transmit(tpm::make_flush_context(h)), "FlushContext")) return false;
    }
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  out.client = static_cast<std::uint64_t>(uses) * blobs.size();
  out.tpm = chip.counters().commands - before;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure the RM's TPM traffic against the kernel RM's algorithm"};
  std::string spec;
  int uses = 1000;
  int keys = 6;
  int connections = 2;
  app.add_option("--tpm", spec, "backend spec, e.g. swtpm:path=/run/swtpm.sock")->required();
  app.add_option("--uses", uses, "uses of each key");
  app.add_option("--keys", keys, "keys per connection in the multi-key workload");
  app.add_option("--connections", connections, "connections in the multi-key workload");
  CLI11_PARSE(app, argc, argv);

  auto driver = chip::make_driver(spec);
  if (!driver) {
    std::fprintf(stderr, "backend: %s\n", describe(driver.error()).c_str());
    return 1;
  }
  chip::Chip chip(std::move(*driver));
  if (auto started = chip.startup(); !started) {
    std::fprintf(stderr, "startup: %s\n", describe(started.error()).c_str());
    return 1;
  }
  daemon::ChipPort port(chip);
  std::printf("TPM: %s, %u object slots, %u loaded-session slots\n", chip.description().c_str(),
              chip.info().hr_transient_min, chip.info().hr_loaded_min);
  struct Workload {
    const char* name;
    int connections, keys;
  };
  const std::string multi = fmt::format("{} conns x {} keys round-robin", connections, keys);
  for (const Workload& w : {Workload{"1 conn, 1 reused key", 1, 1}, Workload{multi.c_str(), connections, keys}}) {
    Measure ours, kernel;
    if (!bench_rm(port, w.connections, w.keys, uses, ours)) return 1;
    if (!bench_kernel(chip, w.connections, w.keys, uses, kernel)) return 1;
    print(w.name, "tpmrmd", ours);
    print(w.name, "kernel", kernel);
  }
  chip.unregister(chip::ShutdownMode::kNone);
  return 0;
}

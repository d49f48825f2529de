// sched_bench: how long one uid's ReadPublic waits while another uid floods the TPM with slow commands,
// through the WorkerDispatcher on a real TPM. The victim runs alone first, then while 16 connections of an
// attacking uid each loop RSA-2048 CreatePrimary + FlushContext. Prints latency percentiles of both phases.
//
//   sched_bench [--tpm swtpm:path=...,ctrl=...] [--samples 40] [--attackers 16] [--pause-ms 25]
// Without --tpm it starts a private swtpm (as the tests do). The victim measures twice under attack: back to
// back (a busy client), and pausing between commands (an interactive one, which arrives while an attacking
// command runs).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "chip/chip.h"
#include "chip/driver_factory.h"
#include "daemon/chip_port.h"
#include "latency_stats.h"
#include "rm/worker_dispatcher.h"
#include "support/swtpm_process.h"
#include "support/tpm_commands.h"
#include "tpm/endian.h"
#include "tpm/rc_names.h"
#include "tpm/responses.h"

namespace {

using namespace tpmrmd;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::duration<double, std::milli>;

constexpr uid_t kVictim = 2000;
constexpr uid_t kAttacker = 1000;

bool ok(const Result<Bytes>& r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", what, describe(r.error()).c_str());
    return false;
  }
  auto rc = tpm::response_code(*r);
  if (!rc || *rc != TPM2_RC_SUCCESS) {
    std::fprintf(stderr, "%s: %s\n", what, rc ? tpm::rc_name(*rc).c_str() : describe(rc.error()).c_str());
    return false;
  }
  return true;
}

// The TPM time of every CreatePrimary, as the worker's transmits see it: what one attacking command really
// costs, to compare the victim's waits with.
class TimingPort final : public rm::TpmPort {
 public:
  explicit TimingPort(rm::TpmPort& inner) : inner_(inner) {}
  const tpm::TpmInfo& info() const override { return inner_.info(); }
  bool available() const override { return inner_.available(); }
  Result<Bytes> transmit(ByteSpan command) override {
    const auto start = Clock::now();
    auto r = inner_.transmit(command);
    if (command.size() >= 10 && tpm::load_u32(command, 6) == TPM2_CC_CreatePrimary) {
      std::lock_guard lock(mutex_);
      create_ms_.push_back(Millis(Clock::now() - start).count());
    }
    return r;
  }
  std::vector<double> create_ms() const {
    std::lock_guard lock(mutex_);
    return create_ms_;
  }

 private:
  rm::TpmPort& inner_;
  mutable std::mutex mutex_;
  std::vector<double> create_ms_;
};

using Stats = bench::LatencyStats;
Stats stats(std::vector<double> v) { return bench::latency_stats(std::move(v)); }

// `samples` ReadPublics of one key on the victim's connection, `pause` apart (zero: back to back), each one's
// latency in ms.
std::optional<std::vector<double>> victim(rm::Dispatcher& d, rm::ConnectionId c, TPM2_HANDLE key, int samples,
                                          std::chrono::milliseconds pause) {
  std::vector<double> latencies;
  for (int i = 0; i < samples; ++i) {
    if (pause.count()) std::this_thread::sleep_for(pause);
    const auto start = Clock::now();
    auto r = d.execute(c, testing::read_public(key));
    latencies.push_back(Millis(Clock::now() - start).count());
    if (!ok(r, "victim ReadPublic")) return std::nullopt;
  }
  return latencies;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Victim ReadPublic latency with and without a CreatePrimary flood of another uid"};
  std::string spec;
  int samples = 40;
  int attackers = 16;
  int pause_ms = 25;
  app.add_option("--tpm", spec, "backend spec (default: a private swtpm)");
  app.add_option("--samples", samples, "victim ReadPublics per phase");
  app.add_option("--attackers", attackers, "attacking connections (one uid)");
  app.add_option("--pause-ms", pause_ms, "the paced victim's pause between commands");
  CLI11_PARSE(app, argc, argv);

  std::optional<testing::SwtpmProcess> swtpm;
  if (spec.empty()) {
    swtpm.emplace();
    if (auto started = swtpm->start(); !started) {
      std::fprintf(stderr, "swtpm: %s\n", describe(started.error()).c_str());
      return 1;
    }
    spec = swtpm->spec();
  }
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
  daemon::ChipPort chip_port(chip);
  TimingPort port(chip_port);
  int rc = 0;
  {
    rm::WorkerDispatcher dispatcher(port);
    auto v = dispatcher.open(rm::ClientInfo{kVictim, kVictim, 1});
    if (!v) return 1;
    auto key = dispatcher.execute(*v, testing::create_primary());
    if (!ok(key, "victim CreatePrimary")) return 1;
    const TPM2_HANDLE handle = testing::handle_of(*key);

    const std::chrono::milliseconds pause(pause_ms);
    auto alone = victim(dispatcher, *v, handle, samples, pause);
    if (!alone) return 1;

    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    std::atomic<std::uint32_t> unique{0};
    std::atomic<std::uint64_t> created{0};
    std::atomic<std::int64_t> create_ns{0};
    std::vector<std::thread> threads;
    for (int a = 0; a < attackers; ++a) {
      threads.emplace_back([&] {
        auto c = dispatcher.open(rm::ClientInfo{kAttacker, kAttacker, 2});
        if (!c) {
          ++failures;
          return;
        }
        while (!stop.load()) {
          const auto start = Clock::now();
          auto r = dispatcher.execute(*c, testing::create_rsa_primary(unique++));
          if (!ok(r, "attacker CreatePrimary")) {
            ++failures;
            break;
          }
          create_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
          ++created;
          if (!ok(dispatcher.execute(*c, testing::flush_context(testing::handle_of(*r))), "attacker FlushContext")) {
            ++failures;
            break;
          }
        }
        dispatcher.close(*c);
      });
    }
    // Every attacker has a command queued or running before the victim starts measuring.
    while (created.load() < static_cast<std::uint64_t>(attackers) && failures.load() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::uint64_t created_before = created.load();
    auto attacked = victim(dispatcher, *v, handle, samples, std::chrono::milliseconds(0));
    auto paced = attacked ? victim(dispatcher, *v, handle, samples, pause) : std::nullopt;
    const std::uint64_t created_during = created.load() - created_before;
    stop = true;
    for (auto& t : threads) t.join();
    if (!attacked || !paced || failures.load()) return 1;

    const Stats a = stats(*alone), b = stats(*attacked), c = stats(*paced);
    std::printf("TPM: %s\n", chip.description().c_str());
    auto line = [&](const std::string& what, const Stats& st) {
      std::printf("%-44s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  (n=%d)\n", what.c_str(), st.p50, st.p99, st.max,
                  samples);
    };
    line(fmt::format("victim ReadPublic alone, {} ms apart:", pause_ms), a);
    line(fmt::format("victim ReadPublic, {} attackers, back to back:", attackers), b);
    line(fmt::format("victim ReadPublic, {} attackers, {} ms apart:", attackers, pause_ms), c);
    auto creates = port.create_ms();
    creates.erase(creates.begin(), creates.begin() + std::min<std::size_t>(1, creates.size()));  // the victim's
    const Stats t = stats(creates);
    std::printf("%-44s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  (n=%zu, %llu during the attack)\n",
                "attacker RSA-2048 CreatePrimary, TPM time:", t.p50, t.p99, t.max, creates.size(),
                static_cast<unsigned long long>(created_during));
    std::printf("paced victim: p50 %.2f x the attacker's p50 command, max %.2f x its longest command\n",
                t.p50 ? c.p50 / t.p50 : 0.0, t.max ? c.max / t.max : 0.0);
  }
  chip.unregister(chip::ShutdownMode::kNone);
  return rc;
}

// Records the seed corpora of tis_fuzzer and crb_fuzzer from real traffic: each scenario runs once against the
// emulated TIS or CRB device in front of a private swtpm (some with the device's fault injection on), every
// register read is logged, and the log plus the scenario's configuration is the seed (layout in fuzz_bus.h).
// Each seed is then replayed as the fuzzer would run it and kept only if it takes the same path.
//
//   register_seed_recorder CORPUS_DIR   writes CORPUS_DIR/tis_fuzzer/rec-* and CORPUS_DIR/crb_fuzzer/rec-*
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "chip/driver_factory.h"
#include "chip/registers/crb_driver.h"
#include "chip/registers/tis_fifo_driver.h"
#include "fuzz_bus.h"
#include "register_scenario.h"
#include "support/emulated_crb_device.h"
#include "support/emulated_tis_device.h"
#include "support/swtpm_process.h"

namespace tpmrmd::fuzz {
namespace {

using namespace std::chrono_literals;

// Passes everything to the device and logs each read value in the fuzz input's encoding.
class RecordingBus final : public chip::RegisterBus {
 public:
  RecordingBus(std::shared_ptr<chip::RegisterBus> device, std::uint32_t size) : device_(std::move(device)), size_(size) {}
  std::uint8_t read8(std::uint32_t offset) override {
    const std::uint8_t v = device_->read8(offset);
    log.push_back(v);
    return v;
  }
  std::uint32_t read32(std::uint32_t offset) override {
    const std::uint32_t v = device_->read32(offset);
    for (int i = 0; i < 4; ++i) log.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return v;
  }
  void write8(std::uint32_t offset, std::uint8_t v) override { device_->write8(offset, v); }
  void write32(std::uint32_t offset, std::uint32_t v) override { device_->write32(offset, v); }
  std::uint64_t physical_base() const override { return device_->physical_base(); }
  std::uint32_t size() const override { return size_; }
  std::string description() const override { return device_->description(); }
  bool alive() const override { return device_->alive(); }

  Bytes log;

 private:
  std::shared_ptr<chip::RegisterBus> device_;
  std::uint32_t size_;
};

// The drivers' deadlines in the fuzzer's virtual time, while the device (whose worker runs in real time) gets
// the real sleeps: the deadlines fall on the same poll when the fuzzer replays the log.
class RecordingClock final : public chip::PollClock {
 public:
  Clock::time_point now() override { return virtual_.now(); }
  void sleep_for(std::chrono::microseconds duration) override {
    std::this_thread::sleep_for(duration);
    virtual_.sleep_for(duration);
  }

 private:
  VirtualClock virtual_;
};

using Runner = Outcome (*)(std::shared_ptr<chip::RegisterBus>, std::shared_ptr<chip::PollClock>, const Scenario&);

struct Recorder {
  std::string swtpm_spec;
  std::filesystem::path dir;
  int written = 0, failed = 0;

  // Records `scenario` on the device `make_device` builds; keeps the seed if its replay agrees.
  void record(const std::string& name, Scenario scenario, Runner run,
              const std::function<std::shared_ptr<chip::RegisterBus>(std::unique_ptr<chip::Driver>)>& make_device,
              std::uint32_t full_window) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto backend = chip::make_driver(swtpm_spec);
      if (!backend) {
        std::fprintf(stderr, "%s: backend: %s\n", name.c_str(), describe(backend.error()).c_str());
        ++failed;
        return;
      }
      auto device = make_device(std::move(*backend));
      auto bus = std::make_shared<RecordingBus>(device, scenario.window_size(full_window));
      const Outcome recorded = run(bus, std::make_shared<RecordingClock>(), scenario);
      // One spare byte keeps alive() true after the last recorded read, as the device was.
      Bytes seed = bus->log;
      seed.push_back(0xFF);
      const Bytes tail = scenario.tail();
      seed.insert(seed.end(), tail.begin(), tail.end());

      FuzzedDataProvider in(seed.data(), seed.size());
      const Scenario replayed_scenario = Scenario::consume(in);
      auto fuzz_bus = std::make_shared<FuzzBus>(in, replayed_scenario.window_size(full_window), device->physical_base());
      const Outcome replayed = run(fuzz_bus, std::make_shared<VirtualClock>(), replayed_scenario);
      if (replayed.codes != recorded.codes) {
        std::fprintf(stderr, "%s: replay differs (recorded %s, replayed %s), again\n", name.c_str(),
                     recorded.describe().c_str(), replayed.describe().c_str());
        continue;
      }
      std::ofstream(dir / ("rec-" + name), std::ios::binary)
          .write(reinterpret_cast<const char*>(seed.data()), static_cast<std::streamsize>(seed.size()));
      std::printf("%-40s %5zu bytes, open+exchanges: %s\n", (dir.filename().string() + "/rec-" + name).c_str(),
                  seed.size(), recorded.describe().c_str());
      ++written;
      return;
    }
    ++failed;
  }
};

// config[1]: window selector (bits 0-1), exchanges - 1 (bits 2-3), max_response selector (bits 4-5).
constexpr std::uint8_t exchanges(int n) { return static_cast<std::uint8_t>((n - 1) << 2); }

void record_tis(Recorder& r) {
  auto tis = [](chip::EmulatedTisOptions o) {
    return [o](std::unique_ptr<chip::Driver> backend) -> std::shared_ptr<chip::RegisterBus> {
      return std::make_shared<chip::EmulatedTisDevice>(std::move(backend), o);
    };
  };
  auto faults = [](auto set) {
    chip::EmulatedTisOptions o;
    set(o.faults);
    return o;
  };
  auto s = [](std::uint8_t c0, std::uint8_t c1, std::uint8_t e0, std::uint8_t e1 = 0, std::uint8_t e2 = 0,
              std::uint8_t e3 = 0) { return Scenario{{c0, c1, e0, e1, e2, e3}}; };
  constexpr std::uint32_t kFull = chip::tis_reg::kWindowSize;
  r.record("getrandom", s(0, exchanges(1), 0), run_tis, tis({}), kFull);
  r.record("four-commands", s(0, exchanges(4), 0, 1, 2, 3), run_tis, tis({}), kFull);
  r.record("locality-3", s(3 << 4, exchanges(2), 0, 1), run_tis, tis({}), kFull);
  r.record("set-locality-2", s(0, exchanges(2), (3 << 5) | 0, (1 << 5) | 2), run_tis, tis({}), kFull);
  r.record("one-locality-window", s(0, exchanges(2) | 2, 0, (2 << 5) | 1), run_tis, tis({}), kFull);
  r.record("max-response-64", s(0, exchanges(3) | (1 << 4), 2, 1, 0), run_tis, tis({}), kFull);
  r.record("max-response-10", s(0, exchanges(1) | (3 << 4), 0), run_tis, tis({}), kFull);
  r.record("truncated-command", s(0, exchanges(2), 0x10, 0), run_tis, tis({}), kFull);
  r.record("burst-1", s(0, exchanges(1), 1), run_tis, tis(faults([](auto& f) { f.max_burst = 1; })), kFull);
  r.record("burst-7", s(0, exchanges(1), 2), run_tis, tis(faults([](auto& f) { f.max_burst = 7; })), kFull);
  r.record("expect-early-drop", s(0, exchanges(2), 0, 0), run_tis,
           tis(faults([](auto& f) { f.expect_early_drop = 1; })), kFull);
  r.record("expect-stuck", s(0, exchanges(2), 0, 0), run_tis, tis(faults([](auto& f) { f.expect_stuck = 1; })), kFull);
  r.record("bad-length", s(0, exchanges(2), 0, 0), run_tis, tis(faults([](auto& f) { f.bad_length = 1; })), kFull);
  r.record("short-response", s(0, exchanges(2), 0, 0), run_tis,
           tis(faults([](auto& f) { f.short_response = 1; })), kFull);
  r.record("leftover-data", s(0, exchanges(2), 0, 0), run_tis, tis(faults([](auto& f) { f.leftover_data = 1; })),
           kFull);
  r.record("sts-valid-lost", s(2 << 2, exchanges(2), 0, 0), run_tis,
           tis(faults([](auto& f) { f.sts_valid_lost = 1; })), kFull);
  r.record("execution-0x40", s(0, exchanges(1), 0), run_tis,
           tis(faults([](auto& f) { f.execution_status = 0x40; })), kFull);
  r.record("execution-invalid", s(0, exchanges(2), 0, 0), run_tis,
           tis(faults([](auto& f) { f.execution_status = 0xFF; })), kFull);
  {
    auto o = faults([](auto& f) { f.execution_status = 0x80; });
    o.vid = chip::tis_reg::kVidWinbond;
    r.record("winbond-cancel", s(1, exchanges(2), 0, 0), run_tis, tis(o), kFull);
  }
  {
    chip::EmulatedTisOptions o;
    o.vid = chip::tis_reg::kVidInfineon;
    o.faults.sts_valid_lost = 2;
    r.record("infineon-sts-valid-retry", s(0, exchanges(2), 0, 1), run_tis, tis(o), kFull);
  }
  {
    chip::EmulatedTisOptions o;
    o.vid = chip::tis_reg::kVidIntel;
    r.record("intel-ignore-expect", s(2, exchanges(2), 0, 3), run_tis, tis(o), kFull);
  }
}

void record_crb(Recorder& r) {
  auto crb = [](chip::EmulatedCrbOptions o) {
    return [o](std::unique_ptr<chip::Driver> backend) -> std::shared_ptr<chip::RegisterBus> {
      return std::make_shared<chip::EmulatedCrbDevice>(std::move(backend), o);
    };
  };
  auto with = [](auto set) {
    chip::EmulatedCrbOptions o;
    set(o);
    return o;
  };
  auto s = [](std::uint8_t c1, std::uint8_t e0, std::uint8_t e1 = 0, std::uint8_t e2 = 0, std::uint8_t e3 = 0) {
    return Scenario{{0, c1, e0, e1, e2, e3}};
  };
  constexpr std::uint32_t kFull = chip::crb_reg::kWindowSize;
  r.record("getrandom", s(exchanges(1), 0), run_crb, crb({}), kFull);
  r.record("four-commands", s(exchanges(4), 0, 1, 2, 3), run_crb, crb({}), kFull);
  r.record("small-window", s(exchanges(2) | 2, 0, 2), run_crb, crb({}), kFull);
  r.record("truncated-and-oversize", s(exchanges(3), 0x10, 0x20, 0), run_crb, crb({}), kFull);
  r.record("separate-buffers", s(exchanges(2), 0, 1), run_crb, crb(with([](auto& o) { o.separate_buffers = true; })),
           kFull);
  r.record("sizes-too-large", s(exchanges(2), 0, 2), run_crb,
           crb(with([](auto& o) { 
             o.separate_buffers = true;
             o.response_size_override = 0x10000;
            })), kFull);
  r.record("addresses-zero-while-idle", s(exchanges(2), 0, 0), run_crb,
           crb(with([](auto& o) { o.addresses_zero_while_idle = true; })), kFull);
  r.record("device-cancel", s(exchanges(2), 0, 0), run_crb,
           crb(with([](auto& o) { o.faults.device_cancel = true; })), kFull);
  r.record("error-bit", s(exchanges(2), 0, 0), run_crb, crb(with([](auto& o) { o.faults.error_bit = true; })), kFull);
  r.record("bad-length", s(exchanges(2), 0, 0), run_crb, crb(with([](auto& o) { o.faults.bad_length = 1; })), kFull);
  r.record("bad-length-twice", s(exchanges(2), 0, 0), run_crb, crb(with([](auto& o) { o.faults.bad_length = 2; })),
           kFull);
  r.record("go-idle-stuck", s(exchanges(2), 0, 0), run_crb,
           crb(with([](auto& o) { o.faults.go_idle_stuck = true; })), kFull);
  r.record("start-clears-early", s(exchanges(1), 0), run_crb,
           crb(with([](auto& o) { o.faults.start_clears_early = true; })), kFull);
}

}  // namespace
}  // namespace tpmrmd::fuzz

int main(int argc, char** argv) {
  using namespace tpmrmd;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  spdlog::set_level(spdlog::level::off);
  testing::SwtpmProcess swtpm;
  if (auto r = swtpm.start(); !r) {
    std::fprintf(stderr, "swtpm: %s\n", describe(r.error()).c_str());
    return 1;
  }
  const std::filesystem::path corpus = argv[1];
  fuzz::Recorder tis{swtpm.spec(), corpus / "tis_fuzzer"};
  fuzz::Recorder crb{swtpm.spec(), corpus / "crb_fuzzer"};
  std::filesystem::create_directories(tis.dir);
  std::filesystem::create_directories(crb.dir);
  fuzz::record_tis(tis);
  fuzz::record_crb(crb);
  std::printf("%d seeds written, %d scenarios failed\n", tis.written + crb.written, tis.failed + crb.failed);
  return tis.failed + crb.failed == 0 ? 0 : 1;
}

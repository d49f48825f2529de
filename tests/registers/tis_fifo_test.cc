// The TIS FIFO driver through the emulated TIS device to a real swtpm: real traffic, and every fault case of
// docs/registers.md (F-T01..F-T26) that the emulator can inject, each followed by a command that must work again.
// Test names start with the case label (FT09_ is F-T09); P-n marks the kernel pitfall a test guards against.
#include <atomic>
#include <thread>

#include "register_fixture.h"

namespace tpmrmd::testing {
namespace {

using chip::EmulatedTisFaults;

class TisTest : public RegisterTest {
 protected:
  // Device + driver + started chip; short timeouts so faults resolve quickly.
  void start(chip::EmulatedTisOptions device_options = {}, chip::TisFifoOptions options = {}) {
    device_ = tis_device(device_options);
    auto d = tis_driver(device_, options);
    ASSERT_NE(d, nullptr);
    driver_ = d.get();
    chip_ = started_chip(std::move(d));
  }
  static chip::TisFifoOptions short_timeouts() {
    chip::TisFifoOptions o;
    o.timeout_a = 100ms;
    o.timeout_b = 100ms;
    o.timeout_c = 100ms;
    o.burst_timeout = 150ms;
    return o;
  }
  // Runs `command` with `faults` active, then clears them and checks the device serves the next command.
  Result<Bytes> with_faults(const EmulatedTisFaults& faults, const Bytes& command = get_random(8)) {
    device_->set_faults(faults);
    auto r = chip_->transmit(command);
    device_->set_faults({});
    expect_get_random_works(*chip_);
    return r;
  }

  std::shared_ptr<chip::EmulatedTisDevice> device_;
  chip::TisFifoDriver* driver_ = nullptr;
  std::unique_ptr<chip::Chip> chip_;
};

TEST_F(TisTest, StartupAndRealTrafficThroughTheRegisters) {
  start();
  EXPECT_EQ(driver_->vendor_id(), 0x1014);
  EXPECT_EQ(driver_->device_id(), 0x0001);
  EXPECT_EQ(driver_->revision_id(), 0x01);
  EXPECT_GE(chip_->info().commands.size(), 50u);
  run_real_traffic(*chip_);
  const auto c = device_->counters();
  EXPECT_EQ(c.protocol_errors, 0u);
  EXPECT_GE(c.commands, 10u);
  EXPECT_NE(chip_->description().find("TIS FIFO"), std::string::npos);
}

TEST_F(TisTest, OtherLocalitiesAndWindowsWork) {
  start();
  ASSERT_TRUE(driver_->set_locality(3).ok());
  expect_get_random_works(*chip_);
  EXPECT_EQ(driver_->set_locality(5).error().code, EINVAL);
  EXPECT_EQ(device_->counters().protocol_errors, 0u);
}

// The first `size` bytes of another bus's window.
class WindowPrefix final : public chip::RegisterBus {
 public:
  WindowPrefix(std::shared_ptr<chip::RegisterBus> bus, std::uint32_t size) : bus_(std::move(bus)), size_(size) {}
  std::uint8_t read8(std::uint32_t offset) override { return offset < size_ ? bus_->read8(offset) : 0xFF; }
  std::uint32_t read32(std::uint32_t offset) override { return offset < size_ ? bus_->read32(offset) : 0xFFFFFFFF; }
  void write8(std::uint32_t offset, std::uint8_t v) override { if (offset < size_) bus_->write8(offset, v); }
  void write32(std::uint32_t offset, std::uint32_t v) override { if (offset < size_) bus_->write32(offset, v); }
  std::uint64_t physical_base() const override { return bus_->physical_base(); }
  std::uint32_t size() const override { return size_; }
  std::string description() const override { return bus_->description(); }

 private:
  std::shared_ptr<chip::RegisterBus> bus_;
  std::uint32_t size_;
};

// A window that maps locality 0 only: another locality is refused at once, as open() refuses it, instead of
// being accepted and then polled until timeout A on registers that read all-ones.
TEST_F(TisTest, LocalitiesOutsideTheWindowAreRefused) {
  auto bus = std::make_shared<WindowPrefix>(tis_device(), chip::tis_reg::kLocalityWindow);
  auto d = tis_driver(bus, short_timeouts());
  ASSERT_NE(d, nullptr);
  auto refused = d->set_locality(1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EINVAL);
  ASSERT_TRUE(d->set_locality(0).ok());
  auto r = d->exchange(get_random(8), 2s);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(TisTest, FT01_ValidNeverSetFailsProbeWithEnodev) {
  chip::EmulatedTisOptions o;
  o.faults.valid_never = true;
  auto device = tis_device(o);
  auto d = chip::TisFifoDriver::open(device, short_timeouts());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ENODEV) << describe(d.error());
}

TEST_F(TisTest, FT02_ValidSetLateButWithinTimeoutA) {
  chip::EmulatedTisOptions o;
  o.faults.valid_after = 60ms;
  auto options = short_timeouts();
  options.timeout_a = 300ms;
  start(o, options);
  expect_get_random_works(*chip_);
  // And after A: the probe fails.
  o.faults.valid_after = 2000ms;
  auto late = chip::TisFifoDriver::open(tis_device(o), short_timeouts());
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ENODEV);
}

TEST_F(TisTest, FT03_LocalityNeverGrantedIsEpipe) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.locality_never_granted = true;
  expect_error(with_faults(f), EPIPE);
}

TEST_F(TisTest, FT04_RequestUseStuckIsEpipe) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.request_use_stuck = true;
  expect_error(with_faults(f), EPIPE);
}

TEST_F(TisTest, FT05_CommandReadyNeverSetIsEtimeWithoutRetry) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.command_ready_never = true;
  expect_error(with_faults(f), ETIME);
  EXPECT_EQ(driver_->counters().send_retries, 0u);
}

TEST_F(TisTest, FT06_ZeroBurstShorterThanTheDeadlineSucceeds) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.zero_burst = 40ms;  // on entering Ready (send) and Completion (receive); burst deadline 150 ms
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(TisTest, FT07_BurstStuckAtZeroIsEtimeNotEbusy) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.zero_burst = 60s;
  expect_error(with_faults(f), ETIME);
}

TEST_F(TisTest, FT08_TinyAndOddBurstCountsSucceed) {
  start();
  for (std::uint16_t burst : {1, 3, 7}) {
    EmulatedTisFaults f;
    f.max_burst = burst;
    device_->set_faults(f);
    auto r = chip_->transmit(create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(burst)));
    ASSERT_TRUE(r.ok()) << describe(r.error());
    ASSERT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
    ASSERT_TRUE(chip_->transmit(flush_context(handle_of(*r))).ok());
  }
  device_->set_faults({});
  EXPECT_EQ(device_->counters().protocol_errors, 0u);
}

TEST_F(TisTest, FT09_StsValidNeverSetIsEtime) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.sts_valid_lost = -1;
  expect_error(with_faults(f), ETIME);
  EXPECT_EQ(driver_->counters().send_retries, 0u);  // not a retry-flagged device
}

TEST_F(TisTest, FT09_StsValidTimeoutIsRetriedOnFlaggedDevices) {  // P-1 done right
  auto options = short_timeouts();
  options.status_valid_retry = true;
  start({}, options);
  EmulatedTisFaults f;
  f.sts_valid_lost = 1;
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(driver_->counters().send_retries, 1u);
}

TEST_F(TisTest, FT09_InfineonVidEnablesTheRetryAndItEndsInEtime) {
  chip::EmulatedTisOptions o;
  o.vid = chip::tis_reg::kVidInfineon;
  auto options = short_timeouts();
  options.timeout_c = 20ms;
  start(o, options);
  EmulatedTisFaults f;
  f.sts_valid_lost = -1;
  expect_error(with_faults(f), ETIME);
  EXPECT_EQ(driver_->counters().send_retries, 49u);
}

TEST_F(TisTest, FT10_ExpectDroppingEarlyIsEioAfter50Attempts) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.expect_early_drop = -1;
  expect_error(with_faults(f), EIO);
  EXPECT_EQ(driver_->counters().send_retries, 49u);
}

TEST_F(TisTest, FT11_ExpectStuckAfterTheLastByteIsEio) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.expect_stuck = -1;
  expect_error(with_faults(f), EIO);
  EXPECT_EQ(driver_->counters().send_retries, 49u);
}

TEST_F(TisTest, FT12_ExpectWrongOnceSucceedsOnTheSecondAttempt) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.expect_stuck = 1;
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
  EXPECT_EQ(driver_->counters().send_retries, 1u);
}

TEST_F(TisTest, FT13_ResponseAfterTheDeadlineIsCancelledWithEtime) {
  start({}, short_timeouts());
  chip_->set_duration_scale(0.05);  // GetRandom: 100 ms
  EmulatedTisFaults f;
  f.response_delay = 20s;
  device_->set_faults(f);
  const auto t0 = std::chrono::steady_clock::now();
  expect_error(chip_->transmit(get_random(8)), ETIME);
  // Bounded by the deadline plus the transport allowance, far from the 20 s the device would take.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  device_->set_faults({});
  chip_->set_duration_scale(1.0);
  expect_get_random_works(*chip_);
  EXPECT_EQ(driver_->counters().cancels, 1u);
  EXPECT_EQ(device_->counters().aborts, 1u);
}

TEST_F(TisTest, FT14_StatusExactly0x40WhileExecutingIsNotACancel) {  // P-5
  start();
  EmulatedTisFaults f;
  f.execution_status = 0x40;
  f.response_delay = 30ms;
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(TisTest, FT15_InvalidStatusWhileExecutingIsEioAtOnce) {  // P-4
  start();
  EmulatedTisFaults f;
  f.execution_status = 0xFF;
  f.response_delay = 30ms;
  expect_error(with_faults(f), EIO);
  EXPECT_GE(driver_->counters().invalid_status, 1u);
}

TEST_F(TisTest, FT16_BadHeaderLengthIsEioAfter50ResponseRetries) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.bad_length = -1;
  expect_error(with_faults(f), EIO);
  EXPECT_EQ(driver_->counters().receive_retries, 49u);
}

TEST_F(TisTest, FT17_ResponseEndingEarlyIsEtime) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.short_response = 1;
  expect_error(with_faults(f, get_random(32)), ETIME);
}

TEST_F(TisTest, FT18_LeftoverDataOnceIsRetriedPersistentIsEio) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.leftover_data = 1;
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(driver_->counters().receive_retries, 1u);
  f.leftover_data = -1;
  expect_error(with_faults(f), EIO);
}

TEST_F(TisTest, FT19_CorruptOnceThenCorrectAfterResponseRetry) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.bad_length = 1;
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
  EXPECT_EQ(driver_->counters().receive_retries, 1u);
}

TEST_F(TisTest, FT20_ResponseRetryIgnoredIsEio) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.leftover_data = 1;  // a failure the rewind would fix, but the rewind is ignored
  f.response_retry_ignored = true;
  expect_error(with_faults(f), EIO);
}

TEST_F(TisTest, FT25_VendorCancelRuleOnlyWithTheQuirkFlag) {
  chip::EmulatedTisOptions o;
  o.vid = chip::tis_reg::kVidWinbond;
  start(o);
  EmulatedTisFaults f;
  f.execution_status = 0x80;
  f.response_delay = 30ms;
  auto r = with_faults(f);
  ASSERT_TRUE(r.ok()) << describe(r.error());  // default: 0x80 is just "executing"

  chip_.reset();  // swtpm serves one connection at a time
  device_.reset();
  chip::TisFifoOptions options;
  options.vendor_cancel_quirks = true;
  auto quirky_device = tis_device(o);
  chip::Chip quirky(tis_driver(quirky_device, options));
  ASSERT_TRUE(quirky.startup().ok());
  quirky_device->set_faults(f);
  expect_error(quirky.transmit(get_random(8)), ECANCELED);  // Winbond's 0x80 "canceled" with the quirk on
  quirky_device->set_faults({});
  expect_get_random_works(quirky);
}

TEST_F(TisTest, FT26_Largest4096ByteCommandAndShortestResponse) {
  start();
  Bytes big = get_random(8);
  big.resize(4096, 0);
  tpm::patch_size_field(big);
  auto r = chip_->transmit(big);  // swtpm rejects the trailing bytes with a 10-byte error response
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(r->size(), 10u);
  EXPECT_NE(rc_of(*r), TPM2_RC_SUCCESS);
  expect_get_random_works(*chip_);
  EXPECT_EQ(device_->counters().protocol_errors, 0u);
}

TEST_F(TisTest, CommandCancelBitCompletesWithTpmRcCanceled) {
  start();
  EmulatedTisFaults f;
  f.response_delay = 5s;
  device_->set_faults(f);
  // Drive the registers directly: GO a command, then STS.commandCancel.
  const Bytes cmd = get_random(8);
  device_->write8(0, 0x02);
  device_->write8(0x18, 0x40);
  device_->write_fifo(0x24, cmd);
  device_->write8(0x18, 0x20);
  device_->write32(0x18, 1u << 24);
  Bytes rsp(10);
  ASSERT_EQ(device_->read8(0x18) & 0x90, 0x90);
  device_->read_fifo(0x24, rsp);
  EXPECT_EQ(rc_of(rsp), TPM2_RC_CANCELED);
  device_->write8(0x18, 0x40);
  device_->write8(0, 0x20);
  device_->set_faults({});
  expect_get_random_works(*chip_);
}

TEST_F(TisTest, BackendDeathDuringExecutionEndsInEpipeThenEnodev) {
  start({}, short_timeouts());
  EmulatedTisFaults f;
  f.response_delay = 200ms;
  device_->set_faults(f);
  std::thread killer([&] {
    std::this_thread::sleep_for(20ms);
    swtpm_->kill_hard();
  });
  auto r = chip_->transmit(get_random(8));
  killer.join();
  if (r.ok()) {  // the response beat the kill; the next command meets the dead backend
    r = chip_->transmit(get_random(8));
  }
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().code == EPIPE || r.error().code == ENODEV) << describe(r.error());
  expect_error(chip_->transmit(get_random(8)), ENODEV);
}

// Unregister while a command is in flight: the command completes or fails with ENODEV, and once unregister()
// returned nothing touches the registers again.
TEST_F(TisTest, UnregisterWhileInFlightStopsAllRegisterAccess) {
  start();
  for (auto delay : {0ms, 50ms, 300ms}) {
    EmulatedTisFaults f;
    f.response_delay = delay;
    device_->set_faults(f);
    std::atomic<bool> sent{false};
    Result<Bytes> result = make_error(0, "not run");
    std::thread client([&] {
      sent = true;
      result = chip_->transmit(get_random(8));
    });
    while (!sent) std::this_thread::yield();
    std::this_thread::sleep_for(10ms);
    chip_->unregister(chip::ShutdownMode::kNone);
    const auto after = device_->counters().accesses;
    std::this_thread::sleep_for(delay + 100ms);
    client.join();
    EXPECT_EQ(device_->counters().accesses, after) << "register access after unregister returned";
    if (result.ok()) {
      EXPECT_EQ(rc_of(*result), TPM2_RC_SUCCESS);
    } else {
      EXPECT_EQ(result.error().code, ENODEV) << describe(result.error());
    }
    expect_error(chip_->transmit(get_random(8)), ENODEV);
    EXPECT_EQ(device_->counters().accesses, after);
    // A fresh chip on a fresh device for the next round.
    if (delay != 300ms) start();
  }
}

}  // namespace
}  // namespace tpmrmd::testing

// The lifetime rule: after unregister (explicit, or because the backend died) every entry point fails with
// ENODEV and nothing touches the driver. A loss is a state the chip exposes (lost()), never a callback.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "chip/drivers/swtpm_control.h"
#include "chip_fixture.h"
#include "support/fault_injecting_driver.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {
namespace {

using LifetimeTest = SwtpmTest;

TEST_F(LifetimeTest, EveryEntryPointFailsWithEnodevAfterUnregister) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  chip.unregister(chip::ShutdownMode::kNone);
  EXPECT_FALSE(chip.registered());
  auto t = chip.transmit(get_random(8));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ENODEV);
  auto s = chip.startup();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENODEV);
  EXPECT_EQ(chip.description(), "unregistered");
  EXPECT_EQ(chip.identity(), "");
  chip.unregister();  // idempotent
}

TEST_F(LifetimeTest, UnregisterSendsTheRequestedShutdownThenNothing) {
  start_swtpm();
  const std::pair<chip::ShutdownMode, const char*> cases[] = {
      {chip::ShutdownMode::kClear, "80010000000c000001450000"},
      {chip::ShutdownMode::kState, "80010000000c000001450001"},
      {chip::ShutdownMode::kNone, "80010000000c0000017b0001"},  // the last command stays the GetRandom
  };
  for (const auto& [mode, last_hex] : cases) {
    auto log = std::make_shared<DriverLog>();
    chip::Chip chip(std::make_unique<FaultInjectingDriver>(open_driver_or_fail(swtpm_->spec()), log));
    ASSERT_TRUE(chip.startup().ok());
    ASSERT_TRUE(chip.transmit(get_random(1)).ok());
    chip.unregister(mode);
    ASSERT_FALSE(chip.transmit(get_random(1)).ok());
    std::lock_guard lock(log->mutex);
    EXPECT_EQ(to_hex(log->commands.back()), last_hex);
  }
}

TEST_F(LifetimeTest, BackendDeathUnregistersTheChipAndRecordsTheLoss) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  EXPECT_TRUE(chip.registered());
  EXPECT_FALSE(chip.lost());
  ASSERT_TRUE(chip.transmit(get_random(8)).ok());
  swtpm_->kill_hard();
  auto first = chip.transmit(get_random(8));
  ASSERT_FALSE(first.ok());
  EXPECT_TRUE(first.error().code == EPIPE || first.error().code == ENODEV) << describe(first.error());
  EXPECT_FALSE(chip.registered()) << "unregistered before the failing call returned";
  ASSERT_TRUE(chip.lost());
  EXPECT_EQ(chip.lost()->code, first.error().code);
  for (int i = 0; i < 3; ++i) {
    auto later = chip.transmit(get_random(8));
    ASSERT_FALSE(later.ok());
    EXPECT_EQ(later.error().code, ENODEV);
  }
  EXPECT_FALSE(chip.registered());
  EXPECT_TRUE(chip.lost());
}

TEST_F(LifetimeTest, ATpmResetBehindTheChipUnregistersItLikeALoss) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  ASSERT_TRUE(chip.transmit(create_primary(TPM2_RH_OWNER, 1)).ok());
  // Someone else power-cycles the TPM through swtpm's control channel: it now wants TPM2_Startup again, and
  // nothing it held exists. Answering on as if nothing happened would let old handles name new objects.
  chip::SwtpmEndpoint ctrl;
  ctrl.path = swtpm_->ctrl_socket_path();
  chip::SwtpmControl control(ctrl);
  ASSERT_TRUE(control.init().ok());
  auto after = chip.transmit(get_random(8));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ENODEV) << describe(after.error());
  EXPECT_FALSE(chip.registered());
  ASSERT_TRUE(chip.lost());
  EXPECT_NE(chip.lost()->message.find("TPM_RC_INITIALIZE"), std::string::npos) << chip.lost()->message;
  EXPECT_EQ(chip.counters().resets_seen, 1u);
  EXPECT_EQ(chip.transmit(get_random(8)).error().code, ENODEV);
}

TEST_F(LifetimeTest, ExplicitUnregisterIsNotALoss) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  chip.unregister(chip::ShutdownMode::kNone);
  EXPECT_FALSE(chip.registered());
  EXPECT_FALSE(chip.lost());
}

TEST_F(LifetimeTest, UnregisterRacesTransmittingThreads) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  constexpr int kThreads = 4;
  std::atomic<int> completed{0}, enodev{0}, other{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      for (;;) {
        auto r = chip.transmit(get_random(16));
        if (r.ok() && rc_of(*r) == TPM2_RC_SUCCESS && r->size() == 28) {
          ++completed;
        } else if (!r.ok() && r.error().code == ENODEV) {
          ++enodev;
          return;
        } else {
          ++other;
          return;
        }
      }
    });
  }
  go = true;
  while (completed.load() < 20) std::this_thread::yield();
  chip.unregister(chip::ShutdownMode::kClear);
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(enodev.load(), kThreads);
  EXPECT_GE(completed.load(), 20);
}


TEST_F(LifetimeTest, BackendDeathUnderConcurrentTransmitsGivesEnodevToEveryoneAfter) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  constexpr int kThreads = 4;
  std::atomic<int> completed{0}, transport{0}, enodev{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        auto r = chip.transmit(get_random(16));
        if (r.ok() && rc_of(*r) == TPM2_RC_SUCCESS && r->size() == 28) {
          ++completed;
        } else if (!r.ok() && r.error().code == ENODEV) {
          ++enodev;
          return;
        } else if (!r.ok() && r.error().code == EPIPE) {
          ++transport;  // the command in flight when swtpm died
        } else {
          ++other;
          return;
        }
      }
    });
  }
  while (completed.load() < 20) std::this_thread::yield();
  swtpm_->kill_hard();
  for (auto& t : threads) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(enodev.load(), kThreads);
  EXPECT_LE(transport.load(), 1) << "only the command in flight may see the transport error";
  EXPECT_TRUE(chip.lost());
  EXPECT_FALSE(chip.registered());
  auto after = chip.transmit(get_random(8));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ENODEV);
}

TEST_F(LifetimeTest, StartupAfterBackendDeathIsEnodevAndTheFirstCauseStays) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  swtpm_->kill_hard();
  auto first = chip.startup();
  ASSERT_FALSE(first.ok());
  ASSERT_TRUE(chip.lost());
  const Error cause = *chip.lost();
  auto second = chip.startup();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ENODEV);
  chip.unregister();
  ASSERT_TRUE(chip.lost()) << "an explicit unregister after the loss keeps the loss";
  EXPECT_EQ(chip.lost()->message, cause.message);
}

}  // namespace
}  // namespace tpmrmd::testing

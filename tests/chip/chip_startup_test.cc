// Chip start-up against a real swtpm: probe, power-on, TPM2_Startup, TpmInfo.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>

#include "chip_fixture.h"
#include "support/fault_injecting_driver.h"
#include "support/tpm_commands.h"
#include "tpm/endian.h"

namespace tpmrmd::testing {
namespace {

using StartupTest = SwtpmTest;

TEST_F(StartupTest, StartedSwtpmNeedsNoStartupAndReportsItsProperties) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  auto r = chip.startup();
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(chip.counters().startups, 0u);
  EXPECT_EQ(chip.counters().power_ons, 0u);
  const auto& info = chip.info();
  EXPECT_EQ(info.hr_transient_min, 3u);
  EXPECT_EQ(info.hr_loaded_min, 3u);
  EXPECT_EQ(info.active_sessions_max, 64u);
  EXPECT_EQ(info.context_gap_max, 0xFFFFu);
  EXPECT_EQ(info.max_command_size, 4096u);
  EXPECT_EQ(info.max_response_size, 4096u);
  EXPECT_EQ(info.manufacturer, "IBM");
  EXPECT_EQ(info.family, 0x322e3000u);  // "2.0"
  EXPECT_GT(info.max_object_context, 0u);
  EXPECT_EQ(info.commands.size(), info.total_commands);
  auto create_primary = info.commands.find(TPM2_CC_CreatePrimary);
  ASSERT_TRUE(create_primary.has_value());
  EXPECT_TRUE(create_primary->returns_handle());
  EXPECT_EQ(create_primary->handle_count(), 1u);
  EXPECT_EQ(info.commands.find(TPM2_CC_ContextSave)->handle_count(), 1u);
  // FlushContext names its handle as a parameter, so the TPM does not mark it "flushed": the RM must treat
  // it specially, as the kernel does.
  EXPECT_FALSE(info.commands.find(TPM2_CC_FlushContext)->flushes());
  EXPECT_EQ(info.commands.find(TPM2_CC_FlushContext)->handle_count(), 1u);
}

TEST_F(StartupTest, UninitialisedSwtpmIsPoweredOnAndStartedByTheChip) {
  start_swtpm({.startup_clear = false});
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  auto r = chip.startup();
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(chip.counters().power_ons, 1u);
  EXPECT_EQ(chip.counters().startups, 1u);
  auto response = chip.transmit(get_random(16));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(rc_of(*response), TPM2_RC_SUCCESS);
}

TEST_F(StartupTest, UninitialisedSwtpmWithoutControlChannelIsAClearError) {
  start_swtpm({.startup_clear = false, .control_channel = false});
  chip::Chip chip(open_driver_or_fail("swtpm:path=" + swtpm_->data_socket_path()));
  auto r = chip.startup();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("failure mode"), std::string::npos) << r.error().message;
  auto t = chip.transmit(get_random(8));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, EIO) << "a chip whose start-up failed must not serve";
}

TEST_F(StartupTest, TcpTransportWithControlOnPortPlusOne) {
  start_swtpm({.transport = SwtpmOptions::Transport::kTcp, .startup_clear = false});
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  auto r = chip.startup();
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(chip.counters().startups, 1u);
  EXPECT_EQ(chip.identity(), "swtpm:tcp:127.0.0.1:" + std::to_string(swtpm_->port()));
  auto response = chip.transmit(get_random(8));
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->size(), 10u + 2u + 8u);
}

TEST_F(StartupTest, ASecondChipOnARunningTpmDoesNotResetIt) {
  start_swtpm();
  auto primary = Bytes{};
  {
    chip::Chip first(open_driver_or_fail(swtpm_->spec()));
    ASSERT_TRUE(first.startup().ok());
    auto created = first.transmit(create_primary());
    ASSERT_TRUE(created.ok());
    ASSERT_EQ(rc_of(*created), TPM2_RC_SUCCESS);
    first.unregister(chip::ShutdownMode::kNone);
  }
  chip::Chip second(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(second.startup().ok());
  EXPECT_EQ(second.counters().power_ons, 0u);
  EXPECT_EQ(second.counters().startups, 0u);
  // The transient object the first chip created is still there: nothing re-initialised the TPM.
  auto handles = second.transmit(get_capability(TPM2_CAP_HANDLES, 0x80000000, 16));
  ASSERT_TRUE(handles.ok());
  auto list = parse_handles(*handles);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->handles.size(), 1u);
}

}  // namespace
}  // namespace tpmrmd::testing

namespace tpmrmd::testing {
namespace {

// Fault injection for TPM states a healthy swtpm never reaches: failure mode, field-upgrade mode, a TPM 1.2,
// a command table that pages badly. The real swtpm answers everything not injected.
class FaultyStartupTest : public SwtpmTest {
 protected:
  void SetUp() override {
    start_swtpm();
    auto faulty = std::make_unique<FaultInjectingDriver>(open_driver_or_fail(swtpm_->spec()));
    faults_ = faulty.get();
    chip_ = std::make_unique<chip::Chip>(std::move(faulty));
  }
  FaultInjectingDriver* faults_ = nullptr;
  std::unique_ptr<chip::Chip> chip_;
};

bool is_get_capability(ByteSpan command, TPM2_CAP capability) {
  return tpm::parse_command_header(command)->code == TPM2_CC_GetCapability && command.size() == 22 &&
         tpm::load_u32(command, 10) == capability;
}

TEST_F(FaultyStartupTest, FailureModeIsReportedClearlyAndTheChipDoesNotServe) {
  faults_->inject_rc(TPM2_RC_FAILURE, -1);
  auto r = chip_->startup();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("failure mode"), std::string::npos) << r.error().message;
  // FAILURE on the probe is also what an uninitialised swtpm answers: the chip tried power-on once.
  EXPECT_EQ(faults_->power_ons(), 1);
  faults_->inject_rc(0, 0);
  auto t = chip_->transmit(get_random(8));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, EIO);
  EXPECT_NE(t.error().message.find("not serving"), std::string::npos) << t.error().message;
}

TEST_F(FaultyStartupTest, FieldUpgradeModeIsReportedClearly) {
  faults_->inject_rc(TPM2_RC_UPGRADE, -1);
  auto r = chip_->startup();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("field-upgrade mode"), std::string::npos) << r.error().message;
  EXPECT_EQ(faults_->power_ons(), 0) << "only FAILURE may look like an uninitialised emulator";
}

TEST_F(FaultyStartupTest, ATpm12AnswerIsNotATpm2) {
  // What a TPM 1.2 answers to a TPM 2.0 command: tag TPM_TAG_RSP_COMMAND, TPM_BADTAG.
  faults_->inject_response(from_hex("00c4 0000000a 0000001e"), -1);
  auto r = chip_->startup();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ENODEV);
  EXPECT_NE(r.error().message.find("not a TPM 2.0"), std::string::npos) << r.error().message;
}

TEST_F(FaultyStartupTest, CommandTableThatRepeatsItsFirstPageForeverEndsWithoutDuplicates) {
  std::optional<Bytes> first_page;
  std::atomic<int> command_pages{0};
  faults_->rewrite_responses([&](ByteSpan command, Bytes& response) {
    if (!is_get_capability(command, TPM2_CAP_COMMANDS) || rc_of(response) != TPM2_RC_SUCCESS) return;
    ++command_pages;
    if (!first_page) first_page = response;
    response = *first_page;
    response[10] = 1;  // moreData = YES, always
  });
  auto r = chip_->startup();
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(command_pages.load(), 2) << "a page without progress must end the paging";
  const auto& entries = chip_->info().commands.entries();
  EXPECT_EQ(entries.size(), chip_->info().total_commands);
  for (std::size_t i = 1; i < entries.size(); ++i) EXPECT_LT(entries[i - 1].code(), entries[i].code());
}

TEST_F(FaultyStartupTest, CommandTableWithAnImpossibleCountIsAClearError) {
  faults_->rewrite_responses([&](ByteSpan command, Bytes& response) {
    if (!is_get_capability(command, TPM2_CAP_COMMANDS) || response.size() < 19) return;
    tpm::store_u32(response, 15, 0xFFFFFFFFu);  // header, moreData, capability: then the count
  });
  auto r = chip_->startup();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("GetCapability"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace tpmrmd::testing

// The TCTI fallback driver: tpm2-tss's own swtpm TCTI against a private swtpm (TCP: that TCTI has no unix form).
#include <gtest/gtest.h>

#include "chip_fixture.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {
namespace {

using TctiDriverTest = SwtpmTest;

TEST_F(TctiDriverTest, ChipStartsUpAndServesThroughTheSwtpmTcti) {
  start_swtpm({.transport = SwtpmOptions::Transport::kTcp});
  chip::Chip chip(open_driver_or_fail("tcti:" + swtpm_->tcti()));
  auto r = chip.startup();
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(chip.info().hr_transient_min, 3u);
  EXPECT_EQ(chip.info().commands.size(), chip.info().total_commands);
  EXPECT_EQ(chip.description(), "tcti " + swtpm_->tcti());
  auto random = chip.transmit(get_random(16));
  ASSERT_TRUE(random.ok()) << describe(random.error());
  EXPECT_EQ(rc_of(*random), TPM2_RC_SUCCESS);
  EXPECT_EQ(random->size(), 28u);
  auto created = chip.transmit(create_primary());
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(rc_of(*created), TPM2_RC_SUCCESS);
  auto flushed = chip.transmit(flush_context(handle_of(*created)));
  ASSERT_TRUE(flushed.ok());
  EXPECT_EQ(rc_of(*flushed), TPM2_RC_SUCCESS);
}

TEST_F(TctiDriverTest, BackendDeathUnregistersTheChip) {
  start_swtpm({.transport = SwtpmOptions::Transport::kTcp});
  chip::Chip chip(open_driver_or_fail("tcti:" + swtpm_->tcti()));
  ASSERT_TRUE(chip.startup().ok());
  swtpm_->kill_hard();
  auto first = chip.transmit(get_random(8));
  ASSERT_FALSE(first.ok());
  auto after = chip.transmit(get_random(8));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ENODEV);
  EXPECT_TRUE(chip.lost());
}

TEST(TctiDriver, UnknownTctiIsAClearError) {
  auto d = chip::make_driver("tcti:tpmrmd-no-such-tcti");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ENODEV);
  EXPECT_NE(d.error().message.find("tpmrmd-no-such-tcti"), std::string::npos) << d.error().message;
  auto empty = chip::make_driver("tcti:");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, EINVAL);
}

}  // namespace
}  // namespace tpmrmd::testing

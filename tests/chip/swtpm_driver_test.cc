// The swtpm driver's transport details against a real swtpm: one write per command, the control channel.
#include <gtest/gtest.h>

#include "chip_fixture.h"
#include "chip/drivers/swtpm_control.h"
#include "chip/drivers/swtpm_driver.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {
namespace {

using SwtpmDriverTest = SwtpmTest;

TEST_F(SwtpmDriverTest, ControlChannelReportsInitCancelAndLocality) {
  start_swtpm();
  chip::SwtpmControl control({chip::SwtpmEndpoint::Kind::kUnix, swtpm_->ctrl_socket_path(), "", 0});
  auto caps = control.get_capability();
  ASSERT_TRUE(caps.ok()) << describe(caps.error());
  EXPECT_EQ(*caps & chip::kSwtpmCapInit, chip::kSwtpmCapInit);
  EXPECT_EQ(*caps & chip::kSwtpmCapCancelTpmCmd, chip::kSwtpmCapCancelTpmCmd);
  EXPECT_EQ(*caps & chip::kSwtpmCapSetLocality, chip::kSwtpmCapSetLocality);
  // CMD_INIT on a running TPM re-initialises it: it then needs TPM2_Startup again.
  ASSERT_TRUE(control.init().ok());
  auto driver = open_driver_or_fail(swtpm_->spec());
  ASSERT_NE(driver, nullptr);
  auto response = driver->exchange(get_random(8), std::chrono::seconds(2));
  ASSERT_TRUE(response.ok()) << describe(response.error());
  EXPECT_EQ(rc_of(*response), TPM2_RC_INITIALIZE);
}

TEST_F(SwtpmDriverTest, LocalityIsSetThroughTheControlChannel) {
  start_swtpm();
  auto driver = open_driver_or_fail(swtpm_->spec());
  ASSERT_NE(driver, nullptr);
  for (std::uint8_t locality : {0, 3, 4, 0}) {
    auto r = driver->set_locality(locality);
    ASSERT_TRUE(r.ok()) << int(locality) << ": " << describe(r.error());
    auto response = driver->exchange(get_random(8), std::chrono::seconds(2));
    ASSERT_TRUE(response.ok()) << describe(response.error());
    EXPECT_EQ(rc_of(*response), TPM2_RC_SUCCESS);
  }
  auto bad = driver->set_locality(5);
  ASSERT_FALSE(bad.ok()) << "swtpm has localities 0..4";
  EXPECT_EQ(bad.error().code, EIO);
  EXPECT_TRUE(driver->alive());
}

TEST_F(SwtpmDriverTest, WithoutAControlChannelInitAndLocalityAreUnsupported) {
  start_swtpm({.control_channel = false});
  auto driver = open_driver_or_fail("swtpm:path=" + swtpm_->data_socket_path());
  ASSERT_NE(driver, nullptr);
  EXPECT_EQ(driver->power_on().error().code, EOPNOTSUPP);
  EXPECT_EQ(driver->set_locality(1).error().code, EOPNOTSUPP);
  auto response = driver->exchange(get_random(8), std::chrono::seconds(2));
  ASSERT_TRUE(response.ok()) << describe(response.error());
}

TEST_F(SwtpmDriverTest, PeerCloseMakesTheDriverDead) {
  start_swtpm();
  auto driver = open_driver_or_fail(swtpm_->spec());
  ASSERT_NE(driver, nullptr);
  swtpm_->kill_hard();
  auto r = driver->exchange(get_random(8), std::chrono::seconds(2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPIPE) << describe(r.error());
  EXPECT_FALSE(driver->alive());
  auto again = driver->exchange(get_random(8), std::chrono::seconds(2));
  ASSERT_FALSE(again.ok());
}

}  // namespace
}  // namespace tpmrmd::testing

// The raw-device driver on the host (no kernel TPM here): a character device that is not a TPM must give a
// clear error, never a hang or a crash. The real /dev/tpm0 path runs in the VM suite.
#include <gtest/gtest.h>

#include "chip/chip.h"
#include "chip/drivers/device_driver.h"

namespace tpmrmd::chip {
namespace {

TEST(DeviceDriver, NonTpmCharacterDeviceFailsStartUpClearly) {
  auto driver = DeviceDriver::open("/dev/null");
  ASSERT_TRUE(driver.ok()) << describe(driver.error());
  EXPECT_EQ((*driver)->description(), "device /dev/null");
  EXPECT_EQ((*driver)->identity().rfind("device:", 0), 0u);
  Chip chip(std::move(*driver));
  auto r = chip.startup();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("malformed response"), std::string::npos) << r.error().message;
}

TEST(DeviceDriver, MissingNodeIsEnoent) {
  auto driver = DeviceDriver::open("/dev/tpm-does-not-exist");
  ASSERT_FALSE(driver.ok());
  EXPECT_EQ(driver.error().code, ENOENT);
}

}  // namespace
}  // namespace tpmrmd::chip

// rc_name: the value in hex followed by libtss2-rc's decoding.
#include "tpm/rc_names.h"

#include <gtest/gtest.h>

namespace tpmrmd::tpm {
namespace {

TEST(RcNames, TpmWarning) {
  EXPECT_EQ(rc_name(TPM2_RC_OBJECT_MEMORY), "0x902 (tpm:warn(2.0): out of memory for object contexts)");
}

TEST(RcNames, ResourceManagerLayer) {
  const std::string name = rc_name(0x000B0143);
  EXPECT_EQ(name.rfind("0xb0143 (", 0), 0u) << name;
  EXPECT_NE(name.find("command code not supported"), std::string::npos) << name;
}

TEST(RcNames, FormatOneAndSuccess) {
  EXPECT_NE(rc_name(0x18B).find("handle"), std::string::npos);
  EXPECT_EQ(rc_name(TPM2_RC_SUCCESS), "0x0 (tpm:success)");
}

}  // namespace
}  // namespace tpmrmd::tpm

// Backend specs of the register drivers through the real factory: emulated devices in front of swtpm, and
// clear errors for malformed specs and unreachable MMIO.
#include "register_fixture.h"

namespace tpmrmd::testing {
namespace {

using SpecTest = RegisterTest;

TEST_F(SpecTest, EmulatedTisAndCrbSpecsServeRealCommands) {
  for (const std::string kind : {"tis", "crb"}) {
    auto d = tis::make_driver(kind + ":emulated,backend=" + swtpm_->spec());
    ASSERT_TRUE(d.ok()) << describe(d.error());
    tis::Chip chip(std::move(*d));
    ASSERT_TRUE(chip.startup().ok());
    EXPECT_NE(chip.identity().find(kind + ":emulated:swtpm:"), std::string::npos) << chip.identity();
    run_real_traffic(chip);
  }
}

TEST_F(SpecTest, VendorIdOption) {
  auto d = tis::make_driver("tis:emulated,vid=0x15d1,backend=" + swtpm_->spec());
  ASSERT_TRUE(d.ok()) << describe(d.error());
  EXPECT_NE((*d)->description().find("VID 0x15d1"), std::string::npos) << (*d)->description();
}

TEST_F(SpecTest, MalformedSpecsAreClearErrors) {
  const std::pair<std::string, std::string> cases[] = {
      {"tis:emulated", "needs backend=SPEC"},
      {"crb:emulated,vid=1", "needs backend=SPEC"},
      {"tis:emulated,backend=", "empty backend="},
      {"tis:emulated,backend=nope:x", "unknown backend 'nope'"},
      {"tis:emulated,colour=red,backend=swtpm:path=/x", "unknown key 'colour'"},
      {"tis:", "needs mmio=ADDR"},
      {"tis:mmio=zz", "not a number"},
      {"tis:mmio=0xFED40000,locality=9", "out of range"},
      {"crb:mmio=0xFED40000,size=16", "too small"},
      {"tis:mmio=0xFED40001", "not page-aligned"},
  };
  for (const auto& [spec, message] : cases) {
    auto d = tis::make_driver(spec);
    ASSERT_FALSE(d.ok()) << spec;
    EXPECT_NE(d.error().message.find(message), std::string::npos) << spec << ": " << describe(d.error());
  }
}

TEST_F(SpecTest, MmioWithoutAccessIsAClearError) {
  // On the build host there is no TPM window (and usually no /dev/mem access): the error says why.
  auto d = tis::make_driver("tis:mmio=0xFED40000");
  if (d.ok()) GTEST_SKIP() << "a TIS window answers at 0xFED40000 on this machine";
  EXPECT_TRUE(d.error().code == EACCES || d.error().code == EPERM || d.error().code == ENOENT ||
              d.error().code == ENODEV)
      << describe(d.error());
  EXPECT_FALSE(d.error().message.empty());
}

TEST_F(SpecTest, HelpListsTheRegisterKinds) {
  const auto help = tis::backend_spec_help();
  EXPECT_NE(help.find("tis:mmio=ADDR"), std::string::npos);
  EXPECT_NE(help.find("crb:emulated"), std::string::npos);
}

}  // namespace
}  // namespace tpmrmd::testing

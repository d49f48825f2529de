// Backend specs of the register drivers through the real factory: emulated devices in front of swtpm, and
// clear errors for malformed specs and unreachable MMIO.
#include <cstdlib>

#include "chip/registers/register_driver_specs.h"
#include "register_fixture.h"
#include "support/emulated_register_specs.h"

namespace tpmrmd::testing {
namespace {

class SpecTest : public RegisterTest {
 protected:
  void SetUp() override {
    RegisterTest::SetUp();
    chip::install_emulated_register_specs();
  }
};

// The daemon links no emulated devices: without the test equipment installed such specs are refused.
TEST_F(SpecTest, EmulatedSpecsNeedTheTestEquipment) {
  chip::set_emulated_bus_maker(nullptr);
  auto d = chip::make_driver("tis:emulated,backend=" + swtpm_->spec());
  chip::install_emulated_register_specs();
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("only in tests and benches"), std::string::npos) << d.error().message;
}

TEST_F(SpecTest, EmulatedTisAndCrbSpecsServeRealCommands) {
  for (const std::string kind : {"tis", "crb"}) {
    auto d = chip::make_driver(kind + ":emulated,backend=" + swtpm_->spec());
    ASSERT_TRUE(d.ok()) << describe(d.error());
    chip::Chip chip(std::move(*d));
    ASSERT_TRUE(chip.startup().ok());
    EXPECT_NE(chip.identity().find(kind + ":emulated:swtpm:"), std::string::npos) << chip.identity();
    run_real_traffic(chip);
  }
}

TEST_F(SpecTest, VendorIdOption) {
  auto d = chip::make_driver("tis:emulated,vid=0x15d1,backend=" + swtpm_->spec());
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
    auto d = chip::make_driver(spec);
    ASSERT_FALSE(d.ok()) << spec;
    EXPECT_NE(d.error().message.find(message), std::string::npos) << spec << ": " << describe(d.error());
  }
}

TEST_F(SpecTest, MmioWithoutAccessIsAClearError) {
  // On the build host there is no TPM window (and usually no /dev/mem access): the error says why.
  auto d = chip::make_driver("tis:mmio=0xFED40000");
  if (d.ok()) GTEST_SKIP() << "a TIS window answers at 0xFED40000 on this machine";
  EXPECT_TRUE(d.error().code == EACCES || d.error().code == EPERM || d.error().code == ENOENT ||
              d.error().code == ENODEV)
      << describe(d.error());
  EXPECT_FALSE(d.error().message.empty());
}

TEST_F(SpecTest, HelpListsTheRegisterKinds) {
  const auto help = chip::backend_spec_help();
  EXPECT_NE(help.find("tis:mmio=ADDR"), std::string::npos);
  EXPECT_NE(help.find("crb:emulated"), std::string::npos);
}

}  // namespace
}  // namespace tpmrmd::testing

namespace tpmrmd::testing {
namespace {

// Run by the registers-vm tests inside the QEMU guest, where TPMRMD_REGS_MMIO_SPEC names a real register window
// (QEMU's tpm-tis or tpm-crb, kernel driver unbound). Without it (the host) the test is skipped, not passed.
TEST(MmioInVm, RealTrafficThroughQemuRegisters) {
  const char* spec = std::getenv("TPMRMD_REGS_MMIO_SPEC");
  if (!spec) GTEST_SKIP() << "TPMRMD_REGS_MMIO_SPEC not set (only inside the VM)";
  auto d = chip::make_driver(spec);
  ASSERT_TRUE(d.ok()) << describe(d.error());
  chip::Chip chip(std::move(*d));
  auto s = chip.startup();
  ASSERT_TRUE(s.ok()) << describe(s.error());
  for (int i = 0; i < 3; ++i) run_real_traffic(chip);
  // A command past its deadline is cancelled on the real register model too, and the next one works.
  chip.set_duration_scale(0.0001);  // CreatePrimary: 3 ms
  auto late = chip.transmit(create_primary(TPM2_RH_OWNER, 9));
  chip.set_duration_scale(1.0);
  if (!late.ok()) {
    EXPECT_EQ(late.error().code, ETIME) << describe(late.error());
  }
  expect_get_random_works(chip);
  chip.unregister(chip::ShutdownMode::kNone);
}

}  // namespace
}  // namespace tpmrmd::testing

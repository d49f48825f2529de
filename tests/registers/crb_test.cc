// The CRB driver through the emulated CRB device to a real swtpm: real traffic, buffer layouts, and the fault
// cases F-C01..F-C14 (defined in docs/registers.md), each followed by a command that must work again (except the
// fatal error bit).
#include "register_fixture.h"

namespace tpmrmd::testing {
namespace {

using chip::EmulatedCrbFaults;

class CrbTest : public RegisterTest {
 protected:
  void start(chip::EmulatedCrbOptions device_options = {}) {
    device_ = crb_device(device_options);
    auto d = crb_driver(device_);
    ASSERT_NE(d, nullptr);
    driver_ = d.get();
    chip_ = started_chip(std::move(d));
  }
  Result<Bytes> with_faults(const EmulatedCrbFaults& faults, const Bytes& command = get_random(8)) {
    device_->set_faults(faults);
    auto r = chip_->transmit(command);
    device_->set_faults({});
    expect_get_random_works(*chip_);
    return r;
  }

  std::shared_ptr<chip::EmulatedCrbDevice> device_;
  chip::CrbDriver* driver_ = nullptr;
  std::unique_ptr<chip::Chip> chip_;
};

TEST_F(CrbTest, StartupAndRealTrafficOverlappingBuffer) {
  start();
  EXPECT_EQ(driver_->command_offset(), 0x80u);
  EXPECT_EQ(driver_->response_offset(), 0x80u);
  EXPECT_EQ(driver_->command_size(), 0xF80u);
  run_real_traffic(*chip_);
  EXPECT_EQ(device_->counters().protocol_errors, 0u);
}

TEST_F(CrbTest, SeparateBuffers) {
  chip::EmulatedCrbOptions o;
  o.separate_buffers = true;
  start(o);
  EXPECT_EQ(driver_->command_offset(), 0x80u);
  EXPECT_EQ(driver_->response_offset(), 0x880u);
  run_real_traffic(*chip_);
  EXPECT_EQ(device_->counters().protocol_errors, 0u);
}

TEST_F(CrbTest, FC01_LocalityNeverAssignedIsEtime) {
  start();
  EmulatedCrbFaults f;
  f.locality_never_granted = true;
  expect_error(with_faults(f), ETIME);
}

TEST_F(CrbTest, FC02_AssignedStuckAfterRelinquishIsEtime) {
  start();
  EmulatedCrbFaults f;
  f.assigned_stuck = true;
  expect_error(with_faults(f), ETIME);
}

TEST_F(CrbTest, FC03_CmdReadyNeverClearsIsEtime) {
  start();
  EmulatedCrbFaults f;
  f.cmd_ready_stuck = true;
  expect_error(with_faults(f), ETIME);
}

TEST_F(CrbTest, FC04_GoIdleNeverClearsIsEtimeAndTheResponseIsOfferedAsLate) {
  start();
  EmulatedCrbFaults f;
  f.go_idle_stuck = true;
  device_->set_faults(f);
  // CreatePrimary: the chip flushes the key from the late response instead of leaking it.
  expect_error(chip_->transmit(create_primary()), ETIME);
  device_->set_faults({});
  EXPECT_EQ(chip_->counters().late_flushes, 1u);
  auto handles = chip_->transmit(get_capability(TPM2_CAP_HANDLES, TPM2_HT_TRANSIENT << 24, 16));
  ASSERT_TRUE(handles.ok());
  auto list = parse_handles(*handles);
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->handles.empty());
}

TEST_F(CrbTest, FC05_StartNeverClearsIsCancelledWithEtime) {
  start();
  chip_->set_duration_scale(0.05);
  EmulatedCrbFaults f;
  f.response_delay = 20s;
  device_->set_faults(f);
  const auto t0 = std::chrono::steady_clock::now();
  expect_error(chip_->transmit(get_random(8)), ETIME);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  device_->set_faults({});
  chip_->set_duration_scale(1.0);
  expect_get_random_works(*chip_);
  EXPECT_EQ(driver_->counters().cancels, 1u);
  EXPECT_EQ(device_->counters().aborts, 1u);
}

TEST_F(CrbTest, FC06_DeviceInitiatedCancelIsEcanceled) {
  start();
  EmulatedCrbFaults f;
  f.device_cancel = true;
  f.response_delay = 50ms;
  expect_error(with_faults(f), ECANCELED);
}

TEST_F(CrbTest, FC07_ErrorBitIsEioAndTheBackendIsMarkedFailed) {
  start();
  EmulatedCrbFaults f;
  f.error_bit = true;
  device_->set_faults(f);
  expect_error(chip_->transmit(get_random(8)), EIO);
  EXPECT_FALSE(chip_->registered());
  expect_error(chip_->transmit(get_random(8)), ENODEV);
}

TEST_F(CrbTest, FC08_BadResponseLengthIsEio) {
  start();
  EmulatedCrbFaults f;
  f.bad_length = 1;
  expect_error(with_faults(f), EIO);
  EXPECT_EQ(driver_->counters().header_rereads, 1u);
}

TEST_F(CrbTest, FC09_CommandLargerThanTheBufferIsE2big) {
  chip::EmulatedCrbOptions o;
  o.separate_buffers = true;  // 2048-byte command buffer, below the TPM's 4096
  start(o);
  Bytes big = get_random(8);
  big.resize(3000, 0);
  tpm::patch_size_field(big);
  expect_error(chip_->transmit(big), E2BIG);
  expect_get_random_works(*chip_);
}

TEST_F(CrbTest, FC10_OverlappingBuffersWithDifferentSizesFailProbe) {
  chip::EmulatedCrbOptions o;
  o.response_size_override = 0x800;
  auto d = chip::CrbDriver::open(crb_device(o));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, EINVAL) << describe(d.error());
}

TEST_F(CrbTest, FC11_OversizedSizeRegistersAreClamped) {
  chip::EmulatedCrbOptions o;
  o.command_size_override = 0x10000;
  o.response_size_override = 0x10000;
  start(o);
  EXPECT_EQ(driver_->counters().clamped_sizes, 2u);
  EXPECT_EQ(driver_->command_size(), 0xF80u);
  run_real_traffic(*chip_);
}

TEST_F(CrbTest, FC12_AddressesReadableOnlyAfterCmdReady) {
  chip::EmulatedCrbOptions o;
  o.addresses_zero_while_idle = true;
  start(o);
  EXPECT_EQ(driver_->command_offset(), 0x80u);
  expect_get_random_works(*chip_);
}

TEST_F(CrbTest, FC13_StartClearedBeforeTheResponseIsEio) {
  start();
  EmulatedCrbFaults f;
  f.start_clears_early = true;
  expect_error(with_faults(f), EIO);
}

TEST_F(CrbTest, FC14_StaleCancelIsClearedBySend) {
  start();
  device_->write32(chip::crb_reg::kCtrlCancel, 1);
  expect_get_random_works(*chip_);
}

TEST_F(CrbTest, NoCrbInterfaceAtTheWindowIsEnodev) {
  // A TIS window is not a CRB one: INTF_ID's interface type reads 0.
  auto d = chip::CrbDriver::open(tis_device());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, ENODEV);
}

}  // namespace
}  // namespace tpmrmd::testing

// Chip::transmit against a real swtpm: real commands, size validation, retries, deadlines and cancel.
#include <tss2/tss2_mu.h>

#include <gtest/gtest.h>

#include "chip_fixture.h"
#include "support/fault_injecting_driver.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {
namespace {

std::size_t transient_count(chip::Chip& chip) {
  auto r = chip.transmit(get_capability(TPM2_CAP_HANDLES, 0x80000000, 64));
  EXPECT_TRUE(r.ok());
  auto list = r ? parse_handles(*r) : std::nullopt;
  EXPECT_TRUE(list.has_value());
  return list ? list->handles.size() : 0;
}

class TransmitTest : public SwtpmTest {
 protected:
  void SetUp() override {
    start_swtpm();
    auto faulty = std::make_unique<FaultInjectingDriver>(open_driver_or_fail(swtpm_->spec()));
    faults_ = faulty.get();
    chip::ChipOptions options;
    options.retry_initial_delay = std::chrono::milliseconds(1);
    options.retry_max_delay = std::chrono::milliseconds(64);
    chip_ = std::make_unique<chip::Chip>(std::move(faulty), options);
    auto r = chip_->startup();
    ASSERT_TRUE(r.ok()) << describe(r.error());
  }
  FaultInjectingDriver* faults_ = nullptr;
  std::unique_ptr<chip::Chip> chip_;
};

TEST_F(TransmitTest, RealCommands) {
  auto random = chip_->transmit(get_random(32));
  ASSERT_TRUE(random.ok());
  EXPECT_EQ(rc_of(*random), TPM2_RC_SUCCESS);
  EXPECT_EQ(random->size(), 44u);

  auto created = chip_->transmit(create_primary());
  ASSERT_TRUE(created.ok());
  ASSERT_EQ(rc_of(*created), TPM2_RC_SUCCESS);
  TPM2_HANDLE handle = handle_of(*created);
  EXPECT_EQ(handle >> 24, 0x80u);
  auto pub = chip_->transmit(read_public(handle));
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(rc_of(*pub), TPM2_RC_SUCCESS);
  auto flushed = chip_->transmit(flush_context(handle));
  ASSERT_TRUE(flushed.ok());
  EXPECT_EQ(rc_of(*flushed), TPM2_RC_SUCCESS);
  EXPECT_EQ(transient_count(*chip_), 0u);

  // A TPM error is a successful transmit carrying the rc.
  auto stale = chip_->transmit(read_public(handle));
  ASSERT_TRUE(stale.ok());
  EXPECT_NE(rc_of(*stale), TPM2_RC_SUCCESS);
}

struct MalformedCase {
  const char* name;
  const char* hex;
  int expected_errno;
};

TEST_F(TransmitTest, MalformedCommandsNeverReachTheTpm) {
  const MalformedCase cases[] = {
      {"empty", "", EINVAL},
      {"shorter than a header", "8001 0000000c 0000", EINVAL},
      {"header says more than the buffer", "8001 0000000f 00000165 deadbeef", EINVAL},
      {"header says less than the buffer", "8001 0000000a 0000017b 0020", EINVAL},
      {"header says zero", "8001 00000000 0000017b", EINVAL},
      {"TPM 1.2 tag", "00c1 0000000a 00000065", EINVAL},
      {"mssim-style framing", "0000 00080000 000c8001", EINVAL},
  };
  std::size_t before = faults_->seen().size();
  for (const auto& c : cases) {
    auto r = chip_->transmit(from_hex(c.hex));
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().code, c.expected_errno) << c.name << ": " << describe(r.error());
  }
  Bytes huge(4097, 0);
  tpm::write_command_header({TPM2_ST_NO_SESSIONS, 4097, TPM2_CC_GetRandom}, huge);
  auto r = chip_->transmit(huge);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, E2BIG);
  EXPECT_EQ(faults_->seen().size(), before) << "a malformed command reached the driver";
  auto ok = chip_->transmit(get_random(8));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(rc_of(*ok), TPM2_RC_SUCCESS);
}

TEST_F(TransmitTest, MalformedResponseIsEio) {
  faults_->truncate_next_response(20);
  auto r = chip_->transmit(get_random(32));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_NE(r.error().message.find("malformed response"), std::string::npos);
  auto next = chip_->transmit(get_random(8));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(rc_of(*next), TPM2_RC_SUCCESS);
}

TEST_F(TransmitTest, RetryYieldedAndTestingAreRetriedUntilSuccess) {
  for (TPM2_RC rc : {TPM2_RC_RETRY, TPM2_RC_YIELDED, TPM2_RC_TESTING}) {
    auto before = chip_->counters();
    faults_->inject_rc(rc, 3);
    auto r = chip_->transmit(get_random(8));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS) << "rc " << rc;
    EXPECT_EQ(chip_->counters().retries - before.retries, 3u) << "rc " << rc;
    EXPECT_EQ(chip_->counters().commands - before.commands, 4u) << "rc " << rc;
  }
}

TEST_F(TransmitTest, RetryGivesUpAfterTheBackOffAndReturnsTheLastAnswer) {
  auto before = chip_->counters();
  faults_->inject_rc(TPM2_RC_RETRY, -1);
  auto r = chip_->transmit(get_random(8));
  faults_->inject_rc(0, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(rc_of(*r), TPM2_RC_RETRY);
  // Delays 1, 2, 4, ..., 64 ms: 7 sleeps, 8 transmissions (the kernel's schedule, scaled).
  EXPECT_EQ(chip_->counters().commands - before.commands, 8u);
}

TEST_F(TransmitTest, TestingAnswerToSelfTestIsNotRetried) {
  auto before = chip_->counters();
  faults_->inject_rc(TPM2_RC_TESTING, 1);
  Bytes self_test = from_hex("8001 0000000b 00000143 00");
  auto r = chip_->transmit(self_test);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(rc_of(*r), TPM2_RC_TESTING);
  EXPECT_EQ(chip_->counters().commands - before.commands, 1u);
}

TEST_F(TransmitTest, PcrReadOfTheSha256Bank) {
  // TPM2_PCR_Read(pcrSelectionIn = {SHA256: PCR 0..7}).
  auto r = chip_->transmit(from_hex("8001 00000014 0000017e 00000001 000b 03 ff0000"));
  ASSERT_TRUE(r.ok()) << describe(r.error());
  ASSERT_EQ(rc_of(*r), TPM2_RC_SUCCESS);
  std::size_t offset = tpm::kHeaderSize;
  std::uint32_t update_counter = 0;
  TPML_PCR_SELECTION selection{};
  TPML_DIGEST values{};
  ASSERT_EQ(Tss2_MU_UINT32_Unmarshal(r->data(), r->size(), &offset, &update_counter), TSS2_RC_SUCCESS);
  ASSERT_EQ(Tss2_MU_TPML_PCR_SELECTION_Unmarshal(r->data(), r->size(), &offset, &selection), TSS2_RC_SUCCESS);
  ASSERT_EQ(Tss2_MU_TPML_DIGEST_Unmarshal(r->data(), r->size(), &offset, &values), TSS2_RC_SUCCESS);
  EXPECT_EQ(offset, r->size());
  ASSERT_EQ(values.count, 8u);
  for (std::uint32_t i = 0; i < values.count; ++i) {
    EXPECT_EQ(values.digests[i].size, 32u);
    EXPECT_EQ(Bytes(values.digests[i].buffer, values.digests[i].buffer + 32), Bytes(32, 0)) << "PCR " << i;
  }
}

TEST_F(TransmitTest, LateSuccessfulResponseOfATimedOutCreatePrimaryIsFlushed) {
  auto before = chip_->counters();
  faults_->time_out_next_with_late_response();
  auto r = chip_->transmit(create_primary());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ETIME);
  EXPECT_EQ(chip_->counters().timeouts - before.timeouts, 1u);
  EXPECT_EQ(chip_->counters().late_flushes - before.late_flushes, 1u);
  auto seen = faults_->seen();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[seen.size() - 2], TPM2_CC_CreatePrimary);
  EXPECT_EQ(seen.back(), TPM2_CC_FlushContext);
  EXPECT_EQ(transient_count(*chip_), 0u) << "the object created by the timed-out command leaked";
}

TEST_F(TransmitTest, LateResponseThatCreatedNothingIsNotFlushed) {
  auto before = chip_->counters();
  faults_->time_out_next_with_late_response();
  auto r = chip_->transmit(get_random(8));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ETIME);
  EXPECT_EQ(chip_->counters().late_flushes, before.late_flushes);
  EXPECT_EQ(faults_->seen().back(), TPM2_CC_GetRandom);
  auto next = chip_->transmit(get_random(8));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(rc_of(*next), TPM2_RC_SUCCESS);
}

TEST_F(TransmitTest, LateFailedCreatePrimaryIsNotFlushed) {
  auto before = chip_->counters();
  faults_->time_out_next_with_late_response();
  auto r = chip_->transmit(create_primary(TPM2_RH_LOCKOUT));  // not a hierarchy for keys: refused
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ETIME);
  EXPECT_EQ(chip_->counters().late_flushes, before.late_flushes);
  EXPECT_EQ(faults_->seen().back(), TPM2_CC_CreatePrimary);
}

TEST_F(SwtpmTest, DeadlineCancelsTheCommandAndTheChipStaysUsable) {
  start_swtpm();
  chip::Chip chip(open_driver_or_fail(swtpm_->spec()));
  ASSERT_TRUE(chip.startup().ok());
  auto before = chip.counters();
  chip.set_duration_scale(1e-9);  // every deadline becomes 1 ms
  auto r = chip.transmit(create_rsa_primary());
  chip.set_duration_scale(1.0);
  ASSERT_FALSE(r.ok()) << "RSA-2048 key generation finished within 1 ms";
  EXPECT_EQ(r.error().code, ETIME);
  EXPECT_NE(r.error().message.find("cancelled"), std::string::npos) << r.error().message;
  EXPECT_EQ(chip.counters().timeouts - before.timeouts, 1u);
  EXPECT_TRUE(chip.registered());
  // The late response was drained: the next command gets its own answer, and no object leaked (if swtpm
  // finished the key before it saw the cancel, the chip flushed it).
  auto random = chip.transmit(get_random(8));
  ASSERT_TRUE(random.ok()) << describe(random.error());
  EXPECT_EQ(rc_of(*random), TPM2_RC_SUCCESS);
  EXPECT_EQ(random->size(), 20u);
  EXPECT_EQ(transient_count(chip), 0u);
}

}  // namespace
}  // namespace tpmrmd::testing

// What the RM does when the TPM says no: memory pressure, lost contexts, and the context gap (injected on cue
// here; the real gap is driven in context_gap_test.cc).
#include <gtest/gtest.h>

#include "rm/handles.h"
#include "rm_fixture.h"
#include "tpm/commands.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

TEST_F(SwtpmRmTest, ObjectMemoryFromTheTpmIsAnsweredByEvictionAndRetry) {
  reset_rm({}, /*faults=*/true);
  ConnectionId a = open(), b = open();
  make_key(a, 1);
  make_key(a, 2);
  // The TPM claims to be full although the RM's count says there is room (another user, an internal
  // allocation): the RM must evict and retry instead of failing the client.
  faults_->inject(TPM2_CC_CreatePrimary, TPM2_RC_OBJECT_MEMORY);
  TPM2_HANDLE k = make_key(b, 3);
  EXPECT_EQ(faults_->injected(), 1);
  EXPECT_EQ(k, 0x80000000u);
  EXPECT_GE(rm_->counters().evictions, 1u);
  ok(a, read_public(0x80000000));
  ok(a, read_public(0x80000001));
}

TEST_F(SwtpmRmTest, RealObjectMemoryWhenSomeoneElseHoldsSlots) {
  // Two of the TPM's three object slots are taken behind the RM's back (a raw user of the chip): the RM's
  // capacity estimate is wrong, the TPM itself answers TPM_RC_OBJECT_MEMORY, and the RM must still serve.
  std::vector<TPM2_HANDLE> outside;
  for (std::uint8_t i = 0; i < 2; ++i) {
    auto r = chip_->transmit(create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(0x70 + i)));
    ASSERT_TRUE(r && rc_of(*r) == TPM2_RC_SUCCESS);
    outside.push_back(handle_of(*r));
  }
  ConnectionId c = open();
  std::vector<Bytes> pubs;
  for (std::uint8_t i = 0; i < 4; ++i) pubs.push_back(ok(c, read_public(make_key(c, i))));
  for (int round = 0; round < 2; ++round) {
    for (std::uint8_t i = 0; i < 4; ++i) EXPECT_EQ(ok(c, read_public(0x80000000u + i)), pubs[i]);
  }
  EXPECT_GT(rm_->counters().evictions, 0u);
  // 16 client commands; more sends means the TPM really refused with OBJECT_MEMORY and the RM retried.
  EXPECT_GT(rm_->counters().client_commands, 16u);
  for (TPM2_HANDLE h : outside) ASSERT_TRUE(chip_->transmit(tpm::make_flush_context(h)));
}

TEST_F(SwtpmRmTest, AnObjectWhoseContextIsLostIsDeadButTheConnectionLives) {
  reset_rm({}, true);
  ConnectionId c = open();
  TPM2_HANDLE lost = make_key(c, 1);
  for (std::uint8_t i = 2; i <= 4; ++i) make_key(c, i);  // `lost` is evicted (saved) now
  TPM2_HANDLE s = make_policy_session(c);
  faults_->inject(TPM2_CC_ContextLoad, TPM2_RC_INTEGRITY);  // e.g. after a TPM reset
  auto r = rm_->execute(c, read_public(lost));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  r = rm_->execute(c, read_public(lost));  // stays dead, without asking the TPM again
  ASSERT_FALSE(r);
  ok(c, read_public(0x80000003));
  ok(c, policy_get_digest(s));
  ok(c, flush_context(lost));  // flushing a dead handle frees it
  EXPECT_EQ(rm_->counters().per_connection[c].objects, 3u);
}

TEST_F(SwtpmRmTest, InjectedContextGapOnAnRmSaveIsRegappedAndTheCommandSucceeds) {
  reset_rm({}, true);
  ConnectionId a = open(), b = open();
  TPM2_HANDLE sa = make_policy_session(a);
  TPM2_HANDLE s1 = make_policy_session(b);
  TPM2_HANDLE s2 = make_policy_session(b);
  TPM2_HANDLE s3 = make_policy_session(b);  // evicts sa (LRU): sa is now saved
  (void)s3;
  Bytes digest = ok(b, policy_get_digest(s1));  // s1 was evicted by... nothing yet; all resident but sa
  ok(b, policy_get_digest(s2));
  // Next: a's command needs a slot; the RM's save of the LRU session (s3) answers CONTEXT_GAP once. The RM
  // must re-gap the oldest saved session and retry, and a's command must still succeed.
  faults_->inject(TPM2_CC_ContextSave, TPM2_RC_CONTEXT_GAP);
  Bytes r = run(a, policy_get_digest(sa));
  EXPECT_EQ(rc_of(r), TPM2_RC_SUCCESS) << to_hex(r);
  EXPECT_EQ(faults_->injected(), 1);
  EXPECT_EQ(ok(b, policy_get_digest(s1)), digest);
  ok(b, policy_get_digest(s2));
  ok(b, policy_get_digest(s3));
}

TEST_F(SwtpmRmTest, SuccessfulResponseIsDeliveredWhenTheClientsContextSaveHitsTheGap) {
  reset_rm({}, true);
  ConnectionId a = open(), b = open();
  TPM2_HANDLE old = make_policy_session(a);
  ok(a, context_save(old));  // a saved session: the oldest
  TPM2_HANDLE s = make_policy_session(b);
  faults_->inject(TPM2_CC_ContextSave, TPM2_RC_CONTEXT_GAP);
  Bytes r = run(b, context_save(s));
  EXPECT_EQ(rc_of(r), TPM2_RC_SUCCESS) << to_hex(r);
  EXPECT_EQ(rm_->counters().regaps, 1u);
  ok(b, context_load(body_of(r)));
  ok(b, policy_get_digest(s));
}

}  // namespace
}  // namespace tpmrmd::testing

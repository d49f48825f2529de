// What the RM does when it cannot see what the TPM did (a response lost after the command ran, a response it
// cannot account for), and with what an earlier user left in the TPM. The fake TPM runs every command; only
// the response is taken away or changed, so the TPM's state and the RM's picture really diverge, and the
// fake's own view is the witness that they are brought back in step.
#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <set>
#include <vector>

#include "fake_rm_fixture.h"
#include "tpm/commands.h"
#include "tpm/header.h"
#include "tpm/endian.h"

namespace tpmrmd::testing {
namespace {

class UnseenOutcomeTest : public FakeRmTest {
 protected:
  // The next command with `code` runs in the TPM, but what reaches the RM is `change` of its response.
  void change_next_response(TPM2_CC code, std::function<Result<Bytes>(Bytes)> change) {
    auto armed = std::make_shared<bool>(true);
    tpm_->set_response_hook([armed, code, change](ByteSpan command, Bytes response) -> Result<Bytes> {
      if (!*armed || tpm::load_u32(command, 6) != code) return response;
      *armed = false;
      return change(std::move(response));
    });
  }
  // `id` starts a policy session that the TPM creates, but answers with an error: the RM never learns of it.
  void start_hidden_session(ConnectionId id) {
    const TPM2_RC hidden = TPM2_RC_VALUE | TPM2_RC_P | TPM2_RC_1;
    change_next_response(TPM2_CC_StartAuthSession,
                         [hidden](Bytes) -> Result<Bytes> { return tpm::make_rc_response(hidden); });
    EXPECT_EQ(rc_of(run(id, start_auth_session(TPM2_SE_POLICY))), hidden);
  }
  void lose_next_response(TPM2_CC code) {
    change_next_response(code, [](Bytes) -> Result<Bytes> { return make_error(ETIME, "no response in time"); });
  }
  std::set<TPM2_HANDLE> saved() const {
    auto v = tpm_->saved_sessions();
    return {v.begin(), v.end()};
  }
  std::set<TPM2_HANDLE> loaded_sessions() const {
    auto v = tpm_->loaded_sessions();
    return {v.begin(), v.end()};
  }
  // Loads the TPM the way a crashed earlier user would have left it: two objects, a loaded and a saved session.
  void leave_leftovers() {
    ASSERT_EQ(rc_of(*tpm_->transmit(create_primary(TPM2_RH_OWNER, 7))), TPM2_RC_SUCCESS);
    ASSERT_EQ(rc_of(*tpm_->transmit(create_primary(TPM2_RH_OWNER, 8))), TPM2_RC_SUCCESS);
    ASSERT_EQ(rc_of(*tpm_->transmit(start_auth_session(TPM2_SE_HMAC))), TPM2_RC_SUCCESS);
    Bytes second = *tpm_->transmit(start_auth_session(TPM2_SE_POLICY));
    ASSERT_EQ(rc_of(*tpm_->transmit(context_save(handle_of(second)))), TPM2_RC_SUCCESS);
    ASSERT_EQ(tpm_->loaded_objects().size(), 2u);
    ASSERT_EQ(tpm_->loaded_sessions().size(), 1u);
    ASSERT_EQ(tpm_->saved_sessions().size(), 1u);
  }
};

TEST_F(UnseenOutcomeTest, AFlushWhoseResponseWasLostIsReconciledBeforeTheSlotIsReused) {
  ConnectionId a = open(), b = open();
  auto [va, a_serial] = make_key(a, 1);
  lose_next_response(TPM2_CC_FlushContext);
  EXPECT_EQ(errno_of(a, flush_context(va)), ETIME);
  EXPECT_TRUE(tpm_->loaded_objects().empty());  // the TPM did flush it
  // b's object lands in the slot a's entry named; the RM has dropped that entry before sending b's command.
  auto [vb, b_serial] = make_key(b, 2);
  EXPECT_EQ(rm_->counters().reconciliations, 1u);
  EXPECT_EQ(rm_->counters().physical_collisions, 0u);
  EXPECT_EQ(errno_of(a, read_public(va)), EINVAL);  // lost, never b's object
  EXPECT_EQ(serial(b, vb), b_serial);
  ok(a, flush_context(va));  // forgetting a lost object is still a clean flush
  EXPECT_EQ(errno_of(a, read_public(va)), EINVAL);
}

TEST_F(UnseenOutcomeTest, AnObjectCreatedByACommandWhoseResponseWasLostIsFlushed) {
  ConnectionId a = open(), b = open();
  lose_next_response(TPM2_CC_CreatePrimary);
  EXPECT_EQ(errno_of(a, create_primary(TPM2_RH_OWNER, 1)), ETIME);
  EXPECT_EQ(tpm_->loaded_objects().size(), 1u);  // created, and nobody has a handle to it
  auto [vb, b_serial] = make_key(b, 2);
  EXPECT_EQ(loaded_serials(), (std::set<std::uint64_t>{b_serial}));
  EXPECT_GE(rm_->counters().reconciled_entries, 1u);
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(tpm_->loaded_objects().empty());
}

TEST_F(UnseenOutcomeTest, ASessionSavedByALostContextSaveIsFlushedNotOrphaned) {
  FakeTpmOptions one_slot;
  one_slot.session_slots = 1;
  reset(one_slot, {});
  ConnectionId a = open(), b = open();
  TPM2_HANDLE sa = make_session(a);
  lose_next_response(TPM2_CC_ContextSave);
  // Room for b's session: the RM's save of a's runs in the TPM, but the RM never gets the context.
  TPM2_HANDLE sb = make_session(b);  // may well reuse a's handle: a's session is gone
  EXPECT_TRUE(saved().empty());  // not kept saved where nobody could ever load it
  EXPECT_EQ(loaded_sessions(), (std::set<TPM2_HANDLE>{sb}));
  EXPECT_EQ(errno_of(a, policy_get_digest(sa)), EINVAL);
  ok(b, policy_get_digest(sb));
}

TEST_F(UnseenOutcomeTest, ASessionLoadWhoseResponseWasLostLeavesTheSessionUsable) {
  FakeTpmOptions one_slot;
  one_slot.session_slots = 1;
  reset(one_slot, {});
  ConnectionId a = open(), b = open();
  TPM2_HANDLE sa = make_session(a);
  TPM2_HANDLE sb = make_session(b);  // a's session is saved by the RM to make room
  lose_next_response(TPM2_CC_ContextLoad);
  EXPECT_EQ(errno_of(a, policy_get_digest(sa)), ETIME);
  EXPECT_EQ(loaded_sessions(), (std::set<TPM2_HANDLE>{sa}));  // the TPM did load it
  ok(a, policy_get_digest(sa));  // reconciled: taken as loaded, no second load
  ok(b, policy_get_digest(sb));
  ok(a, policy_get_digest(sa));
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(loaded_sessions().empty());
  EXPECT_TRUE(saved().empty());
}

TEST_F(UnseenOutcomeTest, ASuccessTooShortToHoldItsHandleIsAnErrorAndTheObjectIsFlushed) {
  ConnectionId a = open(), b = open();
  change_next_response(TPM2_CC_CreatePrimary, [](Bytes) -> Result<Bytes> { return tpm::make_success_response(); });
  EXPECT_EQ(errno_of(a, create_primary(TPM2_RH_OWNER, 1)), EIO);
  EXPECT_EQ(tpm_->loaded_objects().size(), 1u);
  auto [vb, b_serial] = make_key(b, 2);
  EXPECT_EQ(loaded_serials(), (std::set<std::uint64_t>{b_serial}));
}

TEST_F(UnseenOutcomeTest, AHandleOfTheWrongTypeIsAnErrorAndWhatWasCreatedIsFlushed) {
  ConnectionId a = open(), b = open();
  TPM2_HANDLE sb = make_session(b);
  // The TPM claims a's new object is b's session: a must not get it, and b must keep it.
  change_next_response(TPM2_CC_CreatePrimary, [sb](Bytes response) -> Result<Bytes> {
    tpm::store_u32(response, 10, sb);
    return response;
  });
  EXPECT_EQ(errno_of(a, create_primary(TPM2_RH_OWNER, 1)), EIO);
  auto [vb, b_serial] = make_key(b, 2);
  EXPECT_EQ(loaded_serials(), (std::set<std::uint64_t>{b_serial}));
  ok(b, policy_get_digest(sb));
  EXPECT_EQ(errno_of(a, policy_get_digest(sb)), EINVAL);
}

TEST_F(UnseenOutcomeTest, UnvirtualisedFlushAndSaveFormsLeaveNothingStale) {
  ConnectionId a = open(), b = open();
  auto [va, a_serial] = make_key(a, 1);
  TPM2_HANDLE sa = make_session(a);
  Bytes flush_trailing = flush_context(va);
  flush_trailing.insert(flush_trailing.end(), {0, 0, 0, 0});
  tpm::store_u32(flush_trailing, 2, static_cast<std::uint32_t>(flush_trailing.size()));
  Bytes save_trailing = context_save(sa);
  save_trailing.push_back(0);
  tpm::store_u32(save_trailing, 2, static_cast<std::uint32_t>(save_trailing.size()));
  // The TPM refuses both (TPM_RC_SIZE); neither is taken for done.
  EXPECT_NE(rc_of(run(a, flush_trailing)), TPM2_RC_SUCCESS);
  EXPECT_NE(rc_of(run(a, save_trailing)), TPM2_RC_SUCCESS);
  auto [vb, b_serial] = make_key(b, 2);
  EXPECT_EQ(serial(a, va), a_serial);
  EXPECT_EQ(serial(b, vb), b_serial);
  ok(a, policy_get_digest(sa));
  EXPECT_EQ(rm_->counters().physical_collisions, 0u);
}

TEST_F(UnseenOutcomeTest, LeftoversOfAnEarlierRunAreFlushedOnATpmTheDaemonOwns) {
  leave_leftovers();
  rm::RmOptions options;
  options.leftovers = rm::Leftovers::kFlush;
  rm_ = std::make_unique<rm::ResourceManager>(*tpm_, options);
  EXPECT_TRUE(tpm_->loaded_objects().empty());
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
  EXPECT_TRUE(tpm_->saved_sessions().empty());
  EXPECT_EQ(rm_->counters().leftovers_flushed, 4u);
}

TEST_F(UnseenOutcomeTest, ForeignHandlesOnASharedTpmAreLeftAloneAndTheirSlotsNotUsed) {
  leave_leftovers();
  const auto foreign_objects = tpm_->loaded_objects();
  const auto foreign_loaded = loaded_sessions();
  const auto foreign_saved = saved();
  rm::RmOptions options;
  options.leftovers = rm::Leftovers::kKeep;
  rm_ = std::make_unique<rm::ResourceManager>(*tpm_, options);
  ConnectionId a = open(), b = open();
  // One object slot of three is left: every key still works, by eviction, and no TPM warning is needed.
  auto [a0, a0_serial] = make_key(a, 1);
  auto [b0, b0_serial] = make_key(b, 2);
  auto [a1, a1_serial] = make_key(a, 3);
  EXPECT_EQ(serial(a, a0), a0_serial);
  EXPECT_EQ(serial(b, b0), b0_serial);
  EXPECT_EQ(serial(a, a1), a1_serial);
  TPM2_HANDLE sa = make_session(a);
  TPM2_HANDLE sb = make_session(b);
  ok(a, policy_get_digest(sa));
  ok(b, policy_get_digest(sb));
  rm_->close(a);
  rm_->close(b);
  rm_->shutdown();
  auto objects = tpm_->loaded_objects();
  EXPECT_EQ(std::set<TPM2_HANDLE>(objects.begin(), objects.end()),
            std::set<TPM2_HANDLE>(foreign_objects.begin(), foreign_objects.end()));
  EXPECT_EQ(loaded_sessions(), foreign_loaded);
  EXPECT_EQ(saved(), foreign_saved);
}

// The TPM carries out the RM's own FlushContext (an eviction) but answers it with an error; then an object
// creation's answer is lost, so the object lands, unseen, in the slot the RM still believed held the evicted
// key. Without reconciliation after the refused flush, the evicted key's handle would reach that object.
TEST_F(UnseenOutcomeTest, ARefusedEvictionFlushIsReconciledBeforeAnUnseenObjectCanTakeItsSlot) {
  ConnectionId a = open(), b = open();
  std::vector<std::pair<TPM2_HANDLE, std::uint64_t>> keys;
  for (std::uint8_t i = 1; i <= 3; ++i) keys.push_back(make_key(a, i));  // the TPM's 3 slots are full
  // b's creation makes room: the oldest key is flushed but the flush answered as refused, so another is
  // evicted too; the creation lands in the lowest free slot, the first key's, and its answer is lost.
  auto flush_lied = std::make_shared<bool>(false);
  tpm_->set_response_hook([flush_lied](ByteSpan command, Bytes response) -> Result<Bytes> {
    const TPM2_CC code = tpm::load_u32(command, 6);
    if (code == TPM2_CC_FlushContext && !*flush_lied) {
      *flush_lied = true;
      return tpm::make_rc_response(TPM2_RC_VALUE | TPM2_RC_1);
    }
    if (code == TPM2_CC_CreatePrimary) return make_error(ETIME, "no response in time");
    return response;
  });
  EXPECT_EQ(errno_of(b, create_primary(TPM2_RH_OWNER, 9)), ETIME);  // b's object exists, unseen
  tpm_->set_response_hook({});
  ASSERT_TRUE(*flush_lied);
  for (const auto& [vh, s] : keys) EXPECT_EQ(serial(a, vh), s) << "a's handle reaches an object a never had";
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(tpm_->loaded_objects().empty()) << "the unseen object outlived its connection";
}

// The TPM ends a session (a command naming it with continueSession clear) but answers an error, so the RM
// believes it still open; then a session start's answer is an error too, and the TPM has handed out the ended
// session's handle again. Without the check after the first lie, the first connection's session handle would
// reach the session the second one started (found by rm_hostile_tpm_fuzzer).
TEST_F(UnseenOutcomeTest, ASessionEndedByACommandAnsweredAsFailedIsReconciledBeforeItsHandleIsReused) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE s = make_session(a);
  const TPM2_RC lie = TPM2_RC_AUTH_FAIL | TPM2_RC_S | TPM2_RC_1;
  change_next_response(TPM2_CC_GetRandom, [lie](Bytes) -> Result<Bytes> { return tpm::make_rc_response(lie); });
  EXPECT_EQ(rc_of(run(a, get_random(8, {Auth{s, 0}}))), lie);
  ASSERT_FALSE(loaded_sessions().count(s)) << "the TPM did end it";
  start_hidden_session(b);
  ASSERT_TRUE(loaded_sessions().count(s)) << "the TPM put the new session under the ended one's handle";
  EXPECT_EQ(rm_->counters().reconciliations, 1u);
  const rm::SessionEntry* entry = rm_->residency().sessions().find(s);
  EXPECT_TRUE(!entry || entry->owner != a) << "a still owns the handle of a session b started";
  auto used = rm_->execute(a, get_random(8, {Auth{s, TPMA_SESSION_CONTINUESESSION}}));
  EXPECT_FALSE(used && rc_of(*used) == TPM2_RC_SUCCESS) << "a's handle reaches the session b started";
}

// A client's FlushContext of its saved session is carried out but answered with an error, so the RM keeps the
// session's token; another connection's session start, answered with an error too, takes the freed slot. The
// token must not then load that session for whoever holds the blob (found by rm_hostile_tpm_fuzzer).
TEST_F(UnseenOutcomeTest, ARefusedSessionFlushIsReconciledBeforeItsTokenCanReachASessionInItsSlot) {
  ConnectionId a = open(), b = open(), c = open();
  const TPM2_HANDLE s = make_session(a);
  const Bytes token = body_of(ok(a, context_save(s)));
  const TPM2_RC lie = TPM2_RC_OBJECT_MEMORY;
  change_next_response(TPM2_CC_FlushContext, [lie](Bytes) -> Result<Bytes> { return tpm::make_rc_response(lie); });
  EXPECT_EQ(rc_of(run(a, flush_context(s))), lie);
  ASSERT_TRUE(saved().empty() && loaded_sessions().empty()) << "the TPM did flush it";
  start_hidden_session(b);
  ASSERT_TRUE(loaded_sessions().count(s)) << "the TPM put the new session under the flushed one's handle";
  EXPECT_EQ(rm_->counters().reconciliations, 1u);
  auto loaded = rm_->execute(c, context_load(token));
  EXPECT_FALSE(loaded && rc_of(*loaded) == TPM2_RC_SUCCESS) << "the flushed session's token reached b's session";
}

}  // namespace
}  // namespace tpmrmd::testing

// A real swtpm whose answers the RM does not (fully) see: a deadline that fires after the TPM ran the command,
// with or without the late response, on clients' commands and on the RM's own; and a TPM that already holds
// handles when the RM starts. Two connections each time: no handle of one may ever reach the other's object,
// and the TPM's own handle lists are the witness that nothing is left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "chip/driver_factory.h"
#include "rm_fixture.h"
#include "support/fault_injecting_driver.h"
#include "tpm/endian.h"
#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

constexpr TPM2_HANDLE kLoadedSessions = 0x02000000u;
constexpr TPM2_HANDLE kSavedSessions = 0x03000000u;

// The swtpm behind a fault-injecting driver, on a chip configured as the daemon's (late responses returned)
// or as a bare chip's (late responses flushed).
class UnseenOutcomeTest : public SwtpmRmTest {
 protected:
  void SetUp() override {
    SwtpmRmTest::SetUp();
    if (HasFatalFailure()) return;
    rebuild(true);
  }
  void rebuild(bool return_late) {
    rm_.reset();
    faults_.reset();
    port_.reset();
    chip_->unregister(chip::ShutdownMode::kNone);
    auto real = chip::make_driver(swtpm_.spec());
    ASSERT_TRUE(real) << describe(real.error());
    auto driver = std::make_unique<FaultInjectingDriver>(std::move(*real));
    driver_ = driver.get();
    chip::ChipOptions options;
    options.return_late_responses = return_late;
    chip_ = std::make_unique<chip::Chip>(std::move(driver), options);
    auto started = chip_->startup();
    ASSERT_TRUE(started) << describe(started.error());
    port_ = std::make_unique<daemon::ChipPort>(*chip_);
    faults_ = std::make_unique<FaultPort>(*port_);
    rm_ = std::make_unique<rm::ResourceManager>(*port_);
  }
  Bytes name(ConnectionId id, TPM2_HANDLE vh) { return name_of(ok(id, read_public(vh))); }
  int errno_of(ConnectionId id, const Bytes& command) {
    auto r = rm_->execute(id, command);
    return r ? 0 : r.error().code;
  }
  std::set<TPM2_HANDLE> raw(TPM2_HANDLE range) {
    auto v = raw_handles(range);
    return {v.begin(), v.end()};
  }
  // What a crashed earlier user leaves: `objects` primaries, one loaded and `saved` saved sessions.
  void leave_leftovers(int objects, int saved) {
    for (int i = 0; i < objects; ++i) {
      ASSERT_EQ(rc_of(*chip_->transmit(create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(90 + i)))),
                TPM2_RC_SUCCESS);
    }
    ASSERT_EQ(rc_of(*chip_->transmit(start_auth_session(TPM2_SE_HMAC))), TPM2_RC_SUCCESS);
    for (int i = 0; i < saved; ++i) {
      Bytes s = *chip_->transmit(start_auth_session(TPM2_SE_POLICY));
      ASSERT_EQ(rc_of(*chip_->transmit(context_save(handle_of(s)))), TPM2_RC_SUCCESS);
    }
  }

  FaultInjectingDriver* driver_ = nullptr;
};

TEST_F(UnseenOutcomeTest, ALateResponseIsTheAnswerAndLeavesNothingUnknown) {
  ConnectionId a = open(), b = open();
  TPM2_HANDLE a0 = make_key(a, 1);
  driver_->time_out_next_with_late_response();
  TPM2_HANDLE a1 = make_key(a, 2);  // the deadline fired, the TPM answered late: that answer is a's
  TPM2_HANDLE b0 = make_key(b, 3);
  TPM2_HANDLE b1 = make_key(b, 4);
  EXPECT_EQ(chip_->counters().late_returned, 1u);
  EXPECT_EQ(rm_->counters().reconciliations, 0u);
  const std::set<Bytes> names{name(a, a0), name(a, a1), name(b, b0), name(b, b1)};
  EXPECT_EQ(names.size(), 4u);
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(raw(TPM2_TRANSIENT_FIRST).empty());
}

TEST_F(UnseenOutcomeTest, AClientFlushWhoseResponseWasLostIsReconciledBeforeTheSlotIsReused) {
  ConnectionId a = open(), b = open();
  TPM2_HANDLE va = make_key(a, 1);
  driver_->time_out_next_losing_response();
  EXPECT_EQ(errno_of(a, flush_context(va)), ETIME);
  TPM2_HANDLE vb = make_key(b, 2);  // the TPM's lowest free slot: where a's object was
  const Bytes b_name = name(b, vb);
  EXPECT_EQ(errno_of(a, read_public(va)), EINVAL) << "a's stale handle must not read b's object";
  EXPECT_EQ(name(b, vb), b_name);
  EXPECT_EQ(rm_->counters().reconciliations, 1u);
  EXPECT_EQ(raw(TPM2_TRANSIENT_FIRST).size(), 1u);
}

TEST_F(UnseenOutcomeTest, AnObjectCreatedByATimedOutCommandIsNeverLeaked) {
  rebuild(false);  // a bare chip: the late response is flushed, the RM gets ETIME
  ConnectionId a = open(), b = open();
  driver_->time_out_next_with_late_response();
  EXPECT_EQ(errno_of(a, create_primary(TPM2_RH_OWNER, 1)), ETIME);
  driver_->time_out_next_losing_response();
  EXPECT_EQ(errno_of(a, create_primary(TPM2_RH_OWNER, 2)), ETIME);
  TPM2_HANDLE vb = make_key(b, 3);
  EXPECT_FALSE(name(b, vb).empty());
  EXPECT_EQ(raw(TPM2_TRANSIENT_FIRST).size(), 1u) << "neither timed-out create may stay loaded";
  rm_->close(b);
  rm_->close(a);
  EXPECT_TRUE(raw(TPM2_TRANSIENT_FIRST).empty());
}

TEST_F(UnseenOutcomeTest, TheRmsOwnContextSaveAnsweredLateKeepsTheSession) {
  ConnectionId a = open(), b = open();
  std::vector<TPM2_HANDLE> sessions;
  for (int i = 0; i < 3; ++i) sessions.push_back(make_policy_session(a));  // swtpm's three session slots
  driver_->time_out_next_with_late_response();
  TPM2_HANDLE sb = make_policy_session(b);  // evicts a's oldest: the ContextSave is answered late
  for (TPM2_HANDLE s : sessions) ok(a, policy_get_digest(s));
  ok(b, policy_get_digest(sb));
  EXPECT_EQ(chip_->counters().late_returned, 1u);
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(raw(kLoadedSessions).empty());
  EXPECT_TRUE(raw(kSavedSessions).empty());
}

TEST_F(UnseenOutcomeTest, TheRmsOwnContextSaveLostLeavesNoOrphanedSavedSession) {
  ConnectionId a = open(), b = open();
  std::vector<TPM2_HANDLE> sessions;
  for (int i = 0; i < 3; ++i) sessions.push_back(make_policy_session(a));
  driver_->time_out_next_losing_response();
  TPM2_HANDLE sb = make_policy_session(b);
  // The oldest of a's sessions was saved where nobody can load it again: flushed, and a is told so.
  EXPECT_EQ(errno_of(a, policy_get_digest(sessions[0])), EINVAL);
  ok(a, policy_get_digest(sessions[1]));
  ok(a, policy_get_digest(sessions[2]));
  ok(b, policy_get_digest(sb));
  EXPECT_TRUE(raw(kSavedSessions).empty());
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(raw(kLoadedSessions).empty());
}

TEST_F(UnseenOutcomeTest, ATpmFullOfAnEarlierRunsHandlesIsFlushedWhenTheDaemonOwnsIt) {
  leave_leftovers(3, 2);  // every object slot taken
  rm::RmOptions options;
  options.leftovers = rm::Leftovers::kFlush;
  reset_rm(options);
  EXPECT_TRUE(raw(TPM2_TRANSIENT_FIRST).empty());
  EXPECT_TRUE(raw(kLoadedSessions).empty());
  EXPECT_TRUE(raw(kSavedSessions).empty());
  EXPECT_EQ(rm_->counters().leftovers_flushed, 6u);
  ConnectionId a = open(), b = open();
  TPM2_HANDLE a0 = make_key(a, 1), b0 = make_key(b, 2);
  EXPECT_NE(name(a, a0), name(b, b0));
}

TEST_F(UnseenOutcomeTest, ForeignHandlesOnASharedTpmAreLeftAloneAndTheirSlotsNotUsed) {
  leave_leftovers(2, 1);
  const auto foreign_objects = raw(TPM2_TRANSIENT_FIRST);
  const auto foreign_loaded = raw(kLoadedSessions);
  const auto foreign_saved = raw(kSavedSessions);
  rm::RmOptions options;
  options.leftovers = rm::Leftovers::kKeep;
  reset_rm(options);
  ConnectionId a = open(), b = open();
  // One object slot of three is the RM's: four keys by eviction, each reached only by its owner.
  TPM2_HANDLE a0 = make_key(a, 1), b0 = make_key(b, 2), a1 = make_key(a, 3), b1 = make_key(b, 4);
  const Bytes na0 = name(a, a0), nb0 = name(b, b0), na1 = name(a, a1), nb1 = name(b, b1);
  EXPECT_EQ(std::set<Bytes>({na0, nb0, na1, nb1}).size(), 4u);
  EXPECT_EQ(name(a, a0), na0);
  EXPECT_EQ(name(b, b0), nb0);
  TPM2_HANDLE sa = make_policy_session(a), sb = make_policy_session(b);
  ok(a, policy_get_digest(sa));
  ok(b, policy_get_digest(sb));
  rm_->close(a);
  rm_->close(b);
  rm_->shutdown();
  EXPECT_EQ(raw(TPM2_TRANSIENT_FIRST), foreign_objects);
  EXPECT_EQ(raw(kLoadedSessions), foreign_loaded);
  EXPECT_EQ(raw(kSavedSessions), foreign_saved);
}

// The TPM carries out a command that ends what it names (SequenceComplete flushes its sequence object) but
// answers an error, so the RM still believes the sequence loaded; then another connection's creation is answered
// with an error too, and the TPM has put that object in the freed slot. The RM compares its tables with the TPM's
// after the first lie, so the first connection's stale handle fails cleanly instead of reaching the second's key.
TEST_F(UnseenOutcomeTest, AFlushingCommandAnsweredAsFailedIsReconciledBeforeItsSlotIsReused) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE sequence = handle_of(ok(a, hash_sequence_start()));
  const TPM2_RC lie = TPM2_RC_VALUE | TPM2_RC_P | TPM2_RC_1;
  std::vector<TPM2_HANDLE> hidden;
  driver_->rewrite_responses([&](ByteSpan command, Bytes& response) {
    const TPM2_CC code = tpm::load_u32(command, 6);
    if (code != TPM2_CC_SequenceComplete && code != TPM2_CC_CreatePrimary) return;
    if (rc_of(response) != TPM2_RC_SUCCESS) return;
    if (code == TPM2_CC_CreatePrimary) hidden.push_back(handle_of(response));
    response = tpm::make_rc_response(lie);
  });
  EXPECT_EQ(rc_of(run(a, sequence_complete(sequence))), lie);
  ASSERT_TRUE(raw(TPM2_TRANSIENT_FIRST).empty()) << "the TPM did flush the sequence";
  EXPECT_EQ(rc_of(run(b, create_primary(TPM2_RH_OWNER, 2))), lie);
  driver_->rewrite_responses({});
  ASSERT_EQ(hidden.size(), 1u);
  EXPECT_EQ(rm_->counters().reconciliations, 1u);
  auto reached = rm_->execute(a, read_public(sequence));
  EXPECT_FALSE(reached && rc_of(*reached) == TPM2_RC_SUCCESS) << "a's stale handle reads b's key";
  rm_->close(a);
  rm_->close(b);
  // What the second lie hid is the TPM's alone; nothing else is left.
  EXPECT_EQ(raw(TPM2_TRANSIENT_FIRST), std::set<TPM2_HANDLE>{hidden[0]});
  ASSERT_EQ(rc_of(*chip_->transmit(flush_context(hidden[0]))), TPM2_RC_SUCCESS);
}

}  // namespace
}  // namespace tpmrmd::testing

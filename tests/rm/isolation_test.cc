// What one connection can learn of or take from another beyond handles: a client-saved session's blob is a
// capability that can be claimed once (a second ContextLoad of it fails as on a bare TPM and never takes the
// session from the connection that claimed it), and the TPM properties that describe the RM's resources show
// the caller's view whether or not the request carries an audit session.
#include <gtest/gtest.h>

#include "rm/handles.h"
#include "tpm/commands.h"
#include "rm_fixture.h"
#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

// What the bare TPM answers to the second load of one saved session's context.
TPM2_RC bare_double_load_rc(chip::Chip& chip) {
  auto started = chip.transmit(start_auth_session(TPM2_SE_POLICY));
  EXPECT_TRUE(started.ok());
  const TPM2_HANDLE session = handle_of(*started);
  auto saved = chip.transmit(context_save(session));
  EXPECT_EQ(rc_of(*saved), TPM2_RC_SUCCESS);
  const Bytes blob = body_of(*saved);
  auto first = chip.transmit(context_load(blob));
  EXPECT_EQ(rc_of(*first), TPM2_RC_SUCCESS);
  auto second = chip.transmit(context_load(blob));
  EXPECT_TRUE(second.ok());
  EXPECT_TRUE(chip.transmit(flush_context(session)).ok());
  return rc_of(*second);
}

TEST_F(SwtpmRmTest, ASessionTokenCanBeClaimedOnce) {
  const TPM2_RC bare = bare_double_load_rc(*chip_);
  ASSERT_NE(bare, TPM2_RC_SUCCESS);

  ConnectionId a = open(), b = open(), c = open();
  const TPM2_HANDLE s = make_policy_session(a);
  const Bytes token = body_of(ok(a, context_save(s)));
  EXPECT_EQ(handle_of(ok(b, context_load(token))), s);  // b holds the blob: b now owns the session

  // c presents the same blob again: before b used the session (the RM still holds it saved, as that very
  // blob), while it is loaded, and after it was evicted (saved again by the RM).
  EXPECT_EQ(rc_of(run(c, context_load(token))), bare);
  const Bytes digest = ok(b, policy_get_digest(s));
  EXPECT_EQ(rc_of(run(c, context_load(token))), bare);
  for (std::uint8_t i = 0; i < 4; ++i) make_policy_session(a);  // pushes s out of the 3 loaded-session slots
  EXPECT_EQ(rc_of(run(c, context_load(token))), bare);
  // a, which saved it, cannot take it back with the same blob either.
  EXPECT_EQ(rc_of(run(a, context_load(token))), bare);

  // b still owns and uses it; nobody else can name it.
  EXPECT_EQ(ok(b, policy_get_digest(s)), digest);
  auto refused = rm_->execute(c, policy_get_digest(s));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, EINVAL);
  EXPECT_EQ(rm_->counters().per_connection[c].sessions, 0u);
}

// Saving again hands out a new token, which is claimable once more.
TEST_F(SwtpmRmTest, ANewSaveGivesANewClaimableToken) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE s = make_policy_session(a);
  const Bytes first = body_of(ok(a, context_save(s)));
  EXPECT_EQ(handle_of(ok(b, context_load(first))), s);
  const Bytes second = body_of(ok(b, context_save(s)));
  EXPECT_EQ(handle_of(ok(a, context_load(second))), s);
  EXPECT_EQ(rm_->counters().per_connection[a].sessions, 1u);
  EXPECT_EQ(rm_->counters().per_connection[b].sessions, 0u);
}

std::optional<std::uint32_t> transient_avail(const Bytes& response) {
  return property_of(response, TPM2_PT_HR_TRANSIENT_AVAIL);
}

TEST_F(SwtpmRmTest, PropertiesShowTheCallersViewWithOrWithoutAnAuditSession) {
  ConnectionId a = open(), b = open();
  for (std::uint8_t i = 0; i < 2; ++i) make_key(a, i);
  const Bytes query = get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_AVAIL, 1);
  const Bytes params(query.begin() + tpm::kHeaderSize, query.end());
  const Bytes plain = ok(b, query);
  const std::uint32_t limit = rm::RmOptions{}.max_objects_per_connection;
  EXPECT_EQ(transient_avail(plain), limit);

  const TPM2_HANDLE audit = handle_of(ok(b, start_auth_session(TPM2_SE_HMAC)));
  const Bytes audited = run(b, build_command(TPM2_CC_GetCapability, {}, {Auth{audit, 0x81}}, params));
  ASSERT_EQ(rc_of(audited), TPM2_RC_SUCCESS);
  EXPECT_EQ(transient_avail(audited), limit);  // not the TPM's free slots, which a's keys use
  EXPECT_EQ(transient_avail(ok(a, get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_AVAIL, 1))),
            limit - 2);
}

}  // namespace
}  // namespace tpmrmd::testing

namespace tpmrmd::testing {
namespace {

TEST_F(SwtpmRmTest, AClientsStartupAndShutdownAreAnsweredWithoutReachingTheTpm) {
  ConnectionId a = open(), b = open();
  TPM2_HANDLE key = make_key(b, 1);
  const std::uint64_t before = chip_commands();
  // What a started TPM answers to a second Startup, and what tpm2_startup/tpm2_shutdown expect.
  EXPECT_EQ(rc_of(run(a, tpm::make_startup(TPM2_SU_CLEAR))), TPM2_RC_INITIALIZE);
  EXPECT_EQ(rc_of(run(a, tpm::make_startup(TPM2_SU_STATE))), TPM2_RC_INITIALIZE);
  EXPECT_EQ(rc_of(run(a, tpm::make_shutdown(TPM2_SU_CLEAR))), TPM2_RC_SUCCESS);
  EXPECT_EQ(rc_of(run(a, tpm::make_shutdown(TPM2_SU_STATE))), TPM2_RC_SUCCESS);
  EXPECT_EQ(chip_commands(), before);
  // The TPM was not shut down under b: its key still works, and so does the TPM for a.
  ok(b, read_public(key));
  ok(a, get_random(8));
}

}  // namespace
}  // namespace tpmrmd::testing

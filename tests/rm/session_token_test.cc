// A client-saved session's blob is a capability that can be claimed once: a second ContextLoad of the same
// blob fails as it does on a bare TPM and never takes the session from the connection that claimed it.
#include <gtest/gtest.h>

#include "rm/handles.h"
#include "rm_fixture.h"

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

}  // namespace
}  // namespace tpmrmd::testing

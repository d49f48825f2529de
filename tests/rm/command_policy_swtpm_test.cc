// The command policy against a real TPM: what strict refuses never reaches the TPM and is answered as the
// kernel answers a command it refuses; root runs it; both end up in the audit trail.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "audit_capture.h"
#include "rm/command_policy_file.h"
#include "rm/handles.h"
#include "rm_fixture.h"
#include "tpm/endian.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

constexpr gid_t kTss = 4242;
const Bytes kRmRefusal = {0x80, 0x01, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x0B, 0x01, 0x43};

Bytes clear() { return testing::build_command(TPM2_CC_Clear, {TPM2_RH_LOCKOUT}, {Auth{}}, {}); }
Bytes read_clock() { return testing::build_command(TPM2_CC_ReadClock, {}, {}, {}); }
Bytes disable_owner_hierarchy() {
  Bytes params(5, 0);  // enable: TPM2_RH_OWNER, state: NO
  tpm::store_u32(params, 0, TPM2_RH_OWNER);
  return testing::build_command(TPM2_CC_HierarchyControl, {TPM2_RH_PLATFORM}, {Auth{}}, params);
}

class CommandPolicyTest : public SwtpmRmTest {
 protected:
  void use(rm::CommandPolicy policy, bool rc_mode = false) {
    rm::RmOptions options;
    options.policy = std::move(policy);
    options.rc_mode = rc_mode;
    reset_rm(options);
  }
  ConnectionId open_as(const rm::ClientInfo& client) {
    auto id = rm_->open(client);
    EXPECT_TRUE(id);
    return id ? *id : 0;
  }
  AuditCapture audit_;
};

TEST_F(CommandPolicyTest, StrictRefusesClearAndHierarchyControlToAUserBeforeTheTpm) {
  use(rm::CommandPolicy::from_profile(rm::PolicyProfile::kStrict));
  const ConnectionId user = open_as(rm::ClientInfo{1000, 1000, 4711, {}, "tpm2_clear"});
  const std::uint64_t before = chip_commands();
  EXPECT_EQ(run(user, clear()), kRmRefusal);
  EXPECT_EQ(run(user, disable_owner_hierarchy()), kRmRefusal);
  EXPECT_EQ(chip_commands(), before) << "a refused command reaches the TPM";
  EXPECT_EQ(rm_->counters().refusals, 2u);

  // The owner hierarchy is still enabled and the user still works with the TPM.
  make_key(user);
  EXPECT_EQ(rc_of(run(user, read_clock())), TPM2_RC_SUCCESS);

  EXPECT_EQ(audit_.count({"event=audit outcome=refused", "uid=1000", "pid=4711", "comm=\"tpm2_clear\"",
                          "class=other", "cc=0x00000126", "command=Clear", "rc=0x000b0143"}),
            1u);
  EXPECT_EQ(audit_.count({"event=audit outcome=refused", "uid=1000", "command=HierarchyControl"}), 1u);
  EXPECT_EQ(audit_.count({"command=CreatePrimary"}) + audit_.count({"command=ReadClock"}), 0u)
      << "ordinary commands are not audited";
}

TEST_F(CommandPolicyTest, StrictLetsRootRunReadClockAndClearAndAuditsClear) {
  use(rm::CommandPolicy::from_profile(rm::PolicyProfile::kStrict));
  const ConnectionId root = open_as(rm::ClientInfo{0, 0, 99, {}, "tpm2_clear"});
  EXPECT_EQ(rc_of(run(root, read_clock())), TPM2_RC_SUCCESS);
  const std::uint64_t before = chip_commands();
  EXPECT_EQ(rc_of(run(root, clear())), TPM2_RC_SUCCESS);  // swtpm's lockout auth is empty
  EXPECT_GT(chip_commands(), before);
  EXPECT_EQ(audit_.count({"event=audit outcome=ran", "uid=0", "pid=99", "class=root", "command=Clear",
                          "rc=0x00000000"}),
            1u);
  EXPECT_EQ(audit_.count({"command=ReadClock"}), 0u);
  EXPECT_EQ(audit_.count({"outcome=refused"}), 0u);
}

TEST_F(CommandPolicyTest, TheTpmsOwnFailureOfAPrivilegedCommandIsAuditedWithItsRc) {
  use(rm::CommandPolicy::from_profile(rm::PolicyProfile::kStrict));
  const ConnectionId root = open_as(rm::ClientInfo{0, 0, 99, {}, "tpm2"});
  // Clear through the owner handle: the TPM refuses it (TPM_RC_HIERARCHY or a handle error), the RM does not.
  const Bytes response = run(root, testing::build_command(TPM2_CC_Clear, {TPM2_RH_OWNER}, {Auth{}}, {}));
  const TPM2_RC rc = rc_of(response);
  EXPECT_NE(rc, TPM2_RC_SUCCESS);
  EXPECT_EQ(rc & 0xFFFF0000u, 0u) << "the TPM's rc, not the RM's";
  EXPECT_EQ(audit_.count({"event=audit outcome=ran", "command=Clear", fmt::format("rc=0x{:08x}", rc)}), 1u);
}

TEST_F(CommandPolicyTest, TheRefusalIsTheSameResponseInRcMode) {
  use(rm::CommandPolicy::from_profile(rm::PolicyProfile::kStrict), /*rc_mode=*/true);
  const ConnectionId user = open_as(rm::ClientInfo{1000, 1000, 1});
  EXPECT_EQ(run(user, clear()), kRmRefusal);
}

TEST_F(CommandPolicyTest, AGroupMemberGetsTheGroupClassRules) {
  auto policy = rm::parse_command_policy(
      R"({"profile": "strict", "group": "4242", "classes": {"group": {"allow": ["Clear"]}}})", "test");
  ASSERT_TRUE(policy) << policy.error().message;
  use(*policy);
  const ConnectionId member = open_as(rm::ClientInfo{1001, 1001, 5, {100, kTss}, "member"});
  const ConnectionId other = open_as(rm::ClientInfo{1002, 1002, 6, {100}, "other"});
  EXPECT_EQ(run(other, clear()), kRmRefusal);
  EXPECT_EQ(rc_of(run(member, clear())), TPM2_RC_SUCCESS);
  EXPECT_EQ(run(member, disable_owner_hierarchy()), kRmRefusal) << "the group class was given Clear only";
  EXPECT_EQ(audit_.count({"outcome=ran", "uid=1001", "class=group", "command=Clear", "rc=0x00000000"}), 1u);
  EXPECT_EQ(audit_.count({"outcome=refused", "uid=1002", "class=other", "command=Clear"}), 1u);
}

TEST_F(CommandPolicyTest, TheDefaultProfileIsTheKernelsAndStillAuditsPrivilegedCommands) {
  use(rm::CommandPolicy{});
  const ConnectionId user = open_as(rm::ClientInfo{1000, 1000, 7, {}, "tpm2_clear"});
  EXPECT_EQ(rc_of(run(user, clear())), TPM2_RC_SUCCESS);
  EXPECT_EQ(audit_.count({"outcome=ran", "uid=1000", "class=other", "command=Clear", "rc=0x00000000"}), 1u);
  // Startup and Shutdown stay the RM's own answers under any profile.
  EXPECT_EQ(rc_of(run(user, tpm::make_startup(TPM2_SU_CLEAR))), TPM2_RC_INITIALIZE);
}

TEST_F(CommandPolicyTest, AFloodOfRefusalsIsRateLimitedPerUid) {
  rm::RmOptions options;
  options.policy = rm::CommandPolicy::from_profile(rm::PolicyProfile::kStrict);
  options.audit = rm::AuditLimits{.burst = 4, .per_second = 0.001};
  reset_rm(options);
  const ConnectionId user = open_as(rm::ClientInfo{1000, 1000, 8, {}, "flood"});
  const ConnectionId root = open_as(rm::ClientInfo{0, 0, 9, {}, "root"});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(run(user, clear()), kRmRefusal);
  EXPECT_EQ(audit_.count({"outcome=refused", "uid=1000"}), 4u);
  EXPECT_EQ(rc_of(run(root, clear())), TPM2_RC_SUCCESS);
  EXPECT_EQ(audit_.count({"outcome=ran", "uid=0", "command=Clear"}), 1u) << "root has its own bucket";
}

}  // namespace
}  // namespace tpmrmd::testing

// --runas and --swtpm-user resolution: a numeric uid without a passwd entry never keeps gid 0.
#include "daemon/user_lookup.h"

#include <gtest/gtest.h>
#include <pwd.h>

namespace tpmrmd::daemon {
namespace {

// A uid no passwd entry names.
uid_t unnamed_uid() {
  uid_t uid = 4000123;
  while (::getpwuid(uid)) ++uid;
  return uid;
}

TEST(UserLookupTest, ANumericUidWithoutPasswdEntryTakesItsNumberAsGid) {
  const uid_t uid = unnamed_uid();
  auto as = runas_user(std::to_string(uid));
  ASSERT_TRUE(as.ok()) << describe(as.error());
  ASSERT_TRUE(*as);
  EXPECT_EQ((*as)->uid, uid);
  EXPECT_EQ((*as)->gid, static_cast<gid_t>(uid)) << "never the daemon's gid 0";
}

TEST(UserLookupTest, ANumericUidWithAPasswdEntryTakesItsPrimaryGroup) {
  const struct passwd* nobody = ::getpwnam("nobody");
  if (!nobody) GTEST_SKIP() << "no user nobody";
  const uid_t uid = nobody->pw_uid;  // getpw* share one static buffer: copy before the next lookup
  const gid_t gid = nobody->pw_gid;
  auto as = runas_user(std::to_string(uid));
  ASSERT_TRUE(as.ok());
  EXPECT_EQ((*as)->gid, gid);
  auto named = runas_user("nobody");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ((*named)->uid, uid);
  EXPECT_EQ((*named)->gid, gid);
}

TEST(UserLookupTest, RootAndNonsenseAreRefused) {
  EXPECT_FALSE(runas_user("0").ok());
  EXPECT_FALSE(runas_user("root").ok());
  EXPECT_FALSE(runas_user("12abc").ok());
  EXPECT_FALSE(runas_user("-5").ok());
  EXPECT_FALSE(runas_user("4294967295").ok()) << "(uid_t)-1 means 'no change' to setuid";
  EXPECT_FALSE(lookup_group("no-such-group-tpmrmd").ok());
  auto none = runas_user("");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
}

TEST(UserLookupTest, TheSwtpmUserDefaultsToAndMustBeTheRunasUser) {
  const uid_t uid = unnamed_uid();
  const std::optional<RunAs> daemon = RunAs{uid, static_cast<gid_t>(uid)};
  auto dflt = swtpm_user("", daemon);
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ((*dflt)->uid, uid);
  EXPECT_TRUE(swtpm_user(std::to_string(uid), daemon).ok());
  EXPECT_FALSE(swtpm_user(std::to_string(uid + 1), daemon).ok());
  auto alone = swtpm_user(std::to_string(uid + 1), std::nullopt);
  ASSERT_TRUE(alone.ok()) << "a daemon that stays root can start swtpm as anyone";
  EXPECT_EQ((*alone)->uid, uid + 1);
  auto root_daemon = swtpm_user("", std::nullopt);
  ASSERT_TRUE(root_daemon.ok());
  EXPECT_FALSE(*root_daemon);
}

}  // namespace
}  // namespace tpmrmd::daemon

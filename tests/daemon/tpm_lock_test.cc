// The one-daemon-per-TPM lock: one file per TPM however its endpoint or the lock dir is spelled, and a lock
// file planted as a symlink is refused, not followed.
#include "daemon/tpm_lock.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "daemon/canonical_path.h"

namespace tpmrmd::daemon {
namespace {

class TpmLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (std::filesystem::temp_directory_path() / "tpmrmd-lock-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(TpmLockTest, TwoSpellingsOfOneEndpointShareOneLock) {
  std::filesystem::create_directories(dir_ + "/state");
  auto first = TpmLock::acquire(dir_ + "/locks", "swtpm:unix:" + dir_ + "/state/swtpm.sock");
  ASSERT_TRUE(first.ok()) << describe(first.error());
  // Another spelling of the lock dir and of the endpoint (which need not exist yet).
  auto second = TpmLock::acquire(dir_ + "/locks/../locks/", "swtpm:unix:" + dir_ + "//state/./../state/swtpm.sock");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, EBUSY);
  EXPECT_NE(second.error().message.find(std::to_string(::getpid())), std::string::npos) << second.error().message;
}

TEST_F(TpmLockTest, ASymlinkedLockFileIsRefused) {
  const std::string identity = "swtpm:unix:" + dir_ + "/state/swtpm.sock";
  std::filesystem::create_directories(dir_ + "/locks");
  const std::string victim = dir_ + "/victim";
  { std::ofstream(victim) << "precious\n"; }
  const std::string link = dir_ + "/locks/" + lock_file_name(canonical_identity(identity));
  ASSERT_EQ(::symlink(victim.c_str(), link.c_str()), 0);
  auto lock = TpmLock::acquire(dir_ + "/locks", identity);
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.error().code, ELOOP);
  std::ifstream in(victim);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "precious") << "the symlink's target is untouched";
}

TEST_F(TpmLockTest, ALockFileThatIsNotARegularFileIsRefused) {
  const std::string identity = "device:/sys/devices/fake/tpm0";
  std::filesystem::create_directories(dir_ + "/locks/" + lock_file_name(identity));
  auto lock = TpmLock::acquire(dir_ + "/locks", identity);
  ASSERT_FALSE(lock.ok());
}

TEST(CanonicalPathTest, ResolvesTheExistingPrefixAndKeepsTheRest) {
  char real[PATH_MAX];
  ASSERT_NE(::realpath(std::filesystem::temp_directory_path().c_str(), real), nullptr);
  const std::string tmp = real;
  EXPECT_EQ(canonical_path(tmp + "/./"), tmp);
  EXPECT_EQ(canonical_path(tmp + "//does-not-exist/x.sock"), tmp + "/does-not-exist/x.sock");
  EXPECT_EQ(canonical_path("/"), "/");
  EXPECT_EQ(canonical_identity("swtpm:unix:" + tmp + "/../" + tmp.substr(tmp.rfind('/') + 1) + "/a"),
            "swtpm:unix:" + tmp + "/a");
  EXPECT_EQ(canonical_identity("mmio:0xfed40000"), "mmio:0xfed40000");
}

}  // namespace
}  // namespace tpmrmd::daemon

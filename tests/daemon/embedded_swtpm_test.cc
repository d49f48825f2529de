// The embedded swtpm on the host: provisioning at first start, platform auth per generation, swtpm as its own
// user across a privilege drop, and a final TPM2_Shutdown that reaches a restarted swtpm. Tests that change
// users run as root (they are skipped otherwise, and say so).
#include "daemon/embedded_swtpm.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tss2/tss2_mu.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "chip/driver_factory.h"
#include "daemon/supervisor.h"
#include "support/tpm_commands.h"
#include "tpm/commands.h"
#include "tpm/responses.h"
#include "support/eventually.h"

namespace tpmrmd::daemon {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

constexpr TPM2_HANDLE kEkCertRsa = 0x01c00002;
constexpr uid_t kNobody = 65534;
const rm::ClientInfo kClient{1000, 1000, 42};

// A private directory the swtpm user can reach (0755): its state dir is made and handed over below it.
class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "tpmrmd-embedded-XXXXXX").string();
    if (::mkdtemp(t.data())) path_ = t;
    ::chmod(path_.c_str(), 0755);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

SupervisorOptions fast_options() {
  SupervisorOptions options;
  options.first_attempts = 1;
  options.poll_interval = 20ms;
  options.retry_interval = 50ms;
  return options;
}

// One command through a connection of the supervisor's current generation; the response, or an empty one.
Bytes roundtrip(Supervisor& supervisor, const Bytes& command) {
  auto c = supervisor.open(kClient, {});
  if (!c) return {};
  std::promise<Result<std::size_t>> wrote;
  (*c)->write(command, false, [&](Result<std::size_t> r) { wrote.set_value(std::move(r)); });
  if (!wrote.get_future().get()) return {};
  std::promise<Result<Bytes>> read;
  (*c)->read(4096, false, [&](Result<Bytes> r) { read.set_value(std::move(r)); });
  auto r = read.get_future().get();
  (*c)->close();
  return r ? *r : Bytes{};
}

Bytes nv_read_public(TPM2_HANDLE index) { return testing::build_command(TPM2_CC_NV_ReadPublic, {index}, {}, {}); }

Bytes nv_read(TPM2_HANDLE index, std::uint16_t size, std::uint16_t offset) {
  Bytes p;
  tpm::append_marshalled(p, size, Tss2_MU_UINT16_Marshal);
  tpm::append_marshalled(p, offset, Tss2_MU_UINT16_Marshal);
  return testing::build_command(TPM2_CC_NV_Read, {index, index}, {testing::Auth{}}, p);
}

// HierarchyChangeAuth(PLATFORM) from a client with an empty password, to an empty auth: a no-op that succeeds
// exactly when the platform auth is empty.
TPM2_RC platform_auth_probe(Supervisor& supervisor) {
  auto r = roundtrip(supervisor, tpm::make_hierarchy_change_auth(TPM2_RH_PLATFORM, {}, {}));
  return r.size() >= 10 ? testing::rc_of(r) : 0xffffffffu;
}

std::optional<uid_t> process_uid(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) return static_cast<uid_t>(std::stoul(line.substr(4)));
  }
  return {};
}

EmbeddedSwtpmOptions unprovisioned(const std::string& state_dir) {
  return EmbeddedSwtpmOptions{.state_dir = state_dir, .provision = false};
}

TEST(EmbeddedSwtpmTest, FirstStartProvisionsAnEkCertificateAndLaterStartsDoNot) {
  TempDir dir;
  const std::string state = dir.path() + "/state";
  {
    EmbeddedSwtpm swtpm(EmbeddedSwtpmOptions{.state_dir = state, .provision = true});
    Supervisor supervisor(fast_options(), &swtpm);
    ASSERT_TRUE(supervisor.start().ok());
    auto pub = roundtrip(supervisor, nv_read_public(kEkCertRsa));
    ASSERT_GE(pub.size(), 10u);
    ASSERT_EQ(testing::rc_of(pub), TPM2_RC_SUCCESS) << "the RSA EK certificate index exists";
    TPM2B_NV_PUBLIC nv{};
    std::size_t offset = 10;
    ASSERT_EQ(Tss2_MU_TPM2B_NV_PUBLIC_Unmarshal(pub.data(), pub.size(), &offset, &nv), TSS2_RC_SUCCESS);
    EXPECT_TRUE(nv.nvPublic.attributes & TPMA_NV_WRITELOCKED) << "--lock-nvram";
    EXPECT_TRUE(nv.nvPublic.attributes & TPMA_NV_PLATFORMCREATE);
    ASSERT_GT(nv.nvPublic.dataSize, 100u);
    auto cert = roundtrip(supervisor, nv_read(kEkCertRsa, 16, 0));
    ASSERT_GE(cert.size(), 12u + 16u);
    ASSERT_EQ(testing::rc_of(cert), TPM2_RC_SUCCESS);
    // parameterSize (4), TPM2B size (2), then DER: a SEQUENCE with a two-byte length.
    EXPECT_EQ(cert[16], 0x30);
    EXPECT_EQ(cert[17], 0x82);
    supervisor.shutdown(chip::ShutdownMode::kNone);
  }
  ASSERT_TRUE(std::filesystem::exists(state + "/localca/issuercert.pem")) << "the local CA lives in the state dir";
  // A second start finds the TPM provisioned: a setup program that always fails is never run.
  EmbeddedSwtpm again(EmbeddedSwtpmOptions{.state_dir = state, .provision = true, .setup_program = "false"});
  EXPECT_TRUE(again.start().ok());
  again.stop();
}

TEST(EmbeddedSwtpmTest, AFailedProvisioningFailsTheStartAndLeavesNoState) {
  TempDir dir;
  const std::string state = dir.path() + "/state";
  EmbeddedSwtpm swtpm(EmbeddedSwtpmOptions{.state_dir = state, .provision = true, .setup_program = "false"});
  auto r = swtpm.start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("swtpm_setup"), std::string::npos) << describe(r.error());
  EXPECT_LE(swtpm.pid(), 0);
  EXPECT_FALSE(std::filesystem::exists(state + "/tpm2-00.permall"));
}

TEST(EmbeddedSwtpmTest, PlatformAuthIsSetForEveryGenerationUnlessEmptyIsAsked) {
  TempDir dir;
  {
    EmbeddedSwtpm swtpm(unprovisioned(dir.path() + "/random"));
    Supervisor supervisor(fast_options(), &swtpm);
    ASSERT_TRUE(supervisor.start().ok());
    EXPECT_EQ(tpm::rc_base(platform_auth_probe(supervisor)), TPM2_RC_BAD_AUTH) << "generation 1";
    ASSERT_EQ(::kill(swtpm.pid(), SIGKILL), 0);
    ASSERT_TRUE(eventually([&] { return supervisor.generation() == 2; }));
    EXPECT_EQ(tpm::rc_base(platform_auth_probe(supervisor)), TPM2_RC_BAD_AUTH) << "a restarted swtpm, generation 2";
    supervisor.shutdown(chip::ShutdownMode::kNone);
  }
  {
    EmbeddedSwtpm swtpm(unprovisioned(dir.path() + "/empty"));
    SupervisorOptions options = fast_options();
    options.platform_auth = PlatformAuthMode::kEmpty;
    Supervisor supervisor(options, &swtpm);
    ASSERT_TRUE(supervisor.start().ok());
    EXPECT_EQ(platform_auth_probe(supervisor), TPM2_RC_SUCCESS);
    supervisor.shutdown(chip::ShutdownMode::kNone);
  }
}

// The supervisor restarts swtpm from its own thread, which shutdown() joins before the final TPM2_Shutdown: the
// restarted swtpm must still be alive to get it. Shutdown(STATE) is what a later Startup(STATE) needs.
TEST(EmbeddedSwtpmTest, ShutdownAfterARestartReachesALiveSwtpm) {
  TempDir dir;
  const std::string state = dir.path() + "/state";
  {
    EmbeddedSwtpm swtpm(unprovisioned(state));
    Supervisor supervisor(fast_options(), &swtpm);
    ASSERT_TRUE(supervisor.start().ok());
    ASSERT_EQ(::kill(swtpm.pid(), SIGKILL), 0);
    ASSERT_TRUE(eventually([&] { return supervisor.generation() == 2; }));
    std::this_thread::sleep_for(100ms);
    supervisor.shutdown(chip::ShutdownMode::kState);
  }
  // A swtpm on the same state that leaves TPM2_Startup to us.
  const std::string sock = state + "/check.sock";
  const std::string ctrl = state + "/check.ctrl";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execlp("swtpm", "swtpm", "socket", "--tpm2", "--tpmstate", ("dir=" + state).c_str(), "--server",
             ("type=unixio,path=" + sock).c_str(), "--ctrl", ("type=unixio,path=" + ctrl).c_str(), "--flags",
             "not-need-init", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto driver = chip::make_driver("swtpm:path=" + sock + ",ctrl=" + ctrl);
  ASSERT_TRUE(eventually([&] {
    driver = chip::make_driver("swtpm:path=" + sock + ",ctrl=" + ctrl);
    return driver.ok();
  }, 10s));
  auto r = (*driver)->exchange(tpm::make_startup(TPM2_SU_STATE), 30s);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(testing::rc_of(*r), TPM2_RC_SUCCESS) << "Startup(STATE) needs the Shutdown(STATE) of the last run";
}

// In a child process (the drop is for good): swtpm runs as the --runas user from the first start, the daemon
// drops to it, and a swtpm restarted by the unprivileged daemon opens the state and serves.
int restart_after_drop(const std::string& state) {
  EmbeddedSwtpm swtpm(EmbeddedSwtpmOptions{.state_dir = state, .run_uid = kNobody, .run_gid = kNobody,
                                           .provision = false});
  Supervisor supervisor(fast_options(), &swtpm);
  if (!supervisor.start()) return 10;
  if (process_uid(swtpm.pid()) != kNobody) return 11;
  if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return 12;
  const pid_t first = swtpm.pid();
  if (::kill(first, SIGKILL) != 0) return 13;
  if (!eventually([&] { return supervisor.generation() == 2; })) return 14;
  if (process_uid(swtpm.pid()) != kNobody) return 15;
  const Bytes r = roundtrip(supervisor, testing::get_random(16));
  if (r.size() != 28 || testing::rc_of(r) != TPM2_RC_SUCCESS) return 16;
  supervisor.shutdown(chip::ShutdownMode::kClear);
  return 0;
}

TEST(EmbeddedSwtpmTest, RestartAfterThePrivilegeDropRunsAsThatUserAndServes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to change users";
  TempDir dir;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(restart_after_drop(dir.path() + "/state"));
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  // 10 start, 11 first swtpm's uid, 12 drop, 14 no generation 2 (the restarted swtpm cannot open the state),
  // 15 restarted swtpm's uid, 16 no service.
  EXPECT_EQ(WEXITSTATUS(status), 0);
  struct stat st{};
  ASSERT_EQ(::stat((dir.path() + "/state/tpm2-00.permall").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody) << "the state belongs to swtpm's user";
}

TEST(EmbeddedSwtpmTest, StateLeftByARootSwtpmIsHandedToTheSwtpmUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to change users";
  TempDir dir;
  const std::string state = dir.path() + "/state";
  {
    EmbeddedSwtpm as_root(unprovisioned(state));
    ASSERT_TRUE(as_root.start().ok());
    // swtpm writes its state file a moment after it starts serving; a loaded machine can stretch that moment.
    for (int i = 0; i < 500 && ::access((state + "/tpm2-00.permall").c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    as_root.stop();
  }
  struct stat st{};
  ASSERT_EQ(::stat((state + "/tpm2-00.permall").c_str(), &st), 0);
  ASSERT_EQ(st.st_uid, 0u);
  EmbeddedSwtpm swtpm(EmbeddedSwtpmOptions{.state_dir = state, .run_uid = kNobody, .provision = false});
  ASSERT_TRUE(swtpm.start().ok());
  EXPECT_EQ(process_uid(swtpm.pid()), kNobody);
  ASSERT_EQ(::stat((state + "/tpm2-00.permall").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kNobody);
  EXPECT_EQ(st.st_gid, kNobody) << "without a gid, the uid's number";
  swtpm.stop();
}

// swtpm must not inherit the daemon's descriptors (/dev/cuse, the lock, the background pipe).
TEST(EmbeddedSwtpmTest, SwtpmInheritsNoDescriptorAboveStderr) {
  TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // not close-on-exec, as an inherited fd would be
  struct stat ours{};
  ASSERT_EQ(::fstat(fds[1], &ours), 0);
  const std::string ours_name = "pipe:[" + std::to_string(ours.st_ino) + "]";
  EmbeddedSwtpm swtpm(unprovisioned(dir.path() + "/state"));
  ASSERT_TRUE(swtpm.start().ok());
  const std::string fd_dir = "/proc/" + std::to_string(swtpm.pid()) + "/fd";
  int inherited = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fd_dir)) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec).string() == ours_name) ++inherited;
  }
  swtpm.stop();
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(inherited, 0) << "the parent's pipe is open in swtpm";
}

}  // namespace
}  // namespace tpmrmd::daemon

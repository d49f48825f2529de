// The Supervisor on the host: real backends (a private swtpm, or the embedded one) behind the same Backend,
// RM worker and Connections tpmrmd runs; only CUSE is left out.
#include "daemon/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

#include "chip/drivers/swtpm_control.h"
#include "support/swtpm_process.h"
#include "support/tpm_commands.h"
#include "support/eventually.h"

namespace tpmrmd::daemon {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

const Bytes kGetRandom32 = from_hex("80010000000c0000017b0020");
const rm::ClientInfo kClient{1000, 1000, 42};

SupervisorOptions fast_options(std::string spec) {
  SupervisorOptions options;
  options.tpm = std::move(spec);
  options.first_attempts = 1;
  options.poll_interval = 20ms;
  options.retry_interval = 50ms;
  return options;
}

Result<std::size_t> write(device::Connection& c, const Bytes& data) {
  std::promise<Result<std::size_t>> p;
  c.write(data, false, [&](Result<std::size_t> r) { p.set_value(std::move(r)); });
  auto f = p.get_future();
  EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
  return f.get();
}

Result<Bytes> read(device::Connection& c) {
  std::promise<Result<Bytes>> p;
  c.read(4096, false, [&](Result<Bytes> r) { p.set_value(std::move(r)); });
  auto f = p.get_future();
  EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
  return f.get();
}

int err(const Result<std::size_t>& r) { return r.ok() ? 0 : r.error().code; }
int err(const Result<Bytes>& r) { return r.ok() ? 0 : r.error().code; }

// A working round trip: GetRandom(32) answered with 44 bytes.
void expect_serves(device::Connection& c) {
  auto w = write(c, kGetRandom32);
  ASSERT_TRUE(w.ok()) << describe(w.error());
  auto r = read(c);
  ASSERT_TRUE(r.ok()) << describe(r.error());
  EXPECT_EQ(r->size(), 44u);
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(swtpm_.start().ok()); }
  std::shared_ptr<device::Connection> open_or_fail(Supervisor& s) {
    auto c = s.open(kClient, {});
    EXPECT_TRUE(c.ok()) << describe(c.error());
    return c.ok() ? *c : nullptr;
  }
  testing::SwtpmProcess swtpm_;
};

TEST_F(SupervisorTest, FirstRegistrationServesOpensOnGenerationOne) {
  Supervisor supervisor(fast_options(swtpm_.spec()));
  EXPECT_EQ(supervisor.generation(), 0u);
  auto early = supervisor.open(kClient, {});
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.error().code, ENODEV) << "no backend before start()";
  ASSERT_TRUE(supervisor.start().ok());
  EXPECT_EQ(supervisor.generation(), 1u);
  auto c = open_or_fail(supervisor);
  ASSERT_TRUE(c);
  expect_serves(*c);
  supervisor.shutdown(chip::ShutdownMode::kNone);
}

TEST_F(SupervisorTest, StartFailsWhileTheBackendIsDown) {
  swtpm_.stop();
  Supervisor supervisor(fast_options(swtpm_.spec()));
  auto started = supervisor.start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(supervisor.generation(), 0u);
  auto c = supervisor.open(kClient, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ENODEV);
}

TEST_F(SupervisorTest, IdentityCheckRefusalIsFinal) {
  Supervisor supervisor(fast_options(swtpm_.spec()));
  std::atomic<int> checks{0};
  supervisor.set_identity_check([&](const std::string& identity) -> Result<void> {
    ++checks;
    EXPECT_FALSE(identity.empty());
    return make_error(EBUSY, "held by another daemon");
  });
  auto started = supervisor.start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().code, EBUSY);
  EXPECT_EQ(checks.load(), 1);
}

TEST_F(SupervisorTest, LossKillsOldFdsAndANewGenerationServesNewOnes) {
  Supervisor supervisor(fast_options(swtpm_.spec()));
  ASSERT_TRUE(supervisor.start().ok());
  auto old_fd = open_or_fail(supervisor);
  auto stored = open_or_fail(supervisor);
  ASSERT_TRUE(old_fd && stored);
  expect_serves(*old_fd);
  ASSERT_TRUE(write(*stored, kGetRandom32).ok());  // a response produced before the loss

  swtpm_.kill_hard();
  EXPECT_EQ(err(write(*old_fd, kGetRandom32)), ENODEV) << "the command that finds the transport broken";
  EXPECT_EQ(old_fd->poll(), POLLERR | POLLHUP);
  auto during = supervisor.open(kClient, {});
  ASSERT_FALSE(during.ok());
  EXPECT_EQ(during.error().code, ENODEV) << "no opens on a lost backend";
  // The supervisor retires generation 1; re-registration keeps failing while the backend is down.
  ASSERT_TRUE(eventually([&] { return supervisor.generation() == 0; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(supervisor.generation(), 0u);
  EXPECT_EQ(supervisor.open(kClient, {}).error().code, ENODEV);

  ASSERT_TRUE(swtpm_.start().ok());
  ASSERT_TRUE(eventually([&] { return supervisor.generation() == 2; }));
  auto fresh = open_or_fail(supervisor);
  ASSERT_TRUE(fresh);
  expect_serves(*fresh);

  EXPECT_EQ(err(write(*old_fd, kGetRandom32)), ENODEV) << "old fds stay bound to generation 1";
  EXPECT_EQ(err(read(*old_fd)), ENODEV);
  auto r = read(*stored);
  ASSERT_TRUE(r.ok()) << "a response stored before the loss stays readable";
  EXPECT_EQ(r->size(), 44u);
  EXPECT_EQ(err(read(*stored)), ENODEV);
  old_fd->close();
  stored->close();
  supervisor.shutdown(chip::ShutdownMode::kNone);
}

TEST_F(SupervisorTest, ATpmResetBehindTheDaemonEndsTheGenerationAndTheNextStartsClean) {
  Supervisor supervisor(fast_options(swtpm_.spec()));
  ASSERT_TRUE(supervisor.start().ok());
  auto old_fd = open_or_fail(supervisor);
  ASSERT_TRUE(old_fd);
  ASSERT_TRUE(write(*old_fd, testing::create_primary(TPM2_RH_OWNER, 1)).ok());
  auto created = read(*old_fd);
  ASSERT_TRUE(created.ok());
  const TPM2_HANDLE old_handle = testing::handle_of(*created);

  chip::SwtpmEndpoint ctrl;
  ctrl.path = swtpm_.ctrl_socket_path();
  chip::SwtpmControl control(ctrl);
  ASSERT_TRUE(control.init().ok());  // the TPM is reset: it answers TPM_RC_INITIALIZE until started again
  EXPECT_EQ(err(write(*old_fd, testing::read_public(old_handle))), ENODEV);
  ASSERT_TRUE(eventually([&] { return supervisor.generation() == 2; }));

  auto fresh = open_or_fail(supervisor);
  ASSERT_TRUE(fresh);
  expect_serves(*fresh);  // the new generation started the TPM
  ASSERT_TRUE(write(*fresh, testing::create_primary(TPM2_RH_OWNER, 2)).ok());
  auto fresh_created = read(*fresh);
  ASSERT_TRUE(fresh_created.ok());
  EXPECT_EQ(testing::rc_of(*fresh_created), TPM2_RC_SUCCESS);
  EXPECT_EQ(err(write(*old_fd, testing::read_public(old_handle))), ENODEV) << "old handles stay dead";
  old_fd->close();
  fresh->close();
  supervisor.shutdown(chip::ShutdownMode::kNone);
}

TEST_F(SupervisorTest, ShutdownEndsTheBackendWakesPollersAndJoins) {
  Supervisor supervisor(fast_options(swtpm_.spec()));
  ASSERT_TRUE(supervisor.start().ok());
  auto c = open_or_fail(supervisor);
  ASSERT_TRUE(c);
  expect_serves(*c);
  std::atomic<int> woken{0};
  c->set_on_ready([&] { ++woken; });
  supervisor.shutdown(chip::ShutdownMode::kClear);
  EXPECT_GE(woken.load(), 1) << "a sleeping poller is told";
  EXPECT_EQ(c->poll(), POLLERR | POLLHUP);
  EXPECT_EQ(err(write(*c, kGetRandom32)), ENODEV);
  EXPECT_EQ(supervisor.generation(), 0u);
  auto after = supervisor.open(kClient, {});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ENODEV);
  supervisor.shutdown(chip::ShutdownMode::kClear);  // idempotent
}

TEST_F(SupervisorTest, ShutdownAnswersACommandQueuedBehindAnother) {
  Supervisor supervisor(fast_options(swtpm_.spec()));
  ASSERT_TRUE(supervisor.start().ok());
  std::vector<std::shared_ptr<device::Connection>> cs;
  for (int i = 0; i < 4; ++i) cs.push_back(open_or_fail(supervisor));
  std::vector<std::promise<Result<std::size_t>>> promises(cs.size());
  for (std::size_t i = 0; i < cs.size(); ++i) {
    cs[i]->write(kGetRandom32, false, [&promises, i](Result<std::size_t> r) { promises[i].set_value(std::move(r)); });
  }
  supervisor.shutdown(chip::ShutdownMode::kNone);
  for (auto& p : promises) {
    auto f = p.get_future();
    ASSERT_EQ(f.wait_for(0s), std::future_status::ready) << "every write is answered by the time shutdown returns";
    auto r = f.get();
    EXPECT_TRUE(r.ok() || r.error().code == ENODEV) << describe(r.error());
  }
}

// The embedded default: the supervisor starts swtpm itself and restarts it when it dies.
TEST(SupervisorEmbeddedTest, RestartsADeadEmbeddedSwtpm) {
  std::string dir_template = (std::filesystem::temp_directory_path() / "tpmrmd-supervisor-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir_template.data()), nullptr);
  const std::string dir = dir_template;
  {
    EmbeddedSwtpm swtpm(EmbeddedSwtpmOptions{.state_dir = dir + "/state", .provision = false});
    SupervisorOptions options = fast_options({});
    Supervisor supervisor(options, &swtpm);
    ASSERT_TRUE(supervisor.start().ok());
    EXPECT_EQ(supervisor.generation(), 1u);
    auto old_fd = supervisor.open(kClient, {});
    ASSERT_TRUE(old_fd.ok());
    expect_serves(**old_fd);
    const pid_t first = swtpm.pid();
    ASSERT_GT(first, 0);
    ASSERT_EQ(::kill(first, SIGKILL), 0);
    // Noticed without any command: the supervisor reaps the child and registers generation 2.
    ASSERT_TRUE(eventually([&] { return supervisor.generation() == 2; }));
    EXPECT_NE(swtpm.pid(), first);
    EXPECT_EQ(err(write(**old_fd, kGetRandom32)), ENODEV);
    auto fresh = supervisor.open(kClient, {});
    ASSERT_TRUE(fresh.ok());
    expect_serves(**fresh);
    supervisor.shutdown(chip::ShutdownMode::kNone);
    EXPECT_LE(swtpm.pid(), 0) << "shutdown stops the embedded swtpm";
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tpmrmd::daemon

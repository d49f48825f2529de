// ServiceNotifier against a datagram socket standing in for systemd's: nothing without NOTIFY_SOCKET; READY=1,
// STATUS= and WATCHDOG=1 while the probe is healthy, no WATCHDOG=1 while it is not, STOPPING=1 at the end.
#include "daemon/service_notifier.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace tpmrmd::daemon {
namespace {

class NotifySocket {
 public:
  NotifySocket() {
    char dir[] = "/tmp/tpmrmd-notify-test.XXXXXX";
    EXPECT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/sock";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  // Every datagram that arrives within `ms`.
  std::vector<std::string> drain(int ms) {
    std::vector<std::string> out;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) != 1) break;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

int count(const std::vector<std::string>& messages, const std::string& what) {
  int n = 0;
  for (auto& m : messages) n += m.find(what) != std::string::npos;
  return n;
}

class ServiceNotifierTest : public testing::Test {
 protected:
  void SetUp() override {
    ::setenv("NOTIFY_SOCKET", socket_.path().c_str(), 1);
    ::setenv("WATCHDOG_USEC", "100000", 1);  // 100 ms: a probe every 50 ms
    ::unsetenv("WATCHDOG_PID");
  }
  void TearDown() override {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
  }
  NotifySocket socket_;
};

TEST_F(ServiceNotifierTest, NothingWithoutNotifySocket) {
  ::unsetenv("NOTIFY_SOCKET");
  ServiceNotifier notifier;
  EXPECT_FALSE(notifier.enabled());
  notifier.ready("x", [] { return ServiceNotifier::Probe{"x", true}; });
  notifier.stopping();
  EXPECT_TRUE(socket_.drain(100).empty());
}

#if TPMRMD_HAVE_SYSTEMD
TEST_F(ServiceNotifierTest, ReadyStatusWatchdogOnlyWhileHealthyThenStopping) {
  std::atomic<bool> healthy{true};
  ServiceNotifier notifier;
  ASSERT_TRUE(notifier.enabled());
  ASSERT_TRUE(notifier.watchdog());
  EXPECT_EQ(notifier.tick(), std::chrono::milliseconds(50));
  notifier.ready("starting", [&] { return ServiceNotifier::Probe{healthy ? "fine" : "stuck", healthy.load()}; });
  auto first = socket_.drain(400);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first.front(), "READY=1\nSTATUS=starting");
  EXPECT_GE(count(first, "WATCHDOG=1"), 2);
  EXPECT_GE(count(first, "STATUS=fine"), 2);

  healthy = false;
  socket_.drain(120);  // a probe already under way may still ping
  auto stalled = socket_.drain(400);
  EXPECT_EQ(count(stalled, "WATCHDOG=1"), 0) << "no keep-alive while the probe says unhealthy";
  EXPECT_GE(count(stalled, "STATUS=stuck"), 2);

  healthy = true;
  EXPECT_GE(count(socket_.drain(400), "WATCHDOG=1"), 2) << "pings resume";
  notifier.stopping();
  auto last = socket_.drain(200);
  ASSERT_FALSE(last.empty());
  EXPECT_EQ(last.back().rfind("STOPPING=1", 0), 0u);
}
#endif

}  // namespace
}  // namespace tpmrmd::daemon

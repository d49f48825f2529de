// The CUSE device under a real kernel (run in the QEMU guest): tpmrmd serves /dev/<name>; these tests drive it
// through plain syscalls the way the kernel selftests (SpaceTest, AsyncTest) and tpm2-tss do.
//
// Usage (in the guest): cuse_device_in_vm_test TPMRMD_BINARY [gtest flags]
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tpm/endian.h"
#include "util/bytes.h"
#include "util/unique_fd.h"

namespace tpmrmd {
namespace {

std::string g_tpmrmd;

using namespace std::chrono_literals;

Bytes hex(std::string_view h) { return from_hex(h); }

using tpm::load_u32;
using tpm::store_u32;

std::uint32_t rc_of(const Bytes& r) { return r.size() >= 10 ? load_u32(r, 6) : 0xFFFFFFFF; }

// TPM2_GetRandom(32): the response is 44 bytes.
const Bytes kGetRandom32 = hex("80010000000c0000017b0020");
// TPM2_CreatePrimary(OWNER, empty password) of an ECC P-256 restricted decryption key (AES-128-CFB).
const Bytes kCreatePrimary = hex(
    "80020000004300000131" "40000001" "00000009" "40000009" "0000" "00" "0000"
    "0004" "0000" "0000"
    "001a" "0023" "000b" "00030072" "0000" "0006" "0080" "0043" "0010" "0003" "0010" "0000" "0000"
    "0000" "00000000");
// Unknown command code 0x1FE (the selftests' "invalid" code) and the RM's synthesized answer.
const Bytes kInvalidCc = hex("80010000000a000001fe");
const Bytes kRcCommandCode = hex("80010000000a000b0143");

Bytes flush_context(std::uint32_t handle) {
  Bytes c = hex("80010000000e00000165" "00000000");
  store_u32(c, 10, handle);
  return c;
}
Bytes get_cap_handles(std::uint32_t first, std::uint32_t count) {
  Bytes c = hex("8001000000160000017a" "00000001" "00000000" "00000000");
  store_u32(c, 14, first);
  store_u32(c, 18, count);
  return c;
}

std::string device_path(const std::string& name) { return "/dev/" + name; }

bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

// One tpmrmd process, foreground, killed at destruction.
class Daemon {
 public:
  Daemon(std::string name, std::vector<std::string> extra) : name_(std::move(name)) {
    char tmpl[] = "/tmp/tpmrmd-test-XXXXXX";
    state_ = ::mkdtemp(tmpl);
    std::vector<std::string> args = {g_tpmrmd, "--foreground", "--name", name_, "--state-dir", state_ + "/state",
                                     "--lock-dir", state_ + "/lock", "--log-level", "info"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Daemon() {
    if (pid_ > 0) stop();
  }
  bool wait_ready(mode_t mode = 0660) {
    return wait_for([&] {
      struct stat st{};
      return ::stat(path().c_str(), &st) == 0 && S_ISCHR(st.st_mode) && (st.st_mode & 0777) == mode;
    }, 30s);
  }
  // SIGTERM; returns the exit status.
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  bool alive() const { return pid_ > 0 && ::kill(pid_, 0) == 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  std::string path() const { return device_path(name_); }
  const std::string& state() const { return state_; }
  pid_t pid() const { return pid_; }

 private:
  std::string name_;
  std::string state_;
  pid_t pid_ = -1;
};

UniqueFd open_dev(const std::string& path, int extra_flags = 0) {
  return UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC | extra_flags));
}

// Whole write; returns the write(2) result, errno in `err`.
ssize_t write_bytes(int fd, const Bytes& b, int* err = nullptr) {
  errno = 0;
  ssize_t n = ::write(fd, b.data(), b.size());
  if (err) *err = n < 0 ? errno : 0;
  return n;
}
// readall: reads until 0, as Python's FileIO.readall() (the selftest client) does.
Bytes read_all(int fd) {
  Bytes out;
  std::uint8_t buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}
Bytes transact(int fd, const Bytes& command) {
  EXPECT_EQ(write_bytes(fd, command), static_cast<ssize_t>(command.size())) << std::strerror(errno);
  return read_all(fd);
}
std::uint32_t create_primary(int fd) {
  Bytes r = transact(fd, kCreatePrimary);
  EXPECT_EQ(rc_of(r), 0u) << to_hex(r);
  return r.size() >= 14 ? load_u32(r, 10) : 0;
}
// The selftests' get_cap: count 1, resume at last + 1 while moreData.
std::vector<std::uint32_t> list_handles(int fd, std::uint32_t first) {
  std::vector<std::uint32_t> handles;
  std::uint32_t next = first;
  for (int guard = 0; guard < 100; ++guard) {
    Bytes r = transact(fd, get_cap_handles(next, 1));
    EXPECT_EQ(rc_of(r), 0u);
    if (rc_of(r) != 0 || r.size() < 19) break;
    std::uint32_t count = load_u32(r, 15);
    for (std::uint32_t i = 0; i < count && r.size() >= 23 + 4 * i; ++i) {
      handles.push_back(load_u32(r, 19 + 4 * i));
    }
    if (r[10] == 0 || count == 0) break;
    next = handles.back() + 1;
  }
  return handles;
}

// --- The shared daemon for most tests: embedded swtpm, 2 s discard timeout (short for the discard test). ---

class DeviceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new Daemon("tpmrmtest0", {"--discard-timeout", "2"});
    ASSERT_TRUE(daemon_->wait_ready()) << "tpmrmd did not create its node";
  }
  static void TearDownTestSuite() {
    int status = daemon_->stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "tpmrmd exit status " << status;
    struct stat st{};
    EXPECT_NE(::stat("/dev/tpmrmtest0", &st), 0) << "node still present after SIGTERM";
    delete daemon_;
    daemon_ = nullptr;
  }
  static std::string dev() { return daemon_->path(); }
  static Daemon* daemon_;
};
Daemon* DeviceTest::daemon_ = nullptr;

// ---- SpaceTest (tools/testing/selftests/tpm2/tpm2_tests.py), our own port. ----

TEST_F(DeviceTest, SpaceMakeTwoSpaces) {
  UniqueFd s1 = open_dev(dev()), s2 = open_dev(dev());
  ASSERT_TRUE(s1 && s2);
  create_primary(s1.get());
  create_primary(s2.get());
  create_primary(s2.get());
}

TEST_F(DeviceTest, SpaceFlushContext) {
  UniqueFd s = open_dev(dev());
  std::uint32_t h = create_primary(s.get());
  EXPECT_EQ(h >> 24, 0x80u);
  EXPECT_EQ(rc_of(transact(s.get(), flush_context(h))), 0u);
}

TEST_F(DeviceTest, SpaceGetHandlesShowsOnlyOwnObjects) {
  UniqueFd s1 = open_dev(dev()), s2 = open_dev(dev());
  create_primary(s1.get());
  std::uint32_t a = create_primary(s2.get());
  std::uint32_t b = create_primary(s2.get());
  auto handles = list_handles(s2.get(), 0x80000000);
  ASSERT_EQ(handles.size(), 2u);
  EXPECT_EQ(handles[0], std::min(a, b));
  EXPECT_EQ(handles[1], std::max(a, b));
  EXPECT_EQ(list_handles(s1.get(), 0x80000000).size(), 1u);
}

TEST_F(DeviceTest, SpaceInvalidCcGivesRmLayerCommandCode) {
  UniqueFd s = open_dev(dev());
  EXPECT_EQ(transact(s.get(), kInvalidCc), kRcCommandCode);
}

// ---- AsyncTest ----

TEST_F(DeviceTest, AsyncFlushInvalidContextReportsEinvalFromRead) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(::fcntl(s.get(), F_SETFL, ::fcntl(s.get(), F_GETFL) | O_NONBLOCK), 0);
  Bytes c = flush_context(0x80123456);
  ASSERT_EQ(write_bytes(s.get(), c), static_cast<ssize_t>(c.size()));
  pollfd p{s.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  EXPECT_EQ(p.revents, POLLIN);  // tpm2-tss insists on exactly POLLIN
  std::uint8_t buf[4096];
  errno = 0;
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 0) << "the error is reported once";
}

TEST_F(DeviceTest, AsyncGetCapabilityThroughPoll) {
  UniqueFd s = open_dev(dev(), O_NONBLOCK);
  Bytes c = get_cap_handles(0x02000000, 8);
  ASSERT_EQ(write_bytes(s.get(), c), static_cast<ssize_t>(c.size()));
  pollfd p{s.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  EXPECT_EQ(p.revents, POLLIN);
  Bytes r = read_all(s.get());
  ASSERT_GE(r.size(), 19u);
  EXPECT_EQ(rc_of(r), 0u);
  EXPECT_EQ(load_u32(r, 2), r.size());
}

// ---- SmokeTest's file-interface cases and the file-interface contract (edge cases of read, write and offsets). ----

TEST_F(DeviceTest, PartialReadsWithCursorThenEof) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  std::uint8_t buf[4096];
  ASSERT_EQ(::read(s.get(), buf, 10), 10);
  EXPECT_EQ(load_u32(Bytes(buf, buf + 10), 2), 44u);
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 34);
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 0);
}

TEST_F(DeviceTest, WriteAcceptedAfterPartialReadDiscardsRemainder) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  std::uint8_t buf[4096];
  ASSERT_EQ(::read(s.get(), buf, 15), 15);
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  EXPECT_EQ(read_all(s.get()).size(), 44u);
}

TEST_F(DeviceTest, SecondWriteWithoutReadIsEbusyAndFirstResponseSurvives) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  int err = 0;
  EXPECT_EQ(write_bytes(s.get(), kGetRandom32, &err), -1);
  EXPECT_EQ(err, EBUSY);
  EXPECT_EQ(read_all(s.get()).size(), 44u);
}

TEST_F(DeviceTest, ReadWithNothingPendingIsEofBlockingAndNonblocking) {
  UniqueFd s = open_dev(dev());
  std::uint8_t buf[64];
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 0);
  ASSERT_EQ(::fcntl(s.get(), F_SETFL, O_NONBLOCK), 0);
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 0);
  pollfd p{s.get(), POLLIN | POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(p.revents, POLLOUT);
}

TEST_F(DeviceTest, ReadOfZeroBytesChangesNothing) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  std::uint8_t buf[1];
  EXPECT_EQ(::read(s.get(), buf, 0), 0);
  EXPECT_EQ(read_all(s.get()).size(), 44u);
}

TEST_F(DeviceTest, TrailingBytesBeyondDeclaredLengthAreNotSent) {
  UniqueFd s = open_dev(dev());
  Bytes c = kGetRandom32;
  c.resize(20, 0xEE);
  ASSERT_EQ(write_bytes(s.get(), c), 20);
  Bytes r = read_all(s.get());
  ASSERT_EQ(r.size(), 44u);
  EXPECT_EQ(rc_of(r), 0u);
}

TEST_F(DeviceTest, RejectedWriteKeepsPartialRemainder) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  std::uint8_t buf[4096];
  ASSERT_EQ(::read(s.get(), buf, 10), 10);
  Bytes bad = hex("8001000000ff0000017b");  // declares 255 bytes, has 10
  int err = 0;
  EXPECT_EQ(write_bytes(s.get(), bad, &err), -1);
  EXPECT_EQ(err, EINVAL);
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 34);
}

TEST_F(DeviceTest, UnreadResponseDiscardedAfterTimeout) {  // the daemon runs with --discard-timeout 2
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  pollfd p{s.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  // A poller is woken by the discard: POLLIN turns into POLLOUT.
  ASSERT_TRUE(wait_for([&] {
    pollfd q{s.get(), POLLIN | POLLOUT, 0};
    return ::poll(&q, 1, 0) == 1 && q.revents == POLLOUT;
  }, 20s));
  std::uint8_t buf[64];
  EXPECT_EQ(::read(s.get(), buf, sizeof(buf)), 0);
  EXPECT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  EXPECT_EQ(read_all(s.get()).size(), 44u);
}

TEST_F(DeviceTest, PositionalIoIgnoresOffsets) {  // CUSE cannot give ESPIPE: the offset is ignored
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(::pwrite(s.get(), kGetRandom32.data(), kGetRandom32.size(), 12345), 12);
  std::uint8_t buf[4096];
  EXPECT_EQ(::pread(s.get(), buf, 10, 999), 10);
  EXPECT_EQ(::pread(s.get(), buf, sizeof(buf), 0), 34);
}

TEST_F(DeviceTest, PollMasksFollowTheState) {
  UniqueFd s = open_dev(dev());
  ASSERT_EQ(write_bytes(s.get(), kGetRandom32), 12);
  pollfd p{s.get(), POLLIN | POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(p.revents, POLLIN);
  std::uint8_t buf[4096];
  ASSERT_EQ(::read(s.get(), buf, 5), 5);
  p.revents = 0;
  ASSERT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(p.revents, POLLIN) << "PARTIAL reports POLLIN only";
  ASSERT_EQ(::read(s.get(), buf, sizeof(buf)), 39);
  p.revents = 0;
  ASSERT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(p.revents, POLLOUT);
}

// ---- Malformed writes: each gets its documented errno; the daemon keeps serving. ----

struct Malformed {
  const char* what;
  Bytes bytes;
  int expected_errno;
};

TEST_F(DeviceTest, MalformedWritesGetDocumentedErrno) {
  std::vector<Malformed> table = {
      // CUSE limitation: the kernel's FUSE code completes a 0-byte write itself (returns 0) without sending a
      // request, so the daemon cannot answer EINVAL as the kernel TPM driver does. Nothing changes state.
      {"empty write", {}, 0},
      {"1 byte", hex("80"), EINVAL},
      {"5 bytes", hex("8001000000"), EINVAL},
      {"6 bytes, declared 10", hex("80010000000a"), EINVAL},
      {"declared size above the write", hex("80010000000e00000165"), EINVAL},
      {"declared size 0", hex("800100000000000001 7b0020"), EINVAL},
      {"declared size 9", hex("800100000009000001 7b0020"), EINVAL},
      {"declared size 0xffffffff", hex("8001ffffffff0000017b0020"), EINVAL},
      {"4097 bytes", Bytes(4097, 0), E2BIG},
      {"65536 bytes", Bytes(65536, 0), E2BIG},
      {"FlushContext without its handle", hex("80010000000a00000165"), EINVAL},
      {"handle area cut short", hex("80010000000c000001650000"), EINVAL},
      {"sessions tag, no authorization size", hex("80020000000e0000016b40000001"), EINVAL},
      {"authorization size past the end", hex("8002000000120000016b4000000100000100"), EINVAL},
  };
  for (const auto& m : table) {
    UniqueFd s = open_dev(dev());
    ASSERT_TRUE(s);
    int err = 0;
    ssize_t n = write_bytes(s.get(), m.bytes, &err);
    if (m.expected_errno == 0) {
      EXPECT_EQ(n, 0) << m.what;
      EXPECT_EQ(transact(s.get(), kGetRandom32).size(), 44u) << m.what;
      continue;
    }
    if (n >= 0) {
      // Accepted by the device: the RM's verdict arrives on the write (blocking) as an errno.
      ADD_FAILURE() << m.what << ": write accepted; response " << to_hex(read_all(s.get()));
      continue;
    }
    EXPECT_EQ(err, m.expected_errno) << m.what << ": got " << std::strerror(err);
    // The fd stays usable after a rejected write.
    EXPECT_EQ(transact(s.get(), kGetRandom32).size(), 44u) << m.what;
  }
}

// A storage RSA-2048 primary: its prime search makes it slow (~0.1 s on swtpm), so a few queue for long.
// `unique` makes every key different.
Bytes rsa_create_primary(std::uint32_t unique) {
  Bytes c = hex("80020000004700000131" "40000001" "00000009" "400000090000000000"  // header, owner, password
                "000400000000"                                                  // inSensitive: empty
                "001e" "0001000b000300720000" "000600800043" "0010" "0800" "00000000"  // RSA, AES-128-CFB
                "0004" "00000000"                                               // unique (set below)
                "0000" "00000000");                                             // outsideInfo, creationPCR
  store_u32(c, 61, unique);
  return c;
}

// A client blocked in write() behind a long queue can be killed: the kernel interrupts the request, the
// daemon drops the queued command and answers EINTR, and the process is reaped while the commands queued
// ahead of it are still running (without the interrupt it would sleep, unkillable, until its own ran).
TEST_F(DeviceTest, KilledWriterBehindALongQueueIsReapedBeforeTheQueueDrains) {
  std::vector<UniqueFd> queue;
  for (std::uint32_t i = 0; i < 16; ++i) {
    queue.push_back(open_dev(dev(), O_NONBLOCK));
    ASSERT_TRUE(queue.back());
    Bytes command = rsa_create_primary(0x5000 + i);
    ASSERT_EQ(write_bytes(queue.back().get(), command), static_cast<ssize_t>(command.size()));
  }
  pid_t child = ::fork();
  if (child == 0) {
    UniqueFd fd = open_dev(dev());
    Bytes command = rsa_create_primary(0x6000);
    (void)::write(fd.get(), command.data(), command.size());  // blocks behind the queue until killed
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  // Killed once it sleeps in the write (its state in /proc turns to S with the request sent to the daemon).
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  // The order that matters: reaped while some of the 16 commands queued before it had not completed yet.
  int pending = 0;
  for (auto& fd : queue) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 0) ++pending;
  }
  EXPECT_GT(pending, 0) << "the killed writer was held until the queue drained";
  for (auto& fd : queue) {
    pollfd p{fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 60000), 1);
    Bytes r = read_all(fd.get());
    EXPECT_EQ(rc_of(r), 0u) << to_hex(r);
    if (r.size() >= 14) (void)transact(fd.get(), flush_context(load_u32(r, 10)));
  }
}

TEST_F(DeviceTest, FourthObjectAndManyAliveAtOnce) {
  UniqueFd s = open_dev(dev());
  std::vector<std::uint32_t> handles;
  for (int i = 0; i < 5; ++i) handles.push_back(create_primary(s.get()));
  EXPECT_EQ(list_handles(s.get(), 0x80000000).size(), 5u);
  for (auto h : handles) EXPECT_EQ(rc_of(transact(s.get(), flush_context(h))), 0u);
  EXPECT_EQ(list_handles(s.get(), 0x80000000).size(), 0u);
}

// ---- Concurrency: 16 processes, mixed commands, bounded work; nothing leaks in the TPM. ----

int raw_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}
// Sends one command straight to swtpm (no RM) and returns its response.
Bytes raw_exchange(int fd, const Bytes& command) {
  if (::write(fd, command.data(), command.size()) != static_cast<ssize_t>(command.size())) return {};
  Bytes r(10);
  std::size_t got = 0;
  while (got < 10) {
    ssize_t n = ::read(fd, r.data() + got, 10 - got);
    if (n <= 0) return {};
    got += static_cast<std::size_t>(n);
  }
  r.resize(load_u32(r, 2));
  while (got < r.size()) {
    ssize_t n = ::read(fd, r.data() + got, r.size() - got);
    if (n <= 0) return {};
    got += static_cast<std::size_t>(n);
  }
  return r;
}
std::uint32_t raw_count(int fd, std::uint32_t first) {
  Bytes r = raw_exchange(fd, get_cap_handles(first, 64));
  return r.size() >= 19 && rc_of(r) == 0 ? load_u32(r, 15) : 0xFFFFFFFF;
}

TEST(ConcurrencyTest, SixteenProcessesMixedCommandsLeakNothing) {
  // Our own swtpm, so the TPM's raw handle lists can be read directly once tpmrmd is gone.
  char tmpl[] = "/tmp/tpmrmd-conc-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string sock = dir + "/tpm.sock", ctrl = dir + "/tpm.ctrl";
  pid_t swtpm = ::fork();
  if (swtpm == 0) {
    ::execlp("swtpm", "swtpm", "socket", "--tpm2", "--tpmstate", ("dir=" + dir).c_str(), "--server",
             ("type=unixio,path=" + sock).c_str(), "--ctrl", ("type=unixio,path=" + ctrl).c_str(), "--flags",
             "not-need-init,startup-clear", nullptr);
    ::_exit(127);
  }
  ASSERT_TRUE(wait_for([&] { return ::access(ctrl.c_str(), F_OK) == 0 && ::access(sock.c_str(), F_OK) == 0; },
                       20s));
  std::this_thread::sleep_for(200ms);
  {
    int raw = raw_socket(sock);
    ASSERT_GE(raw, 0);
    EXPECT_EQ(raw_count(raw, 0x80000000), 0u);
    EXPECT_EQ(raw_count(raw, 0x02000000), 0u);
    ::close(raw);
  }
  {
    Daemon d("tpmrmconc0", {"--tpm", "swtpm:path=" + sock + ",ctrl=" + ctrl, "--shutdown", "none"});
    ASSERT_TRUE(d.wait_ready());
    // Clients killed in the middle of a blocking write (FUSE interrupt, then release): nothing they created
    // may stay behind in the TPM (checked below, on the raw swtpm).
    for (int i = 0; i < 6; ++i) {
      pid_t victim = ::fork();
      if (victim == 0) {
        UniqueFd s = open_dev(d.path());
        for (;;) {
          if (::write(s.get(), kCreatePrimary.data(), kCreatePrimary.size()) < 0) break;
          read_all(s.get());
        }
        ::_exit(0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(40 * (i + 1)));
      ::kill(victim, SIGKILL);
      ::waitpid(victim, nullptr, 0);
    }
    std::vector<pid_t> children;
    for (int i = 0; i < 16; ++i) {
      pid_t c = ::fork();
      if (c == 0) {
        int failures = 0;
        UniqueFd s = open_dev(d.path());
        if (!s) ::_exit(100);
        for (int round = 0; round < 6; ++round) {
          Bytes r;
          std::uint32_t h = 0;
          if (::write(s.get(), kCreatePrimary.data(), kCreatePrimary.size()) < 0) ++failures;
          r = read_all(s.get());
          if (rc_of(r) != 0) ++failures; else h = load_u32(r, 10);
          if (::write(s.get(), kGetRandom32.data(), 12) < 0) ++failures;
          if (read_all(s.get()).size() != 44) ++failures;
          Bytes cap = get_cap_handles(0x80000000, 64);
          if (::write(s.get(), cap.data(), cap.size()) < 0) ++failures;
          r = read_all(s.get());
          // Only this process's own objects: odd rounds keep theirs, even rounds flush theirs.
          if (rc_of(r) != 0 || load_u32(r, 15) != static_cast<std::uint32_t>(1 + round / 2)) ++failures;
          if (round % 2 == 0) {
            Bytes f = flush_context(h);
            if (::write(s.get(), f.data(), f.size()) < 0) ++failures;
            if (rc_of(read_all(s.get())) != 0) ++failures;
          } else if (round % 2 == 1) {
            // Leave the object to close() (and the previous odd round's one too).
          }
        }
        ::_exit(failures > 50 ? 50 : failures);
      }
      children.push_back(c);
    }
    for (pid_t c : children) {
      int status = 0;
      ASSERT_EQ(::waitpid(c, &status, 0), c);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child failures: " << WEXITSTATUS(status);
    }
    int status = d.stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  {
    int raw = raw_socket(sock);
    ASSERT_GE(raw, 0);
    EXPECT_EQ(raw_count(raw, 0x80000000), 0u) << "transient objects leaked";
    EXPECT_EQ(raw_count(raw, 0x02000000), 0u) << "loaded sessions leaked";
    EXPECT_EQ(raw_count(raw, 0x03000000), 0u) << "saved sessions leaked";
    ::close(raw);
  }
  ::kill(swtpm, SIGTERM);
  ::waitpid(swtpm, nullptr, 0);
  std::filesystem::remove_all(dir);
}

// ---- Late fds: the embedded swtpm dies; open fds get ENODEV; the daemon restarts it; new opens work. ----

pid_t find_swtpm_of(const std::string& state_dir) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.rfind("swtpm", 0) == 0 && cmdline.find(state_dir) != std::string::npos) {
      return static_cast<pid_t>(std::stol(entry.path().filename()));
    }
  }
  return -1;
}

TEST(LateFdTest, BackendDeathGivesEnodevAndDaemonRecovers) {
  Daemon d("tpmrmlate0", {});
  ASSERT_TRUE(d.wait_ready());
  UniqueFd idle = open_dev(d.path());
  UniqueFd stored = open_dev(d.path());
  UniqueFd async = open_dev(d.path(), O_NONBLOCK);
  ASSERT_TRUE(idle && stored && async);
  ASSERT_EQ(write_bytes(stored.get(), kGetRandom32), 12);  // a response produced before the loss
  pid_t swtpm = find_swtpm_of(d.state());
  ASSERT_GT(swtpm, 0);
  ASSERT_EQ(::kill(swtpm, SIGKILL), 0);
  // Sleeping pollers are told: POLLERR|POLLHUP once the daemon has noticed.
  pollfd p{idle.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1);
  EXPECT_EQ(p.revents, POLLERR | POLLHUP);
  int err = 0;
  EXPECT_EQ(write_bytes(idle.get(), kGetRandom32, &err), -1);
  EXPECT_EQ(err, ENODEV);
  EXPECT_EQ(write_bytes(async.get(), kGetRandom32, &err), -1);
  EXPECT_EQ(err, ENODEV);
  std::uint8_t buf[4096];
  EXPECT_EQ(::read(idle.get(), buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODEV);
  // Nothing the TPM produced successfully is lost; after it, ENODEV.
  EXPECT_EQ(::read(stored.get(), buf, sizeof(buf)), 44);
  EXPECT_EQ(::read(stored.get(), buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODEV);
  EXPECT_TRUE(d.alive());
  // The daemon restarts its swtpm; new opens then work, old fds stay dead.
  Bytes r;
  ASSERT_TRUE(wait_for([&] {
    UniqueFd fresh = open_dev(d.path());
    if (!fresh) return false;
    if (::write(fresh.get(), kGetRandom32.data(), 12) != 12) return false;
    r = read_all(fresh.get());
    return r.size() == 44;
  }, 30s));
  EXPECT_EQ(rc_of(r), 0u);
  EXPECT_NE(find_swtpm_of(d.state()), swtpm);
  EXPECT_EQ(write_bytes(idle.get(), kGetRandom32, &err), -1);
  EXPECT_EQ(err, ENODEV);
  EXPECT_EQ(::close(idle.release()), 0);
  EXPECT_EQ(::close(stored.release()), 0);
  EXPECT_EQ(::close(async.release()), 0);
  int status = d.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---- Sharing: one uid exhausting its caps leaves another uid served. ----

// TPM2_StartAuthSession: an unbound, unsalted HMAC session (SHA-256, no symmetric algorithm).
const Bytes kStartHmacSession = hex("80010000002b00000176" "40000007" "40000007"
                                    "0010" "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" "0000" "00" "0010" "000b");
constexpr std::uint32_t kRmObjectMemory = 0x000B0902;
constexpr std::uint32_t kRmSessionMemory = 0x000B0903;

// What a client process found, told to the test through a pipe (a forked child's EXPECTs would be lost).
struct Exhaustion {
  int connections = 0;      // opens that succeeded
  int open_errno = 0;       // errno of the first open that failed
  int sessions = 0;         // StartAuthSessions that succeeded over all connections
  std::uint32_t session_refusal = 0;
  int objects = 0;          // CreatePrimarys that succeeded over all connections
  std::uint32_t object_refusal = 0;
};

// In a child running as `uid`: opens up to `opens` connections, then starts sessions and creates objects round
// robin over them until the RM refuses (or `tries` each), reports on `out` and holds everything until the
// test closes the write end of `hold` (the child's inherited copy closed first, or it would wait on itself).
[[noreturn]] void exhaust_as(uid_t uid, const std::string& node, int opens, int tries, int out, const int hold[2]) {
  ::close(hold[1]);
  if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(3);
  Exhaustion e;
  std::vector<UniqueFd> fds;
  for (int i = 0; i < opens; ++i) {
    UniqueFd fd = open_dev(node);
    if (!fd) {
      e.open_errno = errno;
      break;
    }
    fds.push_back(std::move(fd));
  }
  e.connections = static_cast<int>(fds.size());
  for (int i = 0; !fds.empty() && i < tries && !e.session_refusal; ++i) {
    Bytes r = transact(fds[i % fds.size()].get(), kStartHmacSession);
    rc_of(r) == 0 ? ++e.sessions : (e.session_refusal = rc_of(r), 0);
  }
  for (int i = 0; !fds.empty() && i < tries && !e.object_refusal; ++i) {
    Bytes r = transact(fds[i % fds.size()].get(), kCreatePrimary);
    rc_of(r) == 0 ? ++e.objects : (e.object_refusal = rc_of(r), 0);
  }
  if (::write(out, &e, sizeof e) != sizeof e) ::_exit(4);
  char byte;
  (void)::read(hold[0], &byte, 1);
  ::_exit(0);
}

struct Client {
  pid_t pid = -1;
  Exhaustion found;
};

Client start_exhausting(uid_t uid, const std::string& node, int opens, int tries, const int hold[2]) {
  int report[2];
  EXPECT_EQ(::pipe(report), 0);
  Client c;
  c.pid = ::fork();
  if (c.pid == 0) exhaust_as(uid, node, opens, tries, report[1], hold);
  ::close(report[1]);
  EXPECT_EQ(::read(report[0], &c.found, sizeof c.found), static_cast<ssize_t>(sizeof c.found)) << "client failed";
  ::close(report[0]);
  return c;
}

// The per-uid caps over the real node, with the defaults that matter for sessions: uid 1000 takes every
// connection, session and object it may, and uid 1001, arriving after, still gets a connection, a session and
// an object. Without the per-uid caps the first uid would have had every session slot of the TPM (64).
TEST(SharingTest, OneUidAtEveryCapLeavesAnotherServed) {
  Daemon d("tpmrmshare0", {"--mode", "0666", "--max-connections", "16", "--max-connections-per-uid", "4",
                           "--max-objects-per-uid", "6"});
  ASSERT_TRUE(d.wait_ready(0666));
  int hold[2];
  ASSERT_EQ(::pipe(hold), 0);
  Client greedy = start_exhausting(1000, d.path(), 8, 100, hold);
  EXPECT_EQ(greedy.found.connections, 4);
  EXPECT_EQ(greedy.found.open_errno, EMFILE);
  EXPECT_EQ(greedy.found.sessions, 32) << "half of the TPM's 64 active sessions";
  EXPECT_EQ(greedy.found.session_refusal, kRmSessionMemory);
  EXPECT_EQ(greedy.found.objects, 6);
  EXPECT_EQ(greedy.found.object_refusal, kRmObjectMemory);

  Client other = start_exhausting(1001, d.path(), 1, 2, hold);
  EXPECT_EQ(other.found.connections, 1);
  EXPECT_EQ(other.found.sessions, 2);
  EXPECT_EQ(other.found.objects, 2);
  EXPECT_EQ(other.found.session_refusal, 0u);
  EXPECT_EQ(other.found.object_refusal, 0u);

  ::close(hold[1]);
  for (pid_t pid : {greedy.pid, other.pid}) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "client status " << status;
  }
  ::close(hold[0]);
  // Closing gave everything back: the first uid is served again (its new client does not wait on `hold`).
  int done[2];
  ASSERT_EQ(::pipe(done), 0);
  ::close(done[1]);
  done[1] = -1;
  Client again = start_exhausting(1000, d.path(), 1, 1, done);
  ::close(done[0]);
  EXPECT_EQ(again.found.connections, 1);
  EXPECT_EQ(again.found.sessions, 1);
  EXPECT_EQ(again.found.objects, 1);
  ASSERT_EQ(::waitpid(again.pid, nullptr, 0), again.pid);
  int status = d.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---- Start-up refusals. ----

TEST(StartupTest, SecondDaemonOnSameTpmNamesTheHolder) {
  Daemon first("tpmrmlock0", {});
  ASSERT_TRUE(first.wait_ready());
  // Same state dir (so the same embedded swtpm endpoint) and lock dir, another node name.
  std::string cmd = g_tpmrmd + " --foreground --name tpmrmlock1 --state-dir " + first.state() + "/state --lock-dir " +
                    first.state() + "/lock 2>&1";
  FILE* out = ::popen(cmd.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), out)) text += buf;
  int status = ::pclose(out);
  EXPECT_NE(status, 0);
  EXPECT_NE(text.find("pid " + std::to_string(first.pid())), std::string::npos) << text;
}

TEST(StartupTest, ExistingNodeNameIsRefusedWithHint) {
  Daemon first("tpmrmname0", {});
  ASSERT_TRUE(first.wait_ready());
  std::string cmd = g_tpmrmd + " --foreground --name tpmrmname0 --state-dir /tmp/tpmrmd-other-state 2>&1";
  FILE* out = ::popen(cmd.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), out)) text += buf;
  EXPECT_NE(::pclose(out), 0);
  EXPECT_NE(text.find("--name"), std::string::npos) << text;
}

}  // namespace
}  // namespace tpmrmd

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TPMRMD_BINARY [gtest flags]\n", argv[0]);
    return 2;
  }
  tpmrmd::g_tpmrmd = argv[1];
  if (::access("/dev/cuse", R_OK | W_OK) != 0) {
    std::fprintf(stderr, "FAIL: /dev/cuse is not usable here; run this inside the VM harness\n");
    return 1;
  }
  return RUN_ALL_TESTS();
}

// The socket front-end on the host: a Supervisor on a private swtpm, the SocketFrontEnd on temporary unix
// sockets (and TCP on loopback), and raw protocol clients. The kernel-contract cases that make sense for a
// stream socket: isolation, flush on disconnect and on process exit, paging beyond the TPM's slots, RM-layer
// errors, framing errors, backend loss; plus the swtpm control channel and the mssim platform socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "daemon/supervisor.h"
#include "rm/handles.h"
#include "socket/mssim_protocol.h"
#include "socket/peer.h"
#include "socket/socket_front_end.h"
#include "socket/stream_io.h"
#include "socket/swtpm_control_session.h"
#include "support/eventually.h"
#include "support/swtpm_process.h"
#include "support/tpm_commands.h"

namespace tpmrmd::socket {
namespace {

using namespace std::chrono_literals;
namespace t = tpmrmd::testing;

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return UniqueFd();
  timeval tv{10, 0};  // no test may hang on a socket
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

UniqueFd connect_tcp(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return UniqueFd();
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// True once the peer has closed: recv sees EOF (or a reset), not a timeout.
bool closed_by_peer(int fd) {
  std::uint8_t b;
  const ssize_t n = ::recv(fd, &b, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// One command on the swtpm data channel (raw frames).
std::optional<Bytes> swtpm_exchange(int fd, const Bytes& command) {
  if (!write_all(fd, command)) return std::nullopt;
  Bytes response(10);
  if (!read_exact(fd, response)) return std::nullopt;
  const std::uint32_t size = (std::uint32_t{response[2]} << 24) | (std::uint32_t{response[3]} << 16) |
                             (std::uint32_t{response[4]} << 8) | response[5];
  if (size < 10 || size > 65536) return std::nullopt;
  response.resize(size);
  if (!read_exact(fd, std::span(response).subspan(10))) return std::nullopt;
  return response;
}

// One TPM_SEND_COMMAND on an mssim command socket.
std::optional<Bytes> mssim_exchange(int fd, const Bytes& command, std::uint8_t locality = 0) {
  Bytes out;
  append_u32(out, mssim::kSendCommand);
  out.push_back(locality);
  append_u32(out, static_cast<std::uint32_t>(command.size()));
  out.insert(out.end(), command.begin(), command.end());
  if (!write_all(fd, out)) return std::nullopt;
  auto size = read_u32(fd);
  if (!size || *size > 65536) return std::nullopt;
  Bytes response(*size);
  if (!read_exact(fd, response)) return std::nullopt;
  auto ack = read_u32(fd);
  if (!ack || *ack != 0) return std::nullopt;
  return response;
}

std::optional<std::uint32_t> u32_request(int fd, std::uint32_t code, ByteSpan payload = {}) {
  Bytes out;
  append_u32(out, code);
  out.insert(out.end(), payload.begin(), payload.end());
  if (!write_all(fd, out)) return std::nullopt;
  auto r = read_u32(fd);
  if (!r) return std::nullopt;
  return *r;
}

std::vector<TPM2_HANDLE> transient_handles(const Bytes& response) {
  auto list = t::parse_handles(response);
  return list ? list->handles : std::vector<TPM2_HANDLE>{};
}

Bytes get_transient_handles() { return t::get_capability(TPM2_CAP_HANDLES, TPM2_TRANSIENT_FIRST, 64); }

class SocketFrontEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.start().ok());
    daemon::SupervisorOptions options;
    options.tpm = swtpm_.spec();
    options.first_attempts = 1;
    options.poll_interval = 20ms;
    options.retry_interval = 100ms;
    supervisor_ = std::make_unique<daemon::Supervisor>(options);
    auto started = supervisor_->start();
    ASSERT_TRUE(started.ok()) << describe(started.error());
    char dir_template[] = "/tmp/tpmrmd-socket-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    SocketFrontEndOptions front;
    front.swtpm = Endpoint{.kind = Endpoint::Kind::kUnix, .path = dir_ + "/swtpm.sock"};
    front.mssim = Endpoint{.kind = Endpoint::Kind::kUnix, .path = dir_ + "/mssim.sock"};
    start_front_end(std::move(front));
  }
  void start_front_end(SocketFrontEndOptions front) {
    if (front_) front_->stop();
    auto s = SocketFrontEnd::start(std::move(front), [this](const rm::ClientInfo& client) {
      return supervisor_->open(client, {});
    });
    ASSERT_TRUE(s.ok()) << describe(s.error());
    front_ = std::move(*s);
  }
  void TearDown() override {
    if (front_) front_->stop();
    if (supervisor_) supervisor_->shutdown(chip::ShutdownMode::kNone);
    std::filesystem::remove_all(dir_);
  }
  rm::Snapshot snapshot() {
    auto s = supervisor_->snapshot();
    EXPECT_TRUE(s.has_value());
    return s ? s->rm : rm::Snapshot{};
  }
  std::string swtpm_path() const { return dir_ + "/swtpm.sock"; }
  std::string mssim_path() const { return dir_ + "/mssim.sock"; }

  t::SwtpmProcess swtpm_;
  std::unique_ptr<daemon::Supervisor> supervisor_;
  std::unique_ptr<SocketFrontEnd> front_;
  std::string dir_;
};

TEST_F(SocketFrontEndTest, SocketFilesGetTheModeAndAreRemovedOnStop) {
  for (const auto& p : {swtpm_path(), swtpm_path() + ".ctrl", mssim_path(), mssim_path() + ".ctrl"}) {
    struct stat st {};
    ASSERT_EQ(::lstat(p.c_str(), &st), 0) << p;
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0660u) << p;
  }
  front_->stop();
  for (const auto& p : {swtpm_path(), swtpm_path() + ".ctrl", mssim_path(), mssim_path() + ".ctrl"}) {
    EXPECT_FALSE(std::filesystem::exists(p)) << p;
  }
}

TEST_F(SocketFrontEndTest, StaleSocketIsReplacedAndALiveOneRefused) {
  SocketFrontEndOptions again;
  again.mssim = Endpoint{.kind = Endpoint::Kind::kUnix, .path = mssim_path()};
  auto second = SocketFrontEnd::start(again, [this](const rm::ClientInfo& c) { return supervisor_->open(c, {}); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, EADDRINUSE);
  front_->stop();
  // A dead socket file (nobody listens) is taken over.
  UniqueFd dead(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", mssim_path().c_str());
  ASSERT_EQ(::bind(dead.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  dead.reset();
  start_front_end(again);
  auto c = connect_unix(mssim_path());
  ASSERT_TRUE(c);
  auto r = mssim_exchange(c.get(), t::get_random(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(SocketFrontEndTest, SwtpmDataChannelRunsCommands) {
  auto c = connect_unix(swtpm_path());
  ASSERT_TRUE(c);
  auto r = swtpm_exchange(c.get(), t::get_random(16));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
  EXPECT_EQ(r->size(), 10u + 2 + 16);
}

TEST_F(SocketFrontEndTest, SwtpmSpaceOutlivesTheConnectionWithinOneProcess) {
  // As the swtpm: TCTI does: one connection per command, same process.
  TPM2_HANDLE key = 0;
  {
    auto c = connect_unix(swtpm_path());
    auto r = swtpm_exchange(c.get(), t::create_primary(TPM2_RH_OWNER, 1));
    ASSERT_TRUE(r);
    ASSERT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
    key = t::handle_of(*r);
  }
  auto c = connect_unix(swtpm_path());
  auto r = swtpm_exchange(c.get(), t::read_public(key));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
  EXPECT_EQ(front_->process_spaces(), 1u);
}

TEST_F(SocketFrontEndTest, SwtpmSpaceIsFlushedWhenTheProcessExits) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Three keys, then exit without flushing anything.
    bool ok = true;
    for (std::uint8_t i = 1; i <= 3; ++i) {
      auto c = connect_unix(swtpm_path());
      auto r = c ? swtpm_exchange(c.get(), t::create_primary(TPM2_RH_OWNER, i)) : std::nullopt;
      ok = ok && r && t::rc_of(*r) == TPM2_RC_SUCCESS;
    }
    const char status = ok ? 1 : 0;
    (void)!::write(ready[1], &status, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  char status = 0;
  ASSERT_EQ(::read(ready[0], &status, 1), 1);
  ::close(ready[0]);
  EXPECT_EQ(status, 1);
  int wstatus = 0;
  ::waitpid(child, &wstatus, 0);
  EXPECT_TRUE(t::eventually([&] { return front_->process_spaces() == 0; }, 5s));
  EXPECT_TRUE(t::eventually([&] { return snapshot().slots.objects_total == 0; }, 5s));
  EXPECT_EQ(snapshot().slots.objects_resident, 0u);
}

TEST_F(SocketFrontEndTest, MssimClientsAreIsolatedAndFlushedOnDisconnect) {
  auto a = connect_unix(mssim_path());
  auto b = connect_unix(mssim_path());
  ASSERT_TRUE(a && b);
  auto key = mssim_exchange(a.get(), t::create_primary(TPM2_RH_OWNER, 1));
  ASSERT_TRUE(key);
  ASSERT_EQ(t::rc_of(*key), TPM2_RC_SUCCESS);
  const TPM2_HANDLE a_key = t::handle_of(*key);
  auto a_handles = mssim_exchange(a.get(), get_transient_handles());
  ASSERT_TRUE(a_handles);
  EXPECT_EQ(transient_handles(*a_handles), std::vector<TPM2_HANDLE>{a_key});
  auto b_handles = mssim_exchange(b.get(), get_transient_handles());
  ASSERT_TRUE(b_handles);
  EXPECT_TRUE(transient_handles(*b_handles).empty());
  // B cannot use A's handle.
  auto stolen = mssim_exchange(b.get(), t::read_public(a_key));
  ASSERT_TRUE(stolen);
  EXPECT_NE(t::rc_of(*stolen), TPM2_RC_SUCCESS);
  EXPECT_EQ(snapshot().slots.objects_total, 1u);
  // TPM_SESSION_END closes A's space; the TPM holds nothing of it afterwards.
  Bytes end;
  append_u32(end, mssim::kSessionEnd);
  ASSERT_TRUE(write_all(a.get(), end));
  EXPECT_TRUE(closed_by_peer(a.get()));
  EXPECT_TRUE(t::eventually([&] { return snapshot().slots.objects_total == 0; }, 5s));
  EXPECT_EQ(snapshot().slots.objects_resident, 0u);
}

TEST_F(SocketFrontEndTest, HandlesArePagedBeyondTheTpmsSlots) {
  auto c = connect_unix(mssim_path());
  ASSERT_TRUE(c);
  std::vector<TPM2_HANDLE> keys;
  for (std::uint8_t i = 1; i <= 6; ++i) {
    auto r = mssim_exchange(c.get(), t::create_primary(TPM2_RH_OWNER, i));
    ASSERT_TRUE(r);
    ASSERT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS) << int(i);
    keys.push_back(t::handle_of(*r));
  }
  EXPECT_GT(keys.size(), snapshot().slots.tpm_object_slots);
  for (TPM2_HANDLE k : keys) {
    auto r = mssim_exchange(c.get(), t::read_public(k));
    ASSERT_TRUE(r);
    EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS) << std::hex << k;
  }
  c.reset();
  EXPECT_TRUE(t::eventually([&] { return snapshot().slots.objects_total == 0; }, 5s));
}

TEST_F(SocketFrontEndTest, UnknownCommandCodeGetsAnRmLayerResponse) {
  Bytes bogus = t::get_random(8);
  bogus[6] = 0x20;  // command code 0x20000xxx: no such command
  for (const auto& path : {swtpm_path(), mssim_path()}) {
    auto c = connect_unix(path);
    auto r = path == swtpm_path() ? swtpm_exchange(c.get(), bogus) : mssim_exchange(c.get(), bogus);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(t::rc_of(*r), rm::kRmCommandCode) << path;
  }
}

TEST_F(SocketFrontEndTest, NonZeroLocalityIsRefusedOnMssim) {
  auto c = connect_unix(mssim_path());
  auto r = mssim_exchange(c.get(), t::get_random(8), 3);
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_LOCALITY);
}

TEST_F(SocketFrontEndTest, BrokenFramesCloseTheConnection) {
  {  // swtpm: commandSize below the header
    auto c = connect_unix(swtpm_path());
    Bytes tiny = t::get_random(8);
    tiny[5] = 4;
    ASSERT_TRUE(write_all(c.get(), tiny));
    EXPECT_TRUE(closed_by_peer(c.get()));
  }
  {  // swtpm: commandSize above --max-command
    auto c = connect_unix(swtpm_path());
    Bytes huge = t::get_random(8);
    huge[2] = 0x00, huge[3] = 0x10, huge[4] = 0x00, huge[5] = 0x00;
    ASSERT_TRUE(write_all(c.get(), huge));
    EXPECT_TRUE(closed_by_peer(c.get()));
  }
  {  // swtpm: truncated (the client gives up half-way)
    auto c = connect_unix(swtpm_path());
    Bytes cmd = t::get_random(8);
    ASSERT_TRUE(write_all(c.get(), std::span(cmd).first(7)));
    ::shutdown(c.get(), SHUT_WR);
    EXPECT_TRUE(closed_by_peer(c.get()));
  }
  {  // mssim: oversized
    auto c = connect_unix(mssim_path());
    Bytes out;
    append_u32(out, mssim::kSendCommand);
    out.push_back(0);
    append_u32(out, 1u << 20);
    ASSERT_TRUE(write_all(c.get(), out));
    EXPECT_TRUE(closed_by_peer(c.get()));
  }
  {  // mssim: an unknown request code
    auto c = connect_unix(mssim_path());
    Bytes out;
    append_u32(out, 0x7777);
    ASSERT_TRUE(write_all(c.get(), out));
    EXPECT_TRUE(closed_by_peer(c.get()));
  }
  // Nothing leaked, and the front-end still serves.
  auto c = connect_unix(mssim_path());
  auto r = mssim_exchange(c.get(), t::get_random(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(SocketFrontEndTest, SwtpmControlChannelSubset) {
  using namespace swtpm_ctrl;
  auto c = connect_unix(swtpm_path() + ".ctrl");
  ASSERT_TRUE(c);
  {
    Bytes out;
    append_u32(out, kGetCapability);
    ASSERT_TRUE(write_all(c.get(), out));
    auto result = read_u32(c.get());
    auto caps = read_u32(c.get());
    ASSERT_TRUE(result && caps);
    EXPECT_EQ(*result, kSuccess);
    EXPECT_TRUE(*caps & kCapSetLocality);
    EXPECT_TRUE(*caps & kCapCancelTpmCmd);
  }
  const std::uint8_t zero = 0, three = 3;
  EXPECT_EQ(u32_request(c.get(), kSetLocality, std::span(&zero, 1)), kSuccess);
  EXPECT_EQ(u32_request(c.get(), kSetLocality, std::span(&three, 1)), kBadLocality);
  const std::uint8_t flags[4] = {0, 0, 0, 1};
  EXPECT_EQ(u32_request(c.get(), kInit, flags), kDisabledCmd);
  EXPECT_EQ(u32_request(c.get(), kShutdown), kDisabledCmd);
  EXPECT_EQ(u32_request(c.get(), kStop), kDisabledCmd);
  EXPECT_EQ(u32_request(c.get(), kCancelTpmCmd), kSuccess);  // nothing in flight: a no-op
  EXPECT_EQ(u32_request(c.get(), 0x4242), kBadOrdinal);
  EXPECT_TRUE(closed_by_peer(c.get()));
  // The TPM was neither reset nor stopped.
  auto d = connect_unix(swtpm_path());
  auto r = swtpm_exchange(d.get(), t::get_random(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(SocketFrontEndTest, MssimPlatformSignals) {
  auto p = connect_unix(mssim_path() + ".ctrl");
  ASSERT_TRUE(p);
  for (std::uint32_t code : {mssim::kPowerOn, mssim::kNvOn, mssim::kCancelOn, mssim::kCancelOff, mssim::kNvOff,
                             mssim::kPowerOff}) {
    EXPECT_EQ(u32_request(p.get(), code), mssim::kDone) << code;
  }
  for (std::uint32_t code : {mssim::kReset, mssim::kRestart, mssim::kPhysPresOn}) {
    EXPECT_EQ(u32_request(p.get(), code), mssim::kRefused) << code;
  }
  Bytes end;
  append_u32(end, mssim::kSessionEnd);
  ASSERT_TRUE(write_all(p.get(), end));
  EXPECT_TRUE(closed_by_peer(p.get()));
  // Power off was a no-op: the TPM still answers.
  auto c = connect_unix(mssim_path());
  auto r = mssim_exchange(c.get(), t::get_random(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
}

TEST_F(SocketFrontEndTest, BackendLossClosesTheConnection) {
  auto c = connect_unix(mssim_path());
  auto s = connect_unix(swtpm_path());
  ASSERT_TRUE(c && s);
  ASSERT_TRUE(mssim_exchange(c.get(), t::get_random(8)));
  ASSERT_TRUE(swtpm_exchange(s.get(), t::get_random(8)));
  swtpm_.kill_hard();
  // The command that finds the transport broken may get a clear error (an RM-layer TPM_RC_FAILURE); from then
  // on the backend is gone and the connection is closed — never a hang (each recv is bounded at 10 s).
  const auto start = std::chrono::steady_clock::now();
  for (int fd : {c.get(), s.get()}) {
    const bool mssim = fd == c.get();
    bool closed = false;
    for (int attempt = 0; attempt < 3 && !closed; ++attempt) {
      auto r = mssim ? mssim_exchange(fd, t::get_random(8)) : swtpm_exchange(fd, t::get_random(8));
      if (!r) closed = true;
      else EXPECT_NE(t::rc_of(*r), TPM2_RC_SUCCESS);
    }
    EXPECT_TRUE(closed) << (mssim ? "mssim" : "swtpm");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  // New connections are refused (closed at once) while there is no backend.
  auto n = connect_unix(mssim_path());
  ASSERT_TRUE(n);
  EXPECT_TRUE(closed_by_peer(n.get()));
}

TEST_F(SocketFrontEndTest, TcpClientsAreAnonymous) {
  SocketFrontEndOptions tcp;
  // A free port pair: bind port 0, take it, and hope its neighbour is free too (retry a few).
  std::unique_ptr<SocketFrontEnd> started;
  std::uint16_t port = 0;
  for (int attempt = 0; attempt < 20 && !started; ++attempt) {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
    probe.reset();
    if (port >= 65534) continue;
    tcp.mssim = Endpoint{.kind = Endpoint::Kind::kTcp, .path = {}, .host = "127.0.0.1", .port = port};
    auto s = SocketFrontEnd::start(tcp, [this](const rm::ClientInfo& client) {
      EXPECT_EQ(client.uid, kAnonymousUid);
      EXPECT_EQ(client.gid, kAnonymousGid);
      EXPECT_EQ(client.pid, 0);
      return supervisor_->open(client, {});
    });
    if (s) started = std::move(*s);
  }
  ASSERT_TRUE(started);
  auto c = connect_tcp(port);
  ASSERT_TRUE(c);
  auto r = mssim_exchange(c.get(), t::get_random(8));
  ASSERT_TRUE(r);
  EXPECT_EQ(t::rc_of(*r), TPM2_RC_SUCCESS);
  auto p = connect_tcp(static_cast<std::uint16_t>(port + 1));
  ASSERT_TRUE(p);
  EXPECT_EQ(u32_request(p.get(), mssim::kPowerOn), mssim::kDone);
  started->stop();
}

TEST(EndpointTest, ParsesPathsAndTcpAddresses) {
  auto p = parse_endpoint("/run/x.sock");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(p->companion().path, "/run/x.sock.ctrl");
  auto port = parse_endpoint("2321");
  ASSERT_TRUE(port);
  EXPECT_EQ(port->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(port->host, "127.0.0.1");
  EXPECT_EQ(port->companion().port, 2322);
  EXPECT_TRUE(port->loopback());
  auto v6 = parse_endpoint("[::1]:5000");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  auto any = parse_endpoint("0.0.0.0:5000");
  ASSERT_TRUE(any);
  EXPECT_FALSE(any->loopback());
  EXPECT_FALSE(parse_endpoint(""));
  EXPECT_FALSE(parse_endpoint("host:"));
  EXPECT_FALSE(parse_endpoint("host:65535"));  // no room for the platform port
  EXPECT_FALSE(parse_endpoint("relative.sock"));
  EXPECT_FALSE(parse_endpoint(":80"));
}

}  // namespace
}  // namespace tpmrmd::socket

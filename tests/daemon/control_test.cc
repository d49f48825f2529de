// Introspection on the host: the RM snapshot after known commands (through the Supervisor, its Backend and
// worker, on a real swtpm), the Prometheus rendering checked by a strict parser, the control socket's
// authorization decision, and a control socket round trip without CUSE.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/control_access.h"
#include "daemon/control_server.h"
#include "daemon/metrics_text.h"
#include "daemon/status_json.h"
#include "daemon/supervisor.h"
#include "support/swtpm_process.h"
#include "support/tpm_commands.h"

namespace tpmrmd::daemon {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// ---- a strict Prometheus text format (0.0.4) checker ----

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> type
  std::vector<Sample> samples;
};

// Fails the test (and returns what parsed) on any line that is not HELP, TYPE or `name{labels} value`, on a
// sample before its family's HELP and TYPE, on a repeated family, and on histograms that are not cumulative,
// do not end in +Inf or whose +Inf bucket differs from _count.
Exposition parse_strict(const std::string& text) {
  Exposition out;
  static const std::regex kHelp(R"(^# HELP (tpmrmd_[a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  static const std::regex kType(R"(^# TYPE (tpmrmd_[a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex kSample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  static const std::regex kLabel(R"(^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)\"(,|$))");
  std::set<std::string> helped;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (std::regex_match(line, m, kHelp)) {
      EXPECT_TRUE(helped.insert(m[1]).second) << "HELP twice, line " << n << ": " << line;
      continue;
    }
    if (std::regex_match(line, m, kType)) {
      EXPECT_TRUE(helped.count(m[1])) << "TYPE before HELP, line " << n;
      EXPECT_TRUE(out.types.emplace(m[1], m[2]).second) << "TYPE twice, line " << n;
      continue;
    }
    if (!std::regex_match(line, m, kSample)) {
      ADD_FAILURE() << "not a sample, line " << n << ": '" << line << "'";
      continue;
    }
    Sample s;
    s.name = m[1];
    std::string labels = m[3];
    while (!labels.empty()) {
      std::smatch l;
      if (!std::regex_search(labels, l, kLabel)) {
        ADD_FAILURE() << "bad labels, line " << n << ": " << line;
        break;
      }
      EXPECT_TRUE(s.labels.emplace(l[1], l[2]).second) << "label twice, line " << n;
      labels = l.suffix();
    }
    const std::string value = m[4];
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    EXPECT_TRUE(end && *end == '\0') << "bad value, line " << n << ": " << line;
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sfx = suffix;
      if (!out.types.count(family) && family.size() > sfx.size() &&
          family.compare(family.size() - sfx.size(), sfx.size(), sfx) == 0) {
        family.resize(family.size() - sfx.size());
      }
    }
    EXPECT_TRUE(out.types.count(family)) << "sample before its TYPE, line " << n << ": " << line;
    out.samples.push_back(std::move(s));
  }
  // Histograms: cumulative buckets ascending in le, the last +Inf, equal to _count.
  for (const auto& [family, type] : out.types) {
    if (type != "histogram") continue;
    double last_le = -1, last_count = -1, inf = -1, count = -1;
    bool seen_sum = false;
    for (const Sample& s : out.samples) {
      if (s.name == family + "_bucket") {
        EXPECT_LT(inf, 0) << family << ": bucket after +Inf";
        const std::string le = s.labels.at("le");
        EXPECT_GE(s.value, last_count) << family << ": buckets not cumulative at le=" << le;
        last_count = s.value;
        if (le == "+Inf") {
          inf = s.value;
        } else {
          const double v = std::stod(le);
          EXPECT_GT(v, last_le) << family << ": le not ascending";
          last_le = v;
        }
      } else if (s.name == family + "_count") {
        count = s.value;
      } else if (s.name == family + "_sum") {
        seen_sum = true;
      }
    }
    EXPECT_GE(inf, 0) << family << ": no +Inf bucket";
    EXPECT_EQ(inf, count) << family << ": +Inf bucket differs from _count";
    EXPECT_TRUE(seen_sum) << family << ": no _sum";
  }
  return out;
}

double value_of(const Exposition& e, const std::string& name, const std::map<std::string, std::string>& labels = {}) {
  for (const Sample& s : e.samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  ADD_FAILURE() << "no sample " << name;
  return -1;
}

// ---- authorization ----

TEST(ControlAccessTest, RootMayUseEveryVerb) {
  const ControlPeer root{1, 0, 0, {}};
  EXPECT_EQ(control_access(root, std::nullopt), ControlAccess::kAll);
  EXPECT_EQ(control_access(root, 113), ControlAccess::kAll);
  for (const char* verb : {"status", "clients", "metrics", "flush-abandoned", "log-level"}) {
    EXPECT_FALSE(refuse_verb(root, ControlAccess::kAll, verb)) << verb;
  }
}

TEST(ControlAccessTest, GroupMembersByPrimaryOrSupplementaryGroupGetReadOnlyVerbs) {
  const ControlPeer primary{2, 1000, 113, {}};
  const ControlPeer supplementary{3, 1001, 1001, {27, 113, 1001}};
  EXPECT_EQ(control_access(primary, 113), ControlAccess::kReadOnly);
  EXPECT_EQ(control_access(supplementary, 113), ControlAccess::kReadOnly);
  for (const char* verb : {"status", "clients", "metrics"}) {
    EXPECT_FALSE(refuse_verb(primary, ControlAccess::kReadOnly, verb)) << verb;
  }
  for (const char* verb : {"flush-abandoned", "log-level", "anything-else"}) {
    auto refused = refuse_verb(primary, ControlAccess::kReadOnly, verb);
    ASSERT_TRUE(refused) << verb;
    EXPECT_NE(refused->find("root only"), std::string::npos) << *refused;
  }
}

TEST(ControlAccessTest, EveryoneElseIsRefused) {
  const ControlPeer other{4, 1002, 1002, {1002, 24}};
  EXPECT_EQ(control_access(other, 113), ControlAccess::kNone);
  EXPECT_EQ(control_access(other, std::nullopt), ControlAccess::kNone);
  // Without a node group, a gid that happens to be 0's group number is not enough either: only uid 0 is root.
  EXPECT_EQ(control_access(ControlPeer{5, 1003, 0, {0}}, std::nullopt), ControlAccess::kNone);
  auto refused = refuse_verb(other, ControlAccess::kNone, "status");
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->find("neither root nor a member"), std::string::npos) << *refused;
}

TEST(ControlAccessTest, ProcessGroupsReadsOurOwnSupplementaryGroups) {
  auto groups = process_groups(::getpid());
  ASSERT_TRUE(groups);
  std::vector<gid_t> ours(static_cast<std::size_t>(::getgroups(0, nullptr)));
  ASSERT_EQ(::getgroups(static_cast<int>(ours.size()), ours.data()), static_cast<int>(ours.size()));
  EXPECT_EQ(std::set<gid_t>(groups->begin(), groups->end()), std::set<gid_t>(ours.begin(), ours.end()));
  EXPECT_FALSE(process_groups(-1));
}

// ---- the Prometheus renderer on a synthetic status ----

TEST(MetricsTextTest, SyntheticStatusParsesStrictly) {
  DaemonStatus status;
  status.started_at = std::chrono::system_clock::now() - 10s;
  status.now = std::chrono::system_clock::now();
  EXPECT_EQ(value_of(parse_strict(metrics_text(status)), "tpmrmd_backend_up"), 0);

  BackendSnapshot b;
  b.generation = 2;
  b.description = "swtpm:path=/tmp/a \"quoted\"\\";
  b.registered_at = status.now - 5s;
  rm::Counters& c = b.rm.counters;
  c.by_command[TPM2_CC_ReadPublic] = {5, 0, 1, 2};
  c.by_command[0x20000001] = {0, 0, 0, 1};  // a vendor code: labelled by its hex value
  c.refusals_by_reason[static_cast<std::size_t>(rm::RefusalReason::kPolicy)] = 3;
  for (std::chrono::nanoseconds d : {std::chrono::nanoseconds(50us), std::chrono::nanoseconds(300us), std::chrono::nanoseconds(2ms), std::chrono::nanoseconds(2ms), std::chrono::nanoseconds(20s)}) c.command_latency.observe(d);
  c.tpm_time.observe(1ms);
  c.client_commands = 9;
  c.connections_open = 2;
  b.rm.slots.objects_resident = 2;
  b.rm.slots.object_slots = 3;
  status.backend = b;
  const std::string text = metrics_text(status);
  const Exposition e = parse_strict(text);
  EXPECT_EQ(e.types.at("tpmrmd_commands_total"), "counter");
  EXPECT_EQ(e.types.at("tpmrmd_command_latency_seconds"), "histogram");
  EXPECT_EQ(value_of(e, "tpmrmd_commands_total", {{"command", "ReadPublic"}, {"rc_class", "success"}}), 5);
  EXPECT_EQ(value_of(e, "tpmrmd_commands_total", {{"command", "ReadPublic"}, {"rc_class", "rm-refusal"}}), 2);
  EXPECT_EQ(value_of(e, "tpmrmd_commands_total", {{"command", "0x20000001"}, {"rc_class", "rm-refusal"}}), 1);
  EXPECT_EQ(value_of(e, "tpmrmd_refusals_total", {{"reason", "policy"}}), 3);
  EXPECT_EQ(value_of(e, "tpmrmd_tpm_commands_total", {{"kind", "client"}}), 9);
  EXPECT_EQ(value_of(e, "tpmrmd_command_latency_seconds_bucket", {{"le", "0.0001"}}), 1);
  EXPECT_EQ(value_of(e, "tpmrmd_command_latency_seconds_bucket", {{"le", "0.0025"}}), 4);
  EXPECT_EQ(value_of(e, "tpmrmd_command_latency_seconds_bucket", {{"le", "10"}}), 4);
  EXPECT_EQ(value_of(e, "tpmrmd_command_latency_seconds_bucket", {{"le", "+Inf"}}), 5);
  EXPECT_NEAR(value_of(e, "tpmrmd_command_latency_seconds_sum"), 20.00435, 1e-9);
  EXPECT_EQ(value_of(e, "tpmrmd_slots_used", {{"kind", "object"}}), 2);
  EXPECT_EQ(value_of(e, "tpmrmd_connections"), 2);
  EXPECT_NE(text.find(R"(spec="swtpm:path=/tmp/a \"quoted\"\\")"), std::string::npos) << text;
}

TEST(LatencyHistogramTest, BoundsAreInclusiveUpperBounds) {
  rm::LatencyHistogram h;
  h.observe(100us);   // exactly the first bound: le="0.0001"
  h.observe(101us);
  h.observe(-1ns);    // clamped to 0
  EXPECT_EQ(h.bucket(0), 2u);
  EXPECT_EQ(h.bucket(1), 1u);
  EXPECT_EQ(h.cumulative(rm::LatencyHistogram::kBuckets - 1), 3u);
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.sum_ns(), 201'000u);
}

// ---- on a real swtpm through the Supervisor ----

Result<Bytes> round_trip(device::Connection& c, const Bytes& command) {
  std::promise<Result<std::size_t>> w;
  c.write(command, false, [&](Result<std::size_t> r) { w.set_value(std::move(r)); });
  auto written = w.get_future().get();
  if (!written) return written.error();
  std::promise<Result<Bytes>> r;
  c.read(4096, false, [&](Result<Bytes> b) { r.set_value(std::move(b)); });
  return r.get_future().get();
}

class ControlSwtpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.start().ok());
    SupervisorOptions options;
    options.tpm = swtpm_.spec();
    options.first_attempts = 1;
    options.poll_interval = 20ms;
    supervisor_ = std::make_unique<Supervisor>(options);
    auto started = supervisor_->start();
    ASSERT_TRUE(started.ok()) << describe(started.error());
  }
  void TearDown() override {
    if (supervisor_) supervisor_->shutdown(chip::ShutdownMode::kNone);
  }
  std::shared_ptr<device::Connection> open(uid_t uid, pid_t pid, std::string comm) {
    auto c = supervisor_->open(rm::ClientInfo{uid, uid, pid, {}, std::move(comm)}, {});
    EXPECT_TRUE(c.ok()) << describe(c.error());
    return c.ok() ? *c : nullptr;
  }
  Bytes ok(device::Connection& c, const Bytes& command) {
    auto r = round_trip(c, command);
    EXPECT_TRUE(r.ok()) << describe(r.error());
    if (!r) return {};
    EXPECT_EQ(testing::rc_of(*r), TPM2_RC_SUCCESS);
    return *r;
  }
  // Two clients: uid 1000 (pid 4242, "alpha") with two keys and a session; uid 0 (pid 4343, "beta") with one
  // key and a refused command (a handle it does not own).
  void run_known_commands() {
    alpha_ = open(1000, 4242, "alpha");
    beta_ = open(0, 4343, "beta");
    ASSERT_TRUE(alpha_ && beta_);
    const TPM2_HANDLE k1 = testing::handle_of(ok(*alpha_, testing::create_primary(TPM2_RH_OWNER, 1)));
    ok(*alpha_, testing::create_primary(TPM2_RH_OWNER, 2));
    ok(*alpha_, testing::start_auth_session(TPM2_SE_POLICY));
    ok(*alpha_, testing::read_public(k1));
    ok(*beta_, testing::create_primary(TPM2_RH_OWNER, 3));
    auto refused = round_trip(*beta_, testing::read_public(k1 + 0x100));  // not beta's
    EXPECT_FALSE(refused.ok() && testing::rc_of(*refused) == TPM2_RC_SUCCESS);
  }

  testing::SwtpmProcess swtpm_;
  std::unique_ptr<Supervisor> supervisor_;
  std::shared_ptr<device::Connection> alpha_, beta_;
};

TEST_F(ControlSwtpmTest, SnapshotAfterKnownCommands) {
  run_known_commands();
  auto snap = supervisor_->snapshot();
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->generation, 1u);
  EXPECT_EQ(snap->description.rfind("swtpm", 0), 0u) << snap->description;
  const rm::Counters& c = snap->rm.counters;
  EXPECT_EQ(c.connections_open, 2u);
  EXPECT_EQ(c.connections_opened, 2u);
  ASSERT_EQ(c.per_connection.size(), 2u);
  const rm::ConnectionCounters& a = c.per_connection.begin()->second;
  const rm::ConnectionCounters& b = std::next(c.per_connection.begin())->second;
  EXPECT_EQ(a.pid, 4242);
  EXPECT_EQ(a.uid, 1000u);
  EXPECT_EQ(a.comm, "alpha");
  EXPECT_EQ(a.commands, 4u);
  EXPECT_EQ(a.refusals, 0u);
  EXPECT_EQ(a.objects, 2u);
  EXPECT_EQ(a.sessions, 1u);
  EXPECT_EQ(a.last_cc, TPM2_CC_ReadPublic);
  EXPECT_EQ(a.last_rc, TPM2_RC_SUCCESS);
  EXPECT_GT(a.tpm_time.count(), 0);
  EXPECT_LE(std::chrono::system_clock::now() - a.opened_at, 60s);
  EXPECT_EQ(b.pid, 4343);
  EXPECT_EQ(b.uid, 0u);
  EXPECT_EQ(b.commands, 2u);
  EXPECT_EQ(b.refusals, 1u);
  EXPECT_EQ(b.objects, 1u);
  EXPECT_EQ(b.sessions, 0u);
  EXPECT_EQ(b.last_cc, TPM2_CC_ReadPublic);
  EXPECT_EQ(c.refusals, 1u);
  EXPECT_EQ(c.refusals_by_reason[static_cast<std::size_t>(rm::RefusalReason::kHandle)], 1u);
  ASSERT_TRUE(c.by_command.count(TPM2_CC_CreatePrimary));
  EXPECT_EQ(c.by_command.at(TPM2_CC_CreatePrimary)[0], 3u);
  EXPECT_EQ(c.by_command.at(TPM2_CC_ReadPublic)[0], 1u);
  EXPECT_EQ(c.by_command.at(TPM2_CC_ReadPublic)[static_cast<std::size_t>(rm::RcClass::kRefusal)], 1u);
  EXPECT_EQ(c.by_command.at(TPM2_CC_StartAuthSession)[0], 1u);
  EXPECT_EQ(c.command_latency.count(), 6u);
  EXPECT_EQ(c.tpm_time.count(), 6u);
  const rm::SlotUse& s = snap->rm.slots;
  EXPECT_EQ(s.objects_total, 3u);
  EXPECT_EQ(s.sessions_total, 1u);
  EXPECT_LE(s.objects_resident, s.object_slots);
  EXPECT_GT(s.object_slots, 0u);
  EXPECT_GT(s.context_gap_max, 0u);
  EXPECT_FALSE(snap->rm.tpm.manufacturer.empty());
  EXPECT_FALSE(snap->rm.policy.empty());

  // The renderings of the same snapshot.
  DaemonStatus status{::getpid(), std::chrono::system_clock::now(), std::chrono::system_clock::now() - 1s, snap};
  const Exposition e = parse_strict(metrics_text(status));
  EXPECT_EQ(value_of(e, "tpmrmd_connections"), 2);
  EXPECT_EQ(value_of(e, "tpmrmd_objects"), 3);
  EXPECT_EQ(value_of(e, "tpmrmd_commands_total", {{"command", "CreatePrimary"}, {"rc_class", "success"}}), 3);
  EXPECT_EQ(value_of(e, "tpmrmd_refusals_total", {{"reason", "handle"}}), 1);
  EXPECT_EQ(value_of(e, "tpmrmd_command_tpm_seconds_count"), 6);
  const json clients = clients_json(status);
  ASSERT_EQ(clients["clients"].size(), 2u);
  EXPECT_EQ(clients["clients"][0]["pid"], 4242);
  EXPECT_EQ(clients["clients"][0]["last_command"], "ReadPublic");
  EXPECT_EQ(clients["clients"][1]["refusals"], 1);
  const json st = status_json(status);
  EXPECT_EQ(st["connections"]["open"], 2);
  EXPECT_EQ(st["slots"]["objects_total"], 3);
  EXPECT_EQ(st["backend"]["generation"], 1);
}

TEST_F(ControlSwtpmTest, AbandonedSessionsAreFlushedOnRequest) {
  auto c = open(1000, 77, "saver");
  ASSERT_TRUE(c);
  const TPM2_HANDLE session = testing::handle_of(ok(*c, testing::start_auth_session(TPM2_SE_HMAC)));
  ok(*c, testing::context_save(session));
  c->close();
  c.reset();
  std::optional<BackendSnapshot> snap;
  for (int i = 0; i < 200; ++i) {  // close() is asynchronous
    snap = supervisor_->snapshot();
    if (snap && snap->rm.slots.sessions_abandoned == 1) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->rm.slots.sessions_abandoned, 1u);
  EXPECT_EQ(supervisor_->flush_abandoned(), 1u);
  EXPECT_EQ(supervisor_->snapshot()->rm.slots.sessions_abandoned, 0u);
}

std::string ask(const std::string& path, const std::string& line) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  EXPECT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  return out;
}

// A worker held inside one command does not hang the control socket: status answers a clear error, and
// answers normally again once the worker is free.
TEST_F(ControlSwtpmTest, ABusyWorkerGetsAClearAnswerNotAHang) {
  run_known_commands();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> held;
  std::atomic<bool> first{true};
  // The fd's readiness callback runs on the worker once the command completes: holding it holds the worker.
  alpha_->set_on_ready([&, released] {
    if (!first.exchange(false)) return;
    held.set_value();
    released.wait();
  });
  alpha_->write(testing::get_random(4), /*nonblocking=*/true, [](Result<std::size_t>) {});
  held.get_future().wait();
  auto snap = supervisor_->snapshot(std::chrono::milliseconds(100));
  ASSERT_TRUE(snap);
  EXPECT_FALSE(snap->responsive);
  auto server = ControlServer::start(
      {.path = ::testing::TempDir() + "/tpmrmd-control-busy-" + std::to_string(::getpid())},
      {.snapshot = [this] { return supervisor_->snapshot(std::chrono::milliseconds(100)); }, .flush_abandoned = {}});
  ASSERT_TRUE(server.ok()) << describe(server.error());
  const json busy = json::parse((*server)->handle("{\"verb\":\"status\"}", ControlPeer{9, 0, 0, {}}));
  EXPECT_FALSE(busy["ok"].get<bool>());
  EXPECT_NE(busy["error"].get<std::string>().find("did not answer in time"), std::string::npos) << busy.dump();
  release.set_value();
  EXPECT_TRUE(supervisor_->snapshot()->responsive);
  const json again = json::parse((*server)->handle("{\"verb\":\"status\"}", ControlPeer{9, 0, 0, {}}));
  EXPECT_TRUE(again["ok"].get<bool>()) << again.dump();
  alpha_->set_on_ready(nullptr);
  (*server)->stop();
}

TEST_F(ControlSwtpmTest, SocketRoundTrip) {
  run_known_commands();
  const std::string dir = ::testing::TempDir() + "/tpmrmd-control-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/control";
  // A stale socket file from an earlier daemon is replaced.
  {
    const int stale = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(stale, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(stale);
  }
  auto server = ControlServer::start({.path = path, .group = ::getgid()},
                                     {.snapshot = [this] { return supervisor_->snapshot(); },
                                      .flush_abandoned = [this] { return supervisor_->flush_abandoned(); }});
  ASSERT_TRUE(server.ok()) << describe(server.error());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, ::getgid());
  // A second server on the same live socket is refused.
  auto second = ControlServer::start({.path = path}, {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, EADDRINUSE);

  const json status = json::parse(ask(path, "{\"verb\":\"status\"}\n"));
  ASSERT_TRUE(status["ok"].get<bool>()) << status.dump();
  EXPECT_EQ(status["result"]["connections"]["open"], 2);
  EXPECT_EQ(status["result"]["daemon"]["pid"], ::getpid());
  const json clients = json::parse(ask(path, "{\"verb\":\"clients\"}\n"));
  ASSERT_TRUE(clients["ok"].get<bool>());
  EXPECT_EQ(clients["result"]["clients"][1]["uid"], 0);
  const json metrics = json::parse(ask(path, "{\"verb\":\"metrics\"}\n"));
  ASSERT_TRUE(metrics["ok"].get<bool>());
  const Exposition e = parse_strict(metrics["result"]["text"].get<std::string>());
  EXPECT_EQ(value_of(e, "tpmrmd_backend_up"), 1);
  const json bad = json::parse(ask(path, "not json\n"));
  EXPECT_FALSE(bad["ok"].get<bool>());
  const json unknown = json::parse(ask(path, "{\"verb\":\"reboot\"}\n"));
  EXPECT_FALSE(unknown["ok"].get<bool>());
  EXPECT_NE(unknown["error"].get<std::string>().find("unknown verb"), std::string::npos);

  // The decision for other peers, through the same entry point the socket uses.
  ControlServer& s = **server;
  const json member = json::parse(s.handle("{\"verb\":\"flush-abandoned\"}", ControlPeer{9, 1000, ::getgid(), {}}));
  EXPECT_FALSE(member["ok"].get<bool>());
  EXPECT_NE(member["error"].get<std::string>().find("root only"), std::string::npos);
  EXPECT_TRUE(json::parse(s.handle("{\"verb\":\"metrics\"}", ControlPeer{9, 1000, ::getgid(), {}}))["ok"].get<bool>());
  const json stranger = json::parse(s.handle("{\"verb\":\"status\"}", ControlPeer{9, 1000, 4321, {4322}}));
  EXPECT_FALSE(stranger["ok"].get<bool>());
  if (::getgid() != 0) {
    EXPECT_FALSE(json::parse(s.handle("{\"verb\":\"status\"}", ControlPeer{9, 1000, 0, {}}))["ok"].get<bool>());
  }
  const json root_level = json::parse(s.handle("{\"verb\":\"log-level\",\"level\":\"debug\"}", ControlPeer{9, 0, 0, {}}));
  EXPECT_TRUE(root_level["ok"].get<bool>()) << root_level.dump();
  EXPECT_EQ(spdlog::get_level(), spdlog::level::debug);
  EXPECT_FALSE(json::parse(s.handle("{\"verb\":\"log-level\",\"level\":\"loud\"}", ControlPeer{9, 0, 0, {}}))["ok"]
                   .get<bool>());
  spdlog::set_level(spdlog::level::info);

  s.stop();
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "the socket file is removed on stop";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tpmrmd::daemon

// node_sched_bench: sched_bench through a device node: one uid's ReadPublic latency while processes of another
// uid flood the node with RSA-2048 CreatePrimary, measured end to end (CUSE, the kernel, the daemon, the TPM).
//
//   node_sched_bench --device /dev/tpmrm0 [--samples 40] [--attackers 16] [--pause-ms 25]
//                    [--victim-uid 2000] [--attacker-uid 1000]
// Runs as root: every client is a process of its own under the uid it is given (the node must let both open it).
// The victim first measures alone (its ReadPublic, and one RSA CreatePrimary at a time: what "one attacking
// command" costs here), then back to back and paced while the attackers run.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "latency_stats.h"
#include "support/tpm_commands.h"
#include "tpm/rc_names.h"
#include "util/unique_fd.h"

namespace {

using namespace tpmrmd;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::duration<double, std::milli>;

// One command through the node: whole write, then read the whole response.
std::optional<Bytes> transact(int fd, const Bytes& command) {
  if (::write(fd, command.data(), command.size()) != static_cast<ssize_t>(command.size())) return std::nullopt;
  Bytes response(4096);
  const ssize_t n = ::read(fd, response.data(), response.size());
  if (n < 10) return std::nullopt;
  response.resize(static_cast<std::size_t>(n));
  return response;
}

bool ok(const std::optional<Bytes>& r, const char* what) {
  if (!r) return std::perror(what), false;
  if (const TPM2_RC rc = testing::rc_of(*r); rc != TPM2_RC_SUCCESS) {
    std::fprintf(stderr, "%s: %s\n", what, tpm::rc_name(rc).c_str());
    return false;
  }
  return true;
}

bool become(uid_t uid) { return ::setgroups(0, nullptr) == 0 && ::setgid(uid) == 0 && ::setuid(uid) == 0; }

// Samples travel from a client process to the parent as a count and the doubles.
bool send(int fd, const std::vector<double>& v) {
  const std::size_t n = v.size();
  return ::write(fd, &n, sizeof n) == sizeof n &&
         ::write(fd, v.data(), n * sizeof(double)) == static_cast<ssize_t>(n * sizeof(double));
}
std::optional<std::vector<double>> receive(int fd) {
  std::size_t n = 0;
  if (::read(fd, &n, sizeof n) != sizeof n || n > 1000000) return std::nullopt;
  std::vector<double> v(n);
  std::size_t got = 0;
  auto* bytes = reinterpret_cast<char*>(v.data());
  while (got < n * sizeof(double)) {
    const ssize_t r = ::read(fd, bytes + got, n * sizeof(double) - got);
    if (r <= 0) return std::nullopt;
    got += static_cast<std::size_t>(r);
  }
  return v;
}

// `samples` commands made by `command(i)`, `pause` apart; each one's latency in ms.
template <typename MakeCommand>
std::optional<std::vector<double>> timed(int fd, MakeCommand command, int samples, std::chrono::milliseconds pause,
                                         bool flush_result) {
  std::vector<double> latencies;
  for (int i = 0; i < samples; ++i) {
    if (pause.count()) std::this_thread::sleep_for(pause);
    const Bytes bytes = command(i);
    const auto start = Clock::now();
    auto r = transact(fd, bytes);
    latencies.push_back(Millis(Clock::now() - start).count());
    if (!ok(r, "victim")) return std::nullopt;
    if (flush_result && !ok(transact(fd, testing::flush_context(testing::handle_of(*r))), "victim flush")) {
      return std::nullopt;
    }
  }
  return latencies;
}

struct Options {
  std::string device;
  int samples = 40;
  int attackers = 16;
  int pause_ms = 25;
  uid_t victim_uid = 2000;
  uid_t attacker_uid = 1000;
};

// The victim process: alone (ReadPublic, then RSA CreatePrimary), waits for `go`, then under attack (back to
// back, paced). Four sample sets on `out`.
int victim(const Options& o, int out, int go) {
  if (!become(o.victim_uid)) return std::perror("victim setuid"), 1;
  UniqueFd fd(::open(o.device.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return std::perror(o.device.c_str()), 1;
  auto key = transact(fd.get(), testing::create_primary());
  if (!ok(key, "victim CreatePrimary")) return 1;
  auto read_public = [handle = testing::handle_of(*key)](int) { return testing::read_public(handle); };
  // A new unique value each time, as the attackers send: the TPM derives a new key (no cache can answer).
  auto rsa_primary = [](int i) { return testing::create_rsa_primary(0x7000 + static_cast<std::uint32_t>(i)); };
  const std::chrono::milliseconds pause(o.pause_ms);
  auto alone = timed(fd.get(), read_public, o.samples, pause, false);
  auto rsa = alone ? timed(fd.get(), rsa_primary, 16, pause, true) : std::nullopt;
  if (!rsa || !send(out, *alone) || !send(out, *rsa)) return 1;
  char byte;
  if (::read(go, &byte, 1) != 1) return 1;
  auto attacked = timed(fd.get(), read_public, o.samples, std::chrono::milliseconds(0), false);
  auto paced = attacked ? timed(fd.get(), read_public, o.samples, pause, false) : std::nullopt;
  return paced && send(out, *attacked) && send(out, *paced) ? 0 : 1;
}

// An attacking process: loops RSA CreatePrimary + FlushContext until killed; one byte on `started` after the first.
int attacker(const Options& o, std::uint32_t unique, int started) {
  if (!become(o.attacker_uid)) return std::perror("attacker setuid"), 1;
  UniqueFd fd(::open(o.device.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return std::perror(o.device.c_str()), 1;
  for (bool first = true;; first = false) {
    auto r = transact(fd.get(), testing::create_rsa_primary(unique += 0x10000));
    if (!ok(r, "attacker CreatePrimary")) return 1;
    if (!ok(transact(fd.get(), testing::flush_context(testing::handle_of(*r))), "attacker flush")) return 1;
    if (first && ::write(started, "x", 1) != 1) return 1;
  }
}

template <typename F>
pid_t spawn(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  return pid;
}

void line(const char* what, const std::vector<double>& v) {
  const auto s = bench::latency_stats(v);
  std::printf("%-46s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  (n=%zu)\n", what, s.p50, s.p99, s.max, v.size());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Victim ReadPublic latency through a device node with and without another uid's CreatePrimary flood"};
  app.add_option("--device", o.device, "device node (as root; both uids must be able to open it)")->required();
  app.add_option("--samples", o.samples, "victim ReadPublics per phase")->capture_default_str();
  app.add_option("--attackers", o.attackers, "attacking processes (one uid)")->capture_default_str();
  app.add_option("--pause-ms", o.pause_ms, "the paced victim's pause between commands")->capture_default_str();
  app.add_option("--victim-uid", o.victim_uid)->capture_default_str();
  app.add_option("--attacker-uid", o.attacker_uid)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  int results[2], go[2], started[2];
  if (::pipe(results) != 0 || ::pipe(go) != 0 || ::pipe(started) != 0) return std::perror("pipe"), 1;
  const pid_t v = spawn([&] { return victim(o, results[1], go[0]); });
  auto alone = receive(results[0]);
  auto rsa = alone ? receive(results[0]) : std::nullopt;
  if (!rsa) return std::fprintf(stderr, "the victim failed alone\n"), 1;

  std::vector<pid_t> attackers;
  for (int a = 0; a < o.attackers; ++a) {
    attackers.push_back(spawn([&] { return attacker(o, static_cast<std::uint32_t>(a), started[1]); }));
  }
  ::close(started[1]);
  // Every attacker has run one command (and queued its next) before the victim measures.
  int ready = 0;
  for (char byte; ready < o.attackers && ::read(started[0], &byte, 1) == 1;) ++ready;
  std::optional<std::vector<double>> attacked, paced;
  if (ready == o.attackers && ::write(go[1], "x", 1) == 1) {
    attacked = receive(results[0]);
    paced = attacked ? receive(results[0]) : std::nullopt;
  }
  for (pid_t a : attackers) ::kill(a, SIGKILL);
  for (pid_t a : attackers) ::waitpid(a, nullptr, 0);
  ::close(go[1]);
  int status = 0;
  ::waitpid(v, &status, 0);
  if (!paced) return std::fprintf(stderr, "%d of %d attackers started; the victim failed\n", ready, o.attackers), 1;

  std::printf("node: %s\n", o.device.c_str());
  line("victim ReadPublic alone, paced:", *alone);
  line("one RSA-2048 CreatePrimary alone (victim):", *rsa);
  line("victim ReadPublic under attack, back to back:", *attacked);
  line("victim ReadPublic under attack, paced:", *paced);
  const auto r = bench::latency_stats(*rsa), p = bench::latency_stats(*paced);
  std::printf("paced victim under attack: p50 %.2f x, p99 %.2f x one CreatePrimary's p50; max %.2f x the longest one "
              "(%d attackers)\n",
              r.p50 ? p.p50 / r.p50 : 0.0, r.p50 ? p.p99 / r.p50 : 0.0, r.max ? p.max / r.max : 0.0, o.attackers);
  return 0;
}

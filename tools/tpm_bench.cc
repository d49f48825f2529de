// tpm_bench: throughput and latency of raw TPM 2.0 commands through a device node or any TCTI, one named workload
// at a time, so resource managers (the kernel's, tpmrmd, tpm2-abrmd) and the bare TPM compare side by side.
//
//   tpm_bench (--device /dev/tpmrm0 | --tcti tabrmd:bus_type=session) [--workload NAME]... [--seconds 1]
//             [--rounds 2] [--many-keys 1,10,100] [--label NAME] [--csv FILE] [--control-socket PATH]
//   tpm_bench --device /dev/X --count N --workload getrandom      (exactly N commands, for syscall counts)
//   tpm_bench --device /dev/X --idle-connections 10000 --daemon-pid PID --csv FILE   (memory per connection)
//
// A workload's failure (a TPM response code, an errno) is a result: printed, written as `fails` with the reason,
// and the exit status is 2. Anything else that goes wrong (options, the CSV, the control socket) exits 1.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tcti.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "latency_stats.h"
#include "support/tpm_commands.h"
#include "tpm/rc_names.h"
#include "util/unique_fd.h"

namespace {

using namespace tpmrmd;
using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;
using Millis = std::chrono::duration<double, std::milli>;

// Why a workload could not run: `reason` is short (a response code's name, an errno's name) for the table.
struct Failure {
  std::string reason;
  std::string detail;
};

Failure errno_failure(std::string_view what) {
  const int e = errno;
  const char* name = ::strerrorname_np(e);
  return {name ? name : std::to_string(e), std::string(what) + ": " + std::strerror(e)};
}

// --- connections ------------------------------------------------------------------------------------------------

class Connection {
 public:
  virtual ~Connection() = default;
  virtual Bytes transact(ByteSpan command) = 0;
};

// What tpm2-tss's device TCTI does: one write of the whole command, one read of the whole response.
class DeviceConnection final : public Connection {
 public:
  explicit DeviceConnection(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CLOEXEC)) {
    if (!fd_) throw errno_failure("open " + path);
  }
  Bytes transact(ByteSpan command) override {
    if (::write(fd_.get(), command.data(), command.size()) != static_cast<ssize_t>(command.size())) {
      throw errno_failure("write");
    }
    Bytes response(4096);
    const ssize_t n = ::read(fd_.get(), response.data(), response.size());
    if (n < 0) throw errno_failure("read");
    response.resize(static_cast<std::size_t>(n));
    return response;
  }

 private:
  UniqueFd fd_;
};

Failure tss2_failure(std::string_view what, TSS2_RC rc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08x", rc);
  return {std::string("TSS2 ") + hex, std::string(what) + " failed: " + hex};
}

class TctiConnection final : public Connection {
 public:
  explicit TctiConnection(const std::string& conf) {
    if (const TSS2_RC rc = Tss2_TctiLdr_Initialize(conf.c_str(), &tcti_); rc != TSS2_RC_SUCCESS) {
      throw tss2_failure("Tss2_TctiLdr_Initialize(" + conf + ")", rc);
    }
  }
  ~TctiConnection() override { Tss2_TctiLdr_Finalize(&tcti_); }
  TctiConnection(const TctiConnection&) = delete;
  TctiConnection& operator=(const TctiConnection&) = delete;

  Bytes transact(ByteSpan command) override {
    if (const TSS2_RC rc = Tss2_Tcti_Transmit(tcti_, command.size(), command.data()); rc != TSS2_RC_SUCCESS) {
      throw tss2_failure("Tss2_Tcti_Transmit", rc);
    }
    Bytes response(4096);
    std::size_t size = response.size();
    if (const TSS2_RC rc = Tss2_Tcti_Receive(tcti_, &size, response.data(), TSS2_TCTI_TIMEOUT_BLOCK);
        rc != TSS2_RC_SUCCESS) {
      throw tss2_failure("Tss2_Tcti_Receive", rc);
    }
    response.resize(size);
    return response;
  }

 private:
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
};

struct Target {
  std::string device;
  std::string tcti;
  std::unique_ptr<Connection> open() const {
    if (!device.empty()) return std::make_unique<DeviceConnection>(device);
    return std::make_unique<TctiConnection>(tcti);
  }
};

// The table's name for a response code: the usual suspects by name, anything else as hex.
std::string rc_reason(TPM2_RC rc) {
  static const std::pair<TPM2_RC, const char*> known[] = {
      {TPM2_RC_OBJECT_MEMORY, "OBJECT_MEMORY"}, {TPM2_RC_SESSION_MEMORY, "SESSION_MEMORY"},
      {TPM2_RC_CONTEXT_GAP, "CONTEXT_GAP"},     {TPM2_RC_OBJECT_HANDLES, "OBJECT_HANDLES"},
      {TPM2_RC_SESSION_HANDLES, "SESSION_HANDLES"}, {TPM2_RC_RETRY, "RETRY"}};
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%03x", rc);
  // A resource manager's own refusal carries its layer in the top byte (tpm2-abrmd: 0x0b).
  const TPM2_RC layer = rc & TSS2_RC_LAYER_MASK;
  for (const auto& [code, name] : known) {
    if (code == (rc & ~TSS2_RC_LAYER_MASK)) return std::string(name) + (layer ? " from the RM " : " ") + hex;
  }
  return std::string("rc ") + hex;
}

// TPM warnings that ask the caller to send the command again, as tpm2-tss's ESYS does; a retried command's
// latency includes its retries, and the retries are counted.
bool asks_for_retry(TPM2_RC rc) { return rc == TPM2_RC_RETRY || rc == TPM2_RC_YIELDED || rc == TPM2_RC_TESTING; }
constexpr int kMaxRetries = 10;
std::uint64_t retries = 0;

Bytes expect_success(Connection& c, ByteSpan command, std::string_view what) {
  for (int attempt = 0;; ++attempt) {
    Bytes r = c.transact(command);
    if (r.size() < 10) {
      throw Failure{"short response", std::string(what) + ": a response of " + std::to_string(r.size()) + " bytes"};
    }
    const TPM2_RC rc = testing::rc_of(r);
    if (rc == TPM2_RC_SUCCESS) return r;
    if (asks_for_retry(rc) && attempt < kMaxRetries) {
      ++retries;
      continue;
    }
    throw Failure{rc_reason(rc), std::string(what) + ": " + tpm::rc_name(rc)};
  }
}

// --- commands testing:: has no builder for -----------------------------------------------------------------------

TPM2B_PUBLIC ecc_template(TPMA_OBJECT attributes) {
  TPM2B_PUBLIC pub{};
  pub.publicArea.type = TPM2_ALG_ECC;
  pub.publicArea.nameAlg = TPM2_ALG_SHA256;
  pub.publicArea.objectAttributes = attributes | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH;
  auto& ecc = pub.publicArea.parameters.eccDetail;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  return pub;
}

// An ECC storage primary: fast on any TPM, unlike the RSA one tpm2_createprimary makes by default.
TPM2B_PUBLIC storage_template() {
  TPM2B_PUBLIC pub = ecc_template(TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT);
  auto& ecc = pub.publicArea.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_AES;
  ecc.symmetric.keyBits.aes = 128;
  ecc.symmetric.mode.aes = TPM2_ALG_CFB;
  ecc.scheme.scheme = TPM2_ALG_NULL;
  return pub;
}

TPM2B_PUBLIC signing_template() {
  TPM2B_PUBLIC pub = ecc_template(TPMA_OBJECT_SIGN_ENCRYPT);
  auto& ecc = pub.publicArea.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_NULL;
  ecc.scheme.scheme = TPM2_ALG_ECDSA;
  ecc.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  return pub;
}

// Sign of a fixed SHA-256 digest with the key's own scheme; an unrestricted key needs no hash-check ticket.
Bytes sign_command(TPM2_HANDLE key) {
  Bytes p;
  TPM2B_DIGEST digest{};
  digest.size = 32;
  std::memset(digest.buffer, 0xa5, digest.size);
  tpm::append_marshalled(p, digest, Tss2_MU_TPM2B_DIGEST_Marshal);
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;
  tpm::append_marshalled(p, scheme, Tss2_MU_TPMT_SIG_SCHEME_Marshal);
  TPMT_TK_HASHCHECK ticket{};
  ticket.tag = TPM2_ST_HASHCHECK;
  ticket.hierarchy = TPM2_RH_NULL;
  tpm::append_marshalled(p, ticket, Tss2_MU_TPMT_TK_HASHCHECK_Marshal);
  return testing::build_command(TPM2_CC_Sign, {key}, {testing::Auth{}}, p);
}

// A child's private and public parts as Create returns them, ready to go into Load as they are.
struct Blob {
  Bytes parts;
};

Blob blob_of_create(ByteSpan response) {
  // header, parameterSize (the response has a session area), outPrivate, outPublic, ...
  std::size_t offset = 14;
  TPM2B_PRIVATE priv{};
  TPM2B_PUBLIC pub{};
  if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(response.data(), response.size(), &offset, &priv) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PUBLIC_Unmarshal(response.data(), response.size(), &offset, &pub) != TSS2_RC_SUCCESS) {
    throw Failure{"bad Create response", "Create: cannot unmarshal outPrivate/outPublic"};
  }
  return {Bytes(response.begin() + 14, response.begin() + static_cast<std::ptrdiff_t>(offset))};
}

Bytes load_command(TPM2_HANDLE parent, const Blob& blob) {
  return testing::build_command(TPM2_CC_Load, {parent}, {testing::Auth{}}, blob.parts);
}

// --- what a workload holds in the TPM ----------------------------------------------------------------------------

// Flushes what it holds when it goes: the bare /dev/tpm0 forgets nothing at close.
class Held {
 public:
  explicit Held(Connection& c) : c_(c) {}
  ~Held() {
    for (auto it = handles_.rbegin(); it != handles_.rend(); ++it) {
      try {
        expect_success(c_, testing::flush_context(*it), "FlushContext");
      } catch (const Failure& f) {
        std::fprintf(stderr, "tpm_bench: cleanup: %s\n", f.detail.c_str());
      }
    }
  }
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;

  TPM2_HANDLE add(ByteSpan response) {
    handles_.push_back(testing::handle_of(response));
    return handles_.back();
  }
  std::size_t size() const { return handles_.size(); }

 private:
  Connection& c_;
  std::vector<TPM2_HANDLE> handles_;
};

TPM2_HANDLE signing_primary(Connection& c, Held& held, std::uint8_t unique) {
  return held.add(expect_success(c, testing::create_primary(TPM2_RH_OWNER, unique), "CreatePrimary"));
}

// --- timing ------------------------------------------------------------------------------------------------------

using Op = std::function<void()>;

struct Pace {
  double seconds = 1.0;
  int count = 0;  // if set: exactly this many ops, whatever the time
  int min_ops = 5;
};

struct Round {
  std::vector<double> latencies;  // ms
  double seconds = 0;
  double ops_per_s() const { return seconds > 0 ? double(latencies.size()) / seconds : 0; }
};

Round timed(const Op& op, const Pace& pace) {
  Round r;
  const auto start = Clock::now();
  for (;;) {
    const auto t = Clock::now();
    op();
    const auto done = Clock::now();
    r.latencies.push_back(Millis(done - t).count());
    r.seconds = Seconds(done - start).count();
    const int n = static_cast<int>(r.latencies.size());
    if (pace.count ? n >= pace.count : (n >= pace.min_ops && r.seconds >= pace.seconds)) return r;
  }
}

// --- the daemon's counters (tpmrmd's control socket) -------------------------------------------------------------

struct Counters {
  double client = 0, load = 0, save = 0, flush = 0;
};

Counters read_counters(const std::string& path);

// Sums the daemon's counters over the timed parts of a workload only (not its set-up and clean-up).
class Counting {
 public:
  explicit Counting(std::string control) : control_(std::move(control)) {}
  bool enabled() const { return !control_.empty(); }
  void begin() {
    if (enabled()) before_ = read_counters(control_);
  }
  void end() {
    if (!enabled()) return;
    const Counters after = read_counters(control_);
    total_.client += after.client - before_.client;
    total_.load += after.load - before_.load;
    total_.save += after.save - before_.save;
    total_.flush += after.flush - before_.flush;
  }
  const Counters& total() const { return total_; }

 private:
  std::string control_;
  Counters before_, total_;
};

struct Result {
  Round best;
  std::vector<double> per_client;  // ops/s of each client in the best round (parallel workloads)
  std::size_t ops = 0;             // every timed op over all rounds (for counters per op)
  std::string note;
};

// --- single-connection workloads ---------------------------------------------------------------------------------

using Setup = std::function<Op(Connection&, Held&, std::string& note)>;

void best_of(Result& result, int rounds, const Pace& pace, const Op& op, Counting& counting) {
  for (int i = 0; i < rounds; ++i) {
    counting.begin();
    Round r = timed(op, pace);
    counting.end();
    result.ops += r.latencies.size();
    if (i == 0 || r.ops_per_s() > result.best.ops_per_s()) result.best = std::move(r);
  }
}

Result run_single(const Target& target, const Setup& setup, int rounds, const Pace& pace, Counting& counting) {
  auto c = target.open();
  Held held(*c);
  Result result;
  best_of(result, rounds, pace, setup(*c, held, result.note), counting);
  return result;
}

Op command_op(Connection& c, Bytes command, std::string what) {
  return [&c, command = std::move(command), what = std::move(what)] { expect_success(c, command, what); };
}

Op round_robin(Connection& c, std::vector<TPM2_HANDLE> keys) {
  std::vector<Bytes> commands;
  for (TPM2_HANDLE k : keys) commands.push_back(testing::read_public(k));
  return [&c, commands = std::move(commands), i = std::size_t{0}]() mutable {
    expect_success(c, commands[i], "ReadPublic");
    i = (i + 1) % commands.size();
  };
}

Setup round_robin_primaries(int keys) {
  return [keys](Connection& c, Held& held, std::string&) {
    std::vector<TPM2_HANDLE> handles;
    for (int k = 0; k < keys; ++k) handles.push_back(signing_primary(c, held, static_cast<std::uint8_t>(k)));
    return round_robin(c, std::move(handles));
  };
}

// N copies of one child key under one storage primary, loaded with Load: one child creation, however many copies.
Setup many_keys(int keys) {
  return [keys](Connection& c, Held& held, std::string& note) {
    const TPM2_HANDLE parent =
        held.add(expect_success(c, testing::create_command(TPM2_CC_CreatePrimary, TPM2_RH_OWNER, storage_template()),
                                "CreatePrimary (storage)"));
    const Blob child = blob_of_create(
        expect_success(c, testing::create_command(TPM2_CC_Create, parent, signing_template()), "Create"));
    const Bytes load = load_command(parent, child);
    const auto start = Clock::now();
    std::vector<TPM2_HANDLE> handles;
    for (int k = 0; k < keys; ++k) handles.push_back(held.add(expect_success(c, load, "Load")));
    const double ms = Millis(Clock::now() - start).count();
    char text[64];
    std::snprintf(text, sizeof text, "Load %.2f ms each", ms / keys);
    note = text;
    return round_robin(c, std::move(handles));
  };
}

// --- parallel workloads: one process per client ------------------------------------------------------------------

// A child's report on its pipe: a status byte, then either its latencies or its failure.
void send_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) ::_exit(3);
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}
bool receive_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n) {
    const ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}
void send_string(int fd, const std::string& s) {
  const std::size_t n = s.size();
  send_all(fd, &n, sizeof n);
  send_all(fd, s.data(), n);
}
std::string receive_string(int fd) {
  std::size_t n = 0;
  if (!receive_all(fd, &n, sizeof n) || n > 4096) return "?";
  std::string s(n, '\0');
  return receive_all(fd, s.data(), n) ? s : "?";
}

// The fds a client uses to meet the others; it drops the parent's ends so that the parent sees EOF once every
// client is ready or gone, and the clients see EOF on `go` if the parent gives up.
struct Meeting {
  int ready_r, ready_w, go_r, go_w, done_r, done_w;
};

void report_failure(int report, const Failure& f) {
  const char status = 'f';
  send_all(report, &status, 1);
  send_string(report, f.reason);
  send_string(report, f.detail);
}

void report_round(int report, const Round& r) {
  const char status = 'k';
  send_all(report, &status, 1);
  send_all(report, &r.seconds, sizeof r.seconds);
  const std::size_t n = r.latencies.size();
  send_all(report, &n, sizeof n);
  send_all(report, r.latencies.data(), n * sizeof(double));
}

int client_process(const Target& target, const Setup& setup, const Pace& pace, int report, Meeting m) {
  ::close(m.ready_r);
  ::close(m.go_w);
  ::close(m.done_w);
  try {
    auto c = target.open();
    Held held(*c);
    std::string note;
    const Op op = setup(*c, held, note);
    char byte = 'r';
    const bool ready = ::write(m.ready_w, &byte, 1) == 1;
    ::close(m.ready_w);
    if (!ready || ::read(m.go_r, &byte, 1) != 1) return 0;  // the parent gave up: no report
    report_round(report, timed(op, pace));
    // Clean-up waits until the parent has read the daemon's counters: they are to count the timed part only.
    ::read(m.done_r, &byte, 1);
  } catch (const Failure& f) {
    report_failure(report, f);
  }
  return 0;
}

struct Child {
  pid_t pid = -1;
  UniqueFd report;
};

std::vector<Child> spawn_clients(const Target& target, const Setup& setup, const Pace& pace, int clients,
                                 Meeting m) {
  std::vector<Child> children;
  for (int i = 0; i < clients; ++i) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw errno_failure("pipe");
    const pid_t pid = ::fork();
    if (pid < 0) throw errno_failure("fork");
    if (pid == 0) {
      ::close(p[0]);
      ::_exit(client_process(target, setup, pace, p[1], m));
    }
    ::close(p[1]);
    children.push_back({pid, UniqueFd(p[0])});
  }
  return children;
}

// Reads every child's report. A reported failure wins over a client that ended silently (it gave up because
// another one failed).
Round collect(std::vector<Child>& children, std::vector<double>& per_client) {
  std::optional<Failure> failure;
  bool silent = false;
  Round all;
  for (Child& child : children) {
    char status = 0;
    if (!receive_all(child.report.get(), &status, 1)) {
      silent = true;
    } else if (status == 'f') {
      std::string reason = receive_string(child.report.get());
      std::string detail = receive_string(child.report.get());
      if (!failure) failure = Failure{std::move(reason), std::move(detail)};
    } else {
      double seconds = 0;
      std::size_t n = 0;
      receive_all(child.report.get(), &seconds, sizeof seconds);
      receive_all(child.report.get(), &n, sizeof n);
      std::vector<double> v(n);
      receive_all(child.report.get(), v.data(), n * sizeof(double));
      per_client.push_back(seconds > 0 ? double(n) / seconds : 0);
      all.latencies.insert(all.latencies.end(), v.begin(), v.end());
      all.seconds = std::max(all.seconds, seconds);
    }
  }
  if (failure) throw *failure;
  if (silent) throw Failure{"client died", "a client process ended without a report"};
  return all;
}

// Every client sets up (opens, loads its key), then all start together; a client that fails before the start
// makes the others give up and clean up.
struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw errno_failure("pipe");
    r.reset(p[0]);
    w.reset(p[1]);
  }
};

void reap(const std::vector<Child>& children) {
  for (const Child& child : children) ::waitpid(child.pid, nullptr, 0);
}

// Every client sets up (opens, loads its key), then all start together; a client that fails before the start
// makes the others give up and clean up.
Round parallel_round(const Target& target, const Setup& setup, const Pace& pace, int clients,
                     std::vector<double>& per_client, Counting& counting) {
  Pipe ready, go, done;
  std::vector<Child> children = spawn_clients(
      target, setup, pace, clients, {ready.r.get(), ready.w.get(), go.r.get(), go.w.get(), done.r.get(), done.w.get()});
  ready.w.reset();
  go.r.reset();
  done.r.reset();
  int n = 0;
  for (char byte; n < clients && ::read(ready.r.get(), &byte, 1) == 1;) ++n;
  if (n == clients) {
    counting.begin();
    const std::string start(static_cast<std::size_t>(clients), 'g');
    if (::write(go.w.get(), start.data(), start.size()) != clients) throw errno_failure("write go");
  }
  go.w.reset();
  Round r;
  try {
    r = collect(children, per_client);
  } catch (const Failure&) {
    done.w.reset();
    reap(children);
    throw;
  }
  counting.end();
  done.w.reset();
  reap(children);
  // Clients run side by side: the aggregate rate is the sum of theirs.
  double rate = 0;
  for (double x : per_client) rate += x;
  r.seconds = rate > 0 ? double(r.latencies.size()) / rate : 0;
  return r;
}

Result run_parallel(const Target& target, const Setup& setup, int clients, int rounds, const Pace& pace,
                    Counting& counting) {
  Result result;
  for (int i = 0; i < rounds; ++i) {
    std::vector<double> per_client;
    Round r = parallel_round(target, setup, pace, clients, per_client, counting);
    result.ops += r.latencies.size();
    if (i == 0 || r.ops_per_s() > result.best.ops_per_s()) {
      result.best = std::move(r);
      result.per_client = std::move(per_client);
    }
  }
  return result;
}

// --- the workloads -----------------------------------------------------------------------------------------------

struct Workload {
  std::string name;
  std::string about;
  bool forks = false;  // its clients are processes of their own
  std::function<Result(const Target&, int rounds, const Pace&, Counting&)> run;
};

Workload single(std::string name, std::string about, Setup setup) {
  return {std::move(name), std::move(about), false, [setup](const Target& t, int rounds, const Pace& pace, Counting& k) {
            return run_single(t, setup, rounds, pace, k);
          }};
}

Workload parallel(std::string name, std::string about, int clients, Setup setup) {
  return {std::move(name), std::move(about), true,
          [setup, clients](const Target& t, int rounds, const Pace& pace, Counting& k) {
            return run_parallel(t, setup, clients, rounds, pace, k);
          }};
}

Setup get_random_setup() {
  return [](Connection& c, Held&, std::string&) { return command_op(c, testing::get_random(16), "GetRandom"); };
}

Setup own_key_setup() {
  return [](Connection& c, Held& held, std::string&) {
    // Each client's key differs (its pid in `unique`), as separate programs' keys would.
    const TPM2_HANDLE key = signing_primary(c, held, static_cast<std::uint8_t>(::getpid()));
    return command_op(c, testing::read_public(key), "ReadPublic");
  };
}

std::vector<Workload> workloads(const std::vector<int>& many) {
  std::vector<Workload> w;
  w.push_back(single("getrandom", "GetRandom(16), one connection", get_random_setup()));
  w.push_back(single("readpublic", "ReadPublic of one loaded key", [](Connection& c, Held& held, std::string&) {
    return command_op(c, testing::read_public(signing_primary(c, held, 0)), "ReadPublic");
  }));
  w.push_back(single("sign", "ECDSA P-256 Sign with one loaded key", [](Connection& c, Held& held, std::string&) {
    return command_op(c, sign_command(signing_primary(c, held, 0)), "Sign");
  }));
  w.push_back(single("rr3", "ReadPublic round robin over 3 keys", round_robin_primaries(3)));
  w.push_back(single("rr8", "ReadPublic round robin over 8 keys", round_robin_primaries(8)));
  w.push_back(single("policy", "PolicyAuthValue on one policy session", [](Connection& c, Held& held, std::string&) {
    const TPM2_HANDLE session = held.add(expect_success(c, testing::start_auth_session(TPM2_SE_POLICY),
                                                        "StartAuthSession"));
    return command_op(c, testing::build_command(TPM2_CC_PolicyAuthValue, {session}, {}, {}), "PolicyAuthValue");
  }));
  w.push_back(parallel("4proc", "4 processes, ReadPublic each of its own key", 4, own_key_setup()));
  w.push_back(parallel("16clients", "16 processes, GetRandom(16) each", 16, get_random_setup()));
  w.push_back({"open-close", "open + GetRandom(16) + close", false,
               [](const Target& t, int rounds, const Pace& pace, Counting& k) {
                 const Bytes command = testing::get_random(16);
                 Result result;
                 best_of(result, rounds, pace, [&] { expect_success(*t.open(), command, "GetRandom"); }, k);
                 return result;
               }});
  for (int n : many) {
    w.push_back(single("keys-" + std::to_string(n), std::to_string(n) + " keys loaded, ReadPublic round robin",
                       many_keys(n)));
  }
  return w;
}

// --- the daemon's counters (tpmrmd's control socket) -------------------------------------------------------------

Counters read_counters(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw errno_failure("connect " + path);
  }
  const std::string request = "{\"verb\":\"status\"}\n";
  if (::write(fd.get(), request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    throw errno_failure("write " + path);
  }
  std::string line;
  char buf[4096];
  for (ssize_t n; line.find('\n') == std::string::npos && (n = ::read(fd.get(), buf, sizeof buf)) > 0;) {
    line.append(buf, static_cast<std::size_t>(n));
  }
  const auto reply = nlohmann::json::parse(line, nullptr, false);
  if (reply.is_discarded() || !reply.value("ok", false)) throw Failure{"control", "status: " + line};
  const auto& c = reply["result"]["counters"];
  return {c["client_commands"].get<double>(), c["context_loads"].get<double>(), c["context_saves"].get<double>(),
          c["flushes"].get<double>()};
}

// --- output ------------------------------------------------------------------------------------------------------

struct Row {
  std::string label, workload, status = "ok";
  double ops_per_s = 0, p50 = 0, p99 = 0;
  std::size_t samples = 0;
  double client_min = 0, client_max = 0;
  std::optional<Counters> per_op;  // TPM commands per timed client command, by kind
  std::string note;
};

constexpr const char* kCsvHeader =
    "target,workload,status,ops_per_s,p50_ms,p99_ms,samples,client_min_ops_per_s,client_max_ops_per_s,"
    "tpm_per_op,client_per_op,load_per_op,save_per_op,flush_per_op,note";

std::string csv_field(std::string s) {
  for (char& ch : s) {
    if (ch == ',' || ch == '\n') ch = ';';
  }
  return s;
}

std::string csv_line(const Row& r) {
  char nums[512];
  std::snprintf(nums, sizeof nums, "%.2f,%.3f,%.3f,%zu,%.2f,%.2f", r.ops_per_s, r.p50, r.p99, r.samples, r.client_min,
                r.client_max);
  std::string counters = ",,,,";
  if (r.per_op) {
    char c[256];
    const Counters& k = *r.per_op;
    std::snprintf(c, sizeof c, "%.3f,%.3f,%.3f,%.3f,%.3f", k.client + k.load + k.save + k.flush, k.client, k.load,
                  k.save, k.flush);
    counters = c;
  }
  return csv_field(r.label) + "," + r.workload + "," + csv_field(r.status) + "," + nums + "," + counters + "," +
         csv_field(r.note);
}

void print_row(const Row& r) {
  if (r.status != "ok") {
    std::printf("%-11s fails (%s)\n", r.workload.c_str(), r.status.c_str());
    return;
  }
  std::printf("%-11s %9.1f ops/s  p50 %8.3f ms  p99 %8.3f ms  n=%-6zu", r.workload.c_str(), r.ops_per_s, r.p50,
              r.p99, r.samples);
  if (r.client_max > 0) std::printf("  per client %.1f..%.1f ops/s", r.client_min, r.client_max);
  if (r.per_op) {
    const Counters& k = *r.per_op;
    std::printf("  TPM cmds/op %.2f (load %.2f save %.2f flush %.2f)", k.client + k.load + k.save + k.flush,
                k.load, k.save, k.flush);
  }
  if (!r.note.empty()) std::printf("  %s", r.note.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

class CsvFile {
 public:
  explicit CsvFile(const std::string& path, const char* header) {
    if (path.empty()) return;
    const bool fresh = !std::ifstream(path).good();
    out_.open(path, std::ios::app);
    if (!out_) throw Failure{"csv", "cannot write " + path};
    if (fresh) out_ << header << "\n";
  }
  void line(const std::string& s) {
    if (!out_.is_open()) return;
    out_ << s << "\n" << std::flush;
    if (!out_) throw Failure{"csv", "write failed"};
  }

 private:
  std::ofstream out_;
};

Row measure(const Workload& w, const Target& target, int rounds, const Pace& pace, const std::string& control) {
  Row row;
  row.workload = w.name;
  try {
    Counting counting(control);
    const std::uint64_t retries_before = retries;
    const Result r = w.run(target, rounds, pace, counting);
    if (counting.enabled() && r.ops) {
      const Counters& t = counting.total();
      const double ops = double(r.ops);
      row.per_op = Counters{t.client / ops, t.load / ops, t.save / ops, t.flush / ops};
    }
    const auto s = bench::latency_stats(r.best.latencies);
    row.ops_per_s = r.best.ops_per_s();
    row.p50 = s.p50;
    row.p99 = s.p99;
    row.samples = r.best.latencies.size();
    if (!r.per_client.empty()) {
      row.client_min = *std::min_element(r.per_client.begin(), r.per_client.end());
      row.client_max = *std::max_element(r.per_client.begin(), r.per_client.end());
    }
    row.note = r.note;
    if (retries != retries_before) {
      row.note += (row.note.empty() ? "" : "; ") + std::to_string(retries - retries_before) + " retries (RETRY)";
    }
  } catch (const Failure& f) {
    if (f.reason == "control") throw;
    row.status = f.reason;
    row.note = f.detail;
    std::fprintf(stderr, "tpm_bench: %s: %s\n", w.name.c_str(), f.detail.c_str());
  }
  return row;
}

// --- memory per idle connection ----------------------------------------------------------------------------------

long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  for (long value; status >> key;) {
    if (key == "VmRSS:" && status >> value) return value;
  }
  throw Failure{"rss", "no VmRSS for pid " + std::to_string(pid)};
}

int idle_connections(const Target& target, int n, pid_t daemon, const std::string& label, const std::string& csv) {
  rlimit lim{static_cast<rlim_t>(n) + 64, static_cast<rlim_t>(n) + 64};
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) throw errno_failure("setrlimit(RLIMIT_NOFILE)");
  std::vector<std::unique_ptr<Connection>> open;
  // One command first, so that whatever the daemon sets up once (its first client) is in the "before".
  expect_success(*target.open(), testing::get_random(16), "GetRandom");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long before = rss_kib(daemon);
  for (int i = 0; i < n; ++i) open.push_back(target.open());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long after = rss_kib(daemon);
  expect_success(*open.back(), testing::get_random(16), "GetRandom on the last connection");
  const double per = double(after - before) * 1024.0 / n;
  std::printf("%d idle connections: daemon RSS %ld KiB -> %ld KiB, %.0f bytes per connection\n", n, before, after,
              per);
  CsvFile out(csv, "target,connections,rss_before_kib,rss_after_kib,bytes_per_connection");
  out.line(csv_field(label) + "," + std::to_string(n) + "," + std::to_string(before) + "," + std::to_string(after) +
           "," + std::to_string(static_cast<long>(per)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Target target;
  std::vector<std::string> selected;
  std::vector<int> many = {1, 10, 100, 1000, 10000};
  Pace pace;
  int rounds = 2, idle = 0;
  pid_t daemon = 0;
  std::string label, csv, control;
  CLI::App app{"Raw TPM 2.0 command throughput and latency through a device node or a TCTI, by workload"};
  auto* dev = app.add_option("--device", target.device, "device node (/dev/tpmrm0, /dev/tpm0, a CUSE node)");
  app.add_option("--tcti", target.tcti, "any TCTI through libtss2-tctildr, e.g. tabrmd:bus_type=session")
      ->excludes(dev);
  app.add_option("--workload", selected, "workloads to run (default: all but none of the idle mode)");
  app.add_option("--seconds", pace.seconds, "length of one round")->capture_default_str();
  app.add_option("--rounds", rounds, "rounds per workload; the fastest is reported")->capture_default_str();
  app.add_option("--count", pace.count, "exactly this many commands per round instead of --seconds");
  app.add_option("--many-keys", many, "object counts for the keys-N workloads")->delimiter(',')->capture_default_str();
  app.add_option("--label", label, "the target's name in the CSV (default: --device or --tcti)");
  app.add_option("--csv", csv, "append one line per workload to this CSV file");
  app.add_option("--control-socket", control, "tpmrmd's control socket: TPM commands per client command");
  app.add_option("--idle-connections", idle, "instead: hold this many connections and report the daemon's RSS");
  app.add_option("--daemon-pid", daemon, "the daemon whose RSS --idle-connections reads");
  bool list = false;
  app.add_flag("--list", list, "list the workloads");
  CLI11_PARSE(app, argc, argv);
  if (label.empty()) label = target.device.empty() ? target.tcti : target.device;

  const std::vector<Workload> all = workloads(many);
  if (list) {
    for (const Workload& w : all) std::printf("%-11s %s\n", w.name.c_str(), w.about.c_str());
    return 0;
  }
  if (target.device.empty() && target.tcti.empty()) {
    std::fprintf(stderr, "tpm_bench: --device or --tcti is required\n");
    return 1;
  }
  try {
    if (idle) {
      if (!daemon) throw Failure{"usage", "--idle-connections needs --daemon-pid"};
      return idle_connections(target, idle, daemon, label, csv);
    }
    std::vector<const Workload*> run;
    for (const Workload& w : all) {
      if (selected.empty() || std::find(selected.begin(), selected.end(), w.name) != selected.end()) run.push_back(&w);
    }
    if (run.size() != (selected.empty() ? all.size() : selected.size())) {
      throw Failure{"usage", "unknown workload (see --list)"};
    }
    // A TCTI may keep process-wide state that does not survive a fork (tabrmd's: GLib's shared D-Bus
    // connection), so the workloads that fork run before this process has opened any.
    if (!target.tcti.empty()) {
      std::stable_partition(run.begin(), run.end(), [](const Workload* w) { return w->forks; });
    }
    CsvFile out(csv, kCsvHeader);
    std::printf("target: %s (%s)\n", label.c_str(), target.device.empty() ? target.tcti.c_str() : target.device.c_str());
    bool failed = false;
    for (const Workload* w : run) {
      Row row = measure(*w, target, rounds, pace, control);
      row.label = label;
      print_row(row);
      out.line(csv_line(row));
      failed |= row.status != "ok";
    }
    return failed ? 2 : 0;
  } catch (const Failure& f) {
    std::fprintf(stderr, "tpm_bench: %s\n", f.detail.c_str());
    return 1;
  }
}

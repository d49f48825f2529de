// Fuzzes device::Connection, the per-fd /dev/tpmrm0 state machine, against a shadow model of the contract in
// connection.h. The input chooses a sequence of write (blocking or O_NONBLOCK, any size, good and bad headers),
// read (any max), poll, close, discard sweeps at chosen times, the backend going away, and the completion of
// queued commands with a response of chosen length or an errno. The dispatcher is a queue that the input
// completes by hand, so a run is single-threaded and replays exactly.
//
// Checked after every step: each WriteDone/ReadDone is called exactly once, when the contract says (at once,
// or at completion for a blocking write and the blocking read waiting on it) and with exactly the result the
// model predicts, so a read never returns more than asked nor a byte that was not the next one of the stored
// response; poll() agrees with what read and write would do; on_ready fires when the mask may have changed and
// never after close(); after close() every call fails with ENODEV and only the command in flight still answers
// its waiting writer or reader; the dispatcher sees exactly the declared bytes of each accepted write, nothing
// after close() and one close() per connection. Every callback re-enters its connection (poll()), as a
// front-end may: a callback run under the connection's lock deadlocks and shows as a timeout.
#include <fuzzer/FuzzedDataProvider.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "device/connection.h"
#include "fuzz_check.h"
#include "rm/dispatcher.h"
#include "tpm/endian.h"

namespace tpmrmd::device {
namespace {

using Clock = Connection::Clock;
using namespace std::chrono_literals;

constexpr std::size_t kMaxConnections = 4;
constexpr int kMaxSteps = 256;
constexpr short kReadable = POLLIN | POLLRDNORM;
constexpr short kWritable = POLLOUT | POLLWRNORM;
constexpr short kHangup = POLLERR | POLLHUP;
// CONNECTION_FUZZER_TRACE=1: each step on stderr, to follow a reproduced crash.
bool g_trace = false;
#define TRACE(...)                       \
  do {                                   \
    if (g_trace) {                       \
      std::fprintf(stderr, __VA_ARGS__); \
      std::fputc('\n', stderr);          \
    }                                    \
  } while (0)

constexpr int kErrnos[] = {ENODEV, ECANCELED, ETIME, EINVAL, EIO, EPIPE, ENOMEM};

std::string show(const Result<Bytes>& r) {
  return r ? "bytes[" + std::to_string(r->size()) + "] " + to_hex(*r) : "errno " + std::to_string(r.error().code);
}
std::string show(const Result<std::size_t>& r) {
  return r ? "size " + std::to_string(*r) : "errno " + std::to_string(r.error().code);
}
template <typename T>
bool same(const Result<T>& a, const Result<T>& b) {
  if (a.ok() != b.ok()) return false;
  return a ? *a == *b : a.error().code == b.error().code;
}

// What one WriteDone or ReadDone received.
template <typename T>
struct Ticket {
  int calls = 0;
  std::optional<Result<T>> got;
};
template <typename T>
using TicketPtr = std::shared_ptr<Ticket<T>>;

class FuzzGate final : public BackendGate {
 public:
  bool gone() const override { return gone_; }
  bool gone_ = false;
};

// Queues submissions; the fuzzer completes them when and how the input says.
class QueueDispatcher final : public rm::Dispatcher {
 public:
  struct Submission {
    rm::ConnectionId id;
    Bytes command;
    Completion completion;
  };

  Result<rm::ConnectionId> open(const rm::ClientInfo&) override { return next_id_++; }
  void submit(rm::ConnectionId id, Bytes command, Completion completion) override {
    FUZZ_CHECK(!closed.count(id), "connection %llu submitted after its close()", static_cast<unsigned long long>(id));
    queue.push_back({id, std::move(command), std::move(completion)});
  }
  void close(rm::ConnectionId id) override {
    FUZZ_CHECK(closed.insert(id).second, "connection %llu closed twice", static_cast<unsigned long long>(id));
  }
  rm::Counters counters() override { return {}; }

  std::deque<Submission> queue;
  std::set<rm::ConnectionId> closed;

 private:
  rm::ConnectionId next_id_ = 1;
};

// One connection and the model of its state.
struct Shadow {
  std::shared_ptr<Connection> conn;
  rm::ConnectionId id = 0;
  bool closed = false;
  struct InFlight {
    bool nonblocking = false;
    std::size_t write_size = 0;
    TicketPtr<std::size_t> writer;  // a blocking write waiting
    std::size_t read_max = 0;
    TicketPtr<Bytes> reader;  // a blocking read waiting
  };
  std::optional<InFlight> in_flight;
  struct Stored {
    Bytes response;
    std::size_t cursor = 0;
    int error = 0;
    Clock::time_point before, after;  // when complete() ran: the stored time lies between
  };
  std::optional<Stored> stored;
  bool on_ready_set = false;
  std::shared_ptr<int> ready_calls = std::make_shared<int>(0);
  int ready_expected = 0;
  std::vector<TicketPtr<std::size_t>> pending_writes;  // answered only at completion
  std::vector<TicketPtr<Bytes>> pending_reads;

  // The stored response's next bytes (or its error) for a read of `max`; updates the model.
  Result<Bytes> take(std::size_t max) {
    if (stored->error) {
      int e = stored->error;
      stored.reset();
      return make_error(e, "");
    }
    const std::size_t n = std::min(max, stored->response.size() - stored->cursor);
    Bytes out(stored->response.begin() + static_cast<std::ptrdiff_t>(stored->cursor),
              stored->response.begin() + static_cast<std::ptrdiff_t>(stored->cursor + n));
    stored->cursor += n;
    if (stored->cursor >= stored->response.size()) stored.reset();
    return out;
  }
  void expect_ready() {
    if (on_ready_set && !closed) ++ready_expected;
  }
};

class Harness {
 public:
  explicit Harness(FuzzedDataProvider& in) : in_(in) {
    gate_ = std::make_shared<FuzzGate>();
    dispatcher_ = std::make_shared<QueueDispatcher>();
    options_.max_command = pick_max_command();
    // Zero (never) or long enough that the lazy wall-clock expiry inside read() and write() never fires
    // during a run: expiry is exercised through discard_if_expired() at times the input picks.
    options_.discard_after = in_.ConsumeBool() ? 0ms : std::chrono::milliseconds(1h);
    use_gate_ = in_.ConsumeIntegralInRange<int>(0, 7) != 0;
    TRACE("max_command %zu, discard_after %lld ms, gate %d", options_.max_command,
          static_cast<long long>(options_.discard_after.count()), use_gate_);
    open_connection();
    open_connection();
  }

  void run() {
    for (int step = 0; step < kMaxSteps && in_.remaining_bytes() > 0; ++step) {
      switch (in_.ConsumeIntegralInRange<int>(0, 12)) {
        case 0:
        case 1:
          do_write();
          break;
        case 2:
        case 3:
          do_read();
          break;
        case 4:
          do_poll();
          break;
        case 5:
        case 6:
          do_complete();
          break;
        case 7:
          do_discard();
          break;
        case 8:
          do_close();
          break;
        case 9:
          TRACE("backend gone%s", use_gate_ ? "" : " (no gate: ignored)");
          if (use_gate_) gate_->gone_ = true;
          break;
        case 10: {
          Shadow& s = pick();
          TRACE("notify_backend_gone conn %llu", static_cast<unsigned long long>(s.id));
          s.expect_ready();
          s.conn->notify_backend_gone();
          break;
        }
        case 11:
          do_set_on_ready();
          break;
        case 12:
          open_connection();
          break;
      }
      check_all();
    }
    // The end: whatever is queued completes (cancelled), and then nobody may still be waiting.
    while (!dispatcher_->queue.empty()) {
      complete(0, make_error(ECANCELED, "connection closed"));
      check_all();
    }
    for (auto& s : shadows_) {
      FUZZ_CHECK(s.pending_writes.empty() && s.pending_reads.empty(), "a callback was never called");
      s.conn->close();
      s.closed = true;
      s.stored.reset();
      check_all();
    }
    for (auto& s : shadows_) {
      FUZZ_CHECK(dispatcher_->closed.count(s.id), "connection %llu never closed in the dispatcher",
                 static_cast<unsigned long long>(s.id));
      std::weak_ptr<Connection> weak = s.conn;
      s.conn.reset();
      FUZZ_CHECK(weak.expired(), "connection %llu outlives its last owner", static_cast<unsigned long long>(s.id));
    }
  }

 private:
  std::size_t pick_max_command() {
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: return 4096;
      case 1: return 10;
      case 2: return 64;
      default: return in_.ConsumeIntegralInRange<std::size_t>(0, 8192);
    }
  }
  bool gone() const { return use_gate_ && gate_->gone_; }
  Shadow& pick() { return shadows_[in_.ConsumeIntegralInRange<std::size_t>(0, shadows_.size() - 1)]; }

  void open_connection() {
    if (shadows_.size() >= kMaxConnections) return;
    std::shared_ptr<const BackendGate> gate;
    if (use_gate_) gate = gate_;
    auto c = Connection::open(dispatcher_, rm::ClientInfo{1000, 1000, 42}, options_, gate);
    if (gone()) {
      FUZZ_CHECK(!c.ok() && c.error().code == ENODEV, "open() on a gone backend: want ENODEV");
      return;
    }
    FUZZ_CHECK(c.ok(), "open() failed: %s", describe(c.error()).c_str());
    TRACE("open conn %llu", static_cast<unsigned long long>((*c)->id()));
    Shadow s;
    s.conn = *c;
    s.id = s.conn->id();
    shadows_.push_back(std::move(s));
  }

  // A write's bytes: mostly headers near the interesting boundaries, sometimes raw input.
  Bytes make_write() {
    const std::size_t max = options_.max_command;
    std::size_t size = 0;
    std::uint32_t declared = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 6)) {
      case 0:  // well formed
        size = in_.ConsumeIntegralInRange<std::size_t>(10, std::max<std::size_t>(10, max));
        declared = static_cast<std::uint32_t>(size);
        break;
      case 1:  // padded after the declared length
        size = in_.ConsumeIntegralInRange<std::size_t>(10, std::max<std::size_t>(10, max));
        declared = in_.ConsumeIntegralInRange<std::uint32_t>(10, static_cast<std::uint32_t>(size));
        break;
      case 2:  // declares more than written
        size = in_.ConsumeIntegralInRange<std::size_t>(6, std::max<std::size_t>(6, max));
        declared = static_cast<std::uint32_t>(size) + in_.ConsumeIntegralInRange<std::uint32_t>(1, 0x10000);
        break;
      case 3:  // declares less than a header
        size = in_.ConsumeIntegralInRange<std::size_t>(6, std::max<std::size_t>(6, max));
        declared = in_.ConsumeIntegralInRange<std::uint32_t>(0, 9);
        break;
      case 4:  // too short for the size field
        size = in_.ConsumeIntegralInRange<std::size_t>(0, 5);
        break;
      case 5:  // oversize
        size = max + in_.ConsumeIntegralInRange<std::size_t>(1, 64);
        declared = static_cast<std::uint32_t>(size);
        break;
      default:
        return in_.ConsumeBytes<std::uint8_t>(in_.ConsumeIntegralInRange<std::size_t>(0, 80));
    }
    Bytes data(size);
    const std::uint8_t seed = in_.ConsumeIntegral<std::uint8_t>();
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(seed + 31 * i);
    const std::uint8_t header[] = {0x80, 0x01, static_cast<std::uint8_t>(declared >> 24),
                                   static_cast<std::uint8_t>(declared >> 16), static_cast<std::uint8_t>(declared >> 8),
                                   static_cast<std::uint8_t>(declared), 0x00, 0x00, 0x01, 0x7b};
    for (std::size_t i = 0; i < size && i < sizeof header; ++i) data[i] = header[i];
    return data;
  }

  template <typename T>
  std::function<void(Result<T>)> callback(const TicketPtr<T>& t, Connection* c) {
    return [t, c](Result<T> r) {
      FUZZ_CHECK(t->calls == 0, "a done callback called twice (second: %s)", show(r).c_str());
      ++t->calls;
      t->got.emplace(std::move(r));
      (void)c->poll();  // re-entry, as a front-end may do
    };
  }
  template <typename T>
  void expect_answer(const TicketPtr<T>& t, const Result<T>& want, const char* what) {
    FUZZ_CHECK(t->calls == 1, "%s: callback called %d times, want once with %s", what, t->calls, show(want).c_str());
    FUZZ_CHECK(same(*t->got, want), "%s: got %s, want %s", what, show(*t->got).c_str(), show(want).c_str());
  }

  void do_write() {
    Shadow& s = pick();
    const bool nonblocking = in_.ConsumeBool();
    const Bytes data = make_write();
    // The model's answer, in the kernel's order of checks.
    std::optional<Result<std::size_t>> want;
    const bool unread_or_error = s.stored && (s.stored->cursor == 0 || s.stored->error != 0);
    if (s.closed || gone()) {
      want = make_error(ENODEV, "");
    } else if (data.size() > options_.max_command) {
      want = make_error(E2BIG, "");
    } else if (s.in_flight || unread_or_error) {
      want = make_error(EBUSY, "");
    } else if (data.size() < 6) {
      want = make_error(EINVAL, "");
    } else {
      const std::uint32_t declared = std::uint32_t{data[2]} << 24 | std::uint32_t{data[3]} << 16 |
                                     std::uint32_t{data[4]} << 8 | data[5];
      if (declared > data.size() || declared < 10) want = make_error(EINVAL, "");
    }
    TRACE("write conn %llu %s %zu bytes: %s", static_cast<unsigned long long>(s.id),
          nonblocking ? "O_NONBLOCK" : "blocking", data.size(), want ? show(*want).c_str() : "accepted");
    const std::size_t queued = dispatcher_->queue.size();
    auto t = std::make_shared<Ticket<std::size_t>>();
    s.conn->write(data, nonblocking, callback(t, s.conn.get()));
    if (want) {
      expect_answer(t, *want, "rejected write");
      FUZZ_CHECK(dispatcher_->queue.size() == queued, "a rejected write reached the dispatcher");
      return;
    }
    // Accepted: exactly the declared bytes are submitted, and a PARTIAL remainder is gone.
    FUZZ_CHECK(dispatcher_->queue.size() == queued + 1, "an accepted write was not submitted");
    const auto& sub = dispatcher_->queue.back();
    const std::size_t declared = tpm::load_u32(data, 2);
    FUZZ_CHECK(sub.id == s.id, "submitted on connection %llu, want %llu", static_cast<unsigned long long>(sub.id),
               static_cast<unsigned long long>(s.id));
    FUZZ_CHECK(std::equal(sub.command.begin(), sub.command.end(), data.begin(),
                          data.begin() + static_cast<std::ptrdiff_t>(declared)),
               "submitted %s, want the %zu declared bytes of %s", to_hex(sub.command).c_str(), declared,
               to_hex(data).c_str());
    s.stored.reset();
    s.in_flight = Shadow::InFlight{nonblocking, data.size(), nullptr, 0, nullptr};
    if (nonblocking) {
      expect_answer(t, Result<std::size_t>(data.size()), "O_NONBLOCK write");
    } else {
      s.in_flight->writer = t;
      s.pending_writes.push_back(t);
    }
  }

  void do_read() {
    Shadow& s = pick();
    const bool nonblocking = in_.ConsumeBool();
    std::size_t max = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: max = 0; break;
      case 1: max = in_.ConsumeIntegralInRange<std::size_t>(1, 16); break;
      case 2: max = 4096; break;
      default: max = in_.ConsumeIntegralInRange<std::size_t>(0, 1 << 20); break;
    }
    std::optional<Result<Bytes>> want;
    if (max == 0) {
      want = Bytes{};
    } else if (s.stored) {
      want = s.take(max);
    } else if (s.closed || gone()) {
      want = make_error(ENODEV, "");
    } else if (s.in_flight && !nonblocking && !s.in_flight->nonblocking && !s.in_flight->reader) {
      // Waits for the blocking write in flight.
    } else {
      want = Bytes{};
    }
    TRACE("read conn %llu %s max %zu: %s", static_cast<unsigned long long>(s.id), nonblocking ? "O_NONBLOCK" : "blocking",
          max, want ? show(*want).c_str() : "waits");
    auto t = std::make_shared<Ticket<Bytes>>();
    s.conn->read(max, nonblocking, callback(t, s.conn.get()));
    if (want) {
      expect_answer(t, *want, "read");
      if (*want && !(*want)->empty()) FUZZ_CHECK((*want)->size() <= max, "model bug: read beyond max");
    } else {
      s.in_flight->read_max = max;
      s.in_flight->reader = t;
      s.pending_reads.push_back(t);
    }
  }

  short expected_poll(const Shadow& s) const {
    if (s.stored) return kReadable;
    if (s.closed || gone()) return kHangup;
    return kWritable;
  }
  void do_poll() {
    Shadow& s = pick();
    const short got = s.conn->poll();
    TRACE("poll conn %llu: %#x", static_cast<unsigned long long>(s.id), got);
    FUZZ_CHECK(got == expected_poll(s), "poll() = %#x, want %#x", got, expected_poll(s));
  }

  Bytes make_response() {
    std::size_t n = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: n = 10; break;
      case 1: n = in_.ConsumeIntegralInRange<std::size_t>(0, 64); break;
      case 2: n = 44; break;
      default: n = in_.ConsumeIntegralInRange<std::size_t>(0, 8192); break;
    }
    Bytes r(n);
    const std::uint8_t seed = in_.ConsumeIntegral<std::uint8_t>();
    for (std::size_t i = 0; i < n; ++i) r[i] = static_cast<std::uint8_t>(seed ^ (i * 7));
    if (n >= 10) {
      r[0] = 0x80, r[1] = 0x01;
      r[2] = static_cast<std::uint8_t>(n >> 24), r[3] = static_cast<std::uint8_t>(n >> 16);
      r[4] = static_cast<std::uint8_t>(n >> 8), r[5] = static_cast<std::uint8_t>(n);
    }
    return r;
  }

  void do_complete() {
    if (dispatcher_->queue.empty()) return;
    const std::size_t index = in_.ConsumeIntegralInRange<std::size_t>(0, dispatcher_->queue.size() - 1);
    if (in_.ConsumeBool()) {
      complete(index, make_response());
    } else {
      complete(index, make_error(kErrnos[in_.ConsumeIntegralInRange<std::size_t>(0, std::size(kErrnos) - 1)], ""));
    }
  }

  void complete(std::size_t index, Result<Bytes> result) {
    auto sub = std::move(dispatcher_->queue[index]);
    dispatcher_->queue.erase(dispatcher_->queue.begin() + static_cast<std::ptrdiff_t>(index));
    Shadow* found = nullptr;
    for (auto& s : shadows_) {
      if (s.id == sub.id) found = &s;
    }
    FUZZ_CHECK(found && found->in_flight, "a completion for a connection with nothing in flight");
    Shadow& s = *found;
    TRACE("complete conn %llu: %s", static_cast<unsigned long long>(s.id), show(result).c_str());
    Shadow::InFlight finished = *std::exchange(s.in_flight, std::nullopt);
    Result<Bytes> effective = result;
    if (!effective && gone()) effective = make_error(ENODEV, "");
    const auto before = Clock::now();
    sub.completion(std::move(result));
    const auto after = Clock::now();
    if (s.closed) {
      // Nobody can read it any more.
    } else if (effective) {
      s.stored = Shadow::Stored{*effective, 0, 0, before, after};
    } else if (finished.nonblocking) {
      s.stored = Shadow::Stored{{}, 0, effective.error().code, before, after};
    }
    if (finished.writer) {
      expect_answer(finished.writer,
                    effective ? Result<std::size_t>(finished.write_size) : Result<std::size_t>(effective.error()),
                    "blocking write at completion");
      std::erase(s.pending_writes, finished.writer);
    }
    if (finished.reader) {
      Result<Bytes> want = Bytes{};
      if (s.stored) {
        want = s.take(finished.read_max);
      } else if (s.closed || gone()) {
        want = make_error(ENODEV, "");
      }
      expect_answer(finished.reader, want, "blocking read at completion");
      std::erase(s.pending_reads, finished.reader);
    }
    s.expect_ready();
  }

  void do_discard() {
    Shadow& s = pick();
    // Around the discard threshold, before it, long after it, or now.
    Clock::time_point now = Clock::now();
    if (s.stored) {
      const auto ms = std::chrono::milliseconds(in_.ConsumeIntegralInRange<std::int64_t>(-5000, 5000));
      switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: now = s.stored->after + options_.discard_after + ms; break;
        case 1: now = s.stored->after + ms; break;
        case 2: now = s.stored->after + std::chrono::hours(in_.ConsumeIntegralInRange<int>(-48, 48)); break;
        default: break;
      }
    }
    std::optional<bool> want = false;
    if (s.stored && options_.discard_after.count() != 0) {
      if (now - s.stored->after >= options_.discard_after) {
        want = true;
      } else if (now - s.stored->before >= options_.discard_after) {
        want.reset();  // within the instant complete() ran: either answer is right
      }
    }
    const bool got = s.conn->discard_if_expired(now);
    TRACE("discard_if_expired conn %llu at %+lld ms from the response: %d", static_cast<unsigned long long>(s.id),
          s.stored ? static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(now - s.stored->after).count()) : 0LL,
          got);
    FUZZ_CHECK(!want || got == *want, "discard_if_expired() = %d, want %d", got, *want);
    if (got) {
      FUZZ_CHECK(s.stored, "discarded with nothing stored");
      s.stored.reset();
      s.expect_ready();
    }
  }

  void do_close() {
    Shadow& s = pick();
    TRACE("close conn %llu", static_cast<unsigned long long>(s.id));
    const bool first = !s.closed;
    s.conn->close();
    s.closed = true;
    s.stored.reset();
    FUZZ_CHECK(!first || dispatcher_->closed.count(s.id), "close() did not close the RM connection");
  }

  void do_set_on_ready() {
    Shadow& s = pick();
    // Only while open: a front-end installs it at open() and it is dropped at close().
    if (s.closed) return;
    TRACE("set_on_ready conn %llu", static_cast<unsigned long long>(s.id));
    if (in_.ConsumeBool()) {
      s.conn->set_on_ready(nullptr);
      s.on_ready_set = false;
      return;
    }
    auto calls = s.ready_calls;
    Connection* c = s.conn.get();
    s.conn->set_on_ready([calls, c] {
      ++*calls;
      (void)c->poll();
    });
    s.on_ready_set = true;
  }

  void check_all() {
    for (auto& s : shadows_) {
      for (auto& t : s.pending_writes) FUZZ_CHECK(t->calls == 0, "a blocking write answered before completion");
      for (auto& t : s.pending_reads) FUZZ_CHECK(t->calls == 0, "a blocking read answered before completion");
      FUZZ_CHECK(*s.ready_calls == s.ready_expected, "on_ready called %d times, want %d (closed: %d)", *s.ready_calls,
                 s.ready_expected, s.closed);
    }
  }

  FuzzedDataProvider& in_;
  std::shared_ptr<FuzzGate> gate_;
  std::shared_ptr<QueueDispatcher> dispatcher_;
  ConnectionOptions options_;
  bool use_gate_ = true;
  std::vector<Shadow> shadows_;
};

}  // namespace
}  // namespace tpmrmd::device

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  tpmrmd::device::g_trace = std::getenv("CONNECTION_FUZZER_TRACE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  tpmrmd::device::Harness harness(in);
  harness.run();
  return 0;
}

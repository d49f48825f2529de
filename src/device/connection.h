// One open file of the /dev/tpmrm0-compatible device: the kernel's per-fd state machine (tpm-dev-common.c),
// independent of CUSE so that any front-end (CUSE, a socket server, tests) can drive it.
//
// States: EMPTY, IN FLIGHT (queued or executing), UNREAD, PARTIAL, ERROR, and CLOSED after release. Whether
// the backend is gone is not a state of the fd: it is the backend's, asked through its BackendGate. A gone
// backend makes every call fail with ENODEV except reading a response already stored (UNREAD/PARTIAL/ERROR
// stay readable; EMPTY then means ENODEV instead of EOF).
// A blocking write or read is answered through its callback when the command completes: later, from the TPM
// worker thread, or before write() returns when the dispatcher ran the command on the caller's thread (the TPM
// was idle; see Dispatcher::submit_blocking). Nothing else here blocks. No callback runs under the connection's
// lock, so one may call back in.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "rm/dispatcher.h"
#include "util/bytes.h"
#include "util/coarse_clock.h"
#include "util/result.h"

namespace tpmrmd::device {

// The backend generation a connection was opened on, as its connections see it: gone() turns true once (the
// chip unregistered, or the backend was stopped) and never back. Must not block: poll() asks it.
class BackendGate {
 public:
  virtual ~BackendGate() = default;
  virtual bool gone() const = 0;
};

struct ConnectionOptions {
  std::size_t max_command = 4096;  // larger writes get E2BIG
  // Unread responses are discarded after this long (kernel: 120 s); zero keeps them forever.
  std::chrono::milliseconds discard_after{std::chrono::seconds(120)};
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Clock = CoarseClock;  // only the discard timeout reads it
  using WriteDone = std::function<void(Result<std::size_t>)>;
  using ReadDone = std::function<void(Result<Bytes>)>;

  // Opens an RM connection; never touches the TPM. ENODEV when the backend is gone. Without a gate the
  // connection learns of a lost backend only from the ENODEV its commands get.
  static Result<std::shared_ptr<Connection>> open(std::shared_ptr<rm::Dispatcher> dispatcher,
                                                  const rm::ClientInfo& client, ConnectionOptions options = {},
                                                  std::shared_ptr<const BackendGate> gate = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // write(2). `done` is called exactly once: at once for rejected and O_NONBLOCK writes, at completion for
  // blocking ones. Checks in the kernel's order: ENODEV, E2BIG, EBUSY, EINVAL. Only the declared length is
  // sent; the whole write size is reported. Returns the ticket interrupt() takes for a blocking write that was
  // accepted, 0 otherwise (`done` may have run already by the time it returns). Throws (std::bad_alloc) only
  // before the command is submitted, leaving the fd as it was and `done` uncalled.
  std::uint64_t write(ByteSpan data, bool nonblocking, WriteDone done);

  // The blocking write `ticket` was interrupted (its caller took a signal, maybe SIGKILL): a command still
  // queued is dropped from the dispatcher's queue, and the write is answered EINTR as soon as the dispatcher
  // lets go of it (at once when it was queued, after it ran otherwise), its response discarded. A stale ticket
  // (the write already answered) does nothing. Safe from any thread.
  void interrupt(std::uint64_t ticket);

  // read(2). Answers at once unless the fd is blocking and its own command is in flight, in which case `done`
  // is called when it completes. Returns no bytes (EOF) when nothing is pending.
  void read(std::size_t max, bool nonblocking, ReadDone done);

  // poll(2) mask; never blocks. POLLIN while a response (or an O_NONBLOCK command's error) is stored,
  // POLLERR|POLLHUP once the backend is gone or the connection closed, POLLOUT otherwise (in flight too).
  short poll();

  // Called whenever the poll mask may have changed (a result stored or discarded, the backend lost).
  void set_on_ready(std::function<void()> on_ready);

  // The gate has closed: wakes pollers so they see POLLERR|POLLHUP. Correctness never depends on it (every
  // call asks the gate); it only spares a sleeping poller from waiting for an event that will not come.
  void notify_backend_gone();

  // Discards an unread response older than the discard timeout; returns true if it did.
  bool discard_if_expired(Clock::time_point now = Clock::now());

  // release(2): closes the RM connection (flushing what it held). Idempotent; never fails.
  void close();

  const rm::ClientInfo& client() const { return client_; }
  rm::ConnectionId id() const { return id_; }

 private:
  enum class State {
    kEmpty,     // nothing pending: write accepted, read EOF (ENODEV once the backend is gone)
    kInFlight,  // a command is queued or executing: write EBUSY
    kUnread,    // a response is stored, none of it read: write EBUSY
    kPartial,   // part of the response read: a new write discards the rest
    kError,     // an O_NONBLOCK command failed; the next read reports its errno: write EBUSY
    kClosed,    // released: everything ENODEV
  };
  // The command in flight. Kept after close() until its completion, which still answers a waiting writer (and
  // a reader waiting on it, with ENODEV).
  struct InFlight {
    bool nonblocking = false;
    std::size_t write_size = 0;  // the write size to report
    WriteDone write;             // a blocking write waiting for completion
    std::uint64_t ticket = 0;    // that write's, for interrupt()
    bool interrupted = false;    // its caller gave up: answer EINTR, discard the response
    std::optional<std::pair<std::size_t, ReadDone>> read;  // a blocking read waiting for completion
  };
  // What UNREAD, PARTIAL and ERROR hold.
  struct Stored {
    Bytes response;
    std::size_t cursor = 0;
    int error = 0;  // ERROR: the O_NONBLOCK command's errno
    Clock::time_point at{};
  };

  Connection(std::shared_ptr<rm::Dispatcher> dispatcher, rm::ConnectionId id, rm::ClientInfo client,
             ConnectionOptions options, std::shared_ptr<const BackendGate> gate);
  void complete(Result<Bytes> result);
  bool gone() const { return gate_ && gate_->gone(); }
  bool stored_locked() const { return state_ == State::kUnread || state_ == State::kPartial || state_ == State::kError; }
  void store_locked(Stored stored, State state);
  // Takes up to `max` bytes of the stored result; mutex_ held, stored_locked().
  Result<Bytes> take_locked(std::size_t max);
  void drop_stored_locked();                  // UNREAD/PARTIAL/ERROR -> EMPTY
  bool expire_locked(Clock::time_point now);  // the discard timeout, checked lazily and by sweeps

  std::shared_ptr<rm::Dispatcher> dispatcher_;
  const rm::ConnectionId id_;
  const rm::ClientInfo client_;
  const ConnectionOptions options_;
  const std::shared_ptr<const BackendGate> gate_;

  std::mutex mutex_;
  State state_ = State::kEmpty;
  InFlight in_flight_;
  std::uint64_t last_ticket_ = 0;
  Stored stored_;
  std::function<void()> on_ready_;
};

}  // namespace tpmrmd::device

// One open file of the /dev/tpmrm0-compatible device: the kernel's per-fd state machine (tpm-dev-common.c),
// independent of CUSE so that any front-end (CUSE, a socket server, tests) can drive it.
//
// States (tpmrm-device-and-rm.md §1.2): EMPTY, IN FLIGHT (queued or executing), UNREAD, PARTIAL, ERROR.
// Nothing here blocks: a blocking write or read is answered later through its callback, from the TPM worker
// thread, when the command completes.
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
#include "util/result.h"

namespace tpmrmd::device {

struct ConnectionOptions {
  std::size_t max_command = 4096;  // larger writes get E2BIG
  // Unread responses are discarded after this long (kernel: 120 s); zero keeps them forever.
  std::chrono::milliseconds discard_after{std::chrono::seconds(120)};
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Clock = std::chrono::steady_clock;
  using WriteDone = std::function<void(Result<std::size_t>)>;
  using ReadDone = std::function<void(Result<Bytes>)>;

  // Opens an RM connection; never touches the TPM. ENODEV when the backend is gone.
  static Result<std::shared_ptr<Connection>> open(std::shared_ptr<rm::Dispatcher> dispatcher,
                                                  const rm::ClientInfo& client, ConnectionOptions options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // write(2). `done` is called exactly once: at once for rejected and O_NONBLOCK writes, at completion for
  // blocking ones. Checks in the kernel's order: ENODEV, E2BIG, EBUSY, EINVAL. Only the declared length is
  // sent; the whole write size is reported.
  void write(ByteSpan data, bool nonblocking, WriteDone done);

  // read(2). Answers at once unless the fd is blocking and its own command is in flight, in which case `done`
  // is called when it completes. Returns no bytes (EOF) when nothing is pending.
  void read(std::size_t max, bool nonblocking, ReadDone done);

  // poll(2) mask; never blocks.
  short poll();

  // Called whenever the poll mask may have changed (a result stored or discarded, the backend lost).
  void set_on_ready(std::function<void()> on_ready);

  // The backend went away: everything after this fails with ENODEV, except reading a response that had
  // already been stored (nothing the TPM produced successfully is lost).
  void mark_backend_lost();

  // Discards an unread response older than the discard timeout; returns true if it did.
  bool discard_if_expired(Clock::time_point now = Clock::now());

  // release(2): closes the RM connection (flushing what it held). Idempotent; never fails.
  void close();

  const rm::ClientInfo& client() const { return client_; }
  rm::ConnectionId id() const { return id_; }

 private:
  Connection(std::shared_ptr<rm::Dispatcher> dispatcher, rm::ConnectionId id, rm::ClientInfo client,
             ConnectionOptions options);
  void complete(Result<Bytes> result);
  // Takes up to `max` bytes of the stored result; mutex_ held, a result stored.
  Result<Bytes> take_locked(std::size_t max);
  void clear_result_locked();
  bool expire_locked(Clock::time_point now);  // the discard timeout, checked lazily and by sweeps

  std::shared_ptr<rm::Dispatcher> dispatcher_;
  const rm::ConnectionId id_;
  const rm::ClientInfo client_;
  const ConnectionOptions options_;

  std::mutex mutex_;
  bool closed_ = false;
  bool backend_lost_ = false;
  bool in_flight_ = false;
  bool in_flight_nonblocking_ = false;
  std::size_t in_flight_size_ = 0;      // the write size to report
  WriteDone pending_write_;             // blocking write waiting for completion
  std::optional<std::pair<std::size_t, ReadDone>> pending_read_;  // blocking read waiting for completion
  // The stored result: response bytes from `cursor_` on, or an errno from an O_NONBLOCK command.
  bool has_result_ = false;
  bool result_read_ = true;  // any byte of the current result read (kernel "response read" flag)
  int result_errno_ = 0;
  Bytes response_;
  std::size_t cursor_ = 0;
  Clock::time_point stored_at_{};
  std::function<void()> on_ready_;
};

}  // namespace tpmrmd::device

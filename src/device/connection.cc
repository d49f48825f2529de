#include "device/connection.h"

#include <cerrno>
#include <utility>

#include "tpm/endian.h"

namespace tpmrmd::device {
namespace {

constexpr std::size_t kMinWrite = 6;  // the kernel needs the tag and the size field

std::uint32_t declared_size(ByteSpan data) { return tpm::load_u32(data, 2); }

}  // namespace

Result<std::shared_ptr<Connection>> Connection::open(std::shared_ptr<rm::Dispatcher> dispatcher,
                                                     const rm::ClientInfo& client, ConnectionOptions options,
                                                     std::shared_ptr<const BackendGate> gate) {
  if (!dispatcher || (gate && gate->gone())) return make_error(ENODEV, "no TPM backend is registered");
  auto id = dispatcher->open(client);
  if (!id) return id.error();
  return std::shared_ptr<Connection>(new Connection(std::move(dispatcher), *id, client, options, std::move(gate)));
}

Connection::Connection(std::shared_ptr<rm::Dispatcher> dispatcher, rm::ConnectionId id, rm::ClientInfo client,
                       ConnectionOptions options, std::shared_ptr<const BackendGate> gate)
    : dispatcher_(std::move(dispatcher)),
      id_(id),
      client_(std::move(client)),
      options_(options),
      gate_(std::move(gate)) {}

Connection::~Connection() { close(); }

void Connection::set_on_ready(std::function<void()> on_ready) {
  std::lock_guard lock(mutex_);
  on_ready_ = std::move(on_ready);
}

std::uint64_t Connection::write(ByteSpan data, bool nonblocking, WriteDone done) {
  // A rejection is answered after the lock is released, as every other answer is: `done` may call back in.
  std::uint64_t ticket = 0;
  std::optional<Error> rejected = [&]() -> std::optional<Error> {
    std::lock_guard lock(mutex_);
    expire_locked(Clock::now());
    if (state_ == State::kClosed || gone()) return make_error(ENODEV, "TPM backend is gone");
    if (data.size() > options_.max_command) {
      return make_error(E2BIG, "write of " + std::to_string(data.size()) + " bytes exceeds " +
                                   std::to_string(options_.max_command));
    }
    if (state_ == State::kInFlight) return make_error(EBUSY, "a command is still in flight on this fd");
    if (state_ == State::kUnread || state_ == State::kError) {
      return make_error(EBUSY, "the previous response has not been read");
    }
    if (data.size() < kMinWrite) return make_error(EINVAL, "write shorter than 6 bytes");
    std::uint32_t declared = declared_size(data);
    if (declared > data.size()) return make_error(EINVAL, "declared size exceeds the write");
    if (declared < 10) return make_error(EINVAL, "declared size below the 10-byte header");
    // Accepted: a PARTIAL remainder is discarded now, as the kernel does.
    drop_stored_locked();
    state_ = State::kInFlight;
    in_flight_ = InFlight{};
    in_flight_.nonblocking = nonblocking;
    in_flight_.write_size = data.size();
    if (!nonblocking) {
      in_flight_.write = std::move(done);
      in_flight_.ticket = ticket = ++last_ticket_;
    }
    return std::nullopt;
  }();
  if (rejected) {
    done(std::move(*rejected));
    return 0;
  }
  try {
    Bytes command(data.begin(), data.begin() + declared_size(data));
    auto self = shared_from_this();
    auto complete = [self](Result<Bytes> r) { self->complete(std::move(r)); };
    if (nonblocking) {
      dispatcher_->submit(id_, std::move(command), std::move(complete));
    } else {
      dispatcher_->submit_blocking(id_, std::move(command), std::move(complete));
    }
  } catch (...) {
    // Never submitted (out of memory): the fd goes back to EMPTY instead of staying in flight for good; the
    // exception tells the caller that `done` was not called.
    std::lock_guard lock(mutex_);
    in_flight_ = InFlight{};
    if (state_ == State::kInFlight) state_ = State::kEmpty;
    throw;
  }
  if (nonblocking) done(data.size());
  return ticket;
}

void Connection::interrupt(std::uint64_t ticket) {
  {
    std::lock_guard lock(mutex_);
    if (ticket == 0 || in_flight_.ticket != ticket || !in_flight_.write || in_flight_.interrupted) return;
    in_flight_.interrupted = true;
  }
  // The command's completion answers the write, whether cancelling reached it queued or it ran to the end.
  dispatcher_->cancel(id_);
}

void Connection::complete(Result<Bytes> result) {
  InFlight finished;
  Result<Bytes> read_result = Bytes{};
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    finished = std::exchange(in_flight_, InFlight{});
    // Whatever the layers below said (EPIPE from the command that found the transport broken, EIO from a
    // dying one), a command that failed because the backend went away is reported as ENODEV.
    if (!result && gone()) result = make_error(ENODEV, "TPM backend is gone");
    if (state_ == State::kClosed) {
      // Nobody can read it any more.
    } else if (finished.interrupted) {
      // Its writer is gone or will retry: nobody asked for this response any more.
      state_ = State::kEmpty;
    } else if (result) {
      store_locked(Stored{std::move(*result), 0, 0, Clock::now()}, State::kUnread);
    } else if (finished.nonblocking) {
      // O_NONBLOCK: the error waits for the next read.
      store_locked(Stored{{}, 0, result.error().code, Clock::now()}, State::kError);
    } else {
      state_ = State::kEmpty;
    }
    if (finished.read) {
      if (stored_locked()) {
        read_result = take_locked(finished.read->first);
      } else if (state_ == State::kClosed || gone()) {
        read_result = make_error(ENODEV, "TPM backend is gone");
      }
    }
    notify = on_ready_;
  }
  if (finished.write) {
    if (finished.interrupted) {
      finished.write(make_error(EINTR, "the write was interrupted"));
    } else if (result) {
      finished.write(finished.write_size);
    } else {
      finished.write(result.error());
    }
  }
  if (finished.read) finished.read->second(std::move(read_result));
  if (notify) notify();
}

void Connection::read(std::size_t max, bool nonblocking, ReadDone done) {
  if (max == 0) return done(Bytes{});
  Result<Bytes> out = Bytes{};
  {
    std::lock_guard lock(mutex_);
    expire_locked(Clock::now());
    if (stored_locked()) {
      out = take_locked(max);
    } else if (state_ == State::kClosed || gone()) {
      out = make_error(ENODEV, "TPM backend is gone");
    } else if (state_ == State::kInFlight && !nonblocking && !in_flight_.nonblocking && !in_flight_.read) {
      // Another thread's blocking write on this fd is executing: the kernel's read sleeps until it completes.
      in_flight_.read.emplace(max, std::move(done));
      return;
    }
  }
  done(std::move(out));
}

void Connection::store_locked(Stored stored, State state) {
  stored_ = std::move(stored);
  state_ = state;
}

Result<Bytes> Connection::take_locked(std::size_t max) {
  if (state_ == State::kError) {
    int err = stored_.error;
    drop_stored_locked();
    return make_error(err, "the O_NONBLOCK command failed");
  }
  const Bytes& response = stored_.response;
  std::size_t n = std::min(max, response.size() - stored_.cursor);
  Bytes out(response.begin() + static_cast<std::ptrdiff_t>(stored_.cursor),
            response.begin() + static_cast<std::ptrdiff_t>(stored_.cursor + n));
  stored_.cursor += n;
  if (stored_.cursor >= response.size()) {
    drop_stored_locked();
  } else {
    state_ = State::kPartial;
  }
  return out;
}

void Connection::drop_stored_locked() {
  if (!stored_locked()) return;
  stored_ = Stored{};
  state_ = State::kEmpty;
}

short Connection::poll() {
  std::lock_guard lock(mutex_);
  if (stored_locked()) return POLLIN | POLLRDNORM;
  if (state_ == State::kClosed || gone()) return POLLERR | POLLHUP;
  return POLLOUT | POLLWRNORM;
}

void Connection::notify_backend_gone() {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    notify = on_ready_;
  }
  if (notify) notify();
}

bool Connection::expire_locked(Clock::time_point now) {
  if (!stored_locked() || options_.discard_after.count() == 0 || now - stored_.at < options_.discard_after) {
    return false;
  }
  drop_stored_locked();
  return true;
}

bool Connection::discard_if_expired(Clock::time_point now) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    if (!expire_locked(now)) return false;
    notify = on_ready_;
  }
  if (notify) notify();
  return true;
}

void Connection::close() {
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kClosed) return;
    stored_ = Stored{};
    state_ = State::kClosed;
    on_ready_ = nullptr;
  }
  dispatcher_->close(id_);
}

}  // namespace tpmrmd::device

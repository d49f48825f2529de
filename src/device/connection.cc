#include "device/connection.h"

#include <cerrno>

#include "tpm/endian.h"

namespace tpmrmd::device {
namespace {

constexpr std::size_t kMinWrite = 6;  // the kernel needs the tag and the size field

std::uint32_t declared_size(ByteSpan data) { return tpm::load_u32(data, 2); }

}  // namespace

Result<std::shared_ptr<Connection>> Connection::open(std::shared_ptr<rm::Dispatcher> dispatcher,
                                                     const rm::ClientInfo& client, ConnectionOptions options) {
  if (!dispatcher) return make_error(ENODEV, "no TPM backend is registered");
  auto id = dispatcher->open(client);
  if (!id) return id.error();
  return std::shared_ptr<Connection>(new Connection(std::move(dispatcher), *id, client, options));
}

Connection::Connection(std::shared_ptr<rm::Dispatcher> dispatcher, rm::ConnectionId id, rm::ClientInfo client,
                       ConnectionOptions options)
    : dispatcher_(std::move(dispatcher)), id_(id), client_(std::move(client)), options_(options) {}

Connection::~Connection() { close(); }

void Connection::set_on_ready(std::function<void()> on_ready) {
  std::lock_guard lock(mutex_);
  on_ready_ = std::move(on_ready);
}

void Connection::write(ByteSpan data, bool nonblocking, WriteDone done) {
  Bytes command;
  {
    std::lock_guard lock(mutex_);
    expire_locked(Clock::now());
    if (backend_lost_ || closed_) return done(make_error(ENODEV, "TPM backend is gone"));
    if (data.size() > options_.max_command) {
      return done(make_error(E2BIG, "write of " + std::to_string(data.size()) + " bytes exceeds " +
                                        std::to_string(options_.max_command)));
    }
    if (in_flight_) return done(make_error(EBUSY, "a command is still in flight on this fd"));
    if (has_result_ && !result_read_) return done(make_error(EBUSY, "the previous response has not been read"));
    if (data.size() < kMinWrite) return done(make_error(EINVAL, "write shorter than 6 bytes"));
    std::uint32_t declared = declared_size(data);
    if (declared > data.size()) return done(make_error(EINVAL, "declared size exceeds the write"));
    if (declared < 10) return done(make_error(EINVAL, "declared size below the 10-byte header"));
    // Accepted: a PARTIAL remainder is discarded now, as the kernel does.
    clear_result_locked();
    command.assign(data.begin(), data.begin() + declared);
    in_flight_ = true;
    in_flight_nonblocking_ = nonblocking;
    in_flight_size_ = data.size();
    if (!nonblocking) pending_write_ = std::move(done);
  }
  auto self = shared_from_this();
  dispatcher_->submit(id_, std::move(command), [self](Result<Bytes> r) { self->complete(std::move(r)); });
  if (nonblocking) done(data.size());
}

void Connection::complete(Result<Bytes> result) {
  WriteDone write_done;
  std::optional<std::pair<std::size_t, ReadDone>> read_waiter;
  Result<Bytes> read_result = Bytes{};
  std::function<void()> notify;
  std::size_t size = 0;
  {
    std::lock_guard lock(mutex_);
    in_flight_ = false;
    size = in_flight_size_;
    // Whatever the layers below said (ECANCELED from a dispatcher being torn down, EIO from a dying
    // transport), a command that failed because the backend went away is reported as ENODEV.
    if (!result && backend_lost_) result = make_error(ENODEV, "TPM backend is gone");
    write_done = std::move(pending_write_);
    pending_write_ = nullptr;
    if (closed_) {
      // Nobody can read it any more.
    } else if (result) {
      has_result_ = true;
      result_read_ = false;
      result_errno_ = 0;
      response_ = std::move(*result);
      cursor_ = 0;
      stored_at_ = Clock::now();
    } else if (in_flight_nonblocking_) {
      // O_NONBLOCK: the error waits for the next read.
      has_result_ = true;
      result_read_ = false;
      result_errno_ = result.error().code;
      stored_at_ = Clock::now();
    }
    if (pending_read_ && has_result_) {
      read_waiter = std::move(pending_read_);
      pending_read_.reset();
      read_result = take_locked(read_waiter->first);
    } else if (pending_read_) {
      read_waiter = std::move(pending_read_);
      pending_read_.reset();
      read_result = backend_lost_ ? Result<Bytes>(make_error(ENODEV, "TPM backend is gone")) : Result<Bytes>(Bytes{});
    }
    notify = on_ready_;
  }
  if (write_done) {
    if (result) {
      write_done(size);
    } else {
      write_done(result.error());
    }
  }
  if (read_waiter) read_waiter->second(std::move(read_result));
  if (notify) notify();
}

void Connection::read(std::size_t max, bool nonblocking, ReadDone done) {
  Result<Bytes> out = Bytes{};
  {
    std::lock_guard lock(mutex_);
    if (max == 0) return done(Bytes{});
    expire_locked(Clock::now());
    if (has_result_) {
      out = take_locked(max);
    } else if (backend_lost_ || closed_) {
      out = make_error(ENODEV, "TPM backend is gone");
    } else if (in_flight_ && !nonblocking && !in_flight_nonblocking_ && !pending_read_) {
      // Another thread's blocking write on this fd is executing: the kernel's read sleeps until it completes.
      pending_read_.emplace(max, std::move(done));
      return;
    }
  }
  done(std::move(out));
}

Result<Bytes> Connection::take_locked(std::size_t max) {
  result_read_ = true;
  if (result_errno_ != 0) {
    int err = result_errno_;
    clear_result_locked();
    return make_error(err, "the O_NONBLOCK command failed");
  }
  std::size_t n = std::min(max, response_.size() - cursor_);
  Bytes out(response_.begin() + static_cast<std::ptrdiff_t>(cursor_),
            response_.begin() + static_cast<std::ptrdiff_t>(cursor_ + n));
  cursor_ += n;
  if (cursor_ >= response_.size()) clear_result_locked();
  return out;
}

void Connection::clear_result_locked() {
  has_result_ = false;
  result_read_ = true;
  result_errno_ = 0;
  response_.clear();
  cursor_ = 0;
}

short Connection::poll() {
  std::lock_guard lock(mutex_);
  if (has_result_) return POLLIN | POLLRDNORM;
  if (backend_lost_) return POLLERR | POLLHUP;
  return POLLOUT | POLLWRNORM;
}

void Connection::mark_backend_lost() {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    if (backend_lost_) return;
    backend_lost_ = true;
    notify = on_ready_;
  }
  if (notify) notify();
}

bool Connection::expire_locked(Clock::time_point now) {
  if (!has_result_ || options_.discard_after.count() == 0 || now - stored_at_ < options_.discard_after) return false;
  clear_result_locked();
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
    if (closed_) return;
    closed_ = true;
    clear_result_locked();
    on_ready_ = nullptr;
  }
  dispatcher_->close(id_);
}

}  // namespace tpmrmd::device

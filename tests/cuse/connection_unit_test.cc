// Connection semantics on a dispatcher the test completes by hand: no swtpm, no worker thread, so the orders
// that are hard to produce against a real TPM (close() while a blocking read waits, callbacks that call back
// in) are exact. Found by tests/fuzz/device/connection_fuzzer.
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <new>
#include <optional>

#include "device/connection.h"

namespace tpmrmd::device {
namespace {

const Bytes kGetRandom32 = from_hex("80010000000c0000017b0020");

class ManualDispatcher final : public rm::Dispatcher {
 public:
  Result<rm::ConnectionId> open(const rm::ClientInfo&) override { return rm::ConnectionId{1}; }
  void submit(rm::ConnectionId, Bytes, Completion completion) override { queue.push_back(std::move(completion)); }
  void close(rm::ConnectionId) override { ++closes; }
  void cancel(rm::ConnectionId) override { ++cancels; }
  rm::Counters counters() override { return {}; }
  void complete(Result<Bytes> r) {
    auto c = std::move(queue.front());
    queue.pop_front();
    c(std::move(r));
  }
  std::deque<Completion> queue;
  int closes = 0;
  int cancels = 0;
};

class ConnectionUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Connection::open(dispatcher_, rm::ClientInfo{});
    ASSERT_TRUE(c.ok());
    c_ = *c;
  }
  // A completion a test left queued holds its connection, which holds the dispatcher: drop them, as a real
  // dispatcher's stop() answers them.
  void TearDown() override { dispatcher_->queue.clear(); }
  std::shared_ptr<ManualDispatcher> dispatcher_ = std::make_shared<ManualDispatcher>();
  std::shared_ptr<Connection> c_;
};

// Every answer may call back into its connection: none is given under the connection's lock (a rejected
// write and a read of zero bytes used to be, and deadlocked).
TEST_F(ConnectionUnitTest, CallbacksMayCallBackIn) {
  std::optional<short> in_write, in_read;
  c_->write(from_hex("8001"), false, [&](Result<std::size_t> r) {
    EXPECT_EQ(r.error().code, EINVAL);
    in_write = c_->poll();
  });
  c_->read(0, false, [&](Result<Bytes> r) {
    EXPECT_TRUE(r->empty());
    in_read = c_->poll();
  });
  EXPECT_EQ(in_write, POLLOUT | POLLWRNORM);
  EXPECT_EQ(in_read, POLLOUT | POLLWRNORM);
}

// A blocking read waiting on a blocking write is answered when the command completes; after close() that
// answer is ENODEV, like every other call on a closed fd, and the writer still gets its completion.
TEST_F(ConnectionUnitTest, ReaderWaitingAtCloseGetsEnodev) {
  std::optional<Result<std::size_t>> wrote;
  std::optional<Result<Bytes>> got;
  c_->write(kGetRandom32, false, [&](Result<std::size_t> r) { wrote = std::move(r); });
  c_->read(4096, false, [&](Result<Bytes> r) { got = std::move(r); });
  c_->close();
  EXPECT_FALSE(wrote.has_value());
  EXPECT_FALSE(got.has_value());
  dispatcher_->complete(from_hex("80010000000a00000000"));
  ASSERT_TRUE(wrote.has_value());
  EXPECT_EQ(**wrote, kGetRandom32.size());
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->error().code, ENODEV);
  EXPECT_EQ(dispatcher_->closes, 1);
}

// A closed fd polls as hung up: POLLOUT would promise a write that fails with ENODEV.
TEST_F(ConnectionUnitTest, ClosedPollsAsHungUp) {
  c_->close();
  EXPECT_EQ(c_->poll(), POLLERR | POLLHUP);
  std::optional<Result<std::size_t>> wrote;
  c_->write(kGetRandom32, true, [&](Result<std::size_t> r) { wrote = std::move(r); });
  ASSERT_TRUE(wrote.has_value());
  EXPECT_EQ(wrote->error().code, ENODEV);
}

// An interrupted blocking write (the client took a signal) asks the dispatcher to drop its queued command and
// is answered EINTR when the dispatcher lets go of it; the fd is then free for the next command.
TEST_F(ConnectionUnitTest, InterruptedQueuedWriteIsCancelledAndAnsweredEintr) {
  std::optional<Result<std::size_t>> wrote;
  const std::uint64_t ticket = c_->write(kGetRandom32, false, [&](Result<std::size_t> r) { wrote = std::move(r); });
  ASSERT_NE(ticket, 0u);
  c_->interrupt(ticket);
  EXPECT_EQ(dispatcher_->cancels, 1);
  EXPECT_FALSE(wrote.has_value());  // answered by the completion, not under libfuse's interrupt callback
  dispatcher_->complete(make_error(ECANCELED, "cancelled"));
  ASSERT_TRUE(wrote.has_value());
  ASSERT_FALSE(wrote->ok());
  EXPECT_EQ(wrote->error().code, EINTR);
  EXPECT_EQ(c_->poll(), POLLOUT | POLLWRNORM);
  std::optional<Result<std::size_t>> next;
  c_->write(kGetRandom32, true, [&](Result<std::size_t> r) { next = std::move(r); });
  ASSERT_TRUE(next.has_value());
  EXPECT_TRUE(next->ok());
}

// A command that was already running when its write was interrupted completes; its response is discarded
// and the write is still answered EINTR.
TEST_F(ConnectionUnitTest, InterruptedRunningWriteDiscardsTheResponse) {
  std::optional<Result<std::size_t>> wrote;
  const std::uint64_t ticket = c_->write(kGetRandom32, false, [&](Result<std::size_t> r) { wrote = std::move(r); });
  c_->interrupt(ticket);
  c_->interrupt(ticket);  // the kernel may interrupt twice; one cancel is enough
  EXPECT_EQ(dispatcher_->cancels, 1);
  dispatcher_->complete(from_hex("80010000000a00000000"));
  ASSERT_TRUE(wrote.has_value());
  ASSERT_FALSE(wrote->ok());
  EXPECT_EQ(wrote->error().code, EINTR);
  std::optional<Result<Bytes>> got;
  c_->read(4096, true, [&](Result<Bytes> r) { got = std::move(r); });
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->ok());
  EXPECT_TRUE((*got)->empty());  // nothing stored: EOF
}

// Only the write a ticket names can be interrupted: a stale ticket (its write answered) leaves the next
// command alone, and O_NONBLOCK writes, answered at once, have none.
TEST_F(ConnectionUnitTest, StaleTicketInterruptsNothing) {
  const std::uint64_t first = c_->write(kGetRandom32, false, [](Result<std::size_t>) {});
  dispatcher_->complete(from_hex("80010000000a00000000"));
  c_->read(4096, true, [](Result<Bytes>) {});
  std::optional<Result<std::size_t>> wrote;
  const std::uint64_t second = c_->write(kGetRandom32, false, [&](Result<std::size_t> r) { wrote = std::move(r); });
  EXPECT_NE(first, second);
  c_->interrupt(first);
  EXPECT_EQ(dispatcher_->cancels, 0);
  dispatcher_->complete(from_hex("80010000000a00000000"));
  ASSERT_TRUE(wrote.has_value());
  EXPECT_EQ(**wrote, kGetRandom32.size());
  c_->read(4096, true, [](Result<Bytes>) {});
  EXPECT_EQ(c_->write(kGetRandom32, true, [](Result<std::size_t>) {}), 0u);
}

// A dispatcher whose submit() fails to allocate leaves the fd as it was: not stuck in flight.
TEST(ConnectionSubmitFailure, OutOfMemoryInSubmitLeavesTheFdEmpty) {
  class ThrowingDispatcher final : public rm::Dispatcher {
   public:
    Result<rm::ConnectionId> open(const rm::ClientInfo&) override { return rm::ConnectionId{1}; }
    void submit(rm::ConnectionId, Bytes, Completion) override {
      if (fail) throw std::bad_alloc();
    }
    void close(rm::ConnectionId) override {}
    rm::Counters counters() override { return {}; }
    bool fail = true;
  };
  auto dispatcher = std::make_shared<ThrowingDispatcher>();
  auto c = Connection::open(dispatcher, rm::ClientInfo{});
  ASSERT_TRUE(c.ok());
  bool called = false;
  EXPECT_THROW((*c)->write(kGetRandom32, false, [&](Result<std::size_t>) { called = true; }), std::bad_alloc);
  EXPECT_FALSE(called);
  EXPECT_EQ((*c)->poll(), POLLOUT | POLLWRNORM);
  dispatcher->fail = false;
  EXPECT_NE((*c)->write(kGetRandom32, false, [](Result<std::size_t>) {}), 0u);
}

}  // namespace
}  // namespace tpmrmd::device

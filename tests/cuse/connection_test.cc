// Connection semantics on the host: the real RM (WorkerDispatcher) and a real swtpm behind daemon::Backend, the
// same stack tpmrmd runs; only the CUSE glue is left out (the VM suite covers it).
#include "device/connection.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>

#include "daemon/backend.h"
#include "support/swtpm_process.h"
#include "chip/driver_factory.h"

namespace tpmrmd::device {
namespace {

using namespace std::chrono_literals;

const Bytes kGetRandom32 = from_hex("80010000000c0000017b0020");
const Bytes kFlushBogus = from_hex("80010000000e00000165 80123456");

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.start().ok());
    auto driver = chip::make_driver(swtpm_.spec());
    ASSERT_TRUE(driver.ok()) << describe(driver.error());
    auto backend = daemon::Backend::start(std::move(*driver), {});
    ASSERT_TRUE(backend.ok()) << describe(backend.error());
    backend_ = std::move(*backend);
  }
  void TearDown() override {
    if (backend_) backend_->stop(chip::ShutdownMode::kNone);
  }
  std::shared_ptr<Connection> open(ConnectionOptions options = {}) {
    auto c = backend_->open(rm::ClientInfo{1000, 1000, 42}, options);
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : nullptr;
  }
  static Result<std::size_t> write(Connection& c, const Bytes& data, bool nonblocking = false) {
    std::promise<Result<std::size_t>> p;
    c.write(data, nonblocking, [&](Result<std::size_t> r) { p.set_value(std::move(r)); });
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
    return f.get();
  }
  static Result<Bytes> read(Connection& c, std::size_t max, bool nonblocking = false) {
    std::promise<Result<Bytes>> p;
    c.read(max, nonblocking, [&](Result<Bytes> r) { p.set_value(std::move(r)); });
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
    return f.get();
  }
  static int err(const Result<std::size_t>& r) { return r.ok() ? 0 : r.error().code; }

  testing::SwtpmProcess swtpm_;
  std::shared_ptr<daemon::Backend> backend_;
};

TEST_F(ConnectionTest, BlockingWriteThenPartialReadsThenEof) {
  auto c = open();
  auto w = write(*c, kGetRandom32);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 12u);
  EXPECT_EQ(c->poll(), POLLIN | POLLRDNORM);
  auto a = read(*c, 10);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size(), 10u);
  auto b = read(*c, 4096);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->size(), 34u);
  auto eof = read(*c, 4096);
  ASSERT_TRUE(eof.ok());
  EXPECT_TRUE(eof->empty());
  EXPECT_EQ(c->poll(), POLLOUT | POLLWRNORM);
}

TEST_F(ConnectionTest, WriteChecksInKernelOrder) {
  auto c = open();
  ASSERT_TRUE(write(*c, kGetRandom32).ok());  // UNREAD now
  EXPECT_EQ(err(write(*c, Bytes(4097, 0))), E2BIG) << "E2BIG before EBUSY";
  EXPECT_EQ(err(write(*c, from_hex("8001000000"))), EBUSY) << "EBUSY before EINVAL";
  ASSERT_EQ(read(*c, 1)->size(), 1u);  // PARTIAL: a new write is allowed
  EXPECT_EQ(err(write(*c, from_hex("8001000000"))), EINVAL);
  EXPECT_EQ(err(write(*c, from_hex("8001000000ff0000017b"))), EINVAL) << "declared > size";
  EXPECT_EQ(err(write(*c, from_hex("800100000009000001 7b"))), EINVAL) << "declared < 10";
  // Rejected writes left the PARTIAL remainder intact.
  EXPECT_EQ(read(*c, 4096)->size(), 43u);
}

TEST_F(ConnectionTest, OnlyTheDeclaredLengthIsSent) {
  auto c = open();
  Bytes padded = kGetRandom32;
  padded.resize(40, 0xEE);
  auto w = write(*c, padded);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 40u);
  auto r = read(*c, 4096);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 44u);
  EXPECT_EQ(to_hex(ByteSpan(*r).subspan(6, 4)), "00000000");
}

TEST_F(ConnectionTest, NonblockingWriteSignalsCompletionAndReportsErrorsOnRead) {
  auto c = open();
  // Shared, not on this stack: the worker may still hold the connection (and call on_ready, e.g. when the
  // backend stops in TearDown) after this test body has returned.
  auto ready = std::make_shared<std::promise<void>>();
  auto fired = std::make_shared<std::atomic<bool>>(false);
  auto ready_future = ready->get_future();
  c->set_on_ready([ready, fired] {
    if (!fired->exchange(true)) ready->set_value();
  });
  auto w = write(*c, kFlushBogus, /*nonblocking=*/true);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 14u);
  ASSERT_EQ(ready_future.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(c->poll(), POLLIN | POLLRDNORM);
  EXPECT_EQ(err(write(*c, kGetRandom32)), EBUSY) << "ERROR state refuses writes until read";
  auto r = read(*c, 4096, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EINVAL);
  auto eof = read(*c, 4096, true);
  ASSERT_TRUE(eof.ok());
  EXPECT_TRUE(eof->empty());
}

TEST_F(ConnectionTest, UnreadResponseIsDiscardedAfterTheTimeout) {
  ConnectionOptions options;
  options.discard_after = 50ms;
  auto c = open(options);
  ASSERT_TRUE(write(*c, kGetRandom32).ok());
  EXPECT_FALSE(c->discard_if_expired(Connection::Clock::now() - 1s));
  EXPECT_TRUE(c->discard_if_expired(Connection::Clock::now() + 1s));
  EXPECT_EQ(c->poll(), POLLOUT | POLLWRNORM);
  EXPECT_TRUE(read(*c, 4096)->empty());
  EXPECT_TRUE(write(*c, kGetRandom32).ok());
}

TEST_F(ConnectionTest, ReadOfZeroChangesNothing) {
  auto c = open();
  ASSERT_TRUE(write(*c, kGetRandom32).ok());
  EXPECT_TRUE(read(*c, 0)->empty());
  EXPECT_EQ(err(write(*c, kGetRandom32)), EBUSY) << "still UNREAD";
  EXPECT_EQ(read(*c, 4096)->size(), 44u);
}

TEST_F(ConnectionTest, LateFdsGetEnodevButKeepAStoredResponse) {
  auto stored = open();
  auto idle = open();
  ASSERT_TRUE(write(*stored, kGetRandom32).ok());
  swtpm_.kill_hard();
  // The next command finds the transport broken; that command and everything after it is ENODEV.
  EXPECT_EQ(err(write(*idle, kGetRandom32)), ENODEV);
  EXPECT_TRUE(backend_->lost()) << "the chip unregistered itself";
  EXPECT_TRUE(backend_->gone());
  EXPECT_EQ(idle->poll(), POLLERR | POLLHUP);
  EXPECT_EQ(err(write(*idle, kGetRandom32, true)), ENODEV);
  auto r = read(*stored, 4096);
  ASSERT_TRUE(r.ok()) << "a response produced before the loss stays readable";
  EXPECT_EQ(r->size(), 44u);
  auto after = read(*stored, 4096);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, ENODEV);
  backend_->stop(chip::ShutdownMode::kNone);
  auto fresh = backend_->open(rm::ClientInfo{}, {});
  ASSERT_FALSE(fresh.ok());
  EXPECT_EQ(fresh.error().code, ENODEV);
  idle->close();
  idle->close();  // idempotent
}

TEST_F(ConnectionTest, ManyConnectionsInterleave) {
  std::vector<std::shared_ptr<Connection>> cs;
  for (int i = 0; i < 8; ++i) cs.push_back(open());
  std::vector<std::future<Result<std::size_t>>> writes;
  std::vector<std::promise<Result<std::size_t>>> promises(cs.size());
  for (std::size_t i = 0; i < cs.size(); ++i) {
    writes.push_back(promises[i].get_future());
    cs[i]->write(kGetRandom32, false, [&promises, i](Result<std::size_t> r) { promises[i].set_value(std::move(r)); });
  }
  for (std::size_t i = 0; i < cs.size(); ++i) {
    ASSERT_EQ(writes[i].wait_for(60s), std::future_status::ready);
    EXPECT_TRUE(writes[i].get().ok());
    EXPECT_EQ(read(*cs[i], 4096)->size(), 44u);
  }
}

}  // namespace
}  // namespace tpmrmd::device

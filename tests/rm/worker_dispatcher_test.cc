// The Dispatcher: worker thread, per-connection FIFOs served round-robin, close semantics, many client
// threads (run under TSan for the race check).
#include "rm/worker_dispatcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <latch>
#include <thread>

#include "rm_fixture.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

class DispatcherTest : public SwtpmRmTest {
 protected:
  void SetUp() override {
    SwtpmRmTest::SetUp();
    rm_.reset();
    dispatcher_ = std::make_unique<rm::WorkerDispatcher>(*port_, options_);
  }
  void TearDown() override {
    dispatcher_.reset();
    SwtpmRmTest::TearDown();
  }
  ConnectionId connect() {
    auto id = dispatcher_->open(rm::ClientInfo{0, 0, 0});
    EXPECT_TRUE(id);
    return id ? *id : 0;
  }
  Bytes must(ConnectionId id, Bytes command) {
    auto r = dispatcher_->execute(id, command);
    EXPECT_TRUE(r) << describe(r.error());
    EXPECT_EQ(r ? rc_of(*r) : 1u, TPM2_RC_SUCCESS);
    return r ? *r : Bytes{};
  }

  rm::RmOptions options_;
  std::unique_ptr<rm::WorkerDispatcher> dispatcher_;
};

TEST_F(DispatcherTest, ConnectionsOnSeveralThreads) {
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  // Every thread holds its objects before any thread uses or closes them, so 8 keys and 4 sessions really
  // coexist on 3 + 3 slots however the threads are scheduled (a slow start must not serialise them).
  std::latch all_loaded{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ConnectionId c = connect();
      std::vector<TPM2_HANDLE> keys;
      TPM2_HANDLE session = 0;
      auto load = [&] {
        for (int k = 0; k < 2; ++k) {
          auto r = dispatcher_->execute(c, create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(t * 8 + k)));
          if (!r || rc_of(*r) != TPM2_RC_SUCCESS) return false;
          keys.push_back(handle_of(*r));
        }
        auto s = dispatcher_->execute(c, start_auth_session(TPM2_SE_POLICY));
        if (!s || rc_of(*s) != TPM2_RC_SUCCESS) return false;
        session = handle_of(*s);
        return true;
      };
      const bool loaded = load();
      all_loaded.arrive_and_wait();
      if (!loaded) {
        ++failures;
      } else {
        for (int i = 0; i < 30; ++i) {
          auto r = dispatcher_->execute(c, i % 3 == 2 ? policy_get_digest(session) : read_public(keys[i % 2]));
          if (!r || rc_of(*r) != TPM2_RC_SUCCESS) ++failures;
        }
      }
      (void)dispatcher_->counters();
      dispatcher_->close(c);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto counters = dispatcher_->counters();
  EXPECT_EQ(counters.connections_open, 0u);
  EXPECT_GT(counters.evictions, 0u);  // 8 keys and 4 sessions on 3 + 3 slots
  EXPECT_TRUE(raw_handles(0x80000000).empty());
  EXPECT_TRUE(raw_handles(0x02000000).empty());
  EXPECT_TRUE(raw_handles(0x03000000).empty());
}

TEST_F(DispatcherTest, RoundRobinServesALateConnectionBeforeAnEarlyFloodDrains) {
  ConnectionId a = connect(), b = connect(), gate = connect();
  // Hold the worker inside a completion while both queues fill, so the order is decided by the scheduler.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> blocked;
  dispatcher_->submit(gate, get_random(4), [&, released](Result<Bytes>) {
    blocked.set_value();
    released.wait();
  });
  blocked.get_future().wait();
  std::mutex m;
  std::vector<std::string> order;
  std::atomic<int> done{0};
  auto record = [&](std::string who) {
    return [&, who](Result<Bytes> r) {
      EXPECT_TRUE(r);
      std::lock_guard lock(m);
      order.push_back(who);
      ++done;
    };
  };
  for (int i = 0; i < 20; ++i) dispatcher_->submit(a, get_random(4), record("a"));
  dispatcher_->submit(b, get_random(4), record("b"));
  release.set_value();
  while (done.load() < 21) std::this_thread::yield();
  ASSERT_EQ(order.size(), 21u);
  EXPECT_EQ(order[0], "a");
  EXPECT_EQ(order[1], "b");  // one turn each, not all of a's backlog first
}

TEST_F(DispatcherTest, CloseCancelsQueuedCommandsAndFlushes) {
  ConnectionId gate = connect(), c = connect();
  must(c, create_primary());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> blocked;
  dispatcher_->submit(gate, get_random(4), [&, released](Result<Bytes>) {
    blocked.set_value();
    released.wait();
  });
  blocked.get_future().wait();
  std::atomic<int> cancelled{0};
  std::atomic<int> completed{0};
  for (int i = 0; i < 5; ++i) {
    dispatcher_->submit(c, get_random(4), [&](Result<Bytes> r) {
      if (!r && r.error().code == ECANCELED) ++cancelled;
      ++completed;
    });
  }
  dispatcher_->close(c);
  release.set_value();
  auto after = dispatcher_->execute(c, get_random(4));
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, ECANCELED);
  EXPECT_EQ(completed.load(), 5);
  EXPECT_EQ(cancelled.load(), 5);
  EXPECT_TRUE(raw_handles(0x80000000).empty());
}

TEST_F(DispatcherTest, GlobalConnectionLimit) {
  dispatcher_.reset();
  options_.max_connections = 2;
  options_.max_connections_per_uid = 2;  // one uid reaches the global limit
  dispatcher_ = std::make_unique<rm::WorkerDispatcher>(*port_, options_);
  ConnectionId a = connect();
  connect();
  auto third = dispatcher_->open(rm::ClientInfo{});
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, EMFILE);
  dispatcher_->close(a);
  // The slot frees once the worker has processed the close; counters() is a round trip through the worker.
  (void)dispatcher_->counters();
  EXPECT_TRUE(dispatcher_->open(rm::ClientInfo{}));
}

TEST_F(DispatcherTest, PerUidConnectionLimit) {
  dispatcher_.reset();
  options_.max_connections_per_uid = 2;
  dispatcher_ = std::make_unique<rm::WorkerDispatcher>(*port_, options_);
  rm::ClientInfo alice{1000, 1000, 1}, bob{1001, 1001, 2};
  auto a1 = dispatcher_->open(alice);
  ASSERT_TRUE(a1);
  ASSERT_TRUE(dispatcher_->open(alice));
  auto a3 = dispatcher_->open(alice);
  ASSERT_FALSE(a3);
  EXPECT_EQ(a3.error().code, EMFILE);
  EXPECT_TRUE(dispatcher_->open(bob));
  // A closed fd stops counting at once, even while the worker is still busy flushing what it held: a client
  // that closes and reopens is not refused for a connection it no longer has.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> blocked;
  dispatcher_->submit(*a1, get_random(4), [&, released](Result<Bytes>) {
    blocked.set_value();
    released.wait();
  });
  blocked.get_future().wait();
  dispatcher_->close(*a1);
  auto reopened = dispatcher_->open(alice);
  EXPECT_TRUE(reopened);
  release.set_value();
  ASSERT_TRUE(reopened);
  EXPECT_TRUE(dispatcher_->execute(*reopened, get_random(4)));
}

// By default one uid may hold half the connections, so it can't lock another uid (root included) out.
TEST_F(DispatcherTest, ByDefaultOneUidHoldsAtMostHalfTheConnections) {
  dispatcher_.reset();
  options_.max_connections = 4;
  dispatcher_ = std::make_unique<rm::WorkerDispatcher>(*port_, options_);
  rm::ClientInfo alice{1000, 1000, 1}, root{0, 0, 2};
  ASSERT_TRUE(dispatcher_->open(alice));
  ASSERT_TRUE(dispatcher_->open(alice));
  auto third = dispatcher_->open(alice);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, EMFILE);
  EXPECT_TRUE(dispatcher_->open(root));
  EXPECT_TRUE(dispatcher_->open(root));
  EXPECT_FALSE(dispatcher_->open(root)) << "root is held to the per-uid cap unless exempted";
}

TEST_F(DispatcherTest, RootMayBeExemptedFromThePerUidConnectionCap) {
  dispatcher_.reset();
  options_.max_connections = 4;
  options_.root_exempt_from_uid_caps = true;
  dispatcher_ = std::make_unique<rm::WorkerDispatcher>(*port_, options_);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(dispatcher_->open(rm::ClientInfo{})) << i;
  auto fifth = dispatcher_->open(rm::ClientInfo{});
  ASSERT_FALSE(fifth);
  EXPECT_EQ(fifth.error().code, EMFILE) << "the global limit still holds";
}

TEST_F(DispatcherTest, BackendGoneGivesEnodev) {
  ConnectionId c = connect();
  must(c, get_random(4));
  chip_->unregister(chip::ShutdownMode::kNone);
  auto r = dispatcher_->execute(c, get_random(4));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  auto opened = dispatcher_->open(rm::ClientInfo{});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ENODEV);
}

// A front-end's completion may hold the last reference to its connection object, whose destructor closes the
// connection (device::Connection does). The worker must drop a completion, or a task, without holding its own lock,
// or that close() deadlocks the worker (seen as a hung cuse-connection test under ASan).
TEST_F(DispatcherTest, CompletionOrTaskHoldingTheLastReferenceToACloserDoesNotDeadlockTheWorker) {
  struct Closer {
    rm::WorkerDispatcher* dispatcher;
    ConnectionId id;
    ~Closer() { dispatcher->close(id); }
  };
  auto must_be_ready = [](std::future<void>& f, const char* what) {
    if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      // The worker is stuck for good; tearing down would hang too, so end the run with the reason.
      std::fprintf(stderr, "FATAL: the dispatcher worker deadlocked after %s\n", what);
      std::abort();
    }
  };
  for (int round = 0; round < 2; ++round) {
    const ConnectionId id = connect();
    if (round == 1) dispatcher_->close(id);  // a submit after close completes through a task instead
    auto closer = std::make_shared<Closer>(Closer{dispatcher_.get(), id});
    std::promise<void> called;
    dispatcher_->submit(id, get_random(8), [closer = std::move(closer), &called](Result<Bytes>) mutable {
      called.set_value();
    });
    auto called_future = called.get_future();
    must_be_ready(called_future, "calling the completion");
    // Only the completion (held by the worker) references the Closer now; the worker drops it next. Whether it
    // survived that shows in whether it serves another connection.
    const ConnectionId other = connect();
    std::promise<void> served;
    dispatcher_->submit(other, get_random(8), [&served](Result<Bytes> r) {
      EXPECT_TRUE(r);
      served.set_value();
    });
    auto served_future = served.get_future();
    must_be_ready(served_future, round == 0 ? "dropping a command's completion" : "dropping a task");
    dispatcher_->close(other);
  }
}

// submit_blocking on an idle TPM: the command and its completion run on the caller's thread before the call
// returns (no hand-off to the worker), and the RM's bookkeeping is the same as through the worker.
TEST_F(DispatcherTest, BlockingCommandOnAnIdleTpmRunsOnTheCallersThread) {
  ConnectionId c = connect();
  const TPM2_HANDLE key = handle_of(must(c, create_primary()));
  // The worker has let go of the RM long before this (it releases it right after the completion returns).
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::thread::id ran_on;
  bool completed = false;
  Result<Bytes> response = Bytes{};
  dispatcher_->submit_blocking(c, read_public(key), [&](Result<Bytes> r) {
    ran_on = std::this_thread::get_id();
    completed = true;
    response = std::move(r);
  });
  ASSERT_TRUE(completed) << "an idle dispatcher queued the blocking command";
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  ASSERT_TRUE(response);
  EXPECT_EQ(rc_of(*response), TPM2_RC_SUCCESS);
  EXPECT_EQ(dispatcher_->counters().client_commands, 2u);
  dispatcher_->close(c);
  (void)dispatcher_->counters();  // the close task ran
  EXPECT_TRUE(raw_handles(0x80000000).empty());
}

// While the worker is busy, a blocking command waits its turn in the queue like any other: the caller is not
// kept, and the command completes on the worker after what was there first.
TEST_F(DispatcherTest, BlockingCommandWaitsItsTurnWhileTheTpmIsBusy) {
  ConnectionId gate = connect(), c = connect();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> blocked;
  std::thread::id worker;
  dispatcher_->submit(gate, get_random(4), [&, released](Result<Bytes>) {
    worker = std::this_thread::get_id();
    blocked.set_value();
    released.wait();
  });
  blocked.get_future().wait();
  std::promise<std::thread::id> ran_on;
  dispatcher_->submit_blocking(c, get_random(4), [&](Result<Bytes> r) {
    EXPECT_TRUE(r);
    ran_on.set_value(std::this_thread::get_id());
  });
  auto ran = ran_on.get_future();
  EXPECT_EQ(ran.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  release.set_value();
  EXPECT_EQ(ran.get(), worker);
}

// Blocking submits from many threads race the worker for the RM; every command completes exactly once with
// its own connection's answer, and nothing is left in the TPM (run under TSan for the race check).
TEST_F(DispatcherTest, BlockingAndQueuedCommandsFromManyThreads) {
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ConnectionId c = connect();
      auto blocking = [&](Bytes command) {
        std::promise<Result<Bytes>> done;
        dispatcher_->submit_blocking(c, std::move(command), [&](Result<Bytes> r) { done.set_value(std::move(r)); });
        return done.get_future().get();
      };
      std::vector<TPM2_HANDLE> keys;
      for (int k = 0; k < 2; ++k) {
        auto r = blocking(create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(t * 8 + k)));
        if (!r || rc_of(*r) != TPM2_RC_SUCCESS) return (void)++failures;
        keys.push_back(handle_of(*r));
      }
      for (int i = 0; i < 30; ++i) {
        auto r = i % 2 ? blocking(read_public(keys[i % 2])) : dispatcher_->execute(c, read_public(keys[i % 2]));
        if (!r || rc_of(*r) != TPM2_RC_SUCCESS) ++failures;
      }
      dispatcher_->close(c);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto counters = dispatcher_->counters();
  EXPECT_EQ(counters.connections_open, 0u);
  EXPECT_EQ(counters.client_commands, kThreads * 32u);
  EXPECT_TRUE(raw_handles(0x80000000).empty());
}

}  // namespace
}  // namespace tpmrmd::testing

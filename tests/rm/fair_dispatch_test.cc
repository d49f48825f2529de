// The WorkerDispatcher's scheduling, cancelling and exception barrier on the in-memory fake TPM: the ORDER in
// which commands complete, never how fast (the speed is tools/bench/sched_bench's, docs/scheduling.md).
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "rm/worker_dispatcher.h"
#include "support/fake_tpm.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

constexpr uid_t kHeavy = 1000;
constexpr uid_t kLight = 1001;
constexpr uid_t kGate = 1002;

class FairDispatchTest : public ::testing::Test {
 protected:
  ConnectionId connect(uid_t uid) {
    auto id = dispatcher_.open(rm::ClientInfo{uid, uid, 1});
    EXPECT_TRUE(id);
    return id ? *id : 0;
  }
  // Holds the worker inside a completion until the returned promise is set, so that everything queued
  // meanwhile is ordered by the scheduler alone.
  std::promise<void> hold_worker() {
    std::promise<void> release;
    auto released = release.get_future().share();
    auto blocked = std::make_shared<std::promise<void>>();
    auto blocked_future = blocked->get_future();
    dispatcher_.submit(gate_, get_random(4), [blocked, released](Result<Bytes>) {
      blocked->set_value();
      released.wait();
    });
    blocked_future.wait();
    return release;
  }
  rm::Dispatcher::Completion record(std::string who, int expected_errno = 0) {
    return [this, who, expected_errno](Result<Bytes> r) {
      if (expected_errno) {
        EXPECT_FALSE(r) << who;
        if (!r) {
          EXPECT_EQ(r.error().code, expected_errno) << who;
        }
      } else {
        EXPECT_TRUE(r) << who << ": " << (r ? "" : describe(r.error()));
      }
      std::lock_guard lock(mutex_);
      order_.push_back(who);
      recorded_.notify_all();
    };
  }
  // Waits until `n` recorded commands have completed (a marker command would itself be scheduled fairly, so
  // could overtake them).
  void wait_for(std::size_t n) {
    std::unique_lock lock(mutex_);
    recorded_.wait(lock, [&] { return order_.size() >= n; });
  }

  FakeTpm tpm_;
  rm::WorkerDispatcher dispatcher_{tpm_};
  ConnectionId gate_ = connect(kGate);
  std::mutex mutex_;
  std::condition_variable recorded_;
  std::vector<std::string> order_;
};

// The scenario, by order: 16 connections of one uid with two commands each, and a second uid's
// command queued after all of them. With per-connection round robin it would come 17th; by uid it comes
// second, right after the one command of the busy uid that went first.
TEST_F(FairDispatchTest, ManyConnectionsOfOneUidDoNotQueueAheadOfAnotherUid) {
  std::vector<ConnectionId> heavy;
  for (int i = 0; i < 16; ++i) heavy.push_back(connect(kHeavy));
  const ConnectionId light = connect(kLight);
  auto release = hold_worker();
  for (int round = 0; round < 2; ++round) {
    for (ConnectionId c : heavy) dispatcher_.submit(c, get_random(32), record("heavy"));
  }
  dispatcher_.submit(light, get_random(4), record("light"));
  release.set_value();
  wait_for(33);
  ASSERT_EQ(order_.size(), 33u);
  EXPECT_EQ(order_[0], "heavy");
  EXPECT_EQ(order_[1], "light");
}

// Within a uid, its connections take turns: a late connection is not stuck behind an early one's backlog.
TEST_F(FairDispatchTest, ConnectionsOfOneUidTakeTurns) {
  const ConnectionId a = connect(kHeavy), b = connect(kHeavy);
  auto release = hold_worker();
  for (int i = 0; i < 5; ++i) dispatcher_.submit(a, get_random(4), record("a"));
  dispatcher_.submit(b, get_random(4), record("b"));
  release.set_value();
  wait_for(6);
  ASSERT_EQ(order_.size(), 6u);
  EXPECT_EQ(order_[0], "a");
  EXPECT_EQ(order_[1], "b");
}

// cancel() answers the connection's queued commands ECANCELED before any other command runs; the connection
// stays usable, and another connection's commands are untouched.
TEST_F(FairDispatchTest, CancelAnswersQueuedCommandsAndKeepsTheConnection) {
  const ConnectionId c = connect(kHeavy), other = connect(kLight);
  auto release = hold_worker();
  for (int i = 0; i < 3; ++i) dispatcher_.submit(c, get_random(4), record("cancelled", ECANCELED));
  dispatcher_.submit(other, get_random(4), record("other"));
  dispatcher_.cancel(c);
  release.set_value();
  auto after = dispatcher_.execute(c, get_random(4));
  EXPECT_TRUE(after);
  wait_for(4);
  ASSERT_EQ(order_.size(), 4u);
  EXPECT_EQ(order_[0], "cancelled");
  EXPECT_EQ(order_[1], "cancelled");
  EXPECT_EQ(order_[2], "cancelled");
  EXPECT_EQ(order_[3], "other");
}

// An exception escaping the RM's path (here the TPM port: out of memory, then a logic error) completes that
// command with an errno and the worker goes on serving.
TEST_F(FairDispatchTest, ExceptionInTheRmPathBecomesAnErrorAndTheWorkerGoesOn) {
  const ConnectionId c = connect(kHeavy);
  int throws = 2;
  tpm_.set_command_hook([&](ByteSpan) -> std::optional<Result<Bytes>> {
    if (throws == 2) {
      --throws;
      throw std::bad_alloc();
    }
    if (throws == 1) {
      --throws;
      throw std::runtime_error("broken");
    }
    return std::nullopt;
  });
  auto first = dispatcher_.execute(c, get_random(4));
  ASSERT_FALSE(first);
  EXPECT_EQ(first.error().code, ENOMEM);
  auto second = dispatcher_.execute(c, get_random(4));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EIO);
  auto third = dispatcher_.execute(c, get_random(4));
  ASSERT_TRUE(third);
  EXPECT_EQ(rc_of(*third), TPM2_RC_SUCCESS);
}

// A completion that throws is logged; the next command is still served.
TEST_F(FairDispatchTest, ThrowingCompletionDoesNotStopTheWorker) {
  const ConnectionId c = connect(kHeavy);
  dispatcher_.submit(c, get_random(4), [](Result<Bytes>) { throw std::bad_alloc(); });
  auto next = dispatcher_.execute(c, get_random(4));
  ASSERT_TRUE(next);
  EXPECT_EQ(rc_of(*next), TPM2_RC_SUCCESS);
}

}  // namespace
}  // namespace tpmrmd::testing

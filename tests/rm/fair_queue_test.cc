// FairQueue, the dispatcher's scheduling policy, with injected costs: who runs next, never how fast.
#include "rm/fair_queue.h"

#include <gtest/gtest.h>

#include <string>

namespace tpmrmd::rm {
namespace {

using std::chrono::milliseconds;

constexpr uid_t kHeavy = 1000;
constexpr uid_t kLight = 1001;

class FairQueueTest : public ::testing::Test {
 protected:
  // Queues a job whose command is the tag `name`, so pop() says whose it was.
  void push(ConnectionId id, const std::string& name) {
    FairQueue::Job job{Bytes(name.begin(), name.end()), [](Result<Bytes>) {}};
    ASSERT_TRUE(queue_.push(id, job));
  }
  // Takes the next job, charges it `cost`, and names it.
  std::string run(milliseconds cost) {
    auto taken = queue_.pop();
    if (!taken) return "(none)";
    queue_.charge(taken->uid, cost);
    return std::string(taken->job.command.begin(), taken->job.command.end());
  }

  FairQueue queue_;
};

TEST_F(FairQueueTest, EmptyQueueGivesNothing) {
  queue_.add_connection(1, kHeavy);
  EXPECT_FALSE(queue_.pop());
  EXPECT_TRUE(queue_.empty());
}

TEST_F(FairQueueTest, UnknownConnectionIsRefusedAndKeepsItsJob) {
  FairQueue::Job job{Bytes{1, 2}, [](Result<Bytes>) {}};
  EXPECT_FALSE(queue_.push(7, job));
  EXPECT_EQ(job.command, (Bytes{1, 2}));
  EXPECT_TRUE(queue_.empty());
}

// The scenario: 16 connections of one uid each with a slow command queued, one fast command of
// another uid queued last. It runs second, not seventeenth.
TEST_F(FairQueueTest, LightUidRunsBeforeTheHeavyUidsSecondCommand) {
  for (ConnectionId c = 1; c <= 16; ++c) {
    queue_.add_connection(c, kHeavy);
    push(c, "heavy" + std::to_string(c));
  }
  queue_.add_connection(100, kLight);
  push(100, "light");
  EXPECT_EQ(run(milliseconds(100)), "heavy1");
  EXPECT_EQ(run(milliseconds(1)), "light");
  EXPECT_EQ(run(milliseconds(100)), "heavy2");
}

// The same when the light command arrives while a heavy one is running.
TEST_F(FairQueueTest, LightUidArrivingMidCommandRunsNext) {
  for (ConnectionId c = 1; c <= 16; ++c) {
    queue_.add_connection(c, kHeavy);
    push(c, "heavy");
  }
  queue_.add_connection(100, kLight);
  for (int round = 0; round < 5; ++round) {
    auto running = queue_.pop();
    ASSERT_TRUE(running);
    EXPECT_EQ(running->uid, kHeavy);
    push(100, "light");  // the light client's next blocking write, while the TPM is busy
    queue_.charge(running->uid, milliseconds(100));
    push(running->connection, "heavy");  // the heavy client loops
    EXPECT_EQ(run(milliseconds(1)), "light") << "round " << round;
  }
}

// Within a uid its connections take turns, one command each, whatever each has queued.
TEST_F(FairQueueTest, ConnectionsOfOneUidTakeTurns) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kHeavy);
  for (int i = 0; i < 3; ++i) push(1, "a");
  push(2, "b");
  EXPECT_EQ(run(milliseconds(1)), "a");
  EXPECT_EQ(run(milliseconds(1)), "b");
  EXPECT_EQ(run(milliseconds(1)), "a");
  EXPECT_EQ(run(milliseconds(1)), "a");
  EXPECT_EQ(run(milliseconds(1)), "(none)");
}

// A uid pays for what it used: after one 10 ms command, another uid's 1 ms commands run until they have used
// as much, then the expensive uid is next.
TEST_F(FairQueueTest, CostsCarryOver) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kLight);
  push(1, "heavy");
  push(1, "heavy");
  for (int i = 0; i < 20; ++i) push(2, "light");
  EXPECT_EQ(run(milliseconds(10)), "heavy");
  int lights = 0;
  std::string next;
  while ((next = run(milliseconds(1))) == "light") ++lights;
  EXPECT_EQ(next, "heavy");
  // The light uid started at the heavy uid's start and runs while it has used less: 10 commands of 1 ms.
  EXPECT_EQ(lights, 10);
}

// A uid that was idle while another used the TPM starts level with it, not with the credit of its idle time:
// it gets its turn at once but no run of commands that would shut the busy uid out.
TEST_F(FairQueueTest, IdleUidsDoNotBankCredit) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kLight);
  for (int i = 0; i < 50; ++i) {
    push(1, "busy");
    EXPECT_EQ(run(milliseconds(10)), "busy");
  }
  push(1, "busy");
  push(1, "busy");
  for (int i = 0; i < 5; ++i) push(2, "late");
  // Equal costs now: the late uid goes first (it has used less than the busy one) and then the two alternate,
  // instead of the late uid running all five on the 500 ms it was idle for.
  std::string order;
  for (int i = 0; i < 7; ++i) order += run(milliseconds(10)) == "late" ? 'L' : 'B';
  EXPECT_EQ(order, "LBLBLLL");
}

// Cancelling takes a connection's queued jobs out; the others keep their places.
TEST_F(FairQueueTest, CancelTakesOnlyThatConnectionsJobs) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kHeavy);
  push(1, "a");
  push(1, "a");
  push(2, "b");
  auto cancelled = queue_.cancel(1);
  EXPECT_EQ(cancelled.size(), 2u);
  EXPECT_EQ(queue_.queued(), 1u);
  EXPECT_EQ(run(milliseconds(1)), "b");
  EXPECT_EQ(run(milliseconds(1)), "(none)");
  push(1, "a");  // still known after a cancel
  EXPECT_EQ(run(milliseconds(1)), "a");
}

// Closing a connection removes its jobs; its uid's other connections and other uids are unaffected.
TEST_F(FairQueueTest, RemovingAConnectionRemovesItsJobs) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kHeavy);
  queue_.add_connection(3, kLight);
  push(1, "a");
  push(2, "b");
  push(1, "a");
  push(3, "c");
  auto removed = queue_.remove_connection(1);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_EQ(queue_.queued(), 2u);
  EXPECT_EQ(run(milliseconds(1)), "b");
  EXPECT_EQ(run(milliseconds(1)), "c");
  EXPECT_EQ(run(milliseconds(1)), "(none)");
  FairQueue::Job job{Bytes{1}, [](Result<Bytes>) {}};
  EXPECT_FALSE(queue_.push(1, job));
}

// A uid cannot escape what it owes by closing all its connections and opening new ones.
TEST_F(FairQueueTest, ReconnectingKeepsTheDebt) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kLight);
  push(1, "heavy");
  for (int i = 0; i < 20; ++i) push(2, "light");
  EXPECT_EQ(run(milliseconds(10)), "heavy");
  queue_.remove_connection(1);
  queue_.add_connection(3, kHeavy);
  push(3, "heavy");
  int lights = 0;
  while (run(milliseconds(1)) == "light") ++lights;
  EXPECT_GE(lights, 10);  // a forgotten debt would have let the new connection run at once
}

TEST_F(FairQueueTest, TakeAllEmptiesEveryConnection) {
  queue_.add_connection(1, kHeavy);
  queue_.add_connection(2, kLight);
  push(1, "a");
  push(2, "b");
  push(2, "b");
  EXPECT_EQ(queue_.take_all().size(), 3u);
  EXPECT_TRUE(queue_.empty());
  EXPECT_FALSE(queue_.pop());
}

}  // namespace
}  // namespace tpmrmd::rm

// The WorkerDispatcher's scheduling policy: which queued command runs next. Pure bookkeeping, no threads and
// no clock: the caller measures what a command cost and reports it with charge(), so tests inject costs.
//
// Flows are uids. Each uid carries a virtual finish time, the TPM time it has been charged; the uid with queued
// work and the smallest finish time goes next (start-time fair queueing with the cost charged after the fact,
// since a TPM command's cost is only known once it ran). Within a uid its connections take turns, one command
// each. A uid that becomes busy again starts at the virtual time of the command being served, not at its old
// finish time: idle time banks no credit. See docs/scheduling.md for the guarantee this gives.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "rm/dispatcher.h"
#include "util/bytes.h"

namespace tpmrmd::rm {

class FairQueue {
 public:
  using Cost = std::chrono::nanoseconds;

  struct Job {
    Bytes command;
    Dispatcher::Completion completion;
    std::chrono::steady_clock::time_point queued{};  // when it was submitted: the command's latency starts here
  };
  struct Taken {
    ConnectionId connection = 0;
    uid_t uid = 0;
    Job job;
  };

  // A connection must be added before its first push; `uid` is the flow it is charged to.
  void add_connection(ConnectionId id, uid_t uid);
  // Appends a job to the connection's FIFO. False (and `job` untouched) for an unknown connection.
  bool push(ConnectionId id, Job& job);
  // The next job by the policy, or nothing when no job is queued. The caller reports its cost with charge().
  std::optional<Taken> pop();
  // Charges `cost` of TPM time to `uid` (the uid of a job pop() returned).
  void charge(uid_t uid, Cost cost);
  // Takes the connection's queued jobs out (a running job is not queued); the connection stays known.
  std::vector<Job> cancel(ConnectionId id);
  // Forgets the connection and returns its queued jobs.
  std::vector<Job> remove_connection(ConnectionId id);
  // Every queued job of every connection; connections stay known.
  std::vector<Job> take_all();

  bool empty() const { return queued_ == 0; }
  std::size_t queued() const { return queued_; }

 private:
  struct Connection {
    uid_t uid = 0;
    std::deque<Job> jobs;
  };
  struct Flow {
    Cost finish{0};                 // TPM time charged so far, in the shared virtual clock
    std::uint64_t since = 0;        // when it last became busy: breaks ties in arrival order
    std::deque<ConnectionId> ring;  // its connections with queued work, served in turn
    std::size_t connections = 0;    // known connections of this uid; the flow is forgotten at zero
  };

  std::vector<Job> drop_jobs(ConnectionId id, Connection& connection);

  std::map<ConnectionId, Connection> connections_;
  std::map<uid_t, Flow> flows_;
  Cost now_{0};  // the virtual time: the finish time of the flow last served
  std::uint64_t activations_ = 0;
  std::size_t queued_ = 0;
};

}  // namespace tpmrmd::rm

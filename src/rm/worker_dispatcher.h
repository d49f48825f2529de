// The Dispatcher: one thread at a time holds the ResourceManager (and so the TPM's transmit path); front-ends on
// any thread open connections, submit commands and close, and get completions on the holder's thread. The
// holder is the worker thread, except that a blocking command submitted while nothing is queued or running runs
// at once on the submitting thread (submit_blocking): its caller waits for it anyway, and the hand-off to the
// worker and back is most of what a stateless command costs the daemon. Nobody waits behind such a command, so
// fairness and per-connection order are those of the queue.
//
// Which queued command runs next is FairQueue's decision (fair by uid, weighted by the TPM time each uid's
// commands took; round-robin among one uid's connections); this class is the threading around it: it measures
// how long each command spent in the ResourceManager and charges that to the command's uid.
// An exception escaping a command, a completion or a task is caught and logged; a command it interrupted is
// answered with an error (ENOMEM for std::bad_alloc, EIO otherwise) and the worker carries on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "rm/dispatcher.h"
#include "rm/fair_queue.h"
#include "rm/resource_manager.h"
#include "rm/rm_options.h"
#include "rm/tpm_port.h"

namespace tpmrmd::rm {

class WorkerDispatcher final : public Dispatcher {
 public:
  // `tpm` must outlive the dispatcher.
  WorkerDispatcher(TpmPort& tpm, RmOptions options = {});
  // stop().
  ~WorkerDispatcher() override;

  // Ends the worker: queued commands complete with ENODEV, every connection is closed (flushing what it held
  // while the TPM is still reachable), then the worker thread is joined. Afterwards the object only answers:
  // open() and submit() ENODEV, close() nothing, counters() zeros; so front-ends may keep it alive as long as
  // they like and call it from any thread. Idempotent. Must not be called on the worker thread (from a
  // completion), which cannot join itself.
  void stop();

  Result<ConnectionId> open(const ClientInfo& client) override;
  void submit(ConnectionId id, Bytes command, Completion completion) override;
  void submit_blocking(ConnectionId id, Bytes command, Completion completion) override;
  void close(ConnectionId id) override;
  void cancel(ConnectionId id) override;
  Counters counters() override;
  // counters(), unless the worker does not take the request within `within` (it is busy with one long command,
  // or stuck): then nothing. A liveness probe for the service watchdog; zeros after stop(), like counters().
  std::optional<Counters> counters(std::chrono::milliseconds within);
  // Counters, slot use, the TPM's identity and the policy, taken on the worker in one go; zeros after stop();
  // nothing if the worker did not get to it within `within` (busy with one long command, or stuck).
  std::optional<Snapshot> snapshot(std::chrono::milliseconds within);
  // Flushes the abandoned sessions (client-saved sessions of closed connections) on the worker; how many.
  std::size_t flush_abandoned();

 private:
  using Job = FairQueue::Job;
  struct Open {
    uid_t uid = 0;
    bool closing = false;
  };

  void run();
  bool holds_rm() const { return rm_holder_ == std::this_thread::get_id(); }  // under mutex_
  // Runs `fn` on the worker and returns its result (directly when called on the worker itself); `fallback`
  // once stopped; nothing when `within` is given and the worker did not finish `fn` in that time.
  template <typename T, typename Fn>
  std::optional<T> on_worker(Fn fn, T fallback, std::optional<std::chrono::milliseconds> within = std::nullopt);
  Counters counters_on_worker();
  // On the worker (or the submitting thread when idle), without mutex_; returns the RM's time since `start`.
  FairQueue::Cost run_job(FairQueue::Taken& taken, std::chrono::steady_clock::time_point start);

  TpmPort& tpm_;
  ResourceManager rm_;  // touched only by the thread in rm_holder_ (and in the destructor after join)
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<ConnectionId, Open> open_;
  FairQueue queue_;
  std::deque<std::function<void()>> tasks_;
  ConnectionId next_id_ = 1;
  std::size_t open_connections_ = 0;
  std::map<uid_t, std::size_t> connections_per_uid_;  // counted here so open() needs no trip to the worker
  bool stopped_ = false;  // stop() began: nothing new reaches the worker, which drains its last task and exits
  LatencyHistogram command_latency_;  // RM holder only: submit to completion of every client command
  std::thread::id rm_holder_;  // who may touch rm_, command_latency_ and the TPM now; none: a default id
  std::thread worker_;
};

}  // namespace tpmrmd::rm

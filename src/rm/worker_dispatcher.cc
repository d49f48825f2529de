#include "rm/worker_dispatcher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <future>
#include <new>
#include <vector>

#include "rm/audit_log.h"

namespace tpmrmd::rm {

WorkerDispatcher::WorkerDispatcher(TpmPort& tpm, RmOptions options)
    : tpm_(tpm), rm_(tpm, options), worker_([this] { run(); }) {}

namespace {

Error gone() { return make_error(ENODEV, "TPM backend is gone"); }

// What an exception that escaped `what` becomes: logged, and the error a command it interrupted is answered
// with. Called from a catch block.
Error barrier(const char* what) {
  try {
    throw;
  } catch (const std::bad_alloc&) {
    spdlog::error("event=exception where=\"{}\" error=\"out of memory\"", what);
    return make_error(ENOMEM, fmt::format("out of memory in {}", what));
  } catch (const std::exception& e) {
    spdlog::error("event=exception where=\"{}\" error=\"{}\"", what, log_quoted(e.what()));
    return make_error(EIO, fmt::format("{} failed: {}", what, e.what()));
  } catch (...) {
    spdlog::error("event=exception where=\"{}\" error=\"non-standard exception\"", what);
    return make_error(EIO, fmt::format("{} failed", what));
  }
}

}  // namespace

WorkerDispatcher::~WorkerDispatcher() { stop(); }

void WorkerDispatcher::stop() {
  std::thread worker;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    worker = std::move(worker_);
    auto answered = std::make_shared<std::vector<Job>>(queue_.take_all());
    tasks_.emplace_back([this, answered] {
      for (auto& job : *answered) job.completion(gone());
      answered->clear();  // the completions may own front-end connections that call close()
      rm_.shutdown();
    });
  }
  wake_.notify_one();
  worker.join();
}

Result<ConnectionId> WorkerDispatcher::open(const ClientInfo& client) {
  static_assert(sizeof(ConnectionId) == 8);
  if (!rm_.options().max_connections) return make_error(EMFILE, "connection limit is 0");
  std::lock_guard lock(mutex_);
  if (stopped_ || !tpm_.available()) return gone();
  if (open_connections_ >= rm_.options().max_connections) {
    return make_error(EMFILE, fmt::format("connection limit of {} reached", rm_.options().max_connections));
  }
  const std::uint32_t per_uid = connections_per_uid(rm_.options(), client.uid);
  if (per_uid && connections_per_uid_[client.uid] >= per_uid) {
    return make_error(EMFILE, fmt::format("uid {} already holds {} connections, the limit", client.uid, per_uid));
  }
  const ConnectionId id = next_id_++;
  open_.emplace(id, Open{client.uid, false});
  queue_.add_connection(id, client.uid);
  ++open_connections_;
  ++connections_per_uid_[client.uid];
  // The space is created on the worker; tasks run before any queued command, so the first submit finds it.
  tasks_.emplace_back([this, id, client] {
    auto opened = rm_.open(id, client);
    if (!opened) spdlog::warn("event=open-failed conn={} error=\"{}\"", id, log_quoted(describe(opened.error())));
  });
  wake_.notify_one();
  return id;
}

void WorkerDispatcher::submit(ConnectionId id, Bytes command, Completion completion) {
  {
    std::lock_guard lock(mutex_);
    auto it = open_.find(id);
    if (!stopped_ && it != open_.end() && !it->second.closing) {
      Job job{std::move(command), std::move(completion), std::chrono::steady_clock::now()};
      queue_.push(id, job);
      wake_.notify_one();
      return;
    }
    if (!stopped_) {
      auto shared = std::make_shared<Completion>(std::move(completion));
      tasks_.emplace_back([shared, id] {
        (*shared)(make_error(ECANCELED, fmt::format("connection {} is closed", id)));
      });
      wake_.notify_one();
      return;
    }
  }
  completion(gone());
}

void WorkerDispatcher::close(ConnectionId id) {
  std::lock_guard lock(mutex_);
  auto it = open_.find(id);
  if (it == open_.end() || it->second.closing || stopped_) return;
  it->second.closing = true;
  // The connection limits count open files, as the client sees them: a process that closed its fds may open
  // new ones at once, before the worker has flushed what the old ones held (its new commands queue behind that).
  if (--connections_per_uid_[it->second.uid] == 0) connections_per_uid_.erase(it->second.uid);
  --open_connections_;
  // Out of the queue now, so nothing of it runs any more; the task answers them and flushes the space.
  auto cancelled = std::make_shared<std::vector<Job>>(queue_.remove_connection(id));
  tasks_.emplace_back([this, id, cancelled] {
    {
      std::lock_guard inner(mutex_);
      open_.erase(id);
    }
    for (auto& job : *cancelled) job.completion(make_error(ECANCELED, "connection closed before the command ran"));
    cancelled->clear();
    rm_.close(id);
  });
  wake_.notify_one();
}

void WorkerDispatcher::cancel(ConnectionId id) {
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  auto cancelled = std::make_shared<std::vector<Job>>(queue_.cancel(id));
  if (cancelled->empty()) return;
  // Answered as a task: tasks run before commands, so the client hears at once, and on the worker as every
  // completion does.
  tasks_.emplace_back([cancelled] {
    for (auto& job : *cancelled) job.completion(make_error(ECANCELED, "the client gave up on the command"));
    cancelled->clear();
  });
  wake_.notify_one();
}

template <typename T, typename Fn>
std::optional<T> WorkerDispatcher::on_worker(Fn fn, T fallback, std::optional<std::chrono::milliseconds> within) {
  // The task owns the promise: one the caller stopped waiting for is still fulfilled (and dropped) later.
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  {
    std::unique_lock lock(mutex_);
    if (holds_rm()) {
      lock.unlock();
      return fn();  // called from a completion or a task: this thread holds the RM already
    }
    if (stopped_) return fallback;
    tasks_.emplace_back([promise, fn] { promise->set_value(fn()); });
  }
  wake_.notify_one();
  if (within && future.wait_for(*within) != std::future_status::ready) return std::nullopt;
  return future.get();
}

std::optional<Counters> WorkerDispatcher::counters(std::chrono::milliseconds within) {
  return on_worker<Counters>([this] { return counters_on_worker(); }, Counters{}, within);
}

Counters WorkerDispatcher::counters() {
  return *on_worker<Counters>([this] { return counters_on_worker(); }, Counters{});
}

Counters WorkerDispatcher::counters_on_worker() {
  Counters c = rm_.counters();
  c.command_latency = command_latency_;
  return c;
}

std::optional<Snapshot> WorkerDispatcher::snapshot(std::chrono::milliseconds within) {
  return on_worker<Snapshot>(
      [this] {
        Snapshot s = rm_.snapshot();
        s.counters.command_latency = command_latency_;
        return s;
      },
      Snapshot{}, within);
}

std::size_t WorkerDispatcher::flush_abandoned() {
  return *on_worker<std::size_t>([this] { return rm_.flush_abandoned(); }, 0);
}

void WorkerDispatcher::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] {
      return rm_holder_ == std::thread::id{} && (stopped_ || !tasks_.empty() || !queue_.empty());
    });
    if (!tasks_.empty()) {
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      rm_holder_ = std::this_thread::get_id();
      lock.unlock();
      try {
        task();
      } catch (...) {
        barrier("a dispatcher task");
      }
      // Dropped before relocking: a task may hold the last reference to a front-end connection, whose
      // destructor calls close() and so takes mutex_.
      task = nullptr;
      lock.lock();
      rm_holder_ = {};
      continue;
    }
    if (auto taken = queue_.pop()) {
      rm_holder_ = std::this_thread::get_id();
      lock.unlock();
      const uid_t uid = taken->uid;
      const FairQueue::Cost cost = run_job(*taken, std::chrono::steady_clock::now());
      taken.reset();  // the completion, likewise, before relocking
      lock.lock();
      rm_holder_ = {};
      queue_.charge(uid, cost);
      continue;
    }
    if (stopped_) break;
  }
}

void WorkerDispatcher::submit_blocking(ConnectionId id, Bytes command, Completion completion) {
  std::unique_lock lock(mutex_);
  auto it = open_.find(id);
  // Anything queued or running (a task such as the space's creation included) goes first: then this command
  // waits its turn on the worker like any other.
  const bool idle = !stopped_ && rm_holder_ == std::thread::id{} && tasks_.empty() && queue_.empty();
  if (!idle || it == open_.end() || it->second.closing) {
    lock.unlock();
    return submit(id, std::move(command), std::move(completion));
  }
  // Through the queue all the same, so that its accounting (the uid's virtual time) is the worker's.
  Job job{std::move(command), std::move(completion), std::chrono::steady_clock::now()};
  queue_.push(id, job);
  std::optional<FairQueue::Taken> taken = queue_.pop();
  rm_holder_ = std::this_thread::get_id();
  lock.unlock();
  const uid_t uid = taken->uid;
  const FairQueue::Cost cost = run_job(*taken, taken->job.queued);  // queued this instant: one clock read less
  taken.reset();
  lock.lock();
  rm_holder_ = {};
  queue_.charge(uid, cost);
  // Work that arrived meanwhile (commands of other connections, a close, stop()) waited for the RM.
  if (stopped_ || !tasks_.empty() || !queue_.empty()) wake_.notify_one();
}

FairQueue::Cost WorkerDispatcher::run_job(FairQueue::Taken& taken, std::chrono::steady_clock::time_point start) {
  // The uid pays for the wall time its command kept the TPM path busy, the RM's own evictions and loads for
  // it included; the completion is the front-end's time and is not charged.
  Result<Bytes> result = Bytes{};
  try {
    result = rm_.execute(taken.connection, taken.job.command);
  } catch (...) {
    result = barrier("executing a command");
  }
  const auto end = std::chrono::steady_clock::now();
  const auto cost = std::chrono::duration_cast<FairQueue::Cost>(end - start);
  // Queued to answered: the completion is the front-end's time and not part of it.
  command_latency_.observe(end - taken.job.queued);
  try {
    taken.job.completion(std::move(result));
  } catch (...) {
    barrier("a command's completion");
  }
  return cost;
}

}  // namespace tpmrmd::rm

#include "rm/worker_dispatcher.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <future>
#include <vector>

namespace tpmrmd::rm {

WorkerDispatcher::WorkerDispatcher(TpmPort& tpm, RmOptions options)
    : tpm_(tpm), rm_(tpm, options), worker_([this] { run(); }) {}

namespace {

Error gone() { return make_error(ENODEV, "TPM backend is gone"); }

}  // namespace

WorkerDispatcher::~WorkerDispatcher() { stop(); }

void WorkerDispatcher::stop() {
  std::thread worker;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    worker = std::move(worker_);
    auto answered = std::make_shared<std::vector<Job>>();
    for (auto& [id, queue] : queues_) {
      for (auto& job : queue.jobs) answered->push_back(std::move(job));
      queue.jobs.clear();
    }
    ring_.clear();
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
  Queue queue;
  queue.uid = client.uid;
  queues_.emplace(id, std::move(queue));
  ++open_connections_;
  ++connections_per_uid_[client.uid];
  // The space is created on the worker; tasks run before any queued command, so the first submit finds it.
  tasks_.emplace_back([this, id, client] {
    auto opened = rm_.open(id, client);
    if (!opened) spdlog::warn("rm: opening connection {} failed: {}", id, describe(opened.error()));
  });
  wake_.notify_one();
  return id;
}

void WorkerDispatcher::schedule(ConnectionId id, Queue& queue) {
  if (!queue.in_ring && !queue.jobs.empty() && !queue.closing) {
    queue.in_ring = true;
    ring_.push_back(id);
  }
}

void WorkerDispatcher::submit(ConnectionId id, Bytes command, Completion completion) {
  {
    std::lock_guard lock(mutex_);
    auto it = queues_.find(id);
    if (!stopped_ && it != queues_.end() && !it->second.closing) {
      it->second.jobs.push_back(Job{std::move(command), std::move(completion)});
      schedule(id, it->second);
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
  auto it = queues_.find(id);
  if (it == queues_.end() || it->second.closing || stopped_) return;
  it->second.closing = true;
  // The worker skips closing queues in the ring; the task cancels what is queued and flushes the space.
  tasks_.emplace_back([this, id] {
    std::deque<Job> cancelled;
    {
      std::lock_guard inner(mutex_);
      auto q = queues_.find(id);
      if (q == queues_.end()) return;
      cancelled = std::move(q->second.jobs);
      if (--connections_per_uid_[q->second.uid] == 0) connections_per_uid_.erase(q->second.uid);
      queues_.erase(q);
      --open_connections_;
    }
    for (auto& job : cancelled) job.completion(make_error(ECANCELED, "connection closed before the command ran"));
    rm_.close(id);
  });
  wake_.notify_one();
}

Counters WorkerDispatcher::counters() {
  auto promise = std::make_shared<std::promise<Counters>>();
  auto future = promise->get_future();
  {
    std::unique_lock lock(mutex_);
    if (std::this_thread::get_id() == worker_id_) {
      lock.unlock();
      return rm_.counters();  // called from a completion: the worker is this thread
    }
    if (stopped_) return Counters{};
    tasks_.emplace_back([this, promise] { promise->set_value(rm_.counters()); });
  }
  wake_.notify_one();
  return future.get();
}

void WorkerDispatcher::run() {
  {
    std::lock_guard lock(mutex_);
    worker_id_ = std::this_thread::get_id();
  }
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopped_ || !tasks_.empty() || !ring_.empty(); });
    if (!tasks_.empty()) {
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      // Dropped before relocking: a task may hold the last reference to a front-end connection, whose
      // destructor calls close() and so takes mutex_.
      task = nullptr;
      lock.lock();
      continue;
    }
    if (!ring_.empty()) {
      const ConnectionId id = ring_.front();
      ring_.pop_front();
      auto it = queues_.find(id);
      if (it == queues_.end()) continue;
      Queue& queue = it->second;
      queue.in_ring = false;
      if (queue.closing || queue.jobs.empty()) continue;
      Job job = std::move(queue.jobs.front());
      queue.jobs.pop_front();
      schedule(id, queue);
      lock.unlock();
      auto result = rm_.execute(id, job.command);
      job.completion(std::move(result));
      job = Job{};  // the completion, likewise, before relocking
      lock.lock();
      continue;
    }
    if (stopped_) break;
  }
}

}  // namespace tpmrmd::rm

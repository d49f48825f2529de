#include "rm/fair_queue.h"

#include <algorithm>
#include <iterator>

namespace tpmrmd::rm {

void FairQueue::add_connection(ConnectionId id, uid_t uid) {
  if (!connections_.emplace(id, Connection{uid, {}}).second) return;
  ++flows_[uid].connections;
}

bool FairQueue::push(ConnectionId id, Job& job) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return false;
  Connection& connection = it->second;
  const bool was_idle = connection.jobs.empty();
  connection.jobs.push_back(std::move(job));
  if (was_idle) {
    Flow& flow = flows_.at(connection.uid);
    const bool flow_was_idle = flow.ring.empty();
    try {
      flow.ring.push_back(id);
    } catch (...) {
      // Queued but never in the ring would never run: undo, so the caller's job is as it gave it.
      job = std::move(connection.jobs.back());
      connection.jobs.pop_back();
      throw;
    }
    if (flow_was_idle) {
      // Becoming busy: whatever the uid did not use while idle is gone, or it could save up and then
      // monopolise the TPM for as long as it had been quiet.
      flow.finish = std::max(flow.finish, now_);
      flow.since = ++activations_;
    }
  }
  ++queued_;
  return true;
}

std::optional<FairQueue::Taken> FairQueue::pop() {
  auto best = flows_.end();
  for (auto it = flows_.begin(); it != flows_.end();) {
    Flow& flow = it->second;
    if (flow.ring.empty()) {
      // A uid without connections is forgotten once it owes nothing: closing connections must not erase a
      // debt, or a uid could cycle connections to run ahead of everybody.
      if (flow.connections == 0 && flow.finish <= now_) {
        it = flows_.erase(it);
        continue;
      }
    } else if (best == flows_.end() || flow.finish < best->second.finish ||
               (flow.finish == best->second.finish && flow.since < best->second.since)) {
      best = it;
    }
    ++it;
  }
  if (best == flows_.end()) return std::nullopt;
  Flow& flow = best->second;
  now_ = std::max(now_, flow.finish);
  const ConnectionId id = flow.ring.front();
  flow.ring.pop_front();
  Connection& connection = connections_.at(id);
  Taken taken{id, connection.uid, std::move(connection.jobs.front())};
  connection.jobs.pop_front();
  --queued_;
  if (!connection.jobs.empty()) flow.ring.push_back(id);
  return taken;
}

void FairQueue::charge(uid_t uid, Cost cost) {
  auto it = flows_.find(uid);
  if (it == flows_.end() || cost.count() <= 0) return;
  it->second.finish += cost;
}

std::vector<FairQueue::Job> FairQueue::drop_jobs(ConnectionId id, Connection& connection) {
  std::vector<Job> dropped(std::make_move_iterator(connection.jobs.begin()),
                           std::make_move_iterator(connection.jobs.end()));
  if (!connection.jobs.empty()) {
    auto& ring = flows_.at(connection.uid).ring;
    ring.erase(std::remove(ring.begin(), ring.end(), id), ring.end());
  }
  queued_ -= connection.jobs.size();
  connection.jobs.clear();
  return dropped;
}

std::vector<FairQueue::Job> FairQueue::cancel(ConnectionId id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return {};
  return drop_jobs(id, it->second);
}

std::vector<FairQueue::Job> FairQueue::remove_connection(ConnectionId id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return {};
  auto dropped = drop_jobs(id, it->second);
  auto flow = flows_.find(it->second.uid);
  connections_.erase(it);
  if (--flow->second.connections == 0 && flow->second.finish <= now_) flows_.erase(flow);
  return dropped;
}

std::vector<FairQueue::Job> FairQueue::take_all() {
  std::vector<Job> all;
  for (auto& [id, connection] : connections_) {
    auto dropped = drop_jobs(id, connection);
    std::move(dropped.begin(), dropped.end(), std::back_inserter(all));
  }
  return all;
}

}  // namespace tpmrmd::rm

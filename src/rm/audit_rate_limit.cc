#include "rm/audit_rate_limit.h"

#include <algorithm>

namespace tpmrmd::rm {

RateLimiter::Verdict RateLimiter::admit(Key key, Clock::time_point now) {
  if (buckets_.size() > prune_above_) {
    prune(now);
    // Amortised: when most buckets still hold state, the next prune waits until the map has doubled.
    prune_above_ = std::max(kPruneAbove, 2 * buckets_.size());
  }
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{limits_.burst, now, 0});
  Bucket& b = it->second;
  if (!fresh && now > b.last) {
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(limits_.burst, b.tokens + elapsed * limits_.per_second);
  }
  b.last = std::max(b.last, now);
  if (b.tokens < 1) {
    ++b.suppressed;
    return {false, 0};
  }
  b.tokens -= 1;
  Verdict v{true, b.suppressed};
  b.suppressed = 0;
  return v;
}

void RateLimiter::prune(Clock::time_point now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const Bucket& b = it->second;
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    const bool full = b.tokens + elapsed * limits_.per_second >= limits_.burst;
    it = full && b.suppressed == 0 ? buckets_.erase(it) : std::next(it);
  }
}

namespace {

// One line per interval: a bucket of one token that refills once per interval.
RateLimits one_per(std::chrono::milliseconds interval) {
  const double seconds = std::chrono::duration<double>(std::max(interval, std::chrono::milliseconds(1))).count();
  return RateLimits{.burst = 1, .per_second = 1 / seconds};
}

constexpr std::size_t kWindowsPruneAbove = 1024;

}  // namespace

WarnThrottle::WarnThrottle(WarnLimits limits) : limits_(limits), limiter_(one_per(limits.interval)) {}

WarnThrottle::Verdict WarnThrottle::record(Key key, Clock::time_point now) {
  if (windows_.size() > kWindowsPruneAbove) {
    // Keys quiet for a window and an interval: what they would still carry is not worth an unbounded map.
    const auto quiet = std::max<Clock::duration>(limits_.window, limits_.interval);
    std::erase_if(windows_, [&](const auto& entry) { return now - entry.second.start >= quiet; });
  }
  auto [it, fresh] = windows_.try_emplace(key, Window{now, 0, 0});
  Window& w = it->second;
  if (!fresh && now - w.start >= limits_.window) {
    w.start = now;
    w.count = 0;
  }
  ++w.count;
  ++w.since_last;
  Verdict v;
  v.in_window = w.count;
  if (w.count < std::max<std::uint64_t>(limits_.threshold, 1)) return v;
  const auto admitted = limiter_.admit(key, now);
  if (!admitted.log) return v;
  v.log = true;
  v.since_last = w.since_last;
  v.suppressed = admitted.suppressed_before;
  w.since_last = 0;
  return v;
}

}  // namespace tpmrmd::rm

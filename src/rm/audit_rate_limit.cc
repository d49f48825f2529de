#include "rm/audit_rate_limit.h"

#include <algorithm>

namespace tpmrmd::rm {
namespace {

}  // namespace

AuditRateLimiter::Verdict AuditRateLimiter::admit(uid_t uid, Clock::time_point now) {
  if (buckets_.size() > prune_above_) {
    prune(now);
    // Amortised: when most buckets still hold state, the next prune waits until the map has doubled.
    prune_above_ = std::max(kPruneAbove, 2 * buckets_.size());
  }
  auto [it, fresh] = buckets_.try_emplace(uid, Bucket{limits_.burst, now, 0});
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

void AuditRateLimiter::prune(Clock::time_point now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const Bucket& b = it->second;
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    const bool full = b.tokens + elapsed * limits_.per_second >= limits_.burst;
    it = full && b.suppressed == 0 ? buckets_.erase(it) : std::next(it);
  }
}

}  // namespace tpmrmd::rm

// A token bucket per uid for the audit trail: a burst of lines, then a steady rate. A client that keeps
// sending refused commands can't flood the journal; what was dropped is counted, and said when its lines
// resume.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>

namespace tpmrmd::rm {

struct AuditLimits {
  double burst = 20;       // lines a uid may log at once
  double per_second = 2;   // lines a uid may log per second after the burst
};

class AuditRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit AuditRateLimiter(AuditLimits limits) : limits_(limits) {}

  struct Verdict {
    bool log = true;
    std::uint64_t suppressed_before = 0;  // with log: lines of this uid dropped since its last logged one
  };
  // One line of `uid` at `now` (non-decreasing across calls).
  Verdict admit(uid_t uid, Clock::time_point now);
  std::size_t tracked_uids() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;
    std::uint64_t suppressed = 0;
  };
  // Buckets that are full again and owe no "suppressed" line carry no state: dropping them bounds the map
  // however many uids have been seen.
  void prune(Clock::time_point now);

  static constexpr std::size_t kPruneAbove = 1024;

  AuditLimits limits_;
  std::map<uid_t, Bucket> buckets_;
  std::size_t prune_above_ = kPruneAbove;
};

}  // namespace tpmrmd::rm

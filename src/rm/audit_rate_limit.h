// Rate limits for log lines. RateLimiter is a token bucket per key (a uid, an event kind): a burst of lines,
// then a steady rate; what was dropped is counted and said when the key's lines resume. The audit trail uses it
// per uid, so a client that keeps sending refused commands can't flood the journal.
//
// WarnThrottle sits on top of it for warnings about events that come in floods (evictions, re-gaps,
// refusals): it counts a key's events within a window and lets a warning through only once the count reaches
// a threshold, and then at most once per interval, with the counts the line should carry.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>

namespace tpmrmd::rm {

struct RateLimits {
  double burst = 20;       // lines a key may log at once
  double per_second = 2;   // lines a key may log per second after the burst
};

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  using Key = std::uint64_t;

  explicit RateLimiter(RateLimits limits) : limits_(limits) {}

  struct Verdict {
    bool log = true;
    std::uint64_t suppressed_before = 0;  // with log: lines of this key dropped since its last logged one
  };
  // One line of `key` at `now` (non-decreasing across calls).
  Verdict admit(Key key, Clock::time_point now);
  std::size_t tracked_keys() const { return buckets_.size(); }
  std::size_t tracked_uids() const { return tracked_keys(); }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;
    std::uint64_t suppressed = 0;
  };
  // Buckets that are full again and owe no "suppressed" line carry no state: dropping them bounds the map
  // however many keys have been seen.
  void prune(Clock::time_point now);

  static constexpr std::size_t kPruneAbove = 1024;

  RateLimits limits_;
  std::map<Key, Bucket> buckets_;
  std::size_t prune_above_ = kPruneAbove;
};

// The audit trail's names for it: per uid.
using AuditLimits = RateLimits;
using AuditRateLimiter = RateLimiter;

struct WarnLimits {
  std::uint64_t threshold = 1;  // events of a key within `window` before a warning is due (1: every event)
  std::chrono::milliseconds window{1000};
  std::chrono::milliseconds interval{10000};  // at most one warning per key per interval
};

class WarnThrottle {
 public:
  using Clock = RateLimiter::Clock;
  using Key = RateLimiter::Key;

  explicit WarnThrottle(WarnLimits limits);

  struct Verdict {
    bool log = false;
    std::uint64_t in_window = 0;   // events of the key in the current window, this one included
    std::uint64_t since_last = 0;  // with log: events of the key since its last warning, this one included
    std::uint64_t suppressed = 0;  // with log: warnings withheld by the interval since the last one
  };
  // One event of `key` at `now` (non-decreasing across calls).
  Verdict record(Key key, Clock::time_point now);
  std::size_t tracked_keys() const { return windows_.size(); }

 private:
  struct Window {
    Clock::time_point start;
    std::uint64_t count = 0;
    std::uint64_t since_last = 0;
  };

  WarnLimits limits_;
  RateLimiter limiter_;
  std::map<Key, Window> windows_;
};

}  // namespace tpmrmd::rm

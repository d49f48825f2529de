// A fixed-bucket latency histogram: a value type the worker thread updates per command without allocating, and
// that snapshots copy. Buckets are upper bounds in seconds (Prometheus' `le`), the last one +Inf.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>

namespace tpmrmd::rm {

class LatencyHistogram {
 public:
  // Upper bounds of the finite buckets, in nanoseconds: 100 µs to 10 s, roughly 1-2.5-5 per decade (a swtpm
  // ReadPublic takes well under a millisecond, an RSA-2048 CreatePrimary on hardware seconds).
  static constexpr std::array<std::uint64_t, 15> kBoundsNs = {
      100'000,     250'000,     500'000,       1'000'000,     2'500'000,
      5'000'000,   10'000'000,  25'000'000,    50'000'000,    100'000'000,
      250'000'000, 500'000'000, 1'000'000'000, 2'500'000'000, 10'000'000'000};
  static constexpr std::size_t kBuckets = kBoundsNs.size() + 1;  // the last: above every bound (+Inf)

  void observe(std::chrono::nanoseconds d) {
    const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count()));
    const auto it = std::lower_bound(kBoundsNs.begin(), kBoundsNs.end(), ns);  // first bound >= ns: le semantics
    ++counts_[static_cast<std::size_t>(it - kBoundsNs.begin())];
    sum_ns_ += ns;
    ++count_;
  }

  // Observations in bucket `i` alone (not cumulative); i == kBuckets - 1 is the +Inf bucket.
  std::uint64_t bucket(std::size_t i) const { return counts_[i]; }
  // Observations <= bound i (cumulative, as Prometheus exposes them).
  std::uint64_t cumulative(std::size_t i) const {
    std::uint64_t total = 0;
    for (std::size_t b = 0; b <= i && b < kBuckets; ++b) total += counts_[b];
    return total;
  }
  std::uint64_t count() const { return count_; }
  std::uint64_t sum_ns() const { return sum_ns_; }
  double sum_seconds() const { return static_cast<double>(sum_ns_) / 1e9; }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t sum_ns_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace tpmrmd::rm

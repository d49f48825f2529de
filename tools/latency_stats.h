// Latency percentiles for the benches: nearest-rank on a sorted copy (p99 of 100 samples is their maximum).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace tpmrmd::bench {

struct LatencyStats {
  double p50 = 0, p99 = 0, max = 0, mean = 0;
};

inline LatencyStats latency_stats(std::vector<double> v) {
  LatencyStats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<std::size_t>(q * double(v.size())))]; };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  s.max = v.back();
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  return s;
}

}  // namespace tpmrmd::bench

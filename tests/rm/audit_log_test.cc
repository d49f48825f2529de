// The audit trail's lines and its per-uid rate limit.
#include "rm/audit_log.h"

#include <gtest/gtest.h>

#include "audit_capture.h"
#include "rm/handles.h"
#include "tpm/commands.h"
#include "tpm/responses.h"

namespace tpmrmd::rm {
namespace {

using namespace std::chrono_literals;
using Clock = AuditRateLimiter::Clock;

TEST(AuditRateLimiter, ABurstThenTheSteadyRateThenTheSuppressedCount) {
  AuditRateLimiter limiter(AuditLimits{.burst = 3, .per_second = 2});
  const Clock::time_point t0{};
  for (int i = 0; i < 3; ++i) {
    auto v = limiter.admit(1000, t0);
    EXPECT_TRUE(v.log);
    EXPECT_EQ(v.suppressed_before, 0u);
  }
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limiter.admit(1000, t0).log);
  EXPECT_FALSE(limiter.admit(1000, t0 + 400ms).log) << "0.8 tokens after 400 ms";
  auto resumed = limiter.admit(1000, t0 + 500ms);
  EXPECT_TRUE(resumed.log);
  EXPECT_EQ(resumed.suppressed_before, 6u);
  EXPECT_FALSE(limiter.admit(1000, t0 + 500ms).log);
  auto again = limiter.admit(1000, t0 + 1000ms);
  EXPECT_TRUE(again.log);
  EXPECT_EQ(again.suppressed_before, 1u);
  // Refill stops at the burst.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.admit(1000, t0 + 100s).log);
  EXPECT_FALSE(limiter.admit(1000, t0 + 100s).log);
}

TEST(AuditRateLimiter, EachUidHasItsOwnBucket) {
  AuditRateLimiter limiter(AuditLimits{.burst = 2, .per_second = 1});
  const Clock::time_point t0{};
  EXPECT_TRUE(limiter.admit(1000, t0).log);
  EXPECT_TRUE(limiter.admit(1000, t0).log);
  EXPECT_FALSE(limiter.admit(1000, t0).log);
  EXPECT_TRUE(limiter.admit(0, t0).log) << "a flooding uid does not silence root";
  EXPECT_TRUE(limiter.admit(1001, t0).log);
}

TEST(AuditRateLimiter, IdleFullBucketsAreForgotten) {
  AuditRateLimiter limiter(AuditLimits{.burst = 2, .per_second = 1});
  const Clock::time_point t0{};
  for (uid_t u = 10000; u < 11100; ++u) limiter.admit(u, t0);
  EXPECT_EQ(limiter.tracked_uids(), 1100u) << "a bucket that has not refilled holds state";
  // Ten seconds on, every one of those has refilled and owes nothing: the next prune (the map has grown to
  // twice its size at the last one) forgets them, and keeps the fresh ones, which have not refilled yet.
  for (uid_t u = 20000; u < 21000; ++u) limiter.admit(u, t0 + 10s);
  EXPECT_EQ(limiter.tracked_uids(), 1000u);
}

TEST(AuditRateLimiter, ManyUidsKeepTheirSuppressedCounts) {
  AuditRateLimiter limiter(AuditLimits{.burst = 1, .per_second = 1});
  const Clock::time_point t0{};
  EXPECT_TRUE(limiter.admit(7, t0).log);
  EXPECT_FALSE(limiter.admit(7, t0).log);
  for (uid_t u = 10000; u < 12000; ++u) limiter.admit(u, t0 + 10s);  // forces pruning of the idle, full buckets
  auto v = limiter.admit(7, t0 + 10s);
  EXPECT_TRUE(v.log);
  EXPECT_EQ(v.suppressed_before, 1u) << "a bucket that owes a suppressed line is not pruned";
}

TEST(AuditLog, LinesNameTheCallerTheCommandAndTheOutcome) {
  testing::AuditCapture capture;
  AuditLog log(AuditLimits{});
  const ClientInfo user{1000, 1000, 812, {}, "tpm2_clear"};
  log.refused(3, user, CallerClass::kOther, TPM2_CC_Clear, kRmCommandCode);
  log.ran(4, ClientInfo{0, 0, 815, {}, "tpm2_clear"}, CallerClass::kRoot, TPM2_CC_Clear,
          tpm::make_success_response());
  log.ran(5, user, CallerClass::kOther, TPM2_CC_ClockSet, Result<Bytes>(make_error(ENODEV, "TPM backend is gone")));
  const auto lines = capture.lines();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "event=audit outcome=refused conn=3 uid=1000 pid=812 comm=\"tpm2_clear\" class=other cc=0x00000126 "
            "command=Clear rc=0x000b0143");
  EXPECT_EQ(lines[1],
            "event=audit outcome=ran conn=4 uid=0 pid=815 comm=\"tpm2_clear\" class=root cc=0x00000126 "
            "command=Clear rc=0x00000000");
  EXPECT_NE(lines[2].find("command=ClockSet errno=19 error=\"TPM backend is gone\""), std::string::npos) << lines[2];
}

TEST(AuditLog, AHostileCommCannotForgeFields) {
  testing::AuditCapture capture;
  AuditLog log(AuditLimits{});
  log.refused(1, ClientInfo{1000, 1000, 1, {}, "x\" uid=0\nevent=audit {}"}, CallerClass::kOther, 0x20000001,
              kRmCommandCode);
  ASSERT_EQ(capture.lines().size(), 1u);
  EXPECT_NE(capture.lines()[0].find("comm=\"x\\x22 uid=0\\x0aevent=audit {}\" class=other cc=0x20000001 "
                                    "command=0x20000001"),
            std::string::npos)
      << capture.lines()[0];
}

TEST(AuditLog, AFloodIsCutToTheBurstAndTheRateAndTheGapIsReported) {
  testing::AuditCapture capture;
  Clock::time_point now{};
  AuditLog log(AuditLimits{.burst = 5, .per_second = 1}, [&] { return now; });
  const ClientInfo user{1000, 1000, 9, {}, "flood"};
  for (int i = 0; i < 1000; ++i) log.refused(1, user, CallerClass::kOther, TPM2_CC_Clear, kRmCommandCode);
  EXPECT_EQ(capture.count({"event=audit outcome=refused"}), 5u);
  EXPECT_EQ(log.suppressed(), 995u);
  now += 2s;
  log.refused(1, user, CallerClass::kOther, TPM2_CC_Clear, kRmCommandCode);
  const auto lines = capture.lines();
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_EQ(lines[5], "event=audit-suppressed uid=1000 lines=995");
  EXPECT_EQ(capture.count({"event=audit outcome=refused"}), 6u);
}

TEST(RateLimiter, KeysOtherThanUidsShareTheBuckets) {
  RateLimiter limiter(RateLimits{.burst = 1, .per_second = 1});
  const Clock::time_point t0{};
  const RateLimiter::Key big = std::uint64_t{1} << 40;  // wider than a uid
  EXPECT_TRUE(limiter.admit(big, t0).log);
  EXPECT_FALSE(limiter.admit(big, t0).log);
  EXPECT_TRUE(limiter.admit(big + 1, t0).log);
  EXPECT_EQ(limiter.admit(big, t0 + 1s).suppressed_before, 1u);
}

TEST(WarnThrottle, BelowTheThresholdNothingIsDue) {
  WarnThrottle throttle(WarnLimits{.threshold = 5, .window = 1000ms, .interval = 10s});
  Clock::time_point now{};
  for (int i = 0; i < 4; ++i) {
    const auto v = throttle.record(0, now);
    EXPECT_FALSE(v.log);
    EXPECT_EQ(v.in_window, static_cast<std::uint64_t>(i + 1));
  }
  // A new window starts from zero: four more events in it are no storm either.
  now += 1001ms;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(throttle.record(0, now).log);
}

TEST(WarnThrottle, AStormWarnsOncePerIntervalWithTheCounts) {
  WarnThrottle throttle(WarnLimits{.threshold = 3, .window = 1000ms, .interval = 10s});
  Clock::time_point now{};
  std::vector<WarnThrottle::Verdict> logged;
  // 100 events per second for 25 s: the threshold is reached in the first window, then a line every 10 s.
  for (int ms = 0; ms < 25000; ms += 10) {
    if (auto v = throttle.record(7, now + std::chrono::milliseconds(ms)); v.log) logged.push_back(v);
  }
  ASSERT_EQ(logged.size(), 3u);
  EXPECT_EQ(logged[0].in_window, 3u);  // the third event of the first window
  EXPECT_EQ(logged[0].since_last, 3u);
  EXPECT_EQ(logged[0].suppressed, 0u);
  // Every event of the ~10 s between two lines (the bucket refills in floating point: give or take one).
  EXPECT_NEAR(static_cast<double>(logged[1].since_last), 1000, 2);
  EXPECT_GT(logged[1].suppressed, 0u);  // the storm went on inside the interval: those lines were withheld
  EXPECT_NEAR(static_cast<double>(logged[2].since_last), 1000, 2);
}

TEST(WarnThrottle, ThresholdOneWarnsAtTheFirstEventAndKeysAreSeparate) {
  WarnThrottle throttle(WarnLimits{.threshold = 1, .window = 1000ms, .interval = 10s});
  const Clock::time_point t0{};
  EXPECT_TRUE(throttle.record(1000, t0).log);
  EXPECT_FALSE(throttle.record(1000, t0 + 1ms).log);
  EXPECT_TRUE(throttle.record(1001, t0 + 1ms).log);  // another uid has its own interval
  const auto later = throttle.record(1000, t0 + 11s);
  EXPECT_TRUE(later.log);
  EXPECT_EQ(later.since_last, 2u);
  EXPECT_EQ(later.suppressed, 1u);
}

TEST(WarnThrottle, QuietKeysAreForgotten) {
  WarnThrottle throttle(WarnLimits{.threshold = 1, .window = 1000ms, .interval = 1s});
  Clock::time_point now{};
  for (RateLimiter::Key k = 0; k < 5000; ++k) (void)throttle.record(k, now);
  now += 2s;
  (void)throttle.record(0, now);
  EXPECT_LT(throttle.tracked_keys(), 100u);
}

}  // namespace
}  // namespace tpmrmd::rm

// The real context gap of swtpm (TPM_PT_CONTEXT_GAP_MAX = 0xFFFF): an idle saved session while more than
// 65,535 other session saves happen. First the bare TPM, to show the gap is real; then the RM.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "rm/context_commands.h"
#include "rm/handles.h"
#include "rm_fixture.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST_F(SwtpmRmTest, BareTpmReportsContextGapAfter65535SessionSaves) {
  EXPECT_EQ(chip_->info().context_gap_max, 0xFFFFu);
  auto raw = [&](const Bytes& cmd) {
    auto r = chip_->transmit(cmd);
    EXPECT_TRUE(r);
    return r ? *r : Bytes{};
  };
  TPM2_HANDLE idle = handle_of(raw(start_auth_session(TPM2_SE_POLICY)));
  ASSERT_EQ(rc_of(raw(rm::make_context_save(idle))), TPM2_RC_SUCCESS);
  TPM2_HANDLE busy = handle_of(raw(start_auth_session(TPM2_SE_POLICY)));
  const auto start = Clock::now();
  int saves = 0;
  TPM2_RC rc = TPM2_RC_SUCCESS;
  for (; saves < 70000; ++saves) {
    Bytes saved = raw(rm::make_context_save(busy));
    rc = rc_of(saved);
    if (rc != TPM2_RC_SUCCESS) break;
    ASSERT_EQ(rc_of(raw(rm::make_context_load(body_of(saved)))), TPM2_RC_SUCCESS);
  }
  EXPECT_EQ(rc, TPM2_RC_CONTEXT_GAP);
  EXPECT_GE(saves, 65000);
  EXPECT_LE(saves, 65536);
  std::printf("bare TPM: TPM_RC_CONTEXT_GAP after %d saves of another session (%.1f s)\n", saves,
              seconds_since(start));
  RecordProperty("saves_until_gap", saves);
  raw(rm::make_flush_context(busy));
  raw(rm::make_flush_context(idle));
}

TEST_F(SwtpmRmTest, IdleSessionSurvivesMoreThan65535SessionSavesByOthers) {
  ConnectionId idle = open();
  TPM2_HANDLE kept = make_policy_session(idle);
  Bytes digest = ok(idle, policy_get_digest(kept));

  ConnectionId b = open(), c = open();
  std::vector<std::pair<ConnectionId, TPM2_HANDLE>> busy;
  for (ConnectionId x : {b, c}) {
    busy.emplace_back(x, make_policy_session(x));
    busy.emplace_back(x, make_policy_session(x));
  }
  const auto saves_before = rm_->counters().context_saves;
  const auto start = Clock::now();
  // Four busy sessions on three slots: every command saves one session to load another.
  constexpr int kCommands = 66000;
  for (int i = 0; i < kCommands; ++i) {
    const auto& [conn, s] = busy[i % busy.size()];
    auto r = rm_->execute(conn, policy_get_digest(s));
    ASSERT_TRUE(r) << "command " << i << ": " << describe(r.error());
    ASSERT_EQ(rc_of(*r), TPM2_RC_SUCCESS) << "command " << i;
  }
  const double elapsed = seconds_since(start);
  const auto counters = rm_->counters();
  EXPECT_GT(counters.context_saves - saves_before, 65535u);
  EXPECT_GE(counters.regaps, 1u);
  EXPECT_EQ(ok(idle, policy_get_digest(kept)), digest);
  std::printf("RM: %d commands, %llu session saves, %llu regaps, idle session still works (%.1f s)\n", kCommands,
              static_cast<unsigned long long>(counters.context_saves - saves_before),
              static_cast<unsigned long long>(counters.regaps), elapsed);
  RecordProperty("regaps", static_cast<int>(counters.regaps));
}

TEST_F(SwtpmRmTest, ClientSavedSessionSurvivesTheGapAndLoadsLater) {
  // The client's blob is a token: the RM re-gaps the context behind it, so the token stays loadable.
  ConnectionId a = open();
  TPM2_HANDLE s = make_policy_session(a);
  Bytes digest = ok(a, policy_get_digest(s));
  Bytes token = body_of(ok(a, context_save(s)));
  rm_->close(a);

  ConnectionId b = open();
  std::vector<TPM2_HANDLE> busy;
  for (int i = 0; i < 4; ++i) busy.push_back(make_policy_session(b));
  for (int i = 0; i < 66000; ++i) {
    auto r = rm_->execute(b, policy_get_digest(busy[i % busy.size()]));
    ASSERT_TRUE(r && rc_of(*r) == TPM2_RC_SUCCESS) << "command " << i;
  }
  ConnectionId later = open();
  EXPECT_EQ(handle_of(ok(later, context_load(token))), s);
  EXPECT_EQ(ok(later, policy_get_digest(s)), digest);
}

}  // namespace
}  // namespace tpmrmd::testing

// The real context gap of swtpm (TPM_PT_CONTEXT_GAP_MAX = 0xFFFF): an idle saved session while more than
// 65,535 other session saves happen. First the bare TPM, to show the gap is real; then the RM.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "rm/handles.h"
#include "rm_fixture.h"
#include "tpm/commands.h"

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
  ASSERT_EQ(rc_of(raw(tpm::make_context_save(idle))), TPM2_RC_SUCCESS);
  TPM2_HANDLE busy = handle_of(raw(start_auth_session(TPM2_SE_POLICY)));
  const auto start = Clock::now();
  int saves = 0;
  TPM2_RC rc = TPM2_RC_SUCCESS;
  for (; saves < 70000; ++saves) {
    Bytes saved = raw(tpm::make_context_save(busy));
    rc = rc_of(saved);
    if (rc != TPM2_RC_SUCCESS) break;
    ASSERT_EQ(rc_of(raw(tpm::make_context_load(body_of(saved)))), TPM2_RC_SUCCESS);
  }
  EXPECT_EQ(rc, TPM2_RC_CONTEXT_GAP);
  EXPECT_GE(saves, 65000);
  EXPECT_LE(saves, 65536);
  std::printf("bare TPM: TPM_RC_CONTEXT_GAP after %d saves of another session (%.1f s)\n", saves,
              seconds_since(start));
  RecordProperty("saves_until_gap", saves);
  raw(tpm::make_flush_context(busy));
  raw(tpm::make_flush_context(idle));
}

TEST_F(SwtpmRmTest, IdleAndClientSavedSessionsSurviveMoreThan65535SessionSavesByOthers) {
  // An idle live session of one connection, and a session another connection saved (the client holds only a
  // token) before it closed. The RM re-gaps both behind the scenes.
  ConnectionId idle = open();
  TPM2_HANDLE kept = make_policy_session(idle);
  Bytes digest = ok(idle, policy_get_digest(kept));
  ConnectionId saver = open();
  TPM2_HANDLE handed = make_policy_session(saver);
  ok(saver, policy_get_digest(handed));
  Bytes handed_digest = ok(saver, policy_get_digest(handed));
  Bytes token = body_of(ok(saver, context_save(handed)));
  rm_->close(saver);

  ConnectionId b = open(), c = open();
  std::vector<std::pair<ConnectionId, TPM2_HANDLE>> busy;
  for (ConnectionId x : {b, c}) {
    busy.emplace_back(x, make_policy_session(x));
    busy.emplace_back(x, make_policy_session(x));
  }
  const auto saves_before = rm_->counters().context_saves;
  const auto start = Clock::now();
  // Four busy sessions on three slots: every command saves one session to load another.
  constexpr int kCommands = 65700;
  for (int i = 0; i < kCommands; ++i) {
    const auto& [conn, s] = busy[i % busy.size()];
    auto r = rm_->execute(conn, policy_get_digest(s));
    ASSERT_TRUE(r) << "command " << i << ": " << describe(r.error());
    ASSERT_EQ(rc_of(*r), TPM2_RC_SUCCESS) << "command " << i;
  }
  const double elapsed = seconds_since(start);
  const auto counters = rm_->counters();
  EXPECT_GT(counters.context_saves - saves_before, 65535u);
  EXPECT_GE(counters.regaps, 2u);
  EXPECT_EQ(ok(idle, policy_get_digest(kept)), digest);
  ConnectionId later = open();
  EXPECT_EQ(handle_of(ok(later, context_load(token))), handed);
  Bytes after = ok(later, policy_get_digest(handed));
  EXPECT_EQ(after, handed_digest);
  std::printf("RM: %d commands, %llu session saves, %llu regaps, both sessions still work (%.1f s)\n", kCommands,
              static_cast<unsigned long long>(counters.context_saves - saves_before),
              static_cast<unsigned long long>(counters.regaps), elapsed);
  RecordProperty("regaps", static_cast<int>(counters.regaps));
}

}  // namespace
}  // namespace tpmrmd::testing

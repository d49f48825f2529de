// The RM on the fake TPM: the swtpm suites' behaviours in milliseconds, through the RM's public API only, with
// the fake's own view of what is loaded as the witness. No chip layer is linked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <latch>
#include <memory>
#include <set>
#include <thread>

#include "rm/resource_manager.h"
#include "rm/worker_dispatcher.h"
#include "support/fake_tpm.h"
#include "support/log_capture.h"
#include "support/tpm_commands.h"
#include "fake_rm_fixture.h"
#include "tpm/endian.h"
#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

TEST_F(FakeRmTest, EvictionPicksTheLeastRecentlyUsedObjectOfAnyConnection) {
  ConnectionId a = open(), b = open();
  auto [a0, a0_serial] = make_key(a, 1);
  auto [a1, a1_serial] = make_key(a, 2);
  auto [b0, b0_serial] = make_key(b, 3);
  EXPECT_EQ(a0, kV0);
  EXPECT_EQ(b0, kV0);
  EXPECT_EQ(serial(a, a0), a0_serial);  // a0 is now the most recent; a1 the least
  auto [b1, b1_serial] = make_key(b, 4);
  EXPECT_EQ(loaded_serials(), (std::set<std::uint64_t>{a0_serial, b0_serial, b1_serial}));
  // Every handle still reaches its own object, whoever was evicted.
  EXPECT_EQ(serial(a, a1), a1_serial);
  EXPECT_EQ(serial(b, b1), b1_serial);
  EXPECT_EQ(serial(b, b0), b0_serial);
  EXPECT_EQ(serial(a, a0), a0_serial);
  EXPECT_LE(tpm_->loaded_objects().size(), 3u);
}

TEST_F(FakeRmTest, EvictionNeverPicksAnObjectTheCommandNames) {
  ConnectionId c = open();
  std::vector<std::pair<TPM2_HANDLE, std::uint64_t>> keys;
  for (std::uint8_t i = 0; i < 4; ++i) keys.push_back(make_key(c, i));
  // Loaded: k1 k2 k3, k1 least recently used. Certify(k0, k1) must load k0 without evicting k1.
  ASSERT_EQ(loaded_serials(), (std::set<std::uint64_t>{keys[1].second, keys[2].second, keys[3].second}));
  Bytes cert = ok(c, certify(keys[0].first, keys[1].first));
  ASSERT_GE(cert.size(), 32u);
  EXPECT_EQ(cert[23], keys[0].second);  // the fake's attestation names both objects it reached
  EXPECT_EQ(cert[31], keys[1].second);
  EXPECT_EQ(loaded_serials(), (std::set<std::uint64_t>{keys[0].second, keys[1].second, keys[3].second}));
  // The same transient twice is one physical object: one load, not two.
  ok(c, read_public(keys[2].first));  // evicts k3 (k0, k1 were just used)
  const auto loads = tpm_->commands(TPM2_CC_ContextLoad);
  ok(c, certify(keys[3].first, keys[3].first));
  EXPECT_EQ(tpm_->commands(TPM2_CC_ContextLoad), loads + 1);
}

TEST_F(FakeRmTest, EvictionNeverPicksASessionTheCommandNames) {
  ConnectionId a = open(), b = open();
  TPM2_HANDLE s0 = make_session(a);
  TPM2_HANDLE s1 = make_session(a);
  TPM2_HANDLE s2 = make_session(b);
  TPM2_HANDLE s3 = make_session(b);  // evicts s0
  ASSERT_EQ(tpm_->saved_sessions(), (std::vector<TPM2_HANDLE>{s0}));
  // s1 is the least recently used loaded session, but this command names it (in the authorization area).
  ok(a, get_random(8, {Auth{s0, TPMA_SESSION_CONTINUESESSION}, Auth{s1, TPMA_SESSION_CONTINUESESSION}}));
  EXPECT_EQ(tpm_->saved_sessions(), (std::vector<TPM2_HANDLE>{s2}));
  ok(b, get_random(8, {Auth{s2, TPMA_SESSION_CONTINUESESSION}, Auth{s3, TPMA_SESSION_CONTINUESESSION}}));
  auto loaded = tpm_->loaded_sessions();
  EXPECT_EQ(tpm_->saved_sessions().size(), 1u);
  EXPECT_NE(std::find(loaded.begin(), loaded.end(), s2), loaded.end());
  EXPECT_NE(std::find(loaded.begin(), loaded.end(), s3), loaded.end());
}

TEST_F(FakeRmTest, ReusedKeyCostsOneTpmCommandPerClientCommand) {
  ConnectionId c = open();
  auto [k, k_serial] = make_key(c);
  const auto before = tpm_->commands();
  const auto counters = rm_->counters();
  for (int i = 0; i < 100; ++i) ok(c, read_public(k));
  EXPECT_EQ(tpm_->commands() - before, 100u);
  EXPECT_EQ(tpm_->commands(TPM2_CC_ReadPublic), 101u);
  const auto after = rm_->counters();
  EXPECT_EQ(after.context_loads, counters.context_loads);
  EXPECT_EQ(after.context_saves, counters.context_saves);
  EXPECT_EQ(after.flushes, counters.flushes);
}

TEST_F(FakeRmTest, CommandsLoadOnlyWhatTheyName) {
  ConnectionId c = open(), other = open();
  for (std::uint8_t i = 0; i < 3; ++i) make_key(c, i);
  for (int i = 0; i < 3; ++i) make_session(c);
  for (std::uint8_t i = 0; i < 3; ++i) make_key(other, static_cast<std::uint8_t>(20 + i));
  for (int i = 0; i < 3; ++i) make_session(other);
  const auto before = tpm_->commands();
  ok(c, get_random(16));
  EXPECT_EQ(tpm_->commands() - before, 1u);
}

TEST_F(FakeRmTest, ObjectMemoryFromTheTpmIsHandledByEvictionWhenTheSlotEstimateIsWrong) {
  FakeTpmOptions tpm_options;
  tpm_options.object_slots = 2;
  tpm_options.reported_object_slots = 3;
  reset(tpm_options, {});
  ConnectionId a = open(), b = open();
  auto k0 = make_key(a, 0);
  auto k1 = make_key(b, 1);
  const auto creates = tpm_->commands(TPM2_CC_CreatePrimary);
  auto k2 = make_key(a, 2);  // the RM thinks a slot is free; the TPM says OBJECT_MEMORY
  EXPECT_EQ(tpm_->commands(TPM2_CC_CreatePrimary), creates + 2);
  EXPECT_EQ(loaded_serials(), (std::set<std::uint64_t>{k1.second, k2.second}));  // k0 was the LRU
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(serial(a, k0.first), k0.second);
    EXPECT_EQ(serial(b, k1.first), k1.second);
    EXPECT_EQ(serial(a, k2.first), k2.second);
  }
}

TEST_F(FakeRmTest, ObjectHandlesFromTheTpmIsHandledLikeObjectMemory) {
  FakeTpmOptions tpm_options;
  tpm_options.object_slots = 1;
  tpm_options.reported_object_slots = 3;
  tpm_options.objects_full_is_object_handles = true;
  reset(tpm_options, {});
  ConnectionId c = open();
  auto k0 = make_key(c, 0);
  auto k1 = make_key(c, 1);
  ok(c, hash_sequence_start());
  EXPECT_EQ(serial(c, k0.first), k0.second);
  EXPECT_EQ(serial(c, k1.first), k1.second);
  EXPECT_EQ(tpm_->loaded_objects().size(), 1u);
}

TEST_F(FakeRmTest, SessionMemoryFromTheTpmIsHandledByEvictionWhenTheSlotEstimateIsWrong) {
  FakeTpmOptions tpm_options;
  tpm_options.session_slots = 2;
  tpm_options.reported_session_slots = 3;
  reset(tpm_options, {});
  ConnectionId a = open(), b = open();
  TPM2_HANDLE s0 = make_session(a);
  ok(a, policy_auth_value(s0));
  Bytes d0 = ok(a, policy_get_digest(s0));
  TPM2_HANDLE s1 = make_session(b);
  const auto starts = tpm_->commands(TPM2_CC_StartAuthSession);
  TPM2_HANDLE s2 = make_session(a);
  EXPECT_EQ(tpm_->commands(TPM2_CC_StartAuthSession), starts + 2);  // SESSION_MEMORY, evict, retry
  EXPECT_EQ(tpm_->saved_sessions(), (std::vector<TPM2_HANDLE>{s0}));
  // Using the saved one needs a slot too: the TPM refuses the load, the RM evicts and retries.
  EXPECT_EQ(ok(a, policy_get_digest(s0)), d0);
  ok(b, policy_get_digest(s1));
  ok(a, policy_get_digest(s2));
  EXPECT_EQ(ok(a, policy_get_digest(s0)), d0);
  EXPECT_LE(tpm_->loaded_sessions().size(), 2u);
}

TEST_F(FakeRmTest, SessionHandlesFromTheTpmFlushesTheOldestAbandonedSession) {
  FakeTpmOptions tpm_options;
  tpm_options.active_sessions_max = 3;
  rm::RmOptions options;
  options.max_sessions_per_uid = 3;  // this test's one uid may fill the TPM, to provoke SESSION_HANDLES
  reset(tpm_options, options);
  ConnectionId a = open();
  TPM2_HANDLE old_session = make_session(a);
  Bytes old_token = body_of(ok(a, context_save(old_session)));
  TPM2_HANDLE young_session = make_session(a);
  ok(a, policy_auth_value(young_session));
  Bytes young_digest = ok(a, policy_get_digest(young_session));
  Bytes young_token = body_of(ok(a, context_save(young_session)));
  rm_->close(a);
  ASSERT_EQ(tpm_->saved_sessions().size(), 2u);  // both abandoned sessions are kept in the TPM

  ConnectionId b = open();
  make_session(b);
  const auto starts = tpm_->commands(TPM2_CC_StartAuthSession);
  make_session(b);  // no active-session slot left: the TPM says SESSION_HANDLES
  EXPECT_EQ(tpm_->commands(TPM2_CC_StartAuthSession), starts + 2);
  EXPECT_EQ(tpm_->saved_sessions(), (std::vector<TPM2_HANDLE>{young_session}));

  ConnectionId c = open();
  EXPECT_NE(rc_of(run(c, context_load(old_token))), TPM2_RC_SUCCESS);
  EXPECT_EQ(handle_of(ok(c, context_load(young_token))), young_session);
  EXPECT_EQ(ok(c, policy_get_digest(young_session)), young_digest);
}

// Four busy sessions on three slots (every command saves one session), an idle live session and a
// client-saved session of a closed connection, on a TPM with a small gap.
struct GapWorkload {
  TPM2_HANDLE idle = 0;
  Bytes idle_digest;
  TPM2_HANDLE handed = 0;
  Bytes handed_digest;
  Bytes token;
  std::uint64_t gap_answers = 0;
};

class FakeRmGapTest : public FakeRmTest {
 protected:
  GapWorkload run_workload(std::uint32_t gap, std::uint32_t margin, int commands) {
    FakeTpmOptions tpm_options;
    tpm_options.context_gap_max = gap;
    rm::RmOptions options;
    options.regap_margin = margin;
    reset(tpm_options, options);
    auto gap_answers = std::make_shared<std::uint64_t>(0);
    tpm_->set_response_hook([gap_answers](ByteSpan, Bytes response) -> Result<Bytes> {
      if (rc_of(response) == TPM2_RC_CONTEXT_GAP) ++*gap_answers;
      return response;
    });
    GapWorkload w;
    ConnectionId idle = open();
    w.idle = make_session(idle);
    ok(idle, policy_auth_value(w.idle));
    w.idle_digest = ok(idle, policy_get_digest(w.idle));
    ConnectionId saver = open();
    w.handed = make_session(saver);
    ok(saver, policy_auth_value(w.handed));
    ok(saver, policy_auth_value(w.handed));
    w.handed_digest = ok(saver, policy_get_digest(w.handed));
    w.token = body_of(ok(saver, context_save(w.handed)));
    rm_->close(saver);

    ConnectionId b = open(), c = open();
    std::vector<std::pair<ConnectionId, TPM2_HANDLE>> busy;
    for (ConnectionId x : {b, c}) {
      busy.emplace_back(x, make_session(x));
      busy.emplace_back(x, make_session(x));
    }
    for (int i = 0; i < commands; ++i) {
      const auto& [conn, s] = busy[static_cast<std::size_t>(i) % busy.size()];
      auto r = rm_->execute(conn, policy_get_digest(s));
      EXPECT_TRUE(r) << "command " << i << ": " << describe(r.error());
      if (!r) break;
      EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS) << "command " << i;
      if (rc_of(*r) != TPM2_RC_SUCCESS) break;
    }
    w.gap_answers = *gap_answers;
    EXPECT_EQ(ok(idle, policy_get_digest(w.idle)), w.idle_digest);
    ConnectionId later = open();
    EXPECT_EQ(handle_of(ok(later, context_load(w.token))), w.handed);
    EXPECT_EQ(ok(later, policy_get_digest(w.handed)), w.handed_digest);
    return w;
  }
};

TEST_F(FakeRmGapTest, ProactiveRegapKeepsIdleSessionsAliveWithoutTheTpmEverSayingGap) {
  const auto sessions_before = tpm_->session_context_counter();
  GapWorkload w = run_workload(/*gap=*/40, /*margin=*/8, /*commands=*/600);
  EXPECT_GT(tpm_->session_context_counter() - sessions_before, 600u);  // far more saves than the gap
  EXPECT_GE(rm_->counters().regaps, 2u * (600 / 40));
  EXPECT_EQ(w.gap_answers, 0u);
}

TEST_F(FakeRmGapTest, ReactiveRegapAloneRecoversWhenTheGapSurfacesOnALoad) {
  // Without the proactive margin the TPM does say CONTEXT_GAP: on the load that would take the last slot the
  // oldest saved session needs. The RM re-gaps and retries the load.
  GapWorkload w = run_workload(/*gap=*/40, /*margin=*/0, /*commands=*/600);
  EXPECT_GT(w.gap_answers, 0u);
  EXPECT_GE(rm_->counters().regaps, 2u);
}

// Proactive re-gapping off: the TPM's CONTEXT_GAP is the only signal. A client cycles its session through
// ContextSave (which reaches the TPM) while a client-saved session of a closed connection sits saved, and
// optionally an idle live session the RM evicted.
// The reactive re-gap scenario, with or without an idle session in between.
class ReactiveRegapTest : public FakeRmTest {
 protected:
  void reactive_workload(bool with_idle);
};

void ReactiveRegapTest::reactive_workload(bool with_idle) {
  FakeTpmOptions tpm_options;
  tpm_options.context_gap_max = 20;
  rm::RmOptions options;
  options.regap_margin = 0;
  reset(tpm_options, options);
  std::uint64_t gap_answers = 0;
  tpm_->set_response_hook([&gap_answers](ByteSpan, Bytes response) -> Result<Bytes> {
    if (rc_of(response) == TPM2_RC_CONTEXT_GAP) ++gap_answers;
    return response;
  });
  ConnectionId saver = open();
  TPM2_HANDLE handed = make_session(saver);
  ok(saver, policy_auth_value(handed));
  Bytes handed_digest = ok(saver, policy_get_digest(handed));
  Bytes token = body_of(ok(saver, context_save(handed)));
  rm_->close(saver);
  ConnectionId a = open();
  TPM2_HANDLE idle = 0;
  Bytes idle_digest;
  if (with_idle) {
    idle = make_session(a);
    idle_digest = ok(a, policy_get_digest(idle));
  }
  ConnectionId b = open();
  TPM2_HANDLE s = make_session(b);
  if (with_idle) {
    TPM2_HANDLE t = make_session(b), u = make_session(b);  // pushes idle out of the TPM
    ok(b, flush_context(t));
    ok(b, flush_context(u));
  }
  ASSERT_EQ(tpm_->saved_sessions().size(), with_idle ? 2u : 1u);

  for (int i = 0; i < 100; ++i) {
    Bytes saved = run(b, context_save(s));
    ASSERT_EQ(rc_of(saved), TPM2_RC_SUCCESS) << "iteration " << i;
    ASSERT_EQ(handle_of(ok(b, context_load(body_of(saved)))), s);
    ASSERT_EQ(rc_of(run(b, policy_get_digest(s))), TPM2_RC_SUCCESS) << "iteration " << i;
  }
  EXPECT_GT(gap_answers, 0u);
  EXPECT_GE(rm_->counters().regaps, 3u);
  if (with_idle) {
    EXPECT_EQ(ok(a, policy_get_digest(idle)), idle_digest);
  }
  ConnectionId later = open();
  EXPECT_EQ(handle_of(ok(later, context_load(token))), handed);
  EXPECT_EQ(ok(later, policy_get_digest(handed)), handed_digest);
}

TEST_F(ReactiveRegapTest, RecoversFromContextGapOnAClientSave) { reactive_workload(false); }

// Two saved sessions of adjacent sequence numbers: re-gapping the oldest leaves the second one at the limit,
// so a client ContextSave must keep re-gapping (bounded) rather than pass CONTEXT_GAP on after one retry, since
// the RM tells clients CONTEXT_GAP_MAX is unlimited. (With a single re-gap the client got 0x901 at iteration 19.)
TEST_F(ReactiveRegapTest, RecoversWithTwoSavedSessionsOfAdjacentSequence) { reactive_workload(true); }

TEST_F(FakeRmTest, QuotaRefusalsAreRmLayerCodesBeforeTheTpm) {
  rm::RmOptions options;
  options.max_objects_per_connection = 2;
  options.max_sessions_per_connection = 1;
  reset({}, options);
  ConnectionId c = open();
  auto k = make_key(c, 1);
  make_key(c, 2);
  TPM2_HANDLE s = make_session(c);
  Bytes blob = body_of(ok(c, context_save(k.first)));
  const auto before = tpm_->commands();
  EXPECT_EQ(to_hex(run(c, create_primary(TPM2_RH_OWNER, 3))), "80010000000a000b0902");
  EXPECT_EQ(to_hex(run(c, hash_sequence_start())), "80010000000a000b0902");
  EXPECT_EQ(to_hex(run(c, context_load(blob))), "80010000000a000b0902");
  EXPECT_EQ(to_hex(run(c, start_auth_session(TPM2_SE_HMAC))), "80010000000a000b0903");
  EXPECT_EQ(tpm_->commands(), before);
  EXPECT_EQ(rm_->counters().refusals, 4u);
  EXPECT_EQ(serial(c, k.first), k.second);
  ok(c, policy_get_digest(s));
  // Another connection has its own quota.
  ConnectionId d = open();
  make_key(d, 4);
  make_session(d);
}

TEST_F(FakeRmTest, ClientSavedSessionSurvivesCloseAndLoadsInAnotherConnection) {
  ConnectionId a = open();
  TPM2_HANDLE s = make_session(a);
  ok(a, policy_auth_value(s));
  Bytes digest = ok(a, policy_get_digest(s));
  Bytes token = body_of(ok(a, context_save(s)));
  const auto tpm_serial = tpm_->session_serial(s);
  ASSERT_TRUE(tpm_serial);
  EXPECT_EQ(errno_of(a, policy_get_digest(s)), EINVAL);  // saved: not usable by handle
  rm_->close(a);
  EXPECT_EQ(tpm_->saved_sessions(), (std::vector<TPM2_HANDLE>{s}));
  EXPECT_TRUE(tpm_->loaded_objects().empty());

  ConnectionId b = open(), c = open();
  EXPECT_EQ(errno_of(c, policy_get_digest(s)), EINVAL);  // nobody owns it
  EXPECT_EQ(handle_of(ok(b, context_load(token))), s);
  EXPECT_EQ(ok(b, policy_get_digest(s)), digest);
  EXPECT_EQ(errno_of(c, policy_get_digest(s)), EINVAL);  // b's now
  EXPECT_EQ(tpm_->session_serial(s), tpm_serial);  // the very session, not a new one
  ok(b, flush_context(s));
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
  EXPECT_TRUE(tpm_->saved_sessions().empty());
}

TEST_F(FakeRmTest, AbandonedSessionsAreBoundedOldestFlushedFirst) {
  rm::RmOptions options;
  options.max_abandoned_sessions = 2;
  reset({}, options);
  std::vector<Bytes> tokens;
  std::vector<TPM2_HANDLE> handles;
  for (int i = 0; i < 3; ++i) {
    ConnectionId c = open();
    handles.push_back(make_session(c));
    tokens.push_back(body_of(ok(c, context_save(handles.back()))));
    rm_->close(c);
  }
  EXPECT_EQ(tpm_->saved_sessions(), (std::vector<TPM2_HANDLE>{handles[1], handles[2]}));
  ConnectionId d = open();
  EXPECT_NE(rc_of(run(d, context_load(tokens[0]))), TPM2_RC_SUCCESS);
  EXPECT_EQ(handle_of(ok(d, context_load(tokens[1]))), handles[1]);
  EXPECT_EQ(handle_of(ok(d, context_load(tokens[2]))), handles[2]);
  // Shutdown flushes what is left, abandoned or not.
  ConnectionId e = open();
  Bytes kept = body_of(ok(e, context_save(make_session(e))));
  rm_->close(e);
  ASSERT_FALSE(tpm_->saved_sessions().empty());
  rm_->shutdown();
  EXPECT_TRUE(tpm_->saved_sessions().empty());
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
}

TEST_F(FakeRmTest, ClosingConnectionsLeavesNothingInTheTpm) {
  std::vector<ConnectionId> conns;
  for (int i = 0; i < 3; ++i) {
    ConnectionId c = open();
    conns.push_back(c);
    for (std::uint8_t k = 0; k < 3; ++k) make_key(c, static_cast<std::uint8_t>(i * 8 + k));
    make_session(c);
    make_session(c);
    ok(c, hash_sequence_start());
  }
  EXPECT_FALSE(tpm_->loaded_objects().empty());
  EXPECT_FALSE(tpm_->loaded_sessions().empty());
  EXPECT_FALSE(tpm_->saved_sessions().empty());  // some were evicted along the way
  rm_->close(conns[0]);
  rm_->close(conns[1]);
  EXPECT_EQ(rm_->counters().per_connection[conns[2]].objects, 4u);
  rm_->close(conns[2]);
  EXPECT_TRUE(tpm_->loaded_objects().empty());
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
  EXPECT_TRUE(tpm_->saved_sessions().empty());
}

TEST_F(FakeRmTest, ConnectionsCannotNameEachOthersHandles) {
  ConnectionId a = open(), b = open();
  auto ka = make_key(a, 1);
  TPM2_HANDLE sa = make_session(a);
  TPM2_HANDLE ha = handle_of(ok(a, start_auth_session(TPM2_SE_HMAC)));
  const auto before = tpm_->commands();
  EXPECT_EQ(errno_of(b, read_public(ka.first)), EINVAL);  // b has no 0x80000000 yet
  for (const Bytes& cmd : {policy_get_digest(sa), flush_context(sa), context_save(sa), flush_context(ka.first),
                           get_random(8, {Auth{ha, TPMA_SESSION_CONTINUESESSION}}),
                           get_random(8, {Auth{TPM2_RH_PW, 1}, Auth{sa, 1}})}) {
    EXPECT_EQ(errno_of(b, cmd), EINVAL) << to_hex(cmd);
  }
  EXPECT_EQ(tpm_->commands(), before);
  auto kb = make_key(b, 2);
  EXPECT_EQ(kb.first, ka.first);  // the same virtual handle, a different object
  EXPECT_NE(kb.second, ka.second);
  EXPECT_EQ(serial(a, ka.first), ka.second);
  ok(a, policy_get_digest(sa));
}

TEST_F(FakeRmTest, GetCapabilityHandlesShowsOnlyTheCallersHandles) {
  ConnectionId a = open(), b = open();
  for (std::uint8_t i = 0; i < 4; ++i) make_key(a, i);
  ok(a, flush_context(kV0 + 1));
  make_key(b, 9);
  TPM2_HANDLE s1 = make_session(a), s2 = make_session(a);
  ok(a, context_save(s2));
  TPM2_HANDLE sb = make_session(b);
  auto list = [&](ConnectionId c, TPM2_HANDLE from) {
    auto l = parse_handles(ok(c, get_capability(TPM2_CAP_HANDLES, from, 20)));
    EXPECT_TRUE(l);
    return l ? l->handles : std::vector<TPM2_HANDLE>{};
  };
  EXPECT_EQ(list(a, kV0), (std::vector<TPM2_HANDLE>{kV0, kV0 + 2, kV0 + 3}));
  EXPECT_EQ(list(b, kV0), (std::vector<TPM2_HANDLE>{kV0}));
  EXPECT_EQ(list(a, TPM2_LOADED_SESSION_FIRST), (std::vector<TPM2_HANDLE>{s1}));
  EXPECT_EQ(list(a, TPM2_ACTIVE_SESSION_FIRST), (std::vector<TPM2_HANDLE>{s2}));
  EXPECT_EQ(list(b, TPM2_LOADED_SESSION_FIRST), (std::vector<TPM2_HANDLE>{sb}));
  EXPECT_TRUE(list(b, TPM2_ACTIVE_SESSION_FIRST).empty());
  EXPECT_FALSE(list(a, TPM2_PERMANENT_FIRST).empty());  // passes through to the TPM
}

TEST_F(FakeRmTest, PropertiesDescribeTheConnectionNotTheTpm) {
  ConnectionId c = open();
  make_key(c);
  Bytes r = ok(c, get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED, 200));
  EXPECT_EQ(property_of(r, TPM2_PT_HR_TRANSIENT_MIN), 3u);
  EXPECT_EQ(property_of(r, TPM2_PT_CONTEXT_GAP_MAX), 0xFFFFFFFFu);
  r = ok(c, get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_AVAIL, 1));
  EXPECT_EQ(property_of(r, TPM2_PT_HR_TRANSIENT_AVAIL), rm::RmOptions{}.max_objects_per_connection - 1);
}

// The RM sends GetCapability(TPM_PROPERTIES) without its sessions, so the TPM ends none of them: a session the
// client named with continueSession clear must be ended by the RM (found by rm_clients_fuzzer: it was dropped
// from the RM's table and stayed loaded in the TPM, owned by nobody, until shutdown).
TEST_F(FakeRmTest, PropertiesWithASessionToEndEndIt) {
  ConnectionId c = open();
  TPM2_HANDLE s = handle_of(ok(c, start_auth_session(TPM2_SE_HMAC)));
  Bytes p = body_of(get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_LOADED, 4));
  ok(c, build_command(TPM2_CC_GetCapability, {}, {Auth{s, 0}}, p));
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
  EXPECT_TRUE(tpm_->saved_sessions().empty());
  EXPECT_EQ(errno_of(c, policy_get_digest(s)), EINVAL);
  // With continueSession set, the session lives on.
  TPM2_HANDLE t = handle_of(ok(c, start_auth_session(TPM2_SE_POLICY)));
  ok(c, build_command(TPM2_CC_GetCapability, {}, {Auth{t, TPMA_SESSION_CONTINUESESSION}}, p));
  ok(c, policy_get_digest(t));
}

TEST_F(FakeRmTest, ObjectWhoseContextNoLongerLoadsIsDeadButFlushable) {
  ConnectionId c = open();
  std::vector<std::pair<TPM2_HANDLE, std::uint64_t>> keys;
  for (std::uint8_t i = 0; i < 4; ++i) keys.push_back(make_key(c, i));  // k0 is saved by the RM
  tpm_->restart();  // every saved context is now unverifiable
  EXPECT_EQ(errno_of(c, read_public(keys[0].first)), EINVAL);
  EXPECT_EQ(errno_of(c, read_public(keys[0].first)), EINVAL);
  ok(c, flush_context(keys[0].first));
  EXPECT_EQ(errno_of(c, flush_context(keys[0].first)), EINVAL);
  ok(c, get_random(4));
}

TEST_F(FakeRmTest, TransportFailuresArePassedOnAndTheRmKeepsWorking) {
  ConnectionId c = open();
  auto k = make_key(c);
  tpm_->fail_next(ETIME);
  EXPECT_EQ(errno_of(c, read_public(k.first)), ETIME);
  EXPECT_EQ(serial(c, k.first), k.second);
  tpm_->set_available(false);
  EXPECT_EQ(errno_of(c, read_public(k.first)), ENODEV);
  EXPECT_FALSE(rm_->open(rm::ClientInfo{}));
  tpm_->set_available(true);
  EXPECT_EQ(serial(c, k.first), k.second);
}

// Found by rm_hostile_tpm_fuzzer: a response whose size field disagrees with its length was handed to the client.
TEST_F(FakeRmTest, AMalformedTpmResponseIsATransportErrorNotAClientResponse) {
  ConnectionId c = open();
  auto k = make_key(c);
  tpm_->set_response_hook([](ByteSpan, Bytes response) -> Result<Bytes> {
    response.resize(response.size() - 3);
    return response;
  });
  EXPECT_EQ(errno_of(c, read_public(k.first)), EIO);
  EXPECT_EQ(errno_of(c, get_random(8)), EIO);
  tpm_->set_response_hook([](ByteSpan, Bytes response) -> Result<Bytes> {
    response.push_back(0);
    return response;
  });
  EXPECT_EQ(errno_of(c, get_random(8)), EIO);
  tpm_->set_response_hook([](ByteSpan, Bytes response) -> Result<Bytes> {
    response[0] ^= 0x10;  // tag 0x9001
    return response;
  });
  EXPECT_EQ(errno_of(c, get_random(8)), EIO);
  tpm_->set_response_hook({});
  EXPECT_EQ(serial(c, k.first), k.second);
}

// Found by rm_hostile_tpm_fuzzer: the answer to the RM's FlushContext of an evicted object was lost (the TPM
// had flushed it), the RM kept believing the object loaded in that slot, and the next object the TPM put there
// (its answer lost too) became reachable through the first connection's handle.
TEST_F(FakeRmTest, ALostFlushAnswerNeverLeavesAHandleOnTheSlot) {
  FakeTpmOptions tpm_options;
  tpm_options.object_slots = 1;
  reset(tpm_options, {});
  ConnectionId a = open(), b = open();
  auto k = make_key(a, 1);
  int lost = 0;
  tpm_->set_response_hook([&lost](ByteSpan command, Bytes response) -> Result<Bytes> {
    const TPM2_CC code = tpm::parse_command_header(command)->code;
    if ((code == TPM2_CC_FlushContext && lost == 0) || (code == TPM2_CC_CreatePrimary && lost == 1)) {
      ++lost;
      return make_error(ETIME, "answer lost");
    }
    return response;
  });
  auto created = rm_->execute(b, create_primary(TPM2_RH_OWNER, 2));
  EXPECT_FALSE(created && rc_of(*created) == TPM2_RC_SUCCESS);
  tpm_->set_response_hook({});
  ASSERT_EQ(lost, 2);
  auto r = rm_->execute(a, read_public(k.first));
  if (r && rc_of(*r) == TPM2_RC_SUCCESS) {
    EXPECT_EQ(FakeTpm::serial_in_read_public(*r), k.second);
  }
}

// Found by rm_hostile_tpm_fuzzer: a client's FlushContext of a loaded object that the TPM answers "no such
// handle" (the slot was emptied behind the RM) left the object resident in the RM's tables, on a slot the TPM
// considers free. As for sessions, the object was flushed either way.
TEST_F(FakeRmTest, FlushingAnObjectTheTpmNoLongerHasFreesTheHandle) {
  ConnectionId c = open();
  auto k = make_key(c);
  tpm_->restart();
  EXPECT_EQ(to_hex(run(c, flush_context(k.first))), "80010000000a00000000");
  EXPECT_EQ(errno_of(c, flush_context(k.first)), EINVAL);
  EXPECT_EQ(rm_->counters().per_connection[c].objects, 0u);
}

// Found by rm_hostile_tpm_fuzzer: reloading a saved session met CONTEXT_GAP, the re-gap picked that very session
// (the oldest saved) and found it gone, and the retry read the forgotten entry (a null dereference).
TEST_F(FakeRmTest, ASessionLostWhileRegappingForItsOwnLoadIsARefusal) {
  FakeTpmOptions tpm_options;
  tpm_options.session_slots = 1;
  reset(tpm_options, {});
  ConnectionId c = open();
  TPM2_HANDLE s0 = make_session(c);
  make_session(c);  // s0 is saved to make room
  int loads = 0;
  tpm_->set_response_hook([&loads](ByteSpan command, Bytes response) -> Result<Bytes> {
    if (tpm::parse_command_header(command)->code != TPM2_CC_ContextLoad) return response;
    ++loads;
    if (loads == 1) return tpm::make_rc_response(TPM2_RC_CONTEXT_GAP);
    if (loads == 2) return tpm::make_rc_response(TPM2_RC_HANDLE | TPM2_RC_P | TPM2_RC_1);
    return response;
  });
  EXPECT_EQ(errno_of(c, policy_get_digest(s0)), EINVAL);
  EXPECT_EQ(loads, 2);
  tpm_->set_response_hook({});
  EXPECT_EQ(errno_of(c, policy_get_digest(s0)), EINVAL);  // forgotten, not someone else's
}

// Found by rm_clients_fuzzer and rm_hostile_tpm_fuzzer: making room for a command lost the answer to the RM's
// own FlushContext, the reconciliation that followed found the TPM reset and forgot the session the command
// names, and the next attempt to make the command's handles resident read the forgotten session.
TEST_F(FakeRmTest, ASessionForgottenByReconciliationMidCommandIsARefusal) {
  FakeTpmOptions tpm_options;
  tpm_options.object_slots = 1;
  reset(tpm_options, {});
  ConnectionId c = open();
  make_key(c, 1);
  TPM2_HANDLE s0 = make_session(c);
  tpm_->set_command_hook([this](ByteSpan command) -> std::optional<Result<Bytes>> {
    if (tpm::parse_command_header(command)->code != TPM2_CC_FlushContext) return std::nullopt;
    tpm_->restart();
    return Result<Bytes>(make_error(ETIME, "the flush's answer is lost"));
  });
  Bytes create = create_primary(TPM2_RH_OWNER, 2);  // needs the key's slot; authorized with s0
  tpm::store_u32(create, 18, s0);
  EXPECT_EQ(errno_of(c, create), EINVAL);
  tpm_->set_command_hook({});
  EXPECT_EQ(errno_of(c, policy_get_digest(s0)), EINVAL);  // forgotten, not someone else's
  EXPECT_TRUE(tpm_->loaded_objects().empty());
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
}

TEST_F(FakeRmTest, UnknownCommandCodeIsAnsweredWithoutTheTpm) {
  ConnectionId c = open();
  const auto before = tpm_->commands();
  EXPECT_EQ(to_hex(run(c, from_hex("80010000000a000001fe"))), "80010000000a000b0143");
  EXPECT_EQ(errno_of(c, from_hex("80010000000c0000017b00")), EINVAL);  // size disagrees with the buffer
  EXPECT_EQ(tpm_->commands(), before);
}

TEST_F(FakeRmTest, DispatcherServesConnectionsOnSeveralThreads) {
  rm_.reset();
  rm::WorkerDispatcher dispatcher(*tpm_);
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  // All four keys exist before any is used or closed, however the threads are scheduled: eviction is certain.
  std::latch all_created(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto id = dispatcher.open(rm::ClientInfo{0, 0, 0});
      auto created = id ? dispatcher.execute(*id, create_primary(TPM2_RH_OWNER, static_cast<std::uint8_t>(t)))
                        : Result<Bytes>(id.error());
      all_created.arrive_and_wait();
      if (!created || rc_of(*created) != TPM2_RC_SUCCESS) {
        ++failures[t];
        if (id) dispatcher.close(*id);
        return;
      }
      std::optional<std::uint64_t> first;
      for (int i = 0; i < 50; ++i) {
        auto r = dispatcher.execute(*id, read_public(handle_of(*created)));
        auto s = r ? FakeTpm::serial_in_read_public(*r) : std::nullopt;
        if (!s || (first && *s != *first)) ++failures[t];
        if (!first) first = s;
      }
      dispatcher.close(*id);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, std::vector<int>(kThreads, 0));
  EXPECT_GT(dispatcher.counters().evictions, 0u);  // four keys on three slots
}

TEST_F(FakeRmTest, OneUidMayHoldAtMostHalfOfTheTpmsActiveSessionsOverAllItsConnections) {
  FakeTpmOptions tpm_options;
  tpm_options.active_sessions_max = 8;
  reset(tpm_options, {});
  auto open_as = [&](uid_t uid) {
    auto id = rm_->open(rm::ClientInfo{uid, uid, 100});
    EXPECT_TRUE(id);
    return id ? *id : 0;
  };
  ConnectionId a1 = open_as(1000), a2 = open_as(1000), b = open_as(1001), root = open_as(0);
  for (int i = 0; i < 2; ++i) make_session(a1);
  for (int i = 0; i < 2; ++i) make_session(a2);
  // uid 1000 holds four of eight: a third connection of it changes nothing.
  ConnectionId a3 = open_as(1000);
  EXPECT_EQ(rc_of(run(a3, start_auth_session(TPM2_SE_HMAC))), rm::kRmSessionMemory);
  EXPECT_EQ(rc_of(run(a1, start_auth_session(TPM2_SE_HMAC))), rm::kRmSessionMemory);
  // Refused before the TPM ran anything, and another uid still gets its share.
  EXPECT_EQ(tpm_->loaded_sessions().size() + tpm_->saved_sessions().size(), 4u);
  for (int i = 0; i < 4; ++i) make_session(b);
  EXPECT_EQ(rc_of(run(b, start_auth_session(TPM2_SE_HMAC))), rm::kRmSessionMemory);
  EXPECT_EQ(rc_of(run(root, start_auth_session(TPM2_SE_HMAC))), TPM2_RC_SESSION_HANDLES) << "the TPM is full";
  // Closing returns the share.
  rm_->close(a2);
  make_session(a3);
}

TEST_F(FakeRmTest, APerUidSessionShareCanBeSetExplicitly) {
  rm::RmOptions options;
  options.max_sessions_per_uid = 1;
  reset({}, options);
  ConnectionId a = open(), b = open();
  make_session(a);
  EXPECT_EQ(rc_of(run(b, start_auth_session(TPM2_SE_HMAC))), rm::kRmSessionMemory);
}

TEST_F(FakeRmTest, AUidsObjectsAreCountedOverAllItsConnections) {
  rm::RmOptions options;
  options.max_objects_per_uid = 3;
  reset({}, options);
  auto as = [&](uid_t uid) { return *rm_->open(rm::ClientInfo{uid, uid, static_cast<pid_t>(uid)}); };
  ConnectionId a1 = as(1000), a2 = as(1000), b = as(1001), root = as(0);
  make_key(a1, 1);
  make_key(a2, 2);
  auto [last, last_serial] = make_key(a2, 3);
  EXPECT_EQ(rc_of(run(a1, create_primary(TPM2_RH_OWNER, 4))), rm::kRmObjectMemory);
  // A ContextLoad of an object is a creation too.
  Bytes saved = body_of(ok(a2, context_save(last)));
  EXPECT_EQ(rc_of(run(a1, context_load(saved))), rm::kRmObjectMemory);
  // Other uids, root included, are not affected; root is held to its own count.
  make_key(b, 5);
  make_key(root, 6);
  // A flush returns the share.
  ok(a2, flush_context(last));
  make_key(a1, 7);
  (void)last_serial;
}

TEST_F(FakeRmTest, RootIsExemptFromThePerUidObjectCapOnlyWhenConfigured) {
  rm::RmOptions options;
  options.max_objects_per_uid = 1;
  reset({}, options);
  ConnectionId root = open();
  make_key(root, 1);
  EXPECT_EQ(rc_of(run(root, create_primary(TPM2_RH_OWNER, 2))), rm::kRmObjectMemory);
  options.root_exempt_from_uid_caps = true;
  reset({}, options);
  root = open();
  make_key(root, 1);
  make_key(root, 2);
  ConnectionId user = *rm_->open(rm::ClientInfo{1000, 1000, 1});
  make_key(user, 3);
  EXPECT_EQ(rc_of(run(user, create_primary(TPM2_RH_OWNER, 4))), rm::kRmObjectMemory);
}

// On a shared TPM the RM leaves the reserve free between commands, and what the other users take on top of it
// is met like any OBJECT_MEMORY: evict and retry.
TEST_F(FakeRmTest, TheSlotReserveStaysFreeAndOthersUseOfSlotsIsMetByEviction) {
  rm::RmOptions options;
  options.reserve_object_slots = 1;
  reset({}, options);  // 3 object slots
  ConnectionId a = open();
  std::vector<std::pair<TPM2_HANDLE, std::uint64_t>> keys;
  for (std::uint8_t i = 1; i <= 4; ++i) keys.push_back(make_key(a, i));
  for (int round = 0; round < 2; ++round) {
    for (const auto& [vh, s] : keys) {
      EXPECT_EQ(serial(a, vh), s);
      EXPECT_LE(tpm_->loaded_objects().size(), 2u) << "one slot stays free for the TPM's other users";
    }
  }
  // Another user of the TPM takes the reserved slot, behind the RM; then (a smaller TPM) one of the RM's too.
  ASSERT_EQ(rc_of(*tpm_->transmit(create_primary(TPM2_RH_OWNER, 50))), TPM2_RC_SUCCESS);
  for (const auto& [vh, s] : keys) EXPECT_EQ(serial(a, vh), s);
  tpm_->set_slots(2, 3);
  for (const auto& [vh, s] : keys) EXPECT_EQ(serial(a, vh), s) << "OBJECT_MEMORY met by evicting and retrying";
  EXPECT_LE(tpm_->loaded_objects().size(), 2u);
}

TEST_F(FakeRmTest, AnEvictionStormIsOneWarningPerIntervalWithTheCount) {
  rm::RmOptions options;
  options.eviction_storm = rm::WarnLimits{.threshold = 8, .window = std::chrono::milliseconds(60000),
                                          .interval = std::chrono::milliseconds(60000)};
  reset({}, options);
  LogCapture log;
  ConnectionId c = open();
  std::vector<TPM2_HANDLE> keys;
  for (std::uint8_t i = 0; i < 4; ++i) keys.push_back(make_key(c, i).first);
  // Three slots, four keys used round-robin: every command evicts one.
  for (int round = 0; round < 10; ++round) {
    for (TPM2_HANDLE k : keys) ok(c, read_public(k));
  }
  ASSERT_GE(rm_->counters().evictions, 40u);
  const auto storms = log.matching({"event=eviction-storm"});
  ASSERT_EQ(storms.size(), 1u) << ::testing::PrintToString(log.lines());
  EXPECT_EQ(storms[0].rfind("warning event=eviction-storm evictions=8 window_ms=60000 since_last_warning=8 "
                            "suppressed_warnings=0 last=object object_slots=3 session_slots=3", 0), 0u)
      << storms[0];
}

TEST_F(FakeRmTest, OpenAndCloseAreLoggedAtDebugWithTheClientAndWhatWasFlushed) {
  LogCapture log;
  auto id = rm_->open(rm::ClientInfo{1000, 100, 4242, {}, "tpm2_\"x"});
  ASSERT_TRUE(id);
  make_key(*id, 1);
  make_key(*id, 2);
  make_session(*id);
  rm_->close(*id);
  EXPECT_EQ(log.matching({"debug event=open conn=", " uid=1000 gid=100 pid=4242 comm=\"tpm2_\\x22x\""}).size(), 1u)
      << ::testing::PrintToString(log.lines());
  EXPECT_EQ(log.matching({"debug event=close conn=", " uid=1000 pid=4242 comm=\"tpm2_\\x22x\"",
                          "objects_flushed=2 sessions_flushed=1 sessions_kept=0 tpm=up"})
                .size(),
            1u)
      << ::testing::PrintToString(log.lines());
}

// HMAC and policy sessions share the TPM's slots: after a reset behind the RM, a's policy session takes the slot
// of a's HMAC session (0x03000000 where 0x02000000 was). Keyed by handle, the RM kept both entries for one slot,
// and the next reconciliation flushed the stale one by the live one's slot and forgot the live one, leaving the
// TPM a saved session nobody could load (found by rm_clients_fuzzer).
TEST_F(FakeRmTest, ASessionInTheSlotOfAStaleSessionOfTheOtherTypeReplacesIt) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE hmac = handle_of(ok(a, start_auth_session(TPM2_SE_HMAC)));
  tpm_->restart();
  const TPM2_HANDLE policy = make_session(a);
  ASSERT_EQ(policy & 0x00FFFFFFu, hmac & 0x00FFFFFFu) << "the TPM did not reuse the slot; the test proves nothing";
  EXPECT_EQ(rm_->counters().physical_collisions, 1u);
  EXPECT_EQ(rm_->residency().sessions().find(hmac), nullptr);
  const Bytes saved = body_of(ok(a, context_save(policy)));
  // The next command reconciles (the collision made the picture unverified); then again after a lost answer.
  make_key(b, 1);
  tpm_->fail_next(EIO, 1);
  EXPECT_EQ(errno_of(b, get_random(8)), EIO);
  make_key(b, 2);
  EXPECT_EQ(rm_->counters().reconciliations, 2u);
  ASSERT_NE(rm_->residency().sessions().find(policy), nullptr) << "reconciliation forgot a's live session";
  EXPECT_EQ(handle_of(ok(a, context_load(saved))), policy);
  ok(a, policy_get_digest(policy));
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(tpm_->loaded_sessions().empty());
  EXPECT_TRUE(tpm_->saved_sessions().empty()) << "a session outlived its connection";
}

}  // namespace
}  // namespace tpmrmd::testing

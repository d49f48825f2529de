// The RM core against a real swtpm (3 object slots, 3 loaded-session slots) through a real Chip.
#include "rm/resource_manager.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "rm/handles.h"
#include "rm_fixture.h"
#include "tpm/commands.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

constexpr TPM2_CC kCertify = TPM2_CC_Certify;

Bytes certify(TPM2_HANDLE object, TPM2_HANDLE signer) {
  Bytes params = from_hex("0000" "0010");  // empty qualifyingData, TPM_ALG_NULL scheme (use the key's)
  return build_command(kCertify, {object, signer}, {Auth{}, Auth{}}, params);
}

TEST_F(SwtpmRmTest, TpmHasThreeObjectSlots) {
  // The premise of the eviction tests: swtpm reports 3 transient and 3 loaded-session slots.
  EXPECT_EQ(chip_->info().hr_transient_min, 3u);
  EXPECT_EQ(chip_->info().hr_loaded_min, 3u);
}

TEST_F(SwtpmRmTest, UnknownCommandCodeGetsTheKernelsBytesWithoutTpmTraffic) {
  ConnectionId c = open();
  const auto before = chip_commands();
  Bytes r = run(c, from_hex("80010000000a000001fe"));
  EXPECT_EQ(to_hex(r), "80010000000a000b0143");
  EXPECT_EQ(chip_commands(), before);
}

TEST_F(SwtpmRmTest, TwoConnectionsWithSixObjectsEachUsedRoundRobin) {
  ConnectionId a = open(), b = open();
  std::map<std::pair<ConnectionId, TPM2_HANDLE>, Bytes> expected;
  for (ConnectionId c : {a, b}) {
    for (std::uint8_t i = 0; i < 6; ++i) {
      TPM2_HANDLE vh = make_key(c, static_cast<std::uint8_t>(c * 16 + i));
      EXPECT_EQ(vh, 0x80000000u + i);  // ascending per connection, from 0x80000000
      expected[{c, vh}] = ok(c, read_public(vh));
    }
  }
  for (int round = 0; round < 3; ++round) {
    for (std::uint8_t i = 0; i < 6; ++i) {
      for (ConnectionId c : {a, b}) {
        TPM2_HANDLE vh = 0x80000000u + i;
        EXPECT_EQ(ok(c, read_public(vh)), (expected[{c, vh}])) << "connection " << c << " object " << int(i);
      }
    }
  }
  // 12 keys on a TPM with 3 slots: eviction did the work, and never more than 3 are loaded.
  EXPECT_GT(rm_->counters().evictions, 0u);
  EXPECT_LE(raw_handles(0x80000000).size(), 3u);
  EXPECT_EQ(rm_->counters().per_connection[a].objects, 6u);
}

TEST_F(SwtpmRmTest, SixSessionsInOneConnection) {
  ConnectionId c = open();
  std::vector<TPM2_HANDLE> sessions;
  for (int i = 0; i < 6; ++i) sessions.push_back(make_policy_session(c));
  for (int round = 0; round < 3; ++round) {
    for (TPM2_HANDLE s : sessions) ok(c, policy_get_digest(s));
  }
  auto listed = parse_handles(ok(c, get_capability(TPM2_CAP_HANDLES, 0x02000000, 20)));
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->handles.size(), 6u);
  EXPECT_FALSE(listed->more);
  EXPECT_LE(raw_handles(0x02000000).size(), 3u);  // at most 3 loaded in the TPM at any time
}

TEST_F(SwtpmRmTest, SessionSavedByOneConnectionIsLoadedByAnotherAfterClose) {
  ConnectionId a = open();
  TPM2_HANDLE s = make_policy_session(a);
  Bytes digest = ok(a, policy_get_digest(s));
  Bytes saved = ok(a, context_save(s));
  Bytes blob = body_of(saved);
  rm_->close(a);
  EXPECT_EQ(rm_->abandoned_sessions(), 1u);

  ConnectionId b = open(), c = open();
  EXPECT_FALSE(rm_->execute(c, policy_get_digest(s)));  // nobody owns it yet: not usable by handle
  Bytes loaded = ok(b, context_load(blob));
  EXPECT_EQ(handle_of(loaded), s);
  EXPECT_EQ(ok(b, policy_get_digest(s)), digest);
  EXPECT_EQ(rm_->abandoned_sessions(), 0u);
  auto r = rm_->execute(c, policy_get_digest(s));  // owned by b now
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  ok(b, flush_context(s));
  EXPECT_TRUE(raw_handles(0x02000000).empty());
  EXPECT_TRUE(raw_handles(0x03000000).empty());
}

TEST_F(SwtpmRmTest, AbandonedSessionsAreBoundedOldestFlushedFirst) {
  rm::RmOptions options;
  options.max_abandoned_sessions = 2;
  reset_rm(options);
  std::vector<Bytes> blobs;
  for (int i = 0; i < 3; ++i) {
    ConnectionId c = open();
    TPM2_HANDLE s = make_policy_session(c);
    blobs.push_back(body_of(ok(c, context_save(s))));
    rm_->close(c);
  }
  EXPECT_EQ(rm_->abandoned_sessions(), 2u);
  EXPECT_EQ(raw_handles(0x03000000).size(), 2u);  // the TPM holds exactly the two kept ones
  ConnectionId d = open();
  // The oldest was flushed: its blob goes to the TPM, which no longer knows it.
  EXPECT_NE(rc_of(run(d, context_load(blobs[0]))), TPM2_RC_SUCCESS);
  ok(d, context_load(blobs[1]));
  ok(d, context_load(blobs[2]));
}

TEST_F(SwtpmRmTest, FlushSaveAndLoadOfVirtualHandles) {
  ConnectionId c = open();
  TPM2_HANDLE k0 = make_key(c, 1);
  Bytes pub = ok(c, read_public(k0));
  Bytes blob = body_of(ok(c, context_save(k0)));
  TPM2_HANDLE k1 = handle_of(ok(c, context_load(blob)));
  EXPECT_EQ(k1, 0x80000001u);
  EXPECT_EQ(ok(c, read_public(k1)), pub);

  ok(c, flush_context(k0));
  auto gone = rm_->execute(c, read_public(k0));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, EINVAL);
  auto again = rm_->execute(c, flush_context(k0));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EINVAL);
  EXPECT_EQ(ok(c, read_public(k1)), pub);

  // A saved (evicted) object is flushed without the TPM: make room so k1 is evicted first.
  for (std::uint8_t i = 2; i < 6; ++i) make_key(c, i);
  const auto before = chip_commands();
  ok(c, flush_context(k1));
  EXPECT_EQ(chip_commands(), before);
  EXPECT_EQ(make_key(c, 9), 0x80000006u);  // never reuses a freed handle

  TPM2_HANDLE s = make_policy_session(c);
  ok(c, flush_context(s));
  EXPECT_FALSE(rm_->execute(c, policy_get_digest(s)));
}

TEST_F(SwtpmRmTest, SameTransientTwiceInOneCommandIsOnePhysicalObject) {
  ConnectionId c = open();
  TPM2_HANDLE k = make_key(c, 3);
  const auto loads_before = rm_->counters().context_loads;
  Bytes r = run(c, certify(k, k));
  EXPECT_EQ(rc_of(r), TPM2_RC_SUCCESS) << to_hex(r);
  EXPECT_EQ(raw_handles(0x80000000).size(), 1u);
  EXPECT_EQ(rm_->counters().context_loads, loads_before);
  // And after eviction it is reloaded once, not twice.
  for (std::uint8_t i = 10; i < 13; ++i) make_key(c, i);
  const auto loads = rm_->counters().context_loads;
  EXPECT_EQ(rc_of(run(c, certify(k, k))), TPM2_RC_SUCCESS);
  EXPECT_EQ(rm_->counters().context_loads, loads + 1);
  EXPECT_LE(raw_handles(0x80000000).size(), 3u);
}

TEST_F(SwtpmRmTest, ForeignSessionIsRejectedBeforeTheTpmAndTheOwnerIsUnaffected) {
  ConnectionId a = open(), b = open();
  TPM2_HANDLE s = make_policy_session(a);
  TPM2_HANDLE h = handle_of(ok(a, start_auth_session(TPM2_SE_HMAC)));
  Bytes digest = ok(a, policy_get_digest(s));
  const auto before = chip_commands();
  for (const Bytes& cmd : {get_random(8, {Auth{h, 0x01}}), get_random(8, {Auth{s, 0x01}}),
                           get_random(8, {Auth{TPM2_RH_PW, 0x01}, Auth{h, 0x01}}), policy_get_digest(s),
                           flush_context(s), flush_context(h), context_save(s)}) {
    auto r = rm_->execute(b, cmd);
    ASSERT_FALSE(r) << to_hex(cmd);
    EXPECT_EQ(r.error().code, EINVAL);
  }
  EXPECT_EQ(chip_commands(), before);
  // b does not even see them.
  auto listed = parse_handles(ok(b, get_capability(TPM2_CAP_HANDLES, 0x02000000, 20)));
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->handles.empty());
  // The owner is unaffected.
  EXPECT_EQ(ok(a, policy_get_digest(s)), digest);
  Bytes audited = run(a, get_random(8, {Auth{h, TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_AUDIT}}));
  EXPECT_EQ(rc_of(audited), TPM2_RC_SUCCESS) << to_hex(audited);
}

TEST_F(SwtpmRmTest, GetCapabilityHandlesPagesFromTheConnectionsView) {
  ConnectionId a = open(), b = open();
  for (std::uint8_t i = 0; i < 6; ++i) make_key(a, i);
  ok(a, flush_context(0x80000002));
  make_key(b, 7);
  auto page = [&](ConnectionId c, std::uint32_t from, std::uint32_t n) {
    auto l = parse_handles(ok(c, get_capability(TPM2_CAP_HANDLES, from, n)));
    EXPECT_TRUE(l);
    return l ? *l : HandleList{};
  };
  auto p1 = page(a, 0x80000000, 2);
  EXPECT_EQ(p1.handles, (std::vector<TPM2_HANDLE>{0x80000000, 0x80000001}));
  EXPECT_TRUE(p1.more);
  auto p2 = page(a, p1.handles.back() + 1, 2);
  EXPECT_EQ(p2.handles, (std::vector<TPM2_HANDLE>{0x80000003, 0x80000004}));
  EXPECT_TRUE(p2.more);
  auto p3 = page(a, p2.handles.back() + 1, 2);
  EXPECT_EQ(p3.handles, (std::vector<TPM2_HANDLE>{0x80000005}));
  EXPECT_FALSE(p3.more);
  EXPECT_EQ(page(b, 0x80000000, 10).handles, (std::vector<TPM2_HANDLE>{0x80000000}));

  // The kernel selftest's walk: count 1, property += 1 while moreData.
  std::vector<TPM2_HANDLE> walked;
  std::uint32_t pt = 0x80000000;
  for (int i = 0; i < 100; ++i) {
    auto l = page(a, pt, 1);
    walked.insert(walked.end(), l.handles.begin(), l.handles.end());
    if (!l.more) break;
    ++pt;
  }
  std::vector<TPM2_HANDLE> unique(walked.begin(), walked.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  EXPECT_EQ(unique, (std::vector<TPM2_HANDLE>{0x80000000, 0x80000001, 0x80000003, 0x80000004, 0x80000005}));

  // Session ranges: loaded = the connection's live sessions, saved = the ones it saved itself.
  TPM2_HANDLE s1 = make_policy_session(a), s2 = make_policy_session(a);
  ok(a, context_save(s2));
  EXPECT_EQ(page(a, 0x02000000, 10).handles, (std::vector<TPM2_HANDLE>{s1}));
  EXPECT_EQ(page(a, 0x03000000, 10).handles, (std::vector<TPM2_HANDLE>{s2}));
  EXPECT_TRUE(page(b, 0x03000000, 10).handles.empty());
  // Persistent/permanent ranges pass through to the TPM.
  auto perm = page(a, 0x40000000, 5);
  EXPECT_FALSE(perm.handles.empty());
}

TEST_F(SwtpmRmTest, PropertiesDescribeTheRmNotThePhysicalTpm) {
  ConnectionId c = open();
  make_key(c);
  Bytes r = ok(c, get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_CONTEXT_GAP_MAX, 1));
  EXPECT_EQ(property_of(r, TPM2_PT_CONTEXT_GAP_MAX), 0xFFFFFFFFu);
  r = ok(c, get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_AVAIL, 1));
  EXPECT_EQ(property_of(r, TPM2_PT_HR_TRANSIENT_AVAIL), rm_->options().max_objects_per_connection - 1);
  r = ok(c, get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_MIN, 1));
  EXPECT_EQ(property_of(r, TPM2_PT_HR_TRANSIENT_MIN), 3u);  // fixed properties pass through
}

TEST_F(SwtpmRmTest, ClosingConnectionsLeavesNoTpmHandles) {
  std::vector<ConnectionId> conns;
  for (int i = 0; i < 3; ++i) {
    ConnectionId c = open();
    conns.push_back(c);
    for (std::uint8_t k = 0; k < 3; ++k) make_key(c, static_cast<std::uint8_t>(i * 8 + k));
    make_policy_session(c);
    make_policy_session(c);
    ok(c, hash_sequence_start());
  }
  EXPECT_FALSE(raw_handles(0x80000000).empty());
  EXPECT_FALSE(raw_handles(0x02000000).empty());
  EXPECT_FALSE(raw_handles(0x03000000).empty());  // some sessions were evicted (saved) along the way
  for (ConnectionId c : conns) rm_->close(c);
  EXPECT_TRUE(raw_handles(0x80000000).empty());
  EXPECT_TRUE(raw_handles(0x02000000).empty());
  EXPECT_TRUE(raw_handles(0x03000000).empty());
  EXPECT_EQ(rm_->connection_count(), 0u);
}

TEST_F(SwtpmRmTest, SequenceCompleteEndsTheSequenceObject) {
  ConnectionId c = open();
  TPM2_HANDLE seq = handle_of(ok(c, hash_sequence_start()));
  ok(c, sequence_complete(seq));
  auto r = rm_->execute(c, flush_context(seq));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_TRUE(raw_handles(0x80000000).empty());
}

TEST_F(SwtpmRmTest, QuotaRefusalsAreRmLayerCodesBeforeTheTpm) {
  rm::RmOptions options;
  options.max_objects_per_connection = 2;
  options.max_sessions_per_connection = 1;
  reset_rm(options);
  ConnectionId c = open();
  TPM2_HANDLE k = make_key(c, 1);
  make_key(c, 2);
  TPM2_HANDLE s = make_policy_session(c);
  const auto before = chip_commands();
  EXPECT_EQ(to_hex(run(c, create_primary(TPM2_RH_OWNER, 3))), "80010000000a000b0902");
  EXPECT_EQ(to_hex(run(c, start_auth_session(TPM2_SE_POLICY))), "80010000000a000b0903");
  EXPECT_EQ(chip_commands(), before);
  ok(c, read_public(k));
  ok(c, policy_get_digest(s));
  EXPECT_EQ(rm_->counters().refusals, 2u);
}

TEST_F(SwtpmRmTest, CommandsLoadOnlyWhatTheyName) {
  // The RM loads only what a command references: a client holding 3 objects and 3 sessions sends GetRandom, and
  // there is no context traffic at all, even after another connection pushed all of them out of the TPM.
  ConnectionId c = open(), other = open();
  for (std::uint8_t i = 0; i < 3; ++i) make_key(c, i);
  for (int i = 0; i < 3; ++i) make_policy_session(c);
  for (std::uint8_t i = 0; i < 3; ++i) make_key(other, static_cast<std::uint8_t>(20 + i));
  for (int i = 0; i < 3; ++i) make_policy_session(other);
  const auto before = rm_->counters();
  const auto chip_before = chip_commands();
  ok(c, get_random(16));
  const auto after = rm_->counters();
  EXPECT_EQ(chip_commands() - chip_before, 1u);
  EXPECT_EQ(after.context_loads, before.context_loads);
  EXPECT_EQ(after.context_saves, before.context_saves);
  EXPECT_EQ(after.flushes, before.flushes);
}

TEST_F(SwtpmRmTest, SessionEndedByContinueSessionClearIsForgotten) {
  ConnectionId c = open();
  TPM2_HANDLE h = handle_of(ok(c, start_auth_session(TPM2_SE_HMAC)));
  ok(c, get_random(8, {Auth{h, TPMA_SESSION_AUDIT}}));  // continueSession clear: the TPM ends it
  EXPECT_TRUE(raw_handles(0x02000000).empty());
  auto r = rm_->execute(c, get_random(8, {Auth{h, TPMA_SESSION_AUDIT | TPMA_SESSION_CONTINUESESSION}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_EQ(rm_->counters().per_connection[c].sessions, 0u);
}

TEST_F(SwtpmRmTest, ReusedKeyCostsOneTpmCommandPerClientCommand) {
  ConnectionId c = open();
  TPM2_HANDLE k = make_key(c);
  constexpr int kUses = 100;
  const auto before_chip = chip_commands();
  const auto before = rm_->counters();
  for (int i = 0; i < kUses; ++i) ok(c, read_public(k));
  const auto after = rm_->counters();
  const auto ours = chip_commands() - before_chip;
  EXPECT_EQ(ours, static_cast<std::uint64_t>(kUses));
  EXPECT_EQ(after.client_commands - before.client_commands, static_cast<std::uint64_t>(kUses));
  EXPECT_EQ(after.context_loads, before.context_loads);
  EXPECT_EQ(after.context_saves, before.context_saves);
  EXPECT_EQ(after.flushes, before.flushes);

  // The kernel's algorithm for the same workload, replayed on the raw chip: before each use the space's
  // object is loaded, after it saved and flushed (tpm2-space.c; tpm2-abrmd does the same).
  auto raw = [&](const Bytes& cmd) {
    auto r = chip_->transmit(cmd);
    EXPECT_TRUE(r);
    EXPECT_EQ(rc_of(*r), TPM2_RC_SUCCESS) << to_hex(cmd);
    return *r;
  };
  TPM2_HANDLE physical = handle_of(raw(create_primary(TPM2_RH_OWNER, 0x55)));
  Bytes blob = body_of(raw(tpm::make_context_save(physical)));
  raw(tpm::make_flush_context(physical));
  const auto kernel_before = chip_commands();
  for (int i = 0; i < kUses; ++i) {
    physical = handle_of(raw(tpm::make_context_load(blob)));
    raw(read_public(physical));
    blob = body_of(raw(tpm::make_context_save(physical)));
    raw(tpm::make_flush_context(physical));
  }
  const auto kernel = chip_commands() - kernel_before;
  EXPECT_EQ(kernel, 4u * kUses);
  std::printf("reused-key workload, %d client commands: tpmrmd %llu TPM commands, kernel algorithm %llu\n", kUses,
              static_cast<unsigned long long>(ours), static_cast<unsigned long long>(kernel));
  RecordProperty("tpm_commands_tpmrmd", static_cast<int>(ours));
  RecordProperty("tpm_commands_kernel_algorithm", static_cast<int>(kernel));
}

}  // namespace
}  // namespace tpmrmd::testing

// The fake TPM on its own: the TPM behaviour the RM suites rely on, checked directly on the model.
#include "support/fake_tpm.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>

#include "support/tpm_commands.h"
#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

// tss2-mu logs every unmarshalling failure; the malformed-input tests produce thousands.
const bool kQuietMu = (setenv("TSS2_LOG", "all+NONE", 0), true);

constexpr TPM2_RC kHandleP1 = TPM2_RC_HANDLE | TPM2_RC_P | TPM2_RC_1;
constexpr TPM2_RC kIntegrityP1 = TPM2_RC_INTEGRITY | TPM2_RC_P | TPM2_RC_1;

class FakeTpmTest : public ::testing::Test {
 protected:
  Bytes raw(const Bytes& command) {
    auto r = tpm_.transmit(command);
    EXPECT_TRUE(r) << describe(r.error());
    return r ? *r : Bytes{};
  }
  Bytes ok(const Bytes& command) {
    Bytes r = raw(command);
    EXPECT_EQ(rc_of(r), TPM2_RC_SUCCESS) << to_hex(command) << " -> " << to_hex(r);
    return r;
  }

  FakeTpm tpm_;
};

TEST_F(FakeTpmTest, InfoAndCapabilitiesDescribeTheConfiguration) {
  FakeTpmOptions options;
  options.object_slots = 2;
  options.reported_object_slots = 5;
  options.session_slots = 4;
  options.context_gap_max = 77;
  FakeTpm tpm(options);
  EXPECT_EQ(tpm.info().hr_transient_min, 5u);
  EXPECT_EQ(tpm.info().hr_loaded_min, 4u);
  EXPECT_EQ(tpm.info().context_gap_max, 77u);
  // The RM's table has FlushContext taking one handle; on the wire the TPM says zero.
  ASSERT_TRUE(tpm.info().commands.find(TPM2_CC_FlushContext));
  EXPECT_EQ(tpm.info().commands.find(TPM2_CC_FlushContext)->handle_count(), 1u);
  EXPECT_TRUE(tpm.info().commands.find(TPM2_CC_SequenceComplete)->flushes());
  EXPECT_TRUE(tpm.info().commands.find(TPM2_CC_StartAuthSession)->returns_handle());
  EXPECT_EQ(tpm.info().commands.find(TPM2_CC_StartAuthSession)->handle_count(), 2u);

  auto r = tpm.transmit(get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED, 100));
  ASSERT_TRUE(r);
  EXPECT_EQ(property_of(*r, TPM2_PT_HR_TRANSIENT_MIN), 5u);
  EXPECT_EQ(property_of(*r, TPM2_PT_CONTEXT_GAP_MAX), 77u);
  r = tpm.transmit(get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_AVAIL, 1));
  ASSERT_TRUE(r);
  EXPECT_EQ(property_of(*r, TPM2_PT_HR_TRANSIENT_AVAIL), 2u);  // the real capacity

  r = tpm.transmit(get_capability(TPM2_CAP_COMMANDS, TPM2_CC_FlushContext, 1));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), tpm::kHeaderSize + 13);
  const TPMA_CC flush = (TPMA_CC{(*r)[19]} << 24) | ((*r)[20] << 16) | ((*r)[21] << 8) | (*r)[22];
  EXPECT_EQ(tpm::CommandAttributes(flush).code(), TPM2_CC_FlushContext);
  EXPECT_EQ(tpm::CommandAttributes(flush).handle_count(), 0u);
}

TEST_F(FakeTpmTest, ObjectSlotsFillUpAndReadPublicNamesTheObject) {
  std::vector<TPM2_HANDLE> keys;
  for (std::uint8_t i = 0; i < 3; ++i) keys.push_back(handle_of(ok(create_primary(TPM2_RH_OWNER, i))));
  EXPECT_EQ(keys, (std::vector<TPM2_HANDLE>{0x80000000, 0x80000001, 0x80000002}));
  EXPECT_EQ(rc_of(raw(create_primary())), TPM2_RC_OBJECT_MEMORY);
  EXPECT_EQ(rc_of(raw(hash_sequence_start())), TPM2_RC_OBJECT_MEMORY);
  auto s0 = FakeTpm::serial_in_read_public(ok(read_public(keys[0])));
  auto s1 = FakeTpm::serial_in_read_public(ok(read_public(keys[1])));
  ASSERT_TRUE(s0 && s1);
  EXPECT_NE(*s0, *s1);
  EXPECT_EQ(tpm_.object_serial(keys[0]), s0);
  ok(flush_context(keys[0]));
  EXPECT_EQ(rc_of(raw(flush_context(keys[0]))), kHandleP1);
  EXPECT_EQ(rc_of(raw(read_public(keys[0]))), TPM2_RC_REFERENCE_H0);
  // The freed slot is reused, as small TPMs do.
  EXPECT_EQ(handle_of(ok(create_primary(TPM2_RH_OWNER, 9))), keys[0]);
  EXPECT_EQ(tpm_.loaded_objects().size(), 3u);
}

TEST_F(FakeTpmTest, ObjectContextsLoadAsCopiesOfTheSameObject) {
  TPM2_HANDLE k = handle_of(ok(create_primary()));
  const auto serial = tpm_.object_serial(k);
  Bytes blob = body_of(ok(context_save(k)));
  TPM2_HANDLE copy = handle_of(ok(context_load(blob)));
  EXPECT_NE(copy, k);
  EXPECT_EQ(tpm_.object_serial(copy), serial);
  ok(flush_context(k));
  ok(flush_context(copy));
  EXPECT_EQ(tpm_.object_serial(handle_of(ok(context_load(blob)))), serial);  // any number of times
  Bytes tampered = blob;
  tampered[tampered.size() - 12] ^= 1;
  EXPECT_EQ(rc_of(raw(context_load(tampered))), kIntegrityP1);
  tpm_.restart();
  EXPECT_EQ(rc_of(raw(context_load(blob))), kIntegrityP1);
}

TEST_F(FakeTpmTest, SessionSlotsActiveSessionsAndOneTimeBlobs) {
  FakeTpmOptions options;
  options.session_slots = 2;
  options.active_sessions_max = 3;
  FakeTpm tpm(options);
  auto run = [&](const Bytes& c) { return *tpm.transmit(c); };
  TPM2_HANDLE a = handle_of(run(start_auth_session(TPM2_SE_POLICY)));
  TPM2_HANDLE b = handle_of(run(start_auth_session(TPM2_SE_HMAC)));
  EXPECT_EQ(a, 0x03000000u);
  EXPECT_EQ(b, 0x02000001u);  // HMAC and policy sessions share one index space
  EXPECT_EQ(rc_of(run(start_auth_session(TPM2_SE_POLICY))), TPM2_RC_SESSION_MEMORY);
  ASSERT_EQ(rc_of(run(build_command(TPM2_CC_PolicyAuthValue, {a}, {}, {}))), TPM2_RC_SUCCESS);
  Bytes digest = run(policy_get_digest(a));
  Bytes blob = body_of(run(context_save(a)));
  EXPECT_EQ(rc_of(run(policy_get_digest(a))), TPM2_RC_REFERENCE_H0);  // saved: not usable by handle
  EXPECT_EQ(tpm.saved_sessions(), (std::vector<TPM2_HANDLE>{a}));
  TPM2_HANDLE c = handle_of(run(start_auth_session(TPM2_SE_POLICY)));
  EXPECT_EQ(rc_of(run(start_auth_session(TPM2_SE_POLICY))), TPM2_RC_SESSION_MEMORY);
  Bytes c_blob = body_of(run(context_save(c)));
  EXPECT_EQ(rc_of(run(start_auth_session(TPM2_SE_POLICY))), TPM2_RC_SESSION_HANDLES);
  EXPECT_EQ(handle_of(run(context_load(blob))), a);
  EXPECT_EQ(run(policy_get_digest(a)), digest);
  EXPECT_EQ(rc_of(run(context_load(blob))), kHandleP1);  // a session's blob loads once
  ASSERT_EQ(rc_of(run(flush_context(c))), TPM2_RC_SUCCESS);  // flushing a saved session
  EXPECT_EQ(rc_of(run(context_load(c_blob))), kHandleP1);
  // continueSession clear ends the session with the command.
  ASSERT_EQ(rc_of(run(get_random(4, {Auth{b, TPMA_SESSION_AUDIT}}))), TPM2_RC_SUCCESS);
  EXPECT_FALSE(tpm.session_serial(b));
  EXPECT_EQ(rc_of(run(get_random(4, {Auth{b, TPMA_SESSION_CONTINUESESSION}}))), TPM2_RC_REFERENCE_S0);
}

TEST_F(FakeTpmTest, ContextGapRefusesTheSaveThatWouldStrandTheOldestSession) {
  FakeTpmOptions options;
  options.context_gap_max = 4;
  options.session_slots = 2;
  FakeTpm tpm(options);
  auto run = [&](const Bytes& c) { return *tpm.transmit(c); };
  TPM2_HANDLE idle = handle_of(run(start_auth_session(TPM2_SE_POLICY)));
  Bytes idle_blob = body_of(run(context_save(idle)));
  TPM2_HANDLE other = handle_of(run(start_auth_session(TPM2_SE_POLICY)));
  Bytes other_blob = body_of(run(context_save(other)));
  TPM2_HANDLE busy = handle_of(run(start_auth_session(TPM2_SE_POLICY)));
  int saves = 0;
  for (; saves < 10; ++saves) {
    Bytes saved = run(context_save(busy));
    if (rc_of(saved) != TPM2_RC_SUCCESS) {
      EXPECT_EQ(rc_of(saved), TPM2_RC_CONTEXT_GAP);
      break;
    }
    ASSERT_EQ(rc_of(run(context_load(body_of(saved)))), TPM2_RC_SUCCESS);
  }
  EXPECT_EQ(saves, 3);  // idle's sequence plus 4 is the last one a save may take; other took one of them
  // At the limit the last free slot is kept for the oldest saved session: the way out.
  EXPECT_EQ(rc_of(run(context_load(other_blob))), TPM2_RC_CONTEXT_GAP);
  EXPECT_EQ(rc_of(run(start_auth_session(TPM2_SE_HMAC))), TPM2_RC_CONTEXT_GAP);
  // Object saves do not count towards the gap.
  ASSERT_EQ(rc_of(run(flush_context(busy))), TPM2_RC_SUCCESS);
  TPM2_HANDLE key = handle_of(run(create_primary()));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(rc_of(run(context_save(key))), TPM2_RC_SUCCESS);
  // Reloading and resaving the oldest session moves the window.
  ASSERT_EQ(rc_of(run(context_load(idle_blob))), TPM2_RC_SUCCESS);
  EXPECT_EQ(rc_of(run(context_save(idle))), TPM2_RC_SUCCESS);  // other, now the oldest, is one save younger
  TPM2_HANDLE fresh = handle_of(run(start_auth_session(TPM2_SE_POLICY)));
  EXPECT_EQ(rc_of(run(context_save(fresh))), TPM2_RC_CONTEXT_GAP);
  ASSERT_EQ(rc_of(run(flush_context(fresh))), TPM2_RC_SUCCESS);
  ASSERT_EQ(rc_of(run(context_load(other_blob))), TPM2_RC_SUCCESS);
  EXPECT_EQ(rc_of(run(context_save(other))), TPM2_RC_SUCCESS);
}

TEST_F(FakeTpmTest, DisablingAHierarchyFlushesItsObjects) {
  TPM2_HANDLE owner = handle_of(ok(create_primary(TPM2_RH_OWNER, 1)));
  TPM2_HANDLE endorsement = handle_of(ok(create_primary(TPM2_RH_ENDORSEMENT, 2)));
  Bytes blob = body_of(ok(context_save(owner)));
  auto control = [](TPM2_HANDLE auth, TPM2_HANDLE hierarchy, bool state) {
    Bytes p = {static_cast<std::uint8_t>(hierarchy >> 24), static_cast<std::uint8_t>(hierarchy >> 16),
               static_cast<std::uint8_t>(hierarchy >> 8), static_cast<std::uint8_t>(hierarchy),
               static_cast<std::uint8_t>(state)};
    return build_command(TPM2_CC_HierarchyControl, {auth}, {Auth{}}, p);
  };
  EXPECT_EQ(rc_of(raw(control(TPM2_RH_OWNER, TPM2_RH_ENDORSEMENT, false))), TPM2_RC_AUTH_TYPE);
  ok(control(TPM2_RH_OWNER, TPM2_RH_OWNER, false));
  EXPECT_FALSE(tpm_.hierarchy_enabled(TPM2_RH_OWNER));
  EXPECT_EQ(tpm_.loaded_objects(), (std::vector<TPM2_HANDLE>{endorsement}));
  EXPECT_EQ(rc_of(raw(context_load(blob))), TPM2_RC_HIERARCHY | TPM2_RC_P | TPM2_RC_1);
  EXPECT_EQ(rc_of(raw(create_primary(TPM2_RH_OWNER))), TPM2_RC_HIERARCHY | TPM2_RC_H | TPM2_RC_1);
  ok(control(TPM2_RH_PLATFORM, TPM2_RH_OWNER, true));
  ok(context_load(blob));
}

TEST_F(FakeTpmTest, CreateLoadCertifyAndSequences) {
  TPM2_HANDLE parent = handle_of(ok(create_primary()));
  // Create's parameter area is CreatePrimary's: skip its header, handle and password authorization.
  Bytes primary = create_primary();
  Bytes created = ok(build_command(TPM2_CC_Create, {parent}, {Auth{}}, ByteSpan(primary).subspan(27)));
  // outPrivate, then outPublic: Load takes both.
  ByteSpan body = ByteSpan(created).subspan(tpm::kHeaderSize + 4);
  const std::size_t priv = 2 + ((body[0] << 8) | body[1]);
  const std::size_t pub = 2 + ((body[priv] << 8) | body[priv + 1]);
  Bytes load_params(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(priv + pub));
  TPM2_HANDLE a = handle_of(ok(build_command(TPM2_CC_Load, {parent}, {Auth{}}, load_params)));
  TPM2_HANDLE b = handle_of(ok(build_command(TPM2_CC_Load, {parent}, {Auth{}}, load_params)));
  EXPECT_EQ(tpm_.object_serial(a), tpm_.object_serial(b));  // one key, loaded twice
  EXPECT_NE(tpm_.object_serial(a), tpm_.object_serial(parent));
  Bytes bad = load_params;
  bad[3] ^= 0x40;
  ok(flush_context(b));
  EXPECT_EQ(rc_of(raw(build_command(TPM2_CC_Load, {parent}, {Auth{}}, bad))), kIntegrityP1);

  Bytes cert = ok(build_command(TPM2_CC_Certify, {a, parent}, {Auth{}, Auth{}}, from_hex("0000 0010")));
  ASSERT_GE(cert.size(), tpm::kHeaderSize + 4 + 2 + 16);
  Bytes attest(cert.begin() + 16, cert.begin() + 32);
  EXPECT_EQ(attest[7], *tpm_.object_serial(a));
  EXPECT_EQ(attest[15], *tpm_.object_serial(parent));
  EXPECT_EQ(rc_of(raw(build_command(TPM2_CC_Certify, {a, parent}, {}, from_hex("0000 0010")))),
            TPM2_RC_AUTH_MISSING);

  ok(flush_context(a));
  TPM2_HANDLE seq = handle_of(ok(hash_sequence_start()));
  EXPECT_EQ(rc_of(raw(read_public(seq))), TPM2_RC_SEQUENCE);
  Bytes seq_blob = body_of(ok(context_save(seq)));
  ok(sequence_complete(seq));
  EXPECT_EQ(tpm_.loaded_objects(), (std::vector<TPM2_HANDLE>{parent}));
  ok(sequence_complete(handle_of(ok(context_load(seq_blob)))));
}

TEST_F(FakeTpmTest, FaultHooks) {
  tpm_.fail_next(ETIME);
  auto r = tpm_.transmit(get_random(4));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ETIME);
  ok(get_random(4));
  tpm_.inject_rc(TPM2_CC_GetRandom, TPM2_RC_RETRY);
  EXPECT_EQ(rc_of(raw(get_random(4))), TPM2_RC_RETRY);
  tpm_.set_response_hook([](ByteSpan, Bytes response) -> Result<Bytes> {
    response.resize(5);
    return response;
  });
  EXPECT_EQ(raw(get_random(4)).size(), 5u);
  tpm_.set_response_hook({});
  tpm_.set_command_hook([](ByteSpan) -> std::optional<Result<Bytes>> { return make_error(EIO, "cut"); });
  EXPECT_FALSE(tpm_.transmit(create_primary()));
  EXPECT_TRUE(tpm_.loaded_objects().empty());  // the model never saw it
  tpm_.set_command_hook({});
  tpm_.set_available(false);
  EXPECT_FALSE(tpm_.available());
  r = tpm_.transmit(get_random(4));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  EXPECT_EQ(tpm_.commands(TPM2_CC_GetRandom), 5u);
}

TEST_F(FakeTpmTest, MalformedCommandsGetAnRcAndAWellFormedResponse) {
  EXPECT_EQ(rc_of(raw(from_hex("80010000000a000001fe"))), TPM2_RC_COMMAND_CODE);
  EXPECT_EQ(rc_of(raw(from_hex("80030000000a0000017b"))), TPM2_RC_BAD_TAG);
  EXPECT_EQ(rc_of(raw(from_hex("80010000000c0000017b"))), TPM2_RC_COMMAND_SIZE);
  EXPECT_EQ(rc_of(raw(from_hex("80010000000a0000017b"))), TPM2_RC_INSUFFICIENT | TPM2_RC_P | TPM2_RC_1);
  TPM2_HANDLE key = handle_of(ok(create_primary()));
  TPM2_HANDLE session = handle_of(ok(start_auth_session(TPM2_SE_POLICY)));
  Bytes blob = body_of(ok(context_save(key)));
  const std::vector<Bytes> seeds = {
      create_primary(), read_public(key), start_auth_session(TPM2_SE_HMAC), policy_get_digest(session),
      flush_context(key), context_save(key), context_load(blob), get_capability(TPM2_CAP_HANDLES, 0x80000000, 9),
      get_capability(TPM2_CAP_TPM_PROPERTIES, 0, 200), hash_sequence_start(), sequence_complete(key),
      get_random(8, {Auth{session, 1}}), build_command(TPM2_CC_Certify, {key, key}, {Auth{}, Auth{}}, {}),
  };
  std::uint64_t prng = 42;
  auto next = [&] {
    prng = prng * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(prng >> 33);
  };
  auto check = [&](const Bytes& command) {
    auto r = tpm_.transmit(command);
    ASSERT_TRUE(r);
    auto header = tpm::parse_response_header(*r);
    ASSERT_TRUE(header) << to_hex(command);
    EXPECT_EQ(header->size, r->size()) << to_hex(command);
  };
  for (const Bytes& seed : seeds) {
    for (std::size_t n = 0; n < seed.size(); ++n) check(Bytes(seed.begin(), seed.begin() + n));
    for (int i = 0; i < 300; ++i) {
      Bytes m = seed;
      for (int k = 1 + next() % 3; k > 0; --k) m[next() % m.size()] = static_cast<std::uint8_t>(next());
      if (next() % 2) tpm::patch_size_field(m);
      check(m);
    }
  }
}

}  // namespace
}  // namespace tpmrmd::testing

// Drift between the RM's picture of the TPM's object slots and the TPM's own: commands that flush transients
// behind the RM (HierarchyControl, Clear, ChangeEPS, ChangePPS) and slots the TPM hands out while the RM
// believes them occupied. Whatever happens, no handle of one connection may reach another's object.
#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include <mutex>
#include <optional>

#include "tpm/commands.h"
#include "rm/handles.h"
#include "rm_fixture.h"
#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

Bytes hierarchy_control(TPM2_HANDLE auth, TPM2_HANDLE enable, bool state) {
  Bytes p(5);
  size_t off = 0;
  Tss2_MU_UINT32_Marshal(enable, p.data(), p.size(), &off);
  p[4] = state ? 1 : 0;
  return build_command(TPM2_CC_HierarchyControl, {auth}, {Auth{}}, p);
}

Bytes clear(TPM2_HANDLE auth) { return build_command(TPM2_CC_Clear, {auth}, {Auth{}}, {}); }
Bytes change_eps() { return build_command(TPM2_CC_ChangeEPS, {TPM2_RH_PLATFORM}, {Auth{}}, {}); }
Bytes change_pps() { return build_command(TPM2_CC_ChangePPS, {TPM2_RH_PLATFORM}, {Auth{}}, {}); }

// The object's name from a successful ReadPublic response.

// The TPM's port, recording the handle of every successful response that creates a transient, so a test
// knows which physical slot an object went to.
class SpyPort final : public rm::TpmPort {
 public:
  explicit SpyPort(rm::TpmPort& inner) : inner_(inner) {}
  const tpm::TpmInfo& info() const override { return inner_.info(); }
  bool available() const override { return inner_.available(); }
  Result<Bytes> transmit(ByteSpan command) override {
    auto header = tpm::parse_command_header(command);
    auto r = inner_.transmit(command);
    if (r && header && (header->code == TPM2_CC_CreatePrimary || header->code == TPM2_CC_ContextLoad) &&
        rc_of(*r) == TPM2_RC_SUCCESS && rm::is_transient(handle_of(*r))) {
      std::lock_guard lock(mutex_);
      last_transient_ = handle_of(*r);
    }
    return r;
  }
  std::optional<TPM2_HANDLE> last_transient() const {
    std::lock_guard lock(mutex_);
    return last_transient_;
  }

 private:
  rm::TpmPort& inner_;
  mutable std::mutex mutex_;
  std::optional<TPM2_HANDLE> last_transient_;
};

class DriftTest : public SwtpmRmTest {
 protected:
  void use_spy(rm::RmOptions options = {}) {
    rm_.reset();
    spy_ = std::make_unique<SpyPort>(*port_);
    rm_ = std::make_unique<rm::ResourceManager>(*spy_, options);
  }
  Bytes name(ConnectionId id, TPM2_HANDLE h) { return name_of(ok(id, read_public(h))); }
  TPM2_HANDLE key_in(ConnectionId id, TPM2_HANDLE hierarchy, std::uint8_t unique) {
    return handle_of(ok(id, create_primary(hierarchy, unique)));
  }
  // The handle is refused cleanly: EINVAL in errno mode, never a response about some object.
  void expect_refused(ConnectionId id, TPM2_HANDLE h) {
    auto r = rm_->execute(id, read_public(h));
    ASSERT_FALSE(r) << "0x" << std::hex << h << " answered " << to_hex(*r);
    EXPECT_EQ(r.error().code, EINVAL) << describe(r.error());
  }
  // The physical slot the TPM gave to the last object created or loaded (by a client or by the RM).
  TPM2_HANDLE last_slot() {
    auto h = spy_->last_transient();
    EXPECT_TRUE(h);
    return h ? *h : 0;
  }
  // FlushContext straight to the chip: the TPM drops the object, the RM is not told.
  void flush_behind_the_rm(TPM2_HANDLE physical) {
    auto r = chip_->transmit(tpm::make_flush_context(physical));
    ASSERT_TRUE(r);
    ASSERT_EQ(rc_of(*r), TPM2_RC_SUCCESS) << to_hex(*r);
  }

  std::unique_ptr<SpyPort> spy_;
};

TEST(ObjectTableSlots, TheSlotIndexFollowsEveryChangeOfPhysical) {
  rm::ObjectTable t;
  rm::ObjectEntry e;
  e.physical = 0x80000000;
  const rm::ObjectId a = t.add(e);
  const rm::ObjectId b = t.add(rm::ObjectEntry{});
  EXPECT_EQ(t.find_physical(0x80000000), a);
  EXPECT_EQ(t.resident_count(), 1u);
  EXPECT_EQ(t.set_physical(b, 0x80000001), std::nullopt);
  // The TPM handed a's slot to b: a loses it, and the caller learns who held it.
  EXPECT_EQ(t.set_physical(b, 0x80000000), a);
  EXPECT_FALSE(t.find(a)->resident());
  EXPECT_EQ(t.find_physical(0x80000000), b);
  EXPECT_EQ(t.find_physical(0x80000001), std::nullopt);
  EXPECT_EQ(t.resident_count(), 1u);
  EXPECT_EQ(t.add(e), 3u);  // added into an occupied slot: b loses it
  EXPECT_FALSE(t.find(b)->resident());
  t.erase(3);
  EXPECT_EQ(t.find_physical(0x80000000), std::nullopt);
  EXPECT_EQ(t.resident_count(), 0u);
  t.set_physical(a, 0x80000002);
  t.set_physical(a, std::nullopt);
  EXPECT_EQ(t.find_physical(0x80000002), std::nullopt);
  EXPECT_EQ(t.resident_count(), 0u);
}

TEST_F(DriftTest, DisablingTheEndorsementHierarchyNeverHandsOutAnotherConnectionsObject) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE va = key_in(a, TPM2_RH_ENDORSEMENT, 1);
  const Bytes name_a = name(a, va);
  ok(a, hierarchy_control(TPM2_RH_ENDORSEMENT, TPM2_RH_ENDORSEMENT, false));
  const TPM2_HANDLE vb = key_in(b, TPM2_RH_OWNER, 2);
  const Bytes name_b = name(b, vb);
  ASSERT_NE(name_a, name_b);

  auto r = rm_->execute(a, read_public(va));
  if (r && rc_of(*r) == TPM2_RC_SUCCESS) {
    EXPECT_NE(name_of(*r), name_b) << "connection a's handle reads connection b's object";
  }
  ASSERT_FALSE(r) << "a's handle to a flushed object answered " << to_hex(*r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_GE(rm_->counters().drift_evictions, 1u);

  // A's later commands and close leave b's object alone.
  ok(a, flush_context(va));
  expect_refused(a, va);
  make_key(a, 3);
  EXPECT_EQ(name(b, vb), name_b);
  rm_->close(a);
  EXPECT_EQ(name(b, vb), name_b);
}

TEST_F(DriftTest, ObjectsOfOtherConnectionsAndHierarchiesSurviveTheEviction) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE b_owner = make_key(b, 1);
  const TPM2_HANDLE b_null = key_in(b, TPM2_RH_NULL, 2);
  const Bytes n_owner = name(b, b_owner), n_null = name(b, b_null);
  key_in(a, TPM2_RH_ENDORSEMENT, 3);
  const auto before = rm_->counters();
  ok(a, hierarchy_control(TPM2_RH_ENDORSEMENT, TPM2_RH_ENDORSEMENT, false));
  // All three were resident; the command names none of them.
  EXPECT_EQ(rm_->counters().drift_evictions - before.drift_evictions, 3u);
  EXPECT_TRUE(raw_handles(0x80000000).empty());
  EXPECT_EQ(name(b, b_owner), n_owner);
  EXPECT_EQ(name(b, b_null), n_null);
}

TEST_F(DriftTest, ReenablingTheHierarchyBringsTheOwnersObjectBack) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE va = key_in(a, TPM2_RH_ENDORSEMENT, 1);
  const Bytes name_a = name(a, va);
  ok(a, hierarchy_control(TPM2_RH_ENDORSEMENT, TPM2_RH_ENDORSEMENT, false));
  const TPM2_HANDLE vb = key_in(b, TPM2_RH_OWNER, 2);
  const Bytes name_b = name(b, vb);
  expect_refused(a, va);
  expect_refused(a, va);  // refused again, not forgotten: the hierarchy may come back
  // Disabling does not change the hierarchy's proof, so the context the RM saved before the command is
  // still the object's: once the platform re-enables the hierarchy it loads again.
  ok(b, hierarchy_control(TPM2_RH_PLATFORM, TPM2_RH_ENDORSEMENT, true));
  EXPECT_EQ(name(a, va), name_a);
  EXPECT_EQ(name(b, vb), name_b);
  ok(a, flush_context(va));
  EXPECT_EQ(name(b, vb), name_b);
}

TEST_F(DriftTest, DisabledHierarchyIsAnRmLayerRcInRcMode) {
  rm::RmOptions options;
  options.rc_mode = true;
  reset_rm(options);
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE va = key_in(a, TPM2_RH_ENDORSEMENT, 1);
  ok(a, hierarchy_control(TPM2_RH_ENDORSEMENT, TPM2_RH_ENDORSEMENT, false));
  const TPM2_HANDLE vb = key_in(b, TPM2_RH_OWNER, 2);
  Bytes r = run(a, read_public(va));
  EXPECT_EQ(rc_of(r), rm::kRmLayer | TPM2_RC_HIERARCHY | TPM2_RC_1) << to_hex(r);
  ok(b, read_public(vb));
}

TEST_F(DriftTest, ClearNeverHandsOutAnotherConnectionsObject) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE a_owner = make_key(a, 1);
  const TPM2_HANDLE a_endorsement = key_in(a, TPM2_RH_ENDORSEMENT, 2);
  const TPM2_HANDLE b_old = make_key(b, 3);
  ok(a, clear(TPM2_RH_PLATFORM));
  const TPM2_HANDLE vb = make_key(b, 4);
  const TPM2_HANDLE vb2 = key_in(b, TPM2_RH_ENDORSEMENT, 5);
  const Bytes name_b = name(b, vb), name_b2 = name(b, vb2);
  // Clear changed the owner and endorsement proofs: every context saved before it is lost, cleanly.
  expect_refused(a, a_owner);
  expect_refused(a, a_endorsement);
  expect_refused(b, b_old);
  ok(a, flush_context(a_owner));
  ok(a, flush_context(a_endorsement));
  expect_refused(a, a_owner);
  make_key(a, 6);
  rm_->close(a);
  EXPECT_EQ(name(b, vb), name_b);
  EXPECT_EQ(name(b, vb2), name_b2);
}

TEST_F(DriftTest, ClearByLockoutNeverHandsOutAnotherConnectionsObject) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE va = make_key(a, 1);
  ok(a, clear(TPM2_RH_LOCKOUT));
  const TPM2_HANDLE vb = make_key(b, 2);
  const Bytes name_b = name(b, vb);
  expect_refused(a, va);
  EXPECT_EQ(name(b, vb), name_b);
}

TEST_F(DriftTest, ChangeEpsNeverHandsOutAnotherConnectionsObject) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE b_owner = make_key(b, 1);
  const Bytes n_owner = name(b, b_owner);
  const TPM2_HANDLE va = key_in(a, TPM2_RH_ENDORSEMENT, 2);
  ok(a, change_eps());
  const TPM2_HANDLE vb = key_in(b, TPM2_RH_ENDORSEMENT, 3);
  const Bytes name_b = name(b, vb);
  expect_refused(a, va);
  ok(a, flush_context(va));
  rm_->close(a);
  EXPECT_EQ(name(b, vb), name_b);
  EXPECT_EQ(name(b, b_owner), n_owner);  // the owner hierarchy is untouched by ChangeEPS
}

TEST_F(DriftTest, ChangePpsNeverHandsOutAnotherConnectionsObject) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE va = key_in(a, TPM2_RH_PLATFORM, 1);
  const TPM2_HANDLE a_owner = make_key(a, 2);
  const Bytes n_owner = name(a, a_owner);
  ok(a, change_pps());
  const TPM2_HANDLE vb = key_in(b, TPM2_RH_PLATFORM, 3);
  const Bytes name_b = name(b, vb);
  expect_refused(a, va);
  EXPECT_EQ(name(a, a_owner), n_owner);
  ok(a, flush_context(va));
  rm_->close(a);
  EXPECT_EQ(name(b, vb), name_b);
}

TEST_F(DriftTest, ACollisionOnACreatedObjectIsDetectedAndTheOldHandleNeverReadsTheNewObject) {
  use_spy();
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE va = make_key(a, 1);
  const TPM2_HANDLE slot = last_slot();
  flush_behind_the_rm(slot);
  const TPM2_HANDLE vb = make_key(b, 2);
  ASSERT_EQ(last_slot(), slot) << "the TPM did not reuse the slot; the test proves nothing";
  const Bytes name_b = name(b, vb);
  EXPECT_EQ(rm_->counters().physical_collisions, 1u);
  // The object was never saved: the RM cannot know it still exists anywhere.
  expect_refused(a, va);
  ok(a, flush_context(va));
  make_key(a, 3);
  rm_->close(a);
  EXPECT_EQ(name(b, vb), name_b);
  EXPECT_EQ(rm_->counters().physical_collisions, 1u);
}

TEST_F(DriftTest, ACollidedObjectWithACurrentContextIsReloadedFromIt) {
  use_spy();
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE original = make_key(a, 1);
  const Bytes name_a = name(a, original);
  Bytes saved = ok(a, context_save(original));
  const TPM2_HANDLE va = handle_of(ok(a, context_load(body_of(saved))));  // the RM holds its exact context
  const TPM2_HANDLE slot = last_slot();
  flush_behind_the_rm(slot);
  const TPM2_HANDLE vb = make_key(b, 2);
  ASSERT_EQ(last_slot(), slot);
  const Bytes name_b = name(b, vb);
  EXPECT_EQ(rm_->counters().physical_collisions, 1u);
  // The TPM checks the context's integrity when it loads: what comes back can only be a's own object.
  EXPECT_EQ(name(a, va), name_a);
  EXPECT_EQ(name(b, vb), name_b);
  ok(a, flush_context(va));
  EXPECT_EQ(name(b, vb), name_b);
}

TEST_F(DriftTest, ACollisionOnTheRmsOwnContextLoadIsDetected) {
  use_spy();
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE vb = make_key(b, 1);
  const Bytes name_b = name(b, vb);
  const TPM2_HANDLE a1 = make_key(a, 2);
  const TPM2_HANDLE a2 = make_key(a, 3);
  const Bytes n1 = name(a, a1), n2 = name(a, a2);
  const TPM2_HANDLE a3 = make_key(a, 4);  // b's key is the least recently used: evicted (saved) for it
  const TPM2_HANDLE slot = last_slot();
  flush_behind_the_rm(slot);
  // b's key needs a slot: the RM evicts a1 (now the LRU) and reloads b's context, which the TPM puts in the
  // lowest free slot, the one the RM still believes holds a3.
  EXPECT_EQ(name(b, vb), name_b);
  ASSERT_EQ(last_slot(), slot) << "the TPM did not reuse the slot; the test proves nothing";
  EXPECT_EQ(rm_->counters().physical_collisions, 1u);
  expect_refused(a, a3);
  EXPECT_EQ(name(a, a1), n1);
  EXPECT_EQ(name(a, a2), n2);
  EXPECT_EQ(name(b, vb), name_b);
  rm_->close(a);
  EXPECT_EQ(name(b, vb), name_b);
}

// A session ended behind the RM frees its slot for a session of the other type: HMAC and policy sessions share
// the TPM's session slots (0x03000000 may take the slot of 0x02000000). The RM drops the stale entry by slot, so
// its owner gets a clean refusal, and the new session stays the RM's own through later reconciliations.
TEST_F(DriftTest, ASessionOfTheOtherTypeInAStaleSessionsSlotReplacesIt) {
  ConnectionId a = open(), b = open();
  const TPM2_HANDLE hmac = handle_of(ok(a, start_auth_session(TPM2_SE_HMAC)));
  flush_behind_the_rm(hmac);
  const TPM2_HANDLE policy = make_policy_session(b);
  ASSERT_EQ(policy & 0x00FFFFFFu, hmac & 0x00FFFFFFu) << "the TPM did not reuse the slot; the test proves nothing";
  EXPECT_EQ(rm_->counters().physical_collisions, 1u);
  auto used = rm_->execute(a, get_random(8, {Auth{hmac, TPMA_SESSION_CONTINUESESSION}}));
  ASSERT_FALSE(used) << "a's ended session answered " << to_hex(*used);
  EXPECT_EQ(used.error().code, EINVAL);
  const Bytes saved = body_of(ok(b, context_save(policy)));
  make_key(a, 1);  // reconciles first
  EXPECT_GE(rm_->counters().reconciliations, 1u);
  EXPECT_EQ(handle_of(ok(b, context_load(saved))), policy);
  ok(b, policy_get_digest(policy));
  rm_->close(a);
  rm_->close(b);
  EXPECT_TRUE(raw_handles(TPM2_LOADED_SESSION_FIRST).empty());
  EXPECT_TRUE(raw_handles(TPM2_ACTIVE_SESSION_FIRST).empty());
}

}  // namespace
}  // namespace tpmrmd::testing

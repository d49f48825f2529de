// The RM on the fake TPM, driven through its public API only, with the fake's own view of what is loaded as
// the witness: the fixture of the rm_fake suite.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <utility>

#include "rm/resource_manager.h"
#include "support/fake_tpm.h"
#include "support/tpm_commands.h"

namespace tpmrmd::testing {

inline const bool kQuietMu = (setenv("TSS2_LOG", "all+NONE", 0), true);

using rm::ConnectionId;

inline constexpr TPM2_HANDLE kV0 = 0x80000000u;  // first virtual handle of every connection

inline Bytes certify(TPM2_HANDLE object, TPM2_HANDLE signer) {
  return build_command(TPM2_CC_Certify, {object, signer}, {Auth{}, Auth{}}, from_hex("0000 0010"));
}
inline Bytes policy_auth_value(TPM2_HANDLE session) {
  return build_command(TPM2_CC_PolicyAuthValue, {session}, {}, {});
}

class FakeRmTest : public ::testing::Test {
 protected:
  void SetUp() override { reset({}, {}); }

  void reset(FakeTpmOptions tpm_options, rm::RmOptions options) {
    rm_.reset();
    tpm_ = std::make_unique<FakeTpm>(tpm_options);
    rm_ = std::make_unique<rm::ResourceManager>(*tpm_, options);
  }

  ConnectionId open() {
    auto id = rm_->open(rm::ClientInfo{0, 0, 0});
    EXPECT_TRUE(id);
    return id ? *id : 0;
  }
  Bytes run(ConnectionId id, const Bytes& command) {
    auto r = rm_->execute(id, command);
    EXPECT_TRUE(r) << describe(r.error()) << " for " << to_hex(command);
    return r ? *r : Bytes{};
  }
  Bytes ok(ConnectionId id, const Bytes& command) {
    Bytes r = run(id, command);
    EXPECT_EQ(rc_of(r), TPM2_RC_SUCCESS) << "command " << to_hex(command) << " -> " << to_hex(r);
    return r;
  }
  int errno_of(ConnectionId id, const Bytes& command) {
    auto r = rm_->execute(id, command);
    return r ? 0 : r.error().code;
  }
  // The object a virtual handle reaches, as the TPM names it.
  std::uint64_t serial(ConnectionId id, TPM2_HANDLE vh) {
    auto s = FakeTpm::serial_in_read_public(ok(id, read_public(vh)));
    EXPECT_TRUE(s);
    return s.value_or(0);
  }
  // A new key and its serial (read right away, so the LRU order is the creation order).
  std::pair<TPM2_HANDLE, std::uint64_t> make_key(ConnectionId id, std::uint8_t unique = 0) {
    TPM2_HANDLE vh = handle_of(ok(id, create_primary(TPM2_RH_OWNER, unique)));
    return {vh, serial(id, vh)};
  }
  TPM2_HANDLE make_session(ConnectionId id) { return handle_of(ok(id, start_auth_session(TPM2_SE_POLICY))); }
  std::set<std::uint64_t> loaded_serials() const {
    std::set<std::uint64_t> out;
    for (TPM2_HANDLE h : tpm_->loaded_objects()) out.insert(*tpm_->object_serial(h));
    return out;
  }

  std::unique_ptr<FakeTpm> tpm_;
  std::unique_ptr<rm::ResourceManager> rm_;
};

}  // namespace tpmrmd::testing

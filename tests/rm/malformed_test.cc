// Broken commands never reach the TPM, get a specific EINVAL, and cost the client nothing it holds.
#include <gtest/gtest.h>

#include "rm/handles.h"
#include "rm_fixture.h"

namespace tpmrmd::testing {
namespace {

using rm::ConnectionId;

struct Case {
  const char* name;
  Bytes bytes;
};

Bytes with_byte(Bytes b, std::size_t at, std::uint8_t v) {
  b.at(at) = v;
  return b;
}

std::vector<Case> broken_commands(TPM2_HANDLE key, TPM2_HANDLE session, TPM2_HANDLE foreign) {
  Bytes auth_cmd = build_command(TPM2_CC_ReadPublic, {key}, {Auth{}}, {});  // auth size at [14..17]
  Bytes two = build_command(TPM2_CC_ReadPublic, {key}, {Auth{}}, Bytes{0, 0, 0});
  two[17] = 12;  // authorizationSize covers a 9-byte entry plus 3 bytes that are not an entry
  return {
      {"empty", {}},
      {"5 bytes", from_hex("8001000000")},
      {"9 bytes", from_hex("800100000009000001")},
      {"tag 0x8003", from_hex("80030000000c0000017b0020")},
      {"TPM 1.2 tag 0x00c1", from_hex("00c10000000c0000017b0020")},
      {"declared size larger than data", from_hex("80010000000f0000017b0020")},
      {"declared size smaller than data", from_hex("80010000000b0000017b0020")},
      {"declared size 0", from_hex("8001000000000000017b0020")},
      {"spec vector: 14 bytes written, 15 declared", from_hex("80010000000f00000165deadbeef")},
      {"truncated handle area", from_hex("80010000000c00000173" "8000")},
      {"spec vector: FlushContext(0x80123456)", from_hex("80010000000e0000016580123456")},
      {"ReadPublic of an unknown virtual handle", read_public(0x80000042)},
      {"ContextSave of an unknown virtual handle", context_save(0x80000042)},
      {"sessions tag without authorizationSize", from_hex("80020000000e0000017380000000")},
      {"authorizationSize 0", with_byte(with_byte(auth_cmd, 17, 0), 16, 0)},
      {"authorizationSize 8", with_byte(auth_cmd, 17, 8)},
      {"authorizationSize overruns", with_byte(auth_cmd, 17, 40)},
      {"nonce overruns the area", with_byte(auth_cmd, 23, 5)},
      {"hmac overruns the area", with_byte(auth_cmd, 26, 5)},
      {"trailing bytes in the area that are not an entry", two},
      {"four sessions", get_random(8, {Auth{}, Auth{}, Auth{}, Auth{}})},
      {"unknown session in the authorization area", get_random(8, {Auth{0x02FFFFFF, 0x01}})},
      {"another connection's session in the authorization area", get_random(8, {Auth{foreign, 0x81}})},
      {"unknown session in the handle area", policy_get_digest(0x03000099)},
      {"another connection's session in the handle area", policy_get_digest(foreign)},
      {"own session twice, second one unknown", get_random(8, {Auth{session, 0x01}, Auth{0x03FFFFFE, 0x01}})},
  };
}

TEST_F(SwtpmRmTest, MalformedCommandsTable) {
  ConnectionId owner = open(), c = open();
  TPM2_HANDLE foreign = make_policy_session(owner);
  TPM2_HANDLE key = make_key(c, 1);
  TPM2_HANDLE session = make_policy_session(c);
  Bytes pub = ok(c, read_public(key));
  Bytes digest = ok(c, policy_get_digest(session));
  const auto before = chip_commands();
  const auto cases = broken_commands(key, session, foreign);
  ASSERT_GE(cases.size(), 20u);
  for (const Case& k : cases) {
    auto r = rm_->execute(c, k.bytes);
    ASSERT_FALSE(r) << k.name << ": got a response " << to_hex(*r);
    EXPECT_EQ(r.error().code, EINVAL) << k.name << ": " << describe(r.error());
    EXPECT_FALSE(r.error().message.empty()) << k.name;
  }
  EXPECT_EQ(chip_commands(), before) << "a broken command reached the TPM";
  EXPECT_EQ(rm_->counters().per_connection[c].refusals, cases.size());
  // Nothing the client held was lost.
  EXPECT_EQ(ok(c, read_public(key)), pub);
  EXPECT_EQ(ok(c, policy_get_digest(session)), digest);
}

TEST_F(SwtpmRmTest, RcModeAnswersRefusalsWithRmLayerCodes) {
  rm::RmOptions options;
  options.rc_mode = true;
  reset_rm(options);
  ConnectionId c = open();
  EXPECT_EQ(to_hex(run(c, read_public(0x80000042))), "80010000000a000b018b");
  EXPECT_EQ(to_hex(run(c, get_random(8, {Auth{0x02FFFFFF, 0x01}}))), "80010000000a000b0918");
  EXPECT_EQ(to_hex(run(c, from_hex("80010000000c00000173" "8000"))), "80010000000a000b0142");
}

}  // namespace
}  // namespace tpmrmd::testing

// The builders produce exactly the bytes the TPM expects.
#include "tpm/commands.h"

#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include <array>

namespace tpmrmd::tpm {
namespace {

TEST(Commands, BuildCommandWithoutSessions) {
  const std::array<TPM2_HANDLE, 2> handles{0x80000001, 0x40000007};
  EXPECT_EQ(to_hex(build_command(TPM2_CC_ReadPublic, handles, {}, from_hex("aabb"))),
            "800100000014" "00000173" "80000001" "40000007" "aabb");
}

TEST(Commands, BuildCommandWithPasswordSessions) {
  const std::array<TPM2_HANDLE, 1> handles{TPM2_RH_OWNER};
  const std::array<Auth, 2> auths{Auth{}, Auth{0x02000000, 0}};
  EXPECT_EQ(to_hex(build_command(TPM2_CC_CreatePrimary, handles, auths, {})),
            "800200000024" "00000131" "40000001" "00000012"
            "40000009" "0000" "01" "0000"
            "02000000" "0000" "00" "0000");
}

TEST(Commands, DaemonCommands) {
  EXPECT_EQ(to_hex(make_get_capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_TOTAL_COMMANDS, 1)),
            "800100000016" "0000017a" "00000006" "00000129" "00000001");
  EXPECT_EQ(to_hex(make_self_test(false)), "80010000000b0000014300");
  EXPECT_EQ(to_hex(make_self_test(true)), "80010000000b0000014301");
  EXPECT_EQ(to_hex(make_startup(TPM2_SU_CLEAR)), "80010000000c000001440000");
  EXPECT_EQ(to_hex(make_shutdown(TPM2_SU_STATE)), "80010000000c000001450001");
  EXPECT_EQ(to_hex(make_flush_context(0x80000001)), "80010000000e0000016580000001");
  EXPECT_EQ(to_hex(make_context_save(0x02000001)), "80010000000e0000016202000001");
  EXPECT_EQ(to_hex(make_context_load(from_hex("0102"))), "80010000000c000001610102");
}

TEST(Commands, RmResponses) {
  EXPECT_EQ(to_hex(make_success_response()), "80010000000a00000000");
  EXPECT_EQ(to_hex(make_context_load_response(0x02000001)), "80010000000e0000000002000001");
  EXPECT_EQ(to_hex(make_context_save_response(from_hex("010203"))), "80010000000d00000000010203");
  EXPECT_EQ(to_hex(make_response(TPM2_RC_SUCCESS, from_hex("00"))), "80010000000b0000000000");
}

TEST(Commands, AppendMarshalledTakesValuesAndStructures) {
  Bytes out;
  append_marshalled(out, std::uint16_t{0x0102}, Tss2_MU_UINT16_Marshal);
  TPM2B_DIGEST digest{};
  digest.size = 2;
  digest.buffer[0] = 0xaa;
  digest.buffer[1] = 0xbb;
  append_marshalled(out, digest, Tss2_MU_TPM2B_DIGEST_Marshal);
  EXPECT_EQ(to_hex(out), "01020002aabb");
}

}  // namespace
}  // namespace tpmrmd::tpm

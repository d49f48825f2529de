#include "rm/command.h"

#include <gtest/gtest.h>

#include "command_table_fixture.h"
#include "support/tpm_commands.h"

namespace tpmrmd::rm {
namespace {

using testing::Auth;

ParsedCommand parsed(const RmResult<ParsedCommand>& r) {
  if (r) return *r;
  ADD_FAILURE() << "refused: " << r.error().message;
  return {};
}

TEST(CommandParser, GetRandomHasNoHandlesAndParametersAfterHeader) {
  auto table = testing::test_command_table();
  Bytes cmd = from_hex("80010000000c0000017b0020");
  const ParsedCommand p = parsed(parse_command(cmd, table));
  EXPECT_EQ(p.code, TPM2_CC_GetRandom);
  EXPECT_TRUE(p.handles.empty());
  EXPECT_TRUE(p.auths.empty());
  EXPECT_EQ(p.parameter_offset, 10u);
}

TEST(CommandParser, FlushContextOperandIsAHandle) {
  auto table = testing::test_command_table();
  Bytes cmd = from_hex("80010000000e0000016580123456");
  const ParsedCommand p = parsed(parse_command(cmd, table));
  ASSERT_EQ(p.handles.size(), 1u);
  EXPECT_EQ(p.handles[0], 0x80123456u);
  EXPECT_EQ(p.parameter_offset, 14u);
}

TEST(CommandParser, AuthorizationAreaEntriesAreLocated) {
  auto table = testing::test_command_table();
  Bytes cmd = testing::build_command(TPM2_CC_PolicySecret, {TPM2_RH_OWNER, 0x03000001},
                                     {Auth{0x02000005, 0x01}, Auth{0x03000007, 0x00}}, Bytes{1, 2, 3});
  const ParsedCommand p = parsed(parse_command(cmd, table));
  ASSERT_EQ(p.handles.size(), 2u);
  EXPECT_EQ(p.handles[1], 0x03000001u);
  ASSERT_EQ(p.auths.size(), 2u);
  EXPECT_EQ(p.auths[0].handle, 0x02000005u);
  EXPECT_TRUE(p.auths[0].continue_session());
  EXPECT_EQ(p.auths[1].handle, 0x03000007u);
  EXPECT_FALSE(p.auths[1].continue_session());
  EXPECT_EQ(p.auths[0].offset, 22u);  // header + 2 handles + authorizationSize
  EXPECT_EQ(p.parameter_offset, cmd.size() - 3);
}

TEST(CommandParser, UnknownCommandCodeIsTheKernelsRmResponse) {
  auto table = testing::test_command_table();
  auto r = parse_command(from_hex("80010000000a000001fe"), table);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, RmError::Kind::kAnswered);
  EXPECT_EQ(r.error().rc, 0x000B0143u);
}

TEST(CommandParser, EmptyTableIsRefused) {
  auto r = parse_command(from_hex("80010000000c0000017b0020"), tpm::CommandTable{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().error, ENODEV);
}

struct Malformed {
  const char* name;
  Bytes bytes;
};

class CommandParserMalformed : public ::testing::TestWithParam<int> {};

std::vector<Malformed> malformed_cases() {
  Bytes good_auth = testing::build_command(TPM2_CC_ReadPublic, {0x80000000}, {Auth{}}, {});
  Bytes over = good_auth;
  over[17] = 0x20;  // authorizationSize larger than what follows
  Bytes nonce = good_auth;
  nonce[22] = 0x10;  // nonce size overruns
  return {
      {"empty", {}},
      {"short header", from_hex("8001000000")},
      {"bad tag", from_hex("80030000000c0000017b0020")},
      {"size larger than data", from_hex("80010000000f0000017b0020")},
      {"size smaller than data", from_hex("80010000000b0000017b0020")},
      {"truncated handle", from_hex("80010000000c00000165dead")},
      {"missing authorizationSize", from_hex("80020000000e0000017380000000")},
      {"authorizationSize too small", over},
      {"nonce overruns", nonce},
  };
}

TEST(CommandParser, MalformedCommandsGetEinvalWithAReason) {
  auto table = testing::test_command_table();
  for (const auto& c : malformed_cases()) {
    auto r = parse_command(c.bytes, table);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().error, EINVAL) << c.name;
    EXPECT_FALSE(r.error().message.empty()) << c.name;
  }
}

TEST(CommandParser, FourSessionsAreTooMany) {
  auto table = testing::test_command_table();
  Bytes cmd = testing::build_command(TPM2_CC_GetRandom, {}, {Auth{}, Auth{}, Auth{}, Auth{}}, Bytes{0, 8});
  auto r = parse_command(cmd, table);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("three"), std::string::npos);
}

}  // namespace
}  // namespace tpmrmd::rm

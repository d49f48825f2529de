#include "tpm/header.h"

#include <gtest/gtest.h>

namespace tpmrmd::tpm {
namespace {

TEST(Header, ParsesGetRandomCommand) {
  Bytes cmd = from_hex("8001 0000000c 0000017b 0020");
  auto h = parse_command_header(cmd);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->tag, TPM2_ST_NO_SESSIONS);
  EXPECT_EQ(h->size, 12u);
  EXPECT_EQ(h->code, TPM2_CC_GetRandom);
}

TEST(Header, RejectsShortBuffer) {
  Bytes cmd = from_hex("8001 0000000c 0000");
  auto h = parse_command_header(cmd);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, EINVAL);
}

TEST(Header, RmUnknownCommandResponseMatchesKernelBytes) {
  EXPECT_EQ(to_hex(make_rc_response(0x000B0143)), "80010000000a000b0143");
}

TEST(Header, PatchSizeField) {
  Bytes b = from_hex("8001 00000000 00000000 aabb");
  patch_size_field(b);
  auto h = parse_response_header(b);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->size, 12u);
}

}  // namespace
}  // namespace tpmrmd::tpm

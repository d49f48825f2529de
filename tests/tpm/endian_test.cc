// Big-endian loads and stores: round trips, byte order, offsets.
#include "tpm/endian.h"

#include <gtest/gtest.h>

namespace tpmrmd::tpm {
namespace {

TEST(Endian, LoadsInWireOrder) {
  const Bytes b = from_hex("00 0102 03040506 0708090a0b0c0d0e");
  EXPECT_EQ(load_u16(b, 1), 0x0102u);
  EXPECT_EQ(load_u32(b, 3), 0x03040506u);
  EXPECT_EQ(load_u64(b, 7), 0x0708090a0b0c0d0eull);
}

TEST(Endian, StoresInWireOrderWithoutTouchingNeighbours) {
  Bytes b(16, 0xee);
  store_u16(b, 1, 0xa1a2);
  store_u32(b, 3, 0xb1b2b3b4);
  store_u64(b, 7, 0xc1c2c3c4c5c6c7c8ull);
  EXPECT_EQ(to_hex(b), "eea1a2b1b2b3b4c1c2c3c4c5c6c7c8ee");
}

TEST(Endian, RoundTripsExtremes) {
  Bytes b(8);
  for (std::uint16_t v : {std::uint16_t{0}, std::uint16_t{1}, std::uint16_t{0x8000}, std::uint16_t{0xffff}}) {
    store_u16(b, 6, v);
    EXPECT_EQ(load_u16(b, 6), v);
  }
  for (std::uint32_t v : {0u, 1u, 0x80000000u, 0xffffffffu, 0x000b0143u}) {
    store_u32(b, 4, v);
    EXPECT_EQ(load_u32(b, 4), v);
  }
  for (std::uint64_t v : {0ull, 1ull, 0x8000000000000000ull, ~0ull}) {
    store_u64(b, 0, v);
    EXPECT_EQ(load_u64(b, 0), v);
  }
}

TEST(Endian, ReadsTheSizeFieldOfAHeader) {
  EXPECT_EQ(load_u32(from_hex("8001 0000000c 0000017b 0020"), 2), 12u);
}

}  // namespace
}  // namespace tpmrmd::tpm

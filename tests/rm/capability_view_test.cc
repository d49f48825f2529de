#include "rm/capability_view.h"

#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include "support/tpm_commands.h"

namespace tpmrmd::rm {
namespace {

Bytes answer(const std::vector<TPM2_HANDLE>& all, std::uint32_t from, std::uint32_t count) {
  std::vector<TPM2_HANDLE> rest;
  for (auto h : all) {
    if (h >= from) rest.push_back(h);
  }
  return make_handles_response(rest, count);
}

TEST(CapabilityView, PagesWithCorrectMoreData) {
  std::vector<TPM2_HANDLE> all{0x80000000, 0x80000001, 0x80000004};
  auto r = testing::parse_handles(answer(all, 0x80000000, 2));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->handles, (std::vector<TPM2_HANDLE>{0x80000000, 0x80000001}));
  EXPECT_TRUE(r->more);
  r = testing::parse_handles(answer(all, 0x80000002, 2));
  EXPECT_EQ(r->handles, (std::vector<TPM2_HANDLE>{0x80000004}));
  EXPECT_FALSE(r->more);
  r = testing::parse_handles(answer(all, 0x80000005, 5));
  EXPECT_TRUE(r->handles.empty());
  EXPECT_FALSE(r->more);
  r = testing::parse_handles(answer(all, 0x80000000, 0));
  EXPECT_TRUE(r->handles.empty());
  EXPECT_TRUE(r->more);
}

TEST(CapabilityView, KernelSelftestEnumerationTerminates) {
  // tools/testing/selftests/tpm2: start at 0x80000000, count 1, property += 1 while moreData.
  std::vector<TPM2_HANDLE> all{0x80000000, 0x80000001};
  std::vector<TPM2_HANDLE> seen;
  std::uint32_t pt = 0x80000000;
  for (int i = 0; i < 10; ++i) {
    auto r = testing::parse_handles(answer(all, pt, 1));
    ASSERT_TRUE(r);
    seen.insert(seen.end(), r->handles.begin(), r->handles.end());
    if (!r->more) break;
    pt += 1;
  }
  EXPECT_EQ(seen, all);
}

TEST(CapabilityView, CountIsCappedAtWhatOneResponseHolds) {
  std::vector<TPM2_HANDLE> all;
  for (TPM2_HANDLE h = 0x80000000; h < 0x80000000 + 300; ++h) all.push_back(h);
  auto r = testing::parse_handles(answer(all, 0x80000000, 1000));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->handles.size(), TPM2_MAX_CAP_HANDLES);
  EXPECT_TRUE(r->more);
}

TEST(CapabilityView, QueryParsingAndRanges) {
  Bytes cmd = testing::get_capability(TPM2_CAP_HANDLES, 0x80000000, 7);
  auto q = parse_capability_query(ByteSpan(cmd).subspan(10));
  ASSERT_TRUE(q);
  EXPECT_EQ(q->capability, TPM2_CAP_HANDLES);
  EXPECT_EQ(q->property, 0x80000000u);
  EXPECT_EQ(q->count, 7u);
  EXPECT_FALSE(parse_capability_query(ByteSpan(cmd).subspan(11)));
  EXPECT_TRUE(is_virtualised_handle_range(0x02000000));
  EXPECT_TRUE(is_virtualised_handle_range(0x03000000));
  EXPECT_FALSE(is_virtualised_handle_range(0x81000000));
  EXPECT_FALSE(is_virtualised_handle_range(0x01000000));
  EXPECT_FALSE(is_virtualised_handle_range(0x40000000));
}

}  // namespace
}  // namespace tpmrmd::rm

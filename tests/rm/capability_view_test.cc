#include "rm/capability_view.h"

#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include "rm/context_commands.h"
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

TEST(ContextCommands, ContextHeaderAndBuilders) {
  TPMS_CONTEXT ctx{};
  ctx.sequence = 0x1122334455667788ull;
  ctx.savedHandle = 0x02000001;
  ctx.hierarchy = TPM2_RH_NULL;
  ctx.contextBlob.size = 3;
  Bytes blob(64);
  size_t off = 0;
  ASSERT_EQ(Tss2_MU_TPMS_CONTEXT_Marshal(&ctx, blob.data(), blob.size(), &off), TSS2_RC_SUCCESS);
  blob.resize(off);
  auto h = parse_context(blob);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->sequence, 0x1122334455667788ull);
  EXPECT_EQ(h->saved_handle, 0x02000001u);
  Bytes longer = blob;
  longer.push_back(0);
  EXPECT_FALSE(parse_context(longer));
  EXPECT_FALSE(parse_context(ByteSpan(blob).first(blob.size() - 1)));
  EXPECT_EQ(to_hex(make_flush_context(0x80000001)), "80010000000e0000016580000001");
  EXPECT_EQ(to_hex(make_context_load_response(0x02000001)), "80010000000e0000000002000001");
  EXPECT_EQ(rc_base(0x18B), 0x8Bu);
  EXPECT_EQ(rc_base(0x902), 0x902u);
}

}  // namespace
}  // namespace tpmrmd::rm

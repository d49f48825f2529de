// Response accessors: what they read from good responses and how they refuse short or malformed ones.
#include "tpm/responses.h"

#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include "tpm/commands.h"
#include "tpm/header.h"

namespace tpmrmd::tpm {
namespace {

Bytes context_blob(std::uint64_t sequence, TPM2_HANDLE saved_handle) {
  TPMS_CONTEXT ctx{};
  ctx.sequence = sequence;
  ctx.savedHandle = saved_handle;
  ctx.hierarchy = TPM2_RH_NULL;
  ctx.contextBlob.size = 3;
  Bytes blob;
  append_marshalled(blob, ctx, Tss2_MU_TPMS_CONTEXT_Marshal);
  return blob;
}

TEST(Responses, ParseContextReadsSequenceAndSavedHandle) {
  Bytes blob = context_blob(0x1122334455667788ull, 0x02000001);
  auto h = parse_context(blob);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->sequence, 0x1122334455667788ull);
  EXPECT_EQ(h->saved_handle, 0x02000001u);
}

TEST(Responses, ParseContextWantsExactlyOneContext) {
  Bytes blob = context_blob(1, 0x80000000);
  Bytes longer = blob;
  longer.push_back(0);
  EXPECT_FALSE(parse_context(longer));
  EXPECT_FALSE(parse_context(ByteSpan(blob).first(blob.size() - 1)));
  EXPECT_FALSE(parse_context({}));
}

TEST(Responses, ResponseCode) {
  auto rc = response_code(from_hex("80010000000a00000902"));
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, TPM2_RC_OBJECT_MEMORY);
  auto short_rc = response_code(from_hex("800100000009000009"));
  ASSERT_FALSE(short_rc);
  EXPECT_EQ(short_rc.error().code, EIO);
  ASSERT_FALSE(response_code({}));
}

TEST(Responses, HandleFromResponse) {
  auto h = handle_from_response(make_context_load_response(0x80000002));
  ASSERT_TRUE(h);
  EXPECT_EQ(*h, 0x80000002u);
  for (const char* bad : {"", "80010000000a00000000", "80010000000d00000000800000"}) {
    auto r = handle_from_response(from_hex(bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, EIO) << bad;
  }
}

TEST(Responses, ContextFromSaveResponse) {
  Bytes blob = context_blob(7, 0x02000003);
  auto c = context_from_save_response(make_context_save_response(blob));
  ASSERT_TRUE(c);
  EXPECT_EQ(*c, blob);
  Bytes truncated = make_context_save_response(ByteSpan(blob).first(blob.size() - 2));
  for (const Bytes& bad : {Bytes{}, make_success_response(), truncated}) {
    auto r = context_from_save_response(bad);
    ASSERT_FALSE(r) << to_hex(bad);
    EXPECT_EQ(r.error().code, EIO);
  }
}

TEST(Responses, RcBaseStripsTheFormatOneNumber) {
  EXPECT_EQ(rc_base(0x18B), 0x8Bu);  // TPM_RC_HANDLE on handle 1
  EXPECT_EQ(rc_base(0x1D5), 0x95u);  // TPM_RC_SIZE on parameter 1
  EXPECT_EQ(rc_base(0x902), 0x902u);  // format 0 is left alone
}

Bytes handles_response(bool more, std::initializer_list<TPM2_HANDLE> handles) {
  TPMS_CAPABILITY_DATA data{};
  data.capability = TPM2_CAP_HANDLES;
  for (TPM2_HANDLE h : handles) data.data.handles.handle[data.data.handles.count++] = h;
  Bytes body;
  append_marshalled(body, static_cast<TPMI_YES_NO>(more ? TPM2_YES : TPM2_NO), Tss2_MU_UINT8_Marshal);
  append_marshalled(body, data, Tss2_MU_TPMS_CAPABILITY_DATA_Marshal);
  return make_response(TPM2_RC_SUCCESS, body);
}

TEST(Responses, ParseGetCapability) {
  auto page = parse_get_capability(handles_response(true, {0x80000000, 0x80000001}));
  ASSERT_TRUE(page) << describe(page.error());
  EXPECT_TRUE(page->more_data);
  ASSERT_EQ(page->data.capability, TPM2_CAP_HANDLES);
  ASSERT_EQ(page->data.data.handles.count, 2u);
  EXPECT_EQ(page->data.data.handles.handle[1], 0x80000001u);
}

TEST(Responses, ParseGetCapabilityRejectsShortFailedAndMalformed) {
  Bytes good = handles_response(false, {0x80000000});
  Bytes trailing = good;
  trailing.push_back(0);
  const Bytes bad[] = {
      {},
      from_hex("80010000000a"),
      make_rc_response(TPM2_RC_FAILURE),
      Bytes(good.begin(), good.end() - 1),
      trailing,
  };
  for (const Bytes& b : bad) {
    auto r = parse_get_capability(b);
    ASSERT_FALSE(r) << to_hex(b);
    EXPECT_EQ(r.error().code, EIO) << to_hex(b);
  }
}

}  // namespace
}  // namespace tpmrmd::tpm

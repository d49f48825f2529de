#include "tpm/command_attributes.h"

#include <gtest/gtest.h>

namespace tpmrmd::tpm {
namespace {

// TPMA_CC for CreatePrimary as libtpms reports it: cHandles=1, rHandle=1, commandIndex=0x131.
constexpr TPMA_CC kCreatePrimary = (1u << 28) | (1u << 25) | 0x131;
// ContextSave: cHandles=0 on the wire (the handle is a parameter); the table forces 1.
constexpr TPMA_CC kContextSave = 0x162;
// FlushContext as libtpms reports it: cHandles=0, flushed=0 (its handle is a parameter).
constexpr TPMA_CC kFlushContext = 0x165;

TEST(CommandAttributes, DecodesFields) {
  CommandAttributes a(kCreatePrimary);
  EXPECT_EQ(a.code(), TPM2_CC_CreatePrimary);
  EXPECT_EQ(a.handle_count(), 1u);
  EXPECT_TRUE(a.returns_handle());
  EXPECT_FALSE(a.flushes());
  EXPECT_FALSE(a.vendor());
}

TEST(CommandTable, ForcesOneHandleForContextSaveAndFlush) {
  CommandTable t({CommandAttributes(kFlushContext), CommandAttributes(kCreatePrimary),
                  CommandAttributes(kContextSave)});
  ASSERT_TRUE(t.find(TPM2_CC_ContextSave).has_value());
  EXPECT_EQ(t.find(TPM2_CC_ContextSave)->handle_count(), 1u);
  EXPECT_EQ(t.find(TPM2_CC_FlushContext)->handle_count(), 1u);
  EXPECT_EQ(t.find(TPM2_CC_CreatePrimary)->handle_count(), 1u);
  EXPECT_FALSE(t.find(TPM2_CC_GetRandom).has_value());
}

TEST(CommandTable, VendorBitIsPartOfTheCode) {
  CommandTable t({CommandAttributes((1u << 29) | 0x1000)});
  EXPECT_TRUE(t.find(0x20001000).has_value());
  EXPECT_FALSE(t.find(0x1000).has_value());
}

}  // namespace
}  // namespace tpmrmd::tpm

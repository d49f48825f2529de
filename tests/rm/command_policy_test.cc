// The command policy's decisions per caller class, the built-in profiles, the policy file and its errors, and
// the command-code names they rest on.
#include "rm/command_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "rm/command_policy_file.h"
#include "tpm/cc_names.h"

namespace tpmrmd::rm {
namespace {

constexpr gid_t kTss = 4242;
const ClientInfo kRoot{0, 0, 1};
const ClientInfo kUser{1000, 1000, 2};
const ClientInfo kMemberByPrimary{1001, kTss, 3};
const ClientInfo kMemberBySupplementary{1002, 1002, 4, {27, kTss}};

std::optional<gid_t> test_groups(std::string_view name) {
  if (name == "tss") return kTss;
  return std::nullopt;
}

Result<CommandPolicy> parse(std::string_view text) { return parse_command_policy(text, "policy.json", test_groups); }

std::string error_of(std::string_view text) {
  auto parsed = parse(text);
  EXPECT_FALSE(parsed) << "accepted: " << text;
  return parsed ? std::string() : parsed.error().message;
}

constexpr TPM2_CC kVendor = 0x20000000u;

TEST(CommandPolicy, DefaultProfileAllowsEveryCommandToEveryone) {
  const CommandPolicy policy;
  EXPECT_TRUE(policy.permits_everything());
  for (TPM2_CC code : tpm::known_command_codes()) {
    EXPECT_TRUE(policy.allows(kUser, code)) << tpm::cc_label(code);
  }
  EXPECT_TRUE(policy.allows(kUser, kVendor | 0x1234));
  EXPECT_TRUE(policy.allows(kUser, 0x0000FFFF));
}

TEST(CommandPolicy, StrictRefusesEachPrivilegedCommandToNonRootAndAllowsItToRoot) {
  auto policy = CommandPolicy::from_profile(PolicyProfile::kStrict);
  policy.set_group(kTss, "tss");
  EXPECT_FALSE(policy.permits_everything());
  ASSERT_EQ(privileged_commands().size(), 18u);
  for (TPM2_CC code : privileged_commands()) {
    EXPECT_TRUE(policy.allows(kRoot, code)) << tpm::cc_label(code);
    EXPECT_FALSE(policy.allows(kUser, code)) << tpm::cc_label(code);
    EXPECT_FALSE(policy.allows(kMemberBySupplementary, code)) << tpm::cc_label(code);
  }
  for (TPM2_CC code : {TPM2_CC_Clear, TPM2_CC_HierarchyControl, TPM2_CC_ClockSet, TPM2_CC_PCR_Allocate}) {
    EXPECT_TRUE(is_privileged(code));
  }
  EXPECT_FALSE(is_privileged(TPM2_CC_ReadClock));
}

TEST(CommandPolicy, StrictAllowsOrdinaryCommandsIncludingThePowerCycleTheRmAnswers) {
  const auto policy = CommandPolicy::from_profile(PolicyProfile::kStrict);
  for (TPM2_CC code : {TPM2_CC_ReadClock, TPM2_CC_GetRandom, TPM2_CC_CreatePrimary, TPM2_CC_Create, TPM2_CC_Load,
                       TPM2_CC_Sign, TPM2_CC_FlushContext, TPM2_CC_ContextSave, TPM2_CC_ContextLoad,
                       TPM2_CC_StartAuthSession, TPM2_CC_GetCapability, TPM2_CC_PCR_Extend, TPM2_CC_NV_Read,
                       TPM2_CC_Startup, TPM2_CC_Shutdown}) {
    EXPECT_TRUE(policy.allows(kUser, code)) << tpm::cc_label(code);
  }
}

TEST(CommandPolicy, StrictAllowListAndPrivilegedListSplitTheSpecificationsCommands) {
  const std::set<TPM2_CC> allowed(strict_allowed_commands().begin(), strict_allowed_commands().end());
  const std::set<TPM2_CC> privileged(privileged_commands().begin(), privileged_commands().end());
  EXPECT_EQ(allowed.size(), strict_allowed_commands().size()) << "duplicates in the allow list";
  for (TPM2_CC code : tpm::known_command_codes()) {
    const bool vendor = code & kVendor;
    EXPECT_EQ(allowed.count(code) + privileged.count(code), vendor ? 0u : 1u) << tpm::cc_label(code);
  }
}

TEST(CommandPolicy, StrictDeniesUnknownAndVendorCodesToNonRoot) {
  auto policy = CommandPolicy::from_profile(PolicyProfile::kStrict);
  policy.set_group(kTss, "tss");
  for (TPM2_CC code : {kVendor, kVendor | 0x0001u, kVendor | 0x0126u, 0x0000011Eu, 0x000001FFu, 0x0000FFFFu}) {
    EXPECT_FALSE(policy.allows(kUser, code)) << std::hex << code;
    EXPECT_FALSE(policy.allows(kMemberByPrimary, code)) << std::hex << code;
    EXPECT_TRUE(policy.allows(kRoot, code)) << std::hex << code;
  }
}

TEST(CommandPolicy, GroupMembershipByPrimaryOrSupplementaryGroup) {
  CommandPolicy policy;
  EXPECT_EQ(policy.classify(kMemberByPrimary), CallerClass::kOther) << "no group configured";
  policy.set_group(kTss, "tss");
  EXPECT_EQ(policy.classify(kRoot), CallerClass::kRoot);
  EXPECT_EQ(policy.classify(ClientInfo{0, kTss, 1, {kTss}}), CallerClass::kRoot) << "root stays root";
  EXPECT_EQ(policy.classify(kMemberByPrimary), CallerClass::kGroup);
  EXPECT_EQ(policy.classify(kMemberBySupplementary), CallerClass::kGroup);
  EXPECT_EQ(policy.classify(kUser), CallerClass::kOther);
  EXPECT_EQ(policy.classify(ClientInfo{1003, 1003, 5, {27, 100}}), CallerClass::kOther);
}

TEST(CommandPolicy, EachClassHasItsOwnRules) {
  auto parsed = parse(R"({"profile": "strict", "group": "tss",
                          "classes": {"group": {"allow": ["Clear", "TPM2_CC_DictionaryAttackLockReset"]},
                                      "other": {"deny": ["EvictControl"]},
                                      "root": {"deny": ["FieldUpgradeStart"]}}})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  const CommandPolicy& p = *parsed;
  EXPECT_EQ(p.group(), kTss);
  EXPECT_EQ(p.decide(kMemberBySupplementary, TPM2_CC_Clear).caller, CallerClass::kGroup);
  EXPECT_TRUE(p.allows(kMemberBySupplementary, TPM2_CC_Clear));
  EXPECT_TRUE(p.allows(kMemberBySupplementary, TPM2_CC_DictionaryAttackLockReset));
  EXPECT_FALSE(p.allows(kMemberBySupplementary, TPM2_CC_ClockSet));
  EXPECT_TRUE(p.allows(kMemberBySupplementary, TPM2_CC_EvictControl));
  EXPECT_FALSE(p.allows(kUser, TPM2_CC_Clear));
  EXPECT_FALSE(p.allows(kUser, TPM2_CC_EvictControl));
  EXPECT_TRUE(p.allows(kUser, TPM2_CC_ReadClock));
  EXPECT_FALSE(p.allows(kRoot, TPM2_CC_FieldUpgradeStart));
  EXPECT_TRUE(p.allows(kRoot, TPM2_CC_Clear));
}

TEST(CommandPolicyFile, NumbersAndAllAndDenyWinning) {
  auto parsed = parse(R"({"classes": {"other": {"deny": [294, "0x20000001", "0X0000012A"]},
                                      "group": {"allow": "all", "deny": ["Clear"]}}})");
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->profile(), PolicyProfile::kDefault);
  EXPECT_FALSE(parsed->allows(kUser, TPM2_CC_Clear));            // 294
  EXPECT_FALSE(parsed->allows(kUser, 0x20000001));
  EXPECT_FALSE(parsed->allows(kUser, TPM2_CC_NV_DefineSpace));   // 0x12a
  EXPECT_TRUE(parsed->allows(kUser, TPM2_CC_ClockSet));

  auto strict = parse(R"({"profile": "strict", "classes": {"other": {"allow": "all", "deny": ["Clear"]}}})");
  ASSERT_TRUE(strict) << strict.error().message;
  EXPECT_TRUE(strict->allows(kUser, TPM2_CC_ClockSet));
  EXPECT_TRUE(strict->allows(kUser, kVendor | 7));
  EXPECT_FALSE(strict->allows(kUser, TPM2_CC_Clear));

  auto both = parse(R"({"classes": {"other": {"allow": ["Clear"], "deny": ["Clear"]}}})");
  ASSERT_TRUE(both);
  EXPECT_FALSE(both->allows(kUser, TPM2_CC_Clear)) << "deny wins";

  auto empty = parse("{}");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->permits_everything());
}

TEST(CommandPolicyFile, ErrorsSayWhatAndWhere) {
  EXPECT_NE(error_of(R"({"classes": {"other": {"deny": ["Clear", "Clearr"]}}})")
                .find("policy.json: classes.other.deny[1]: unknown command 'Clearr'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"profile": "lenient"})").find("policy.json: profile: expected \"default\" or \"strict\""),
            std::string::npos);
  EXPECT_NE(error_of(R"({"classes": {"others": {}}})").find("unknown class 'others'"), std::string::npos);
  EXPECT_NE(error_of(R"({"classes": {"other": {"refuse": []}}})").find("classes.other: unknown key 'refuse'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"profiles": "strict"})").find("top level: unknown key 'profiles'"), std::string::npos);
  EXPECT_NE(error_of(R"({"group": "nosuchgroup"})").find("group: unknown group 'nosuchgroup'"), std::string::npos);
  EXPECT_NE(error_of(R"({"classes": {"other": {"deny": "Clear"}}})").find("expected a list of commands"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"classes": {"other": {"deny": [true]}}})").find("deny[0]: a command is a name or a number"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"classes": {"other": {"deny": [4294967296]}}})").find("does not fit 32 bits"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"classes": {"other": {"deny": [-1]}}})").find("a command is a name or a number"),
            std::string::npos);
  const std::string json = error_of("{\"profile\": \"strict\",\n  \"classes\": {\n}");
  EXPECT_NE(json.find("policy.json: not valid JSON:"), std::string::npos) << json;
  EXPECT_NE(json.find("line 3"), std::string::npos) << json;
  EXPECT_NE(error_of("[1]").find("top level: expected an object"), std::string::npos);
}

TEST(CommandPolicyFile, MissingFileIsAnError) {
  auto loaded = load_command_policy("/nonexistent/tpmrmd-policy.json", test_groups);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("/nonexistent/tpmrmd-policy.json: cannot open"), std::string::npos);
}

TEST(CommandPolicyFile, TheShippedExampleParses) {
  auto loaded = load_command_policy(TPMRMD_SOURCE_ROOT "/dist/command-policy.json",
                                    [](std::string_view) { return std::optional<gid_t>(kTss); });
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(loaded->profile(), PolicyProfile::kStrict);
  EXPECT_FALSE(loaded->allows(kUser, TPM2_CC_Clear));
}

TEST(CcNames, BothWays) {
  EXPECT_EQ(tpm::cc_name(TPM2_CC_Clear), "Clear");
  EXPECT_EQ(tpm::cc_name(TPM2_CC_NV_GlobalWriteLock), "NV_GlobalWriteLock");
  EXPECT_EQ(tpm::cc_name(0x0000FFFF), std::nullopt);
  EXPECT_EQ(tpm::cc_label(0x20000123), "0x20000123");
  EXPECT_EQ(tpm::cc_from_name("Clear"), TPM2_CC_Clear);
  EXPECT_EQ(tpm::cc_from_name("TPM2_CC_Clear"), TPM2_CC_Clear);
  EXPECT_EQ(tpm::cc_from_name("tpm2_cc_hierarchycontrol"), TPM2_CC_HierarchyControl);
  EXPECT_EQ(tpm::cc_from_name("TPM2_CC_"), std::nullopt);
  EXPECT_EQ(tpm::cc_from_name("Clea"), std::nullopt);
  for (TPM2_CC code : tpm::known_command_codes()) EXPECT_EQ(tpm::cc_from_name(*tpm::cc_name(code)), code);
  EXPECT_EQ(parse_command_code("0x"), std::nullopt);
  EXPECT_EQ(parse_command_code("12a"), std::nullopt);
  EXPECT_EQ(parse_command_code("0x12a"), 0x12au);
}

}  // namespace
}  // namespace tpmrmd::rm

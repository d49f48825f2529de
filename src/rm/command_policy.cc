#include "rm/command_policy.h"

#include <fmt/format.h>

#include <algorithm>

namespace tpmrmd::rm {
namespace {

constexpr TPM2_CC kPrivileged[] = {
    TPM2_CC_Clear,
    TPM2_CC_ClearControl,
    TPM2_CC_HierarchyControl,
    TPM2_CC_ChangeEPS,
    TPM2_CC_ChangePPS,
    TPM2_CC_HierarchyChangeAuth,
    TPM2_CC_SetPrimaryPolicy,
    TPM2_CC_DictionaryAttackLockReset,
    TPM2_CC_DictionaryAttackParameters,
    TPM2_CC_NV_GlobalWriteLock,
    TPM2_CC_FieldUpgradeStart,
    TPM2_CC_FieldUpgradeData,
    TPM2_CC_PP_Commands,
    TPM2_CC_SetCommandCodeAuditStatus,
    TPM2_CC_ClockSet,
    TPM2_CC_ClockRateAdjust,
    TPM2_CC_PCR_Allocate,
    TPM2_CC_SetAlgorithmSet,
};

// Listed, not computed as "everything but the privileged ones": a command code a later specification (or a
// vendor) adds stays refused to non-root callers until someone decides it is harmless. Startup and Shutdown
// are here because the RM answers them itself (the TPM's power cycle belongs to the daemon).
constexpr TPM2_CC kStrictAllowed[] = {
    TPM2_CC_NV_UndefineSpaceSpecial,
    TPM2_CC_EvictControl,
    TPM2_CC_NV_UndefineSpace,
    TPM2_CC_NV_DefineSpace,
    TPM2_CC_PCR_SetAuthPolicy,
    TPM2_CC_CreatePrimary,
    TPM2_CC_GetCommandAuditDigest,
    TPM2_CC_NV_Increment,
    TPM2_CC_NV_SetBits,
    TPM2_CC_NV_Extend,
    TPM2_CC_NV_Write,
    TPM2_CC_NV_WriteLock,
    TPM2_CC_NV_ChangeAuth,
    TPM2_CC_PCR_Event,
    TPM2_CC_PCR_Reset,
    TPM2_CC_SequenceComplete,
    TPM2_CC_IncrementalSelfTest,
    TPM2_CC_SelfTest,
    TPM2_CC_Startup,
    TPM2_CC_Shutdown,
    TPM2_CC_StirRandom,
    TPM2_CC_ActivateCredential,
    TPM2_CC_Certify,
    TPM2_CC_PolicyNV,
    TPM2_CC_CertifyCreation,
    TPM2_CC_Duplicate,
    TPM2_CC_GetTime,
    TPM2_CC_GetSessionAuditDigest,
    TPM2_CC_NV_Read,
    TPM2_CC_NV_ReadLock,
    TPM2_CC_ObjectChangeAuth,
    TPM2_CC_PolicySecret,
    TPM2_CC_Rewrap,
    TPM2_CC_Create,
    TPM2_CC_ECDH_ZGen,
    TPM2_CC_HMAC,
    TPM2_CC_Import,
    TPM2_CC_Load,
    TPM2_CC_Quote,
    TPM2_CC_RSA_Decrypt,
    TPM2_CC_HMAC_Start,
    TPM2_CC_SequenceUpdate,
    TPM2_CC_Sign,
    TPM2_CC_Unseal,
    TPM2_CC_PolicySigned,
    TPM2_CC_ContextLoad,
    TPM2_CC_ContextSave,
    TPM2_CC_ECDH_KeyGen,
    TPM2_CC_EncryptDecrypt,
    TPM2_CC_FlushContext,
    TPM2_CC_LoadExternal,
    TPM2_CC_MakeCredential,
    TPM2_CC_NV_ReadPublic,
    TPM2_CC_PolicyAuthorize,
    TPM2_CC_PolicyAuthValue,
    TPM2_CC_PolicyCommandCode,
    TPM2_CC_PolicyCounterTimer,
    TPM2_CC_PolicyCpHash,
    TPM2_CC_PolicyLocality,
    TPM2_CC_PolicyNameHash,
    TPM2_CC_PolicyOR,
    TPM2_CC_PolicyTicket,
    TPM2_CC_ReadPublic,
    TPM2_CC_RSA_Encrypt,
    TPM2_CC_StartAuthSession,
    TPM2_CC_VerifySignature,
    TPM2_CC_ECC_Parameters,
    TPM2_CC_FirmwareRead,
    TPM2_CC_GetCapability,
    TPM2_CC_GetRandom,
    TPM2_CC_GetTestResult,
    TPM2_CC_Hash,
    TPM2_CC_PCR_Read,
    TPM2_CC_PolicyPCR,
    TPM2_CC_PolicyRestart,
    TPM2_CC_ReadClock,
    TPM2_CC_PCR_Extend,
    TPM2_CC_PCR_SetAuthValue,
    TPM2_CC_NV_Certify,
    TPM2_CC_EventSequenceComplete,
    TPM2_CC_HashSequenceStart,
    TPM2_CC_PolicyPhysicalPresence,
    TPM2_CC_PolicyDuplicationSelect,
    TPM2_CC_PolicyGetDigest,
    TPM2_CC_TestParms,
    TPM2_CC_Commit,
    TPM2_CC_PolicyPassword,
    TPM2_CC_ZGen_2Phase,
    TPM2_CC_EC_Ephemeral,
    TPM2_CC_PolicyNvWritten,
    TPM2_CC_PolicyTemplate,
    TPM2_CC_CreateLoaded,
    TPM2_CC_PolicyAuthorizeNV,
    TPM2_CC_EncryptDecrypt2,
    TPM2_CC_AC_GetCapability,
    TPM2_CC_AC_Send,
    TPM2_CC_Policy_AC_SendSelect,
    TPM2_CC_CertifyX509,
    TPM2_CC_ACT_SetTimeout,
};

}  // namespace

std::span<const TPM2_CC> privileged_commands() { return kPrivileged; }

bool is_privileged(TPM2_CC code) {
  return std::find(std::begin(kPrivileged), std::end(kPrivileged), code) != std::end(kPrivileged);
}

std::span<const TPM2_CC> strict_allowed_commands() { return kStrictAllowed; }

std::string_view caller_class_name(CallerClass c) {
  switch (c) {
    case CallerClass::kRoot:
      return "root";
    case CallerClass::kGroup:
      return "group";
    case CallerClass::kOther:
      return "other";
  }
  return "other";
}

std::optional<PolicyProfile> policy_profile_from_name(std::string_view name) {
  if (name == "default") return PolicyProfile::kDefault;
  if (name == "strict") return PolicyProfile::kStrict;
  return std::nullopt;
}

std::string_view policy_profile_name(PolicyProfile p) { return p == PolicyProfile::kStrict ? "strict" : "default"; }

bool ClassRules::allows(TPM2_CC code) const {
  if (deny.count(code)) return false;
  return allow_all || allow.count(code);
}

CommandPolicy CommandPolicy::from_profile(PolicyProfile profile) {
  CommandPolicy policy;
  policy.profile_ = profile;
  if (profile == PolicyProfile::kStrict) {
    ClassRules limited{.allow_all = false, .allow = {std::begin(kStrictAllowed), std::end(kStrictAllowed)}, .deny = {}};
    policy.group_rules_ = limited;
    policy.other_ = std::move(limited);
  }
  return policy;
}

CallerClass CommandPolicy::classify(const ClientInfo& client) const {
  if (client.uid == 0) return CallerClass::kRoot;
  if (group_ && client.in_group(*group_)) return CallerClass::kGroup;
  return CallerClass::kOther;
}

PolicyDecision CommandPolicy::decide(const ClientInfo& client, TPM2_CC code) const {
  const CallerClass caller = classify(client);
  return {rules(caller).allows(code), caller};
}

ClassRules& CommandPolicy::rules(CallerClass c) {
  return const_cast<ClassRules&>(static_cast<const CommandPolicy&>(*this).rules(c));
}

const ClassRules& CommandPolicy::rules(CallerClass c) const {
  switch (c) {
    case CallerClass::kRoot:
      return root_;
    case CallerClass::kGroup:
      return group_rules_;
    case CallerClass::kOther:
      break;
  }
  return other_;
}

void CommandPolicy::set_group(gid_t gid, std::string name) {
  group_ = gid;
  group_name_ = std::move(name);
}

bool CommandPolicy::permits_everything() const {
  const ClassRules everything;
  return root_ == everything && group_rules_ == everything && other_ == everything;
}

std::string CommandPolicy::describe() const {
  auto rules_text = [](const ClassRules& r) {
    std::string text = r.allow_all ? "all" : fmt::format("allow:{}", r.allow.size());
    if (!r.deny.empty()) text += fmt::format(",deny:{}", r.deny.size());
    return text;
  };
  std::string group = group_ ? fmt::format("{}(gid {})", group_name_, *group_) : "none";
  return fmt::format("profile={} group={} root={} group-class={} other={}", policy_profile_name(profile_), group,
                     rules_text(root_), rules_text(group_rules_), rules_text(other_));
}

}  // namespace tpmrmd::rm

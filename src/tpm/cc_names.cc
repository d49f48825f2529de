#include "tpm/cc_names.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

namespace tpmrmd::tpm {
namespace {

struct Entry {
  TPM2_CC code;
  std::string_view name;
};

// Every command code tss2_tpm2_types.h names (TPM 2.0 Part 2, table 12), by code.
constexpr Entry kNames[] = {
    {TPM2_CC_NV_UndefineSpaceSpecial, "NV_UndefineSpaceSpecial"},
    {TPM2_CC_EvictControl, "EvictControl"},
    {TPM2_CC_HierarchyControl, "HierarchyControl"},
    {TPM2_CC_NV_UndefineSpace, "NV_UndefineSpace"},
    {TPM2_CC_ChangeEPS, "ChangeEPS"},
    {TPM2_CC_ChangePPS, "ChangePPS"},
    {TPM2_CC_Clear, "Clear"},
    {TPM2_CC_ClearControl, "ClearControl"},
    {TPM2_CC_ClockSet, "ClockSet"},
    {TPM2_CC_HierarchyChangeAuth, "HierarchyChangeAuth"},
    {TPM2_CC_NV_DefineSpace, "NV_DefineSpace"},
    {TPM2_CC_PCR_Allocate, "PCR_Allocate"},
    {TPM2_CC_PCR_SetAuthPolicy, "PCR_SetAuthPolicy"},
    {TPM2_CC_PP_Commands, "PP_Commands"},
    {TPM2_CC_SetPrimaryPolicy, "SetPrimaryPolicy"},
    {TPM2_CC_FieldUpgradeStart, "FieldUpgradeStart"},
    {TPM2_CC_ClockRateAdjust, "ClockRateAdjust"},
    {TPM2_CC_CreatePrimary, "CreatePrimary"},
    {TPM2_CC_NV_GlobalWriteLock, "NV_GlobalWriteLock"},
    {TPM2_CC_GetCommandAuditDigest, "GetCommandAuditDigest"},
    {TPM2_CC_NV_Increment, "NV_Increment"},
    {TPM2_CC_NV_SetBits, "NV_SetBits"},
    {TPM2_CC_NV_Extend, "NV_Extend"},
    {TPM2_CC_NV_Write, "NV_Write"},
    {TPM2_CC_NV_WriteLock, "NV_WriteLock"},
    {TPM2_CC_DictionaryAttackLockReset, "DictionaryAttackLockReset"},
    {TPM2_CC_DictionaryAttackParameters, "DictionaryAttackParameters"},
    {TPM2_CC_NV_ChangeAuth, "NV_ChangeAuth"},
    {TPM2_CC_PCR_Event, "PCR_Event"},
    {TPM2_CC_PCR_Reset, "PCR_Reset"},
    {TPM2_CC_SequenceComplete, "SequenceComplete"},
    {TPM2_CC_SetAlgorithmSet, "SetAlgorithmSet"},
    {TPM2_CC_SetCommandCodeAuditStatus, "SetCommandCodeAuditStatus"},
    {TPM2_CC_FieldUpgradeData, "FieldUpgradeData"},
    {TPM2_CC_IncrementalSelfTest, "IncrementalSelfTest"},
    {TPM2_CC_SelfTest, "SelfTest"},
    {TPM2_CC_Startup, "Startup"},
    {TPM2_CC_Shutdown, "Shutdown"},
    {TPM2_CC_StirRandom, "StirRandom"},
    {TPM2_CC_ActivateCredential, "ActivateCredential"},
    {TPM2_CC_Certify, "Certify"},
    {TPM2_CC_PolicyNV, "PolicyNV"},
    {TPM2_CC_CertifyCreation, "CertifyCreation"},
    {TPM2_CC_Duplicate, "Duplicate"},
    {TPM2_CC_GetTime, "GetTime"},
    {TPM2_CC_GetSessionAuditDigest, "GetSessionAuditDigest"},
    {TPM2_CC_NV_Read, "NV_Read"},
    {TPM2_CC_NV_ReadLock, "NV_ReadLock"},
    {TPM2_CC_ObjectChangeAuth, "ObjectChangeAuth"},
    {TPM2_CC_PolicySecret, "PolicySecret"},
    {TPM2_CC_Rewrap, "Rewrap"},
    {TPM2_CC_Create, "Create"},
    {TPM2_CC_ECDH_ZGen, "ECDH_ZGen"},
    {TPM2_CC_HMAC, "HMAC"},
    {TPM2_CC_Import, "Import"},
    {TPM2_CC_Load, "Load"},
    {TPM2_CC_Quote, "Quote"},
    {TPM2_CC_RSA_Decrypt, "RSA_Decrypt"},
    {TPM2_CC_HMAC_Start, "HMAC_Start"},
    {TPM2_CC_SequenceUpdate, "SequenceUpdate"},
    {TPM2_CC_Sign, "Sign"},
    {TPM2_CC_Unseal, "Unseal"},
    {TPM2_CC_PolicySigned, "PolicySigned"},
    {TPM2_CC_ContextLoad, "ContextLoad"},
    {TPM2_CC_ContextSave, "ContextSave"},
    {TPM2_CC_ECDH_KeyGen, "ECDH_KeyGen"},
    {TPM2_CC_EncryptDecrypt, "EncryptDecrypt"},
    {TPM2_CC_FlushContext, "FlushContext"},
    {TPM2_CC_LoadExternal, "LoadExternal"},
    {TPM2_CC_MakeCredential, "MakeCredential"},
    {TPM2_CC_NV_ReadPublic, "NV_ReadPublic"},
    {TPM2_CC_PolicyAuthorize, "PolicyAuthorize"},
    {TPM2_CC_PolicyAuthValue, "PolicyAuthValue"},
    {TPM2_CC_PolicyCommandCode, "PolicyCommandCode"},
    {TPM2_CC_PolicyCounterTimer, "PolicyCounterTimer"},
    {TPM2_CC_PolicyCpHash, "PolicyCpHash"},
    {TPM2_CC_PolicyLocality, "PolicyLocality"},
    {TPM2_CC_PolicyNameHash, "PolicyNameHash"},
    {TPM2_CC_PolicyOR, "PolicyOR"},
    {TPM2_CC_PolicyTicket, "PolicyTicket"},
    {TPM2_CC_ReadPublic, "ReadPublic"},
    {TPM2_CC_RSA_Encrypt, "RSA_Encrypt"},
    {TPM2_CC_StartAuthSession, "StartAuthSession"},
    {TPM2_CC_VerifySignature, "VerifySignature"},
    {TPM2_CC_ECC_Parameters, "ECC_Parameters"},
    {TPM2_CC_FirmwareRead, "FirmwareRead"},
    {TPM2_CC_GetCapability, "GetCapability"},
    {TPM2_CC_GetRandom, "GetRandom"},
    {TPM2_CC_GetTestResult, "GetTestResult"},
    {TPM2_CC_Hash, "Hash"},
    {TPM2_CC_PCR_Read, "PCR_Read"},
    {TPM2_CC_PolicyPCR, "PolicyPCR"},
    {TPM2_CC_PolicyRestart, "PolicyRestart"},
    {TPM2_CC_ReadClock, "ReadClock"},
    {TPM2_CC_PCR_Extend, "PCR_Extend"},
    {TPM2_CC_PCR_SetAuthValue, "PCR_SetAuthValue"},
    {TPM2_CC_NV_Certify, "NV_Certify"},
    {TPM2_CC_EventSequenceComplete, "EventSequenceComplete"},
    {TPM2_CC_HashSequenceStart, "HashSequenceStart"},
    {TPM2_CC_PolicyPhysicalPresence, "PolicyPhysicalPresence"},
    {TPM2_CC_PolicyDuplicationSelect, "PolicyDuplicationSelect"},
    {TPM2_CC_PolicyGetDigest, "PolicyGetDigest"},
    {TPM2_CC_TestParms, "TestParms"},
    {TPM2_CC_Commit, "Commit"},
    {TPM2_CC_PolicyPassword, "PolicyPassword"},
    {TPM2_CC_ZGen_2Phase, "ZGen_2Phase"},
    {TPM2_CC_EC_Ephemeral, "EC_Ephemeral"},
    {TPM2_CC_PolicyNvWritten, "PolicyNvWritten"},
    {TPM2_CC_PolicyTemplate, "PolicyTemplate"},
    {TPM2_CC_CreateLoaded, "CreateLoaded"},
    {TPM2_CC_PolicyAuthorizeNV, "PolicyAuthorizeNV"},
    {TPM2_CC_EncryptDecrypt2, "EncryptDecrypt2"},
    {TPM2_CC_AC_GetCapability, "AC_GetCapability"},
    {TPM2_CC_AC_Send, "AC_Send"},
    {TPM2_CC_Policy_AC_SendSelect, "Policy_AC_SendSelect"},
    {TPM2_CC_CertifyX509, "CertifyX509"},
    {TPM2_CC_ACT_SetTimeout, "ACT_SetTimeout"},
    {TPM2_CC_Vendor_TCG_Test, "Vendor_TCG_Test"},
};

constexpr bool sorted_by_code() {
  for (std::size_t i = 1; i < std::size(kNames); ++i) {
    if (kNames[i - 1].code >= kNames[i].code) return false;
  }
  return true;
}
static_assert(sorted_by_code(), "kNames must be sorted by code for the binary search");

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

}  // namespace

std::optional<std::string_view> cc_name(TPM2_CC code) {
  auto it = std::lower_bound(std::begin(kNames), std::end(kNames), code,
                             [](const Entry& e, TPM2_CC c) { return e.code < c; });
  if (it == std::end(kNames) || it->code != code) return std::nullopt;
  return it->name;
}

std::string cc_label(TPM2_CC code) {
  if (auto name = cc_name(code)) return std::string(*name);
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", code);
  return buf;
}

std::optional<TPM2_CC> cc_from_name(std::string_view name) {
  constexpr std::string_view kPrefix = "TPM2_CC_";
  if (name.size() > kPrefix.size() && equal_ignoring_case(name.substr(0, kPrefix.size()), kPrefix)) {
    name.remove_prefix(kPrefix.size());
  }
  for (const Entry& e : kNames) {
    if (equal_ignoring_case(e.name, name)) return e.code;
  }
  return std::nullopt;
}

std::span<const TPM2_CC> known_command_codes() {
  static const auto codes = [] {
    std::array<TPM2_CC, std::size(kNames)> out{};
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = kNames[i].code;
    return out;
  }();
  return codes;
}

}  // namespace tpmrmd::tpm

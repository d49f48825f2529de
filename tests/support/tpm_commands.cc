#include "support/tpm_commands.h"

#include <tss2/tss2_mu.h>

#include <cstring>

#include "tpm/commands.h"
#include "tpm/header.h"
#include "tpm/responses.h"

namespace tpmrmd::testing {
namespace {

void put_u16(Bytes& b, std::uint16_t v) { tpm::append_marshalled(b, v, Tss2_MU_UINT16_Marshal); }
void put_u32(Bytes& b, std::uint32_t v) { tpm::append_marshalled(b, v, Tss2_MU_UINT32_Marshal); }

}  // namespace

Bytes build_command(TPM2_CC code, const std::vector<TPM2_HANDLE>& handles, const std::vector<Auth>& auths,
                    ByteSpan parameters) {
  return tpm::build_command(code, handles, auths, parameters);
}

Bytes get_random(std::uint16_t bytes, const std::vector<Auth>& auths) {
  Bytes p;
  put_u16(p, bytes);
  return build_command(TPM2_CC_GetRandom, {}, auths, p);
}

Bytes create_command(TPM2_CC code, TPM2_HANDLE parent, const TPM2B_PUBLIC& pub) {
  Bytes p;
  TPM2B_SENSITIVE_CREATE sensitive{};
  tpm::append_marshalled(p, sensitive, Tss2_MU_TPM2B_SENSITIVE_CREATE_Marshal);
  tpm::append_marshalled(p, pub, Tss2_MU_TPM2B_PUBLIC_Marshal);
  TPM2B_DATA outside{};
  tpm::append_marshalled(p, outside, Tss2_MU_TPM2B_DATA_Marshal);
  TPML_PCR_SELECTION pcrs{};
  tpm::append_marshalled(p, pcrs, Tss2_MU_TPML_PCR_SELECTION_Marshal);
  return build_command(code, {parent}, {Auth{}}, p);
}

Bytes create_primary(TPM2_HANDLE hierarchy, std::uint8_t unique) {
  TPM2B_PUBLIC pub{};
  pub.publicArea.type = TPM2_ALG_ECC;
  pub.publicArea.nameAlg = TPM2_ALG_SHA256;
  pub.publicArea.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH;
  pub.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  pub.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  pub.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  pub.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  pub.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  pub.publicArea.unique.ecc.x.size = 1;
  pub.publicArea.unique.ecc.x.buffer[0] = unique;
  return create_command(TPM2_CC_CreatePrimary, hierarchy, pub);
}

Bytes create_rsa_primary(std::optional<std::uint32_t> unique) {
  TPM2B_PUBLIC pub{};
  pub.publicArea.type = TPM2_ALG_RSA;
  pub.publicArea.nameAlg = TPM2_ALG_SHA256;
  pub.publicArea.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                                    TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                    TPMA_OBJECT_USERWITHAUTH;
  auto& rsa = pub.publicArea.parameters.rsaDetail;
  rsa.symmetric.algorithm = TPM2_ALG_AES;
  rsa.symmetric.keyBits.aes = 128;
  rsa.symmetric.mode.aes = TPM2_ALG_CFB;
  rsa.scheme.scheme = TPM2_ALG_NULL;
  rsa.keyBits = 2048;
  if (unique) {
    pub.publicArea.unique.rsa.size = sizeof(*unique);
    std::memcpy(pub.publicArea.unique.rsa.buffer, &*unique, sizeof(*unique));
  }
  return create_command(TPM2_CC_CreatePrimary, TPM2_RH_OWNER, pub);
}

Bytes read_public(TPM2_HANDLE handle) { return build_command(TPM2_CC_ReadPublic, {handle}, {}, {}); }

Bytes start_auth_session(TPM2_SE type, TPM2_HANDLE tpm_key, TPM2_HANDLE bind) {
  Bytes p;
  TPM2B_NONCE nonce{};
  nonce.size = 16;
  std::memset(nonce.buffer, 0x5a, 16);
  tpm::append_marshalled(p, nonce, Tss2_MU_TPM2B_NONCE_Marshal);
  TPM2B_ENCRYPTED_SECRET salt{};
  tpm::append_marshalled(p, salt, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal);
  p.push_back(type);
  TPMT_SYM_DEF sym{};
  sym.algorithm = TPM2_ALG_NULL;
  tpm::append_marshalled(p, sym, Tss2_MU_TPMT_SYM_DEF_Marshal);
  put_u16(p, TPM2_ALG_SHA256);
  return build_command(TPM2_CC_StartAuthSession, {tpm_key, bind}, {}, p);
}

Bytes policy_get_digest(TPM2_HANDLE session) {
  return build_command(TPM2_CC_PolicyGetDigest, {session}, {}, {});
}

Bytes flush_context(TPM2_HANDLE handle) { return tpm::make_flush_context(handle); }
Bytes context_save(TPM2_HANDLE handle) { return tpm::make_context_save(handle); }
Bytes context_load(ByteSpan context) { return tpm::make_context_load(context); }

Bytes get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count) {
  return tpm::make_get_capability(capability, property, count);
}

Bytes hash_sequence_start() {
  Bytes p;
  put_u16(p, 0);  // empty auth
  put_u16(p, TPM2_ALG_SHA256);
  return build_command(TPM2_CC_HashSequenceStart, {}, {}, p);
}

Bytes sequence_complete(TPM2_HANDLE sequence) {
  Bytes p;
  put_u16(p, 3);
  p.insert(p.end(), {'a', 'b', 'c'});
  put_u32(p, TPM2_RH_NULL);
  return build_command(TPM2_CC_SequenceComplete, {sequence}, {Auth{}}, p);
}

TPM2_RC rc_of(ByteSpan response) {
  auto rc = tpm::response_code(response);
  return rc ? *rc : 0xFFFFFFFFu;
}

TPM2_HANDLE handle_of(ByteSpan response) {
  auto h = tpm::handle_from_response(response);
  return h ? *h : 0;
}

Bytes body_of(ByteSpan response) {
  if (response.size() < tpm::kHeaderSize) return {};
  return Bytes(response.begin() + tpm::kHeaderSize, response.end());
}

std::optional<HandleList> parse_handles(ByteSpan response) {
  auto page = tpm::parse_get_capability(response);
  if (!page || page->data.capability != TPM2_CAP_HANDLES) return std::nullopt;
  const TPML_HANDLE& list = page->data.data.handles;
  return HandleList{page->more_data, std::vector<TPM2_HANDLE>(list.handle, list.handle + list.count)};
}

std::optional<std::uint32_t> property_of(ByteSpan response, TPM2_PT property) {
  auto page = tpm::parse_get_capability(response);
  if (!page || page->data.capability != TPM2_CAP_TPM_PROPERTIES) return std::nullopt;
  const TPML_TAGGED_TPM_PROPERTY& list = page->data.data.tpmProperties;
  for (std::uint32_t i = 0; i < list.count; ++i) {
    if (list.tpmProperty[i].property == property) return list.tpmProperty[i].value;
  }
  return std::nullopt;
}

}  // namespace tpmrmd::testing

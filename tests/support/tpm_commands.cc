#include "support/tpm_commands.h"

#include <tss2/tss2_mu.h>

#include <cstring>

#include "tpm/header.h"

namespace tpmrmd::testing {
namespace {

void put_u32(Bytes& b, std::uint32_t v) {
  std::size_t at = b.size();
  b.resize(at + 4);
  size_t off = at;
  Tss2_MU_UINT32_Marshal(v, b.data(), b.size(), &off);
}

void put_u16(Bytes& b, std::uint16_t v) {
  std::size_t at = b.size();
  b.resize(at + 2);
  size_t off = at;
  Tss2_MU_UINT16_Marshal(v, b.data(), b.size(), &off);
}

template <typename T, typename F>
void put(Bytes& b, const T& value, F marshal) {
  std::uint8_t buf[4096];
  size_t off = 0;
  marshal(&value, buf, sizeof buf, &off);
  b.insert(b.end(), buf, buf + off);
}

}  // namespace

Bytes build_command(TPM2_CC code, const std::vector<TPM2_HANDLE>& handles, const std::vector<Auth>& auths,
                    ByteSpan parameters) {
  Bytes b(tpm::kHeaderSize);
  for (TPM2_HANDLE h : handles) put_u32(b, h);
  if (!auths.empty()) {
    put_u32(b, static_cast<std::uint32_t>(auths.size() * 9));
    for (const Auth& a : auths) {
      put_u32(b, a.handle);
      put_u16(b, 0);
      b.push_back(a.attributes);
      put_u16(b, 0);
    }
  }
  b.insert(b.end(), parameters.begin(), parameters.end());
  tpm::write_command_header(
      tpm::CommandHeader{auths.empty() ? TPM2_ST_NO_SESSIONS : TPM2_ST_SESSIONS,
                         static_cast<std::uint32_t>(b.size()), code},
      b);
  return b;
}

Bytes get_random(std::uint16_t bytes, const std::vector<Auth>& auths) {
  Bytes p;
  put_u16(p, bytes);
  return build_command(TPM2_CC_GetRandom, {}, auths, p);
}

Bytes create_primary(TPM2_HANDLE hierarchy, std::uint8_t unique) {
  Bytes p;
  TPM2B_SENSITIVE_CREATE sensitive{};
  put(p, sensitive, Tss2_MU_TPM2B_SENSITIVE_CREATE_Marshal);
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
  put(p, pub, Tss2_MU_TPM2B_PUBLIC_Marshal);
  TPM2B_DATA outside{};
  put(p, outside, Tss2_MU_TPM2B_DATA_Marshal);
  TPML_PCR_SELECTION pcrs{};
  put(p, pcrs, Tss2_MU_TPML_PCR_SELECTION_Marshal);
  return build_command(TPM2_CC_CreatePrimary, {hierarchy}, {Auth{}}, p);
}

Bytes read_public(TPM2_HANDLE handle) { return build_command(TPM2_CC_ReadPublic, {handle}, {}, {}); }

Bytes start_auth_session(TPM2_SE type, TPM2_HANDLE tpm_key, TPM2_HANDLE bind) {
  Bytes p;
  TPM2B_NONCE nonce{};
  nonce.size = 16;
  std::memset(nonce.buffer, 0x5a, 16);
  put(p, nonce, Tss2_MU_TPM2B_NONCE_Marshal);
  TPM2B_ENCRYPTED_SECRET salt{};
  put(p, salt, Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal);
  p.push_back(type);
  TPMT_SYM_DEF sym{};
  sym.algorithm = TPM2_ALG_NULL;
  put(p, sym, Tss2_MU_TPMT_SYM_DEF_Marshal);
  put_u16(p, TPM2_ALG_SHA256);
  return build_command(TPM2_CC_StartAuthSession, {tpm_key, bind}, {}, p);
}

Bytes policy_get_digest(TPM2_HANDLE session) {
  return build_command(TPM2_CC_PolicyGetDigest, {session}, {}, {});
}

Bytes flush_context(TPM2_HANDLE handle) {
  Bytes p;
  put_u32(p, handle);
  return build_command(TPM2_CC_FlushContext, {}, {}, p);
}

Bytes context_save(TPM2_HANDLE handle) { return build_command(TPM2_CC_ContextSave, {handle}, {}, {}); }

Bytes context_load(ByteSpan context) { return build_command(TPM2_CC_ContextLoad, {}, {}, context); }

Bytes get_capability(TPM2_CAP capability, std::uint32_t property, std::uint32_t count) {
  Bytes p;
  put_u32(p, capability);
  put_u32(p, property);
  put_u32(p, count);
  return build_command(TPM2_CC_GetCapability, {}, {}, p);
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
  auto h = tpm::parse_response_header(response);
  return h ? h->rc : 0xFFFFFFFFu;
}

TPM2_HANDLE handle_of(ByteSpan response) {
  std::uint32_t v = 0;
  size_t off = tpm::kHeaderSize;
  Tss2_MU_UINT32_Unmarshal(response.data(), response.size(), &off, &v);
  return v;
}

Bytes body_of(ByteSpan response) {
  if (response.size() < tpm::kHeaderSize) return {};
  return Bytes(response.begin() + tpm::kHeaderSize, response.end());
}

std::optional<HandleList> parse_handles(ByteSpan response) {
  size_t off = tpm::kHeaderSize;
  TPMI_YES_NO more = 0;
  TPMS_CAPABILITY_DATA data{};
  if (Tss2_MU_UINT8_Unmarshal(response.data(), response.size(), &off, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(response.data(), response.size(), &off, &data) != TSS2_RC_SUCCESS ||
      off != response.size() || data.capability != TPM2_CAP_HANDLES) {
    return std::nullopt;
  }
  HandleList out;
  out.more = more == TPM2_YES;
  out.handles.assign(data.data.handles.handle, data.data.handles.handle + data.data.handles.count);
  return out;
}

std::optional<std::uint32_t> property_of(ByteSpan response, TPM2_PT property) {
  size_t off = tpm::kHeaderSize;
  TPMI_YES_NO more = 0;
  TPMS_CAPABILITY_DATA data{};
  if (Tss2_MU_UINT8_Unmarshal(response.data(), response.size(), &off, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(response.data(), response.size(), &off, &data) != TSS2_RC_SUCCESS ||
      data.capability != TPM2_CAP_TPM_PROPERTIES) {
    return std::nullopt;
  }
  for (std::uint32_t i = 0; i < data.data.tpmProperties.count; ++i) {
    if (data.data.tpmProperties.tpmProperty[i].property == property) {
      return data.data.tpmProperties.tpmProperty[i].value;
    }
  }
  return std::nullopt;
}

}  // namespace tpmrmd::testing

#!/bin/bash
# tpm2-pkcs11 through one TCTI: tpm2_ptool init makes a store (a transient ECC primary, tpm2-tools underneath);
# one PyKCS11 process initialises the token in it and generates 10 key pairs (9 EC P-256, 1 RSA 2048: more key
# objects than the TPM has slots) and signs with each (stack-pkcs11.py; on the kernel's /dev/tpmrm0, whose space
# holds 3 objects, the library's generating fails after a few, as asserted there); then pkcs11-tool (OpenSC), each call its
# own process, lists the keys and signs with an EC and the RSA key, and OpenSSL verifies those signatures with the
# public keys pkcs11-tool exports. No signature is trusted without a verification outside the TPM.
# Usage: stack-pkcs11.sh vm|cuse|socket TPMRMD (stack-lib.sh)
source "$(dirname "$0")/stack-lib.sh"
need tpm2_ptool pkcs11-tool openssl
module=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
[[ -f $module ]] || fail "libtpm2-pkcs11-1 is not installed (tools/install-deps.sh)"

run_checks() {
  local d=$work/pkcs11-$target k
  mkdir -p "$d/store" && cd "$d"
  # The library and tpm2_ptool's tpm2-tools both through $TCTI; the store (sqlite) in the work directory.
  export TPM2_PKCS11_TCTI=$TCTI TPM2TOOLS_TCTI=$TCTI TPM2_PKCS11_STORE=$d/store
  step "tpm2_ptool init (a transient ECC primary)"
  # tpm2_ptool's module run directly: its console script first imports pkg_resources, which scans every
  # installed Python distribution (tens of seconds in the VM) only to find this same function.
  t 120 $PY -m tpm2_pkcs11.tpm2_ptool init --transient-parent tpm2-tools-ecc-default >ptool.log 2>&1 \
    || { cat ptool.log; fail "tpm2_ptool init"; }
  step "PyKCS11: the token initialised, 10 key pairs generated in one process, each signs"
  t 240 $PY "$stack_dir/stack-pkcs11.py" $module "$target" count || fail "stack-pkcs11.py"
  local made keys=(ec0 rsa0)
  made=$(<count)
  if ((made == 0)); then
    # The kernel: the token's process could make no key (asserted there). One key pair per process works:
    # pkcs11-tool generates ec0 in a process of its own.
    step "pkcs11-tool --keypairgen (its own process): one EC key pair"
    t 60 pkcs11-tool --module $module --token-label stack --login --pin 1234 --keypairgen \
      --key-type EC:prime256v1 --label ec0 --id 01 >keygen.log 2>&1 || { cat keygen.log; fail "pkcs11-tool --keypairgen"; }
    made=1
  fi
  ((made == 10)) || keys=(ec0)  # the kernel: only the first EC key exists
  step "pkcs11-tool (a process per call): lists the keys, signs with ec0 and rsa0, OpenSSL verifies"
  local p11=(pkcs11-tool --module $module --token-label stack --login --pin 1234)
  t 60 "${p11[@]}" --list-objects --type privkey >objects 2>&1 || { cat objects; fail "pkcs11-tool --list-objects"; }
  local n
  n=$(grep -c 'Private Key Object' objects || true)
  ((n == made)) || { cat objects; fail "pkcs11-tool lists $n private keys, not $made"; }
  echo "pkcs11-tool signs this" >data
  # By CKA_ID (stack-pkcs11.py gives key i the id i+1): pkcs11-tool 0.23's --label picks the wrong key for
  # --sign here (C_SignInit on rsa0 by label fails with CKR_MECHANISM_INVALID), on either RM.
  for k in "${keys[@]}"; do
    local mech=SHA256-RSA-PKCS fmt=() id=0a
    [[ $k == ec0 ]] && mech=ECDSA-SHA256 fmt=(--signature-format openssl) id=01
    t 60 "${p11[@]}" --sign --mechanism $mech "${fmt[@]}" --id $id -i data -o $k.sig >sign.log 2>&1 \
      || { cat sign.log; fail "pkcs11-tool --sign $k"; }
    t 60 "${p11[@]}" --read-object --type pubkey --id $id -o $k.pub.der >read.log 2>&1 \
      || { cat read.log; fail "pkcs11-tool --read-object $k"; }
    t 30 openssl dgst -sha256 -verify $k.pub.der -keyform DER -signature $k.sig data >/dev/null \
      || fail "pkcs11-tool's $k signature does not verify with its public key"
  done
  cd "$work"
}
run_targets
echo "PASS: tpm2-pkcs11 ($mode)"

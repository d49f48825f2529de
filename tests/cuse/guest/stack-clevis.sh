#!/bin/bash
# clevis with its tpm2 pin (clevis-tpm2: a shell pin driving tpm2-tools, every TPM step its own process, state
# passed in context files) through one TCTI: a secret encrypted to the TPM with a policy on PCR 7 (sha256 bank)
# decrypts in other processes to the same bytes, and no longer once PCR 7 has been extended. In the VM it is the
# JWE sealed through the kernel's /dev/tpmrm0 that tpmrmd must then refuse: the same TPM, either RM.
# Usage: stack-clevis.sh vm|cuse|socket TPMRMD (stack-lib.sh)
source "$(dirname "$0")/stack-lib.sh"
need clevis jose tpm2_pcrextend
command -v clevis-encrypt-tpm2 >/dev/null || fail "clevis-tpm2 is not installed (tools/install-deps.sh)"
pin='{"pcr_bank":"sha256","pcr_ids":"7"}'
secret="clevis secret $RANDOM$RANDOM"
d=$work/clevis
mkdir -p "$d"

encrypt() {  # encrypt JWE: the secret, through $TCTI
  printf '%s' "$secret" | t 180 clevis encrypt tpm2 "$pin" >"$d/$1" || fail "clevis encrypt tpm2 $pin"
  [[ $(tr -cd . <"$d/$1" | wc -c) == 4 ]] || fail "clevis encrypt wrote no compact JWE: $(head -c 200 "$d/$1")"
}
decrypt() {  # decrypt JWE: must give the secret back, through $TCTI
  local out
  out=$(t 180 clevis decrypt <"$d/$1" 2>"$d/decrypt.err") || { cat "$d/decrypt.err"; fail "clevis decrypt $1"; }
  [[ $out == "$secret" ]] || fail "clevis decrypt $1 gave other bytes: $out"
}

run_checks() {
  export TPM2TOOLS_TCTI=$TCTI
  step "clevis encrypt tpm2 $pin"
  encrypt $target.jwe
  step "clevis decrypt (other processes) gives the secret back"
  decrypt $target.jwe
  if [[ $target == tpmrmd ]]; then
    # In the VM the JWE the kernel run sealed is the one refused: tpmrmd loads the kernel-made object and the
    # TPM refuses its unseal (the cheaper half of a cross-RM check; each clevis call is ~30 processes).
    local denied=$target.jwe
    [[ -f $d/kernel.jwe ]] && denied=kernel.jwe
    step "PCR 7 extended: clevis decrypt of $denied must fail at the unseal"
    t 30 tpm2_pcrextend 7:sha256=0000000000000000000000000000000000000000000000000000000000000001 \
      || fail "tpm2_pcrextend 7"
    if t 180 clevis decrypt <"$d/$denied" >"$d/denied.out" 2>"$d/denied.err"; then
      fail "clevis decrypted after PCR 7 changed: $(cat "$d/denied.out")"
    fi
    grep -i -m2 -E 'policy|unseal' "$d/denied.err" | sed 's/^/    (expected) /'
    grep -q 'Esys_Unseal' "$d/denied.err" || { cat "$d/denied.err"; fail "decrypt failed, but not at the unseal"; }
  fi
}
run_targets
echo "PASS: clevis tpm2 pin ($mode)"

#!/bin/bash
# tpm2-openssl (the OpenSSL 3 provider) through one TCTI: RSA 2048 and EC P-256 keys generated in the TPM
# (TSS2 PRIVATE KEY files), signatures made by the TPM verified by plain OpenSSL with the public key alone, a
# self-signed certificate per key, and a TLS 1.3 handshake: `openssl s_server` signing with the TPM key, clients
# verifying it against the certificate, three at once while two more processes sign beside them.
# Usage: stack-openssl.sh vm|cuse|socket TPMRMD (stack-lib.sh)
source "$(dirname "$0")/stack-lib.sh"
need openssl
[[ -f /usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so ]] || fail "tpm2-openssl is not installed (tools/install-deps.sh)"

# The default provider first: tpm2-openssl 1.1 also offers digests (TPM hash sequences), and with the tpm2
# provider first the TLS handshake hash lands in the TPM, whose context copies then fail (TPM_RC_OBJECT_MEMORY);
# `tpm2.digest!=yes` in the query alone does not prevent it. `?provider=tpm2` makes genpkey generate in the TPM.
ossl_tpm=(-provider default -provider tpm2 -propquery '?provider=tpm2,tpm2.digest!=yes')

run_checks() {
  export TPM2OPENSSL_TCTI=$TCTI
  local d=$work/openssl-$target k pids=() i
  mkdir -p "$d" && cd "$d"
  echo "message signed by the TPM" >msg
  echo "message signed by the TPM!" >tampered
  for k in rsa ec; do
    step "$k: genpkey in the TPM, a self-signed certificate and a signature by the TPM, verified outside"
    if [[ $k == rsa ]]; then
      t 60 openssl genpkey "${ossl_tpm[@]}" -algorithm RSA -pkeyopt bits:2048 -out $k.key 2>/dev/null || fail "genpkey $k"
    else
      t 60 openssl genpkey "${ossl_tpm[@]}" -algorithm EC -pkeyopt group:P-256 -out $k.key 2>/dev/null || fail "genpkey $k"
    fi
    [[ $(head -1 $k.key) == "-----BEGIN TSS2 PRIVATE KEY-----" ]] || fail "$k.key is not a TPM key: $(head -1 $k.key)"
    t 30 openssl req "${ossl_tpm[@]}" -new -x509 -key $k.key -subj "/CN=tpmrmd-stack-$k" -days 1 -out $k.crt \
      || fail "req -x509 $k"
    # The certificate's public key (the TPM key's: req signed the certificate with it) verifies, with the default
    # provider only, what the TPM signed.
    t 30 openssl x509 -in $k.crt -pubkey -noout >$k.pub || fail "x509 -pubkey $k"
    t 30 openssl dgst "${ossl_tpm[@]}" -sha256 -sign $k.key -out $k.sig msg || fail "sign $k"
    t 30 openssl dgst -sha256 -verify $k.pub -signature $k.sig msg >/dev/null || fail "$k signature does not verify"
  done
  if t 30 openssl dgst -sha256 -verify rsa.pub -signature rsa.sig tampered >/dev/null 2>&1; then
    fail "the rsa signature verifies a tampered message"
  fi

  for k in rsa ec; do
    local clients=1 sock=tls-$k.sock  # relative: s_server -unix mishandles some absolute paths
    [[ $k == ec ]] && clients=3
    step "$k: TLS 1.3, s_server signing with the TPM key, $clients client(s) at once"
    rm -f "$sock"
    timeout -k 5 120 openssl s_server "${ossl_tpm[@]}" -unix "$sock" -cert $k.crt -key $k.key -naccept $clients \
      -www >server-$k.log 2>&1 &
    local server=$!
    for _ in $(seq 300); do [[ -S $sock ]] && break; kill -0 $server 2>/dev/null || break; sleep 0.1; done
    [[ -S $sock ]] || { cat server-$k.log; fail "s_server ($k) did not start"; }
    pids=()
    for ((i = 0; i < clients; i++)); do
      printf 'GET / HTTP/1.0\r\n\r\n' | timeout -k 5 60 openssl s_client -unix "$sock" -CAfile $k.crt \
        -verify_return_error -servername tpmrmd-stack-$k -ign_eof >client-$k-$i.log 2>&1 &
      pids+=($!)
    done
    if [[ $k == ec ]]; then  # meanwhile, two more processes sign with the TPM key
      for ((i = 0; i < 2; i++)); do
        timeout -k 5 60 openssl dgst "${ossl_tpm[@]}" -sha256 -sign $k.key -out par-$i.sig msg &
        pids+=($!)
      done
    fi
    for i in "${pids[@]}"; do wait $i || { tail -n 5 client-$k-*.log; fail "a concurrent $k client failed"; }; done
    wait $server || { cat server-$k.log; fail "s_server ($k) failed"; }
    for ((i = 0; i < clients; i++)); do
      local log=client-$k-$i.log
      grep -q '^Verification: OK' $log || { cat $log; fail "client $i: the server's certificate did not verify"; }
      grep -q 'Cipher is TLS_' $log || { cat $log; fail "client $i: no TLS 1.3 session"; }
      grep -q 'Ciphers supported in s_server binary' $log || { cat $log; fail "client $i: no response over TLS"; }
    done
    local sigtype
    sigtype=$(sed -n 's/^Peer signature type: //p' client-$k-0.log)
    echo "    $clients handshake(s): $(grep -m1 'Cipher is' client-$k-0.log), peer signature $sigtype"
    [[ $k == ec && $sigtype == ECDSA || $k == rsa && $sigtype == RSA-PSS ]] || fail "peer signature type $sigtype"
  done
  for ((i = 0; i < 2; i++)); do
    t 30 openssl dgst -sha256 -verify ec.pub -signature par-$i.sig msg >/dev/null \
      || fail "concurrent signature $i does not verify"
  done
  cd "$work"
}
run_targets
echo "PASS: tpm2-openssl ($mode)"

#!/bin/bash
# In the VM: unmodified tpm2-tools (device TCTI) against tpmrmd's CUSE node, every step a separate process, so
# state crosses process (and so RM connection) boundaries only through context files, as users do it.
# Usage: tpm2-tools-e2e.sh TPMRMD
set -euo pipefail
tpmrmd=$1
name=tpmrmtools0
work=$(mktemp -d /tmp/tpmrmd-tools.XXXXXX)
cd "$work"
"$tpmrmd" --foreground --name $name --state-dir "$work/state" --lock-dir "$work/lock" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do [[ -c /dev/$name ]] && break; sleep 0.1; done
[[ -c /dev/$name ]] || { echo "FAIL: /dev/$name did not appear"; exit 1; }
export TPM2TOOLS_TCTI=device:/dev/$name
step() { echo "--- $*"; }
fail() { echo "FAIL: $*"; exit 1; }

step getrandom
[[ $(tpm2_getrandom --hex 16) =~ ^[0-9a-f]{32}$ ]] || fail "getrandom"

step "createprimary + create + load + sign + verifysignature"
tpm2_createprimary -C o -G ecc -c primary.ctx >/dev/null
tpm2_create -C primary.ctx -G ecc -u key.pub -r key.priv >/dev/null
tpm2_load -C primary.ctx -u key.pub -r key.priv -c key.ctx >/dev/null
echo "message to sign" > msg
tpm2_sign -c key.ctx -g sha256 -o sig msg
tpm2_verifysignature -c key.ctx -g sha256 -m msg -s sig
echo "tampered" > msg2
if tpm2_verifysignature -c key.ctx -g sha256 -m msg2 -s sig 2>/dev/null; then fail "a tampered message verified"; fi

step "more than 3 objects alive at once from separate invocations (context files)"
for i in 1 2 3 4 5; do
  tpm2_create -C primary.ctx -G ecc -u k$i.pub -r k$i.priv >/dev/null
  tpm2_load -C primary.ctx -u k$i.pub -r k$i.priv -c k$i.ctx >/dev/null
done
for i in 1 2 3 4 5; do
  tpm2_sign -c k$i.ctx -g sha256 -o sig$i msg
  tpm2_verifysignature -c k$i.ctx -g sha256 -m msg -s sig$i
done

step "startauthsession -> policypcr -> unseal across processes with a session file"
tpm2_pcrread -o pcr.bin sha256:0 >/dev/null
tpm2_createpolicy --policy-pcr -l sha256:0 -f pcr.bin -L policy.dat >/dev/null
echo -n "sealed secret" > secret
tpm2_create -C primary.ctx -L policy.dat -i secret -u seal.pub -r seal.priv -a "fixedtpm|fixedparent" >/dev/null
tpm2_load -C primary.ctx -u seal.pub -r seal.priv -c seal.ctx >/dev/null
tpm2_startauthsession --policy-session -S session.ctx
tpm2_policypcr -S session.ctx -l sha256:0 >/dev/null
[[ $(tpm2_unseal -p session:session.ctx -c seal.ctx) == "sealed secret" ]] || fail "unseal"
tpm2_flushcontext session.ctx

step "evictcontrol"
tpm2_evictcontrol -C o -c primary.ctx 0x81000010 >/dev/null
tpm2_getcap handles-persistent | grep -q 0x81000010 || fail "persistent handle missing"
tpm2_readpublic -c 0x81000010 >/dev/null
tpm2_evictcontrol -C o -c 0x81000010 >/dev/null
if tpm2_getcap handles-persistent | grep -q 0x81000010; then fail "persistent handle not evicted"; fi

step "nvdefine / nvwrite / nvread"
tpm2_nvdefine 0x1500016 -C o -s 32 -a "ownerread|ownerwrite"
echo -n "hello nv" | tpm2_nvwrite 0x1500016 -C o -i-
[[ $(tpm2_nvread 0x1500016 -C o -s 8) == "hello nv" ]] || fail "nvread"
tpm2_nvundefine 0x1500016 -C o

step "getcap handles-transient shows only the caller's objects"
# Another process holds a transient object (a CreatePrimary written on its own open fd, left unread).
exec 3<>/dev/$name
printf '\x80\x02\x00\x00\x00\x43\x00\x00\x01\x31\x40\x00\x00\x01\x00\x00\x00\x09\x40\x00\x00\x09\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x1a\x00\x23\x00\x0b\x00\x03\x00\x72\x00\x00\x00\x06\x00\x80\x00\x43\x00\x10\x00\x03\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' >&3
transient=$(tpm2_getcap handles-transient)
[[ -z $transient ]] || fail "another client's object is visible: $transient"
# And a client's own object is visible to it: tpm2_getcap's own connection holds none, so it sees none; the
# holder sees its own through the same node (read its CreatePrimary response: rc 0).
resp=$(head -c 14 <&3 | od -An -tx1 | tr -d ' \n')
[[ ${resp:12:8} == 00000000 ]] || fail "holder's CreatePrimary failed: $resp"
exec 3>&-

kill -TERM $pid
wait $pid || fail "tpmrmd exited with $?"
trap - EXIT
[[ ! -e /dev/$name ]] || fail "node still present after SIGTERM"
echo PASS

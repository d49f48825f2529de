#!/bin/bash
# In the VM: systemd's TPM2 LUKS tooling through the CUSE node. tpmrmd on its embedded swtpm; a LUKS2 image file
# gets a TPM2 token bound to PCR 7 from systemd-cryptenroll --tpm2-device=/dev/NODE; systemd-cryptsetup then
# attaches the image (dm-crypt over a loop device) with the TPM alone, unsealing through the node, and what is
# written through that mapping reads back through a passphrase-opened one. After PCR 7 is extended the token
# must no longer unlock: proof the unseal really went to the TPM.
# Usage: cryptenroll.sh TPMRMD
set -euo pipefail
tpmrmd=$1
name=tpmrmce0
work=$(mktemp -d /tmp/tpmrmd-ce.XXXXXX)
img=$work/luks.img
fail() { echo "FAIL: $*"; [[ -f $work/log ]] && sed 's/^/  log: /' "$work/log"; exit 1; }
for tool in systemd-cryptenroll cryptsetup tpm2_pcrextend; do
  command -v $tool >/dev/null || fail "$tool is not installed (tools/install-deps.sh)"
done

"$tpmrmd" --foreground --name $name --mode 0600 --state-dir "$work/state" --lock-dir "$work/lock" 2>"$work/log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do [[ -c /dev/$name ]] && break; sleep 0.1; done
[[ -c /dev/$name ]] || fail "/dev/$name did not appear"

# A small LUKS2 image with a passphrase keyslot (a fast PBKDF: this tests the TPM path, not the KDF).
truncate -s 32M "$img"
printf 'passphrase-0' >"$work/pass"
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$img" "$work/pass" \
  || fail "luksFormat"

echo "--- systemd-cryptenroll --tpm2-device=/dev/$name --tpm2-pcrs=7"
PASSWORD=passphrase-0 systemd-cryptenroll --tpm2-device=/dev/$name --tpm2-pcrs=7 "$img" || fail "enrolling"
cryptsetup luksDump "$img" | tee "$work/dump" | sed -n '/^Tokens:/,/^Digests:/p'
grep -q 'systemd-tpm2' "$work/dump" || fail "no systemd-tpm2 token in the header"

# Unlocking as the boot does: systemd-cryptsetup with tpm2-device= (what crypttab says), headless so that it
# never falls back to asking for the passphrase. DM_DISABLE_UDEV: no udev in the guest to create the nodes.
export DM_DISABLE_UDEV=1
# Its log on stderr (no journal here); CE_LOG_LEVEL=debug shows each TPM step.
attach() {
  SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL=${CE_LOG_LEVEL:-info} \
    /lib/systemd/systemd-cryptsetup attach tpmrmce "$img" - "tpm2-device=/dev/$name,headless"
}
detach() { /lib/systemd/systemd-cryptsetup detach tpmrmce; }
echo "--- systemd-cryptsetup attach with the TPM2 token alone"
attach || fail "the TPM2 token did not unlock the image"
[[ -b /dev/mapper/tpmrmce ]] || fail "no /dev/mapper/tpmrmce after attach"
# A pattern written through the TPM-unlocked mapping reads back through a passphrase-unlocked one: the key the
# TPM unsealed is the volume key.
head -c 65536 /dev/urandom >"$work/pattern"
dd if="$work/pattern" of=/dev/mapper/tpmrmce bs=65536 count=1 oflag=direct status=none || fail "writing"
detach || fail "detach"
cryptsetup open --key-file "$work/pass" "$img" tpmrmce-pass || fail "the passphrase no longer unlocks"
head -c 65536 /dev/mapper/tpmrmce-pass >"$work/read-back"  # (no /dev/fd for <(...) in the guest)
cmp "$work/read-back" "$work/pattern" || fail "the data differ"
cryptsetup close tpmrmce-pass

echo "--- PCR 7 extended: the token must not unlock"
tpm2_pcrextend -T device:/dev/$name 7:sha256=0000000000000000000000000000000000000000000000000000000000000001 \
  || fail "pcrextend"
if attach 2>"$work/denied"; then
  detach || true
  fail "the token unlocked after PCR 7 changed"
fi
sed 's/^/  (expected) /' "$work/denied"

grep -E 'event=physical-collision' "$work/log" && fail "the RM found two objects in one TPM slot"
kill -TERM $pid
wait $pid || fail "tpmrmd exited with $?"
trap - EXIT
echo "PASS: systemd-cryptenroll enrolled a TPM2 token through /dev/$name and the token unlocks only while PCR 7 holds"

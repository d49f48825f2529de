#!/bin/bash
# In the VM, with the guest kernel's TPM driver unbound: tpmrmd drives QEMU's own TIS or CRB register model
# through our userspace driver (--tpm tis:mmio=… / crb:mmio=…), serves its CUSE node, and tpm2-tools
# createprimary / create / load / sign work through it, each a separate process.
# Usage: daemon-over-registers.sh TPMRMD tis|crb
set -eu
tpmrmd=$1 kind=$2
work=$(mktemp -d /tmp/regs-daemon.XXXXXX)
"$tpmrmd" --foreground --tpm "$kind:mmio=0xFED40000" --name tpmrm0 --lock-dir "$work/lock" --log-level info &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do [[ -c /dev/tpmrm0 ]] && break; sleep 0.1; done
[[ -c /dev/tpmrm0 ]] || { echo "FAIL: /dev/tpmrm0 did not appear"; exit 1; }
export TPM2TOOLS_TCTI=device:/dev/tpmrm0
cd "$work"
tpm2_createprimary -Q -C o -c primary.ctx
tpm2_create -Q -C primary.ctx -G ecc -u key.pub -r key.priv
tpm2_load -Q -C primary.ctx -u key.pub -r key.priv -c key.ctx
echo "data to sign over $kind registers" > msg
tpm2_sign -Q -c key.ctx -g sha256 -o sig msg
tpm2_verifysignature -Q -c key.ctx -g sha256 -m msg -s sig
echo "PASS: createprimary/create/load/sign/verifysignature through tpmrmd over our $kind driver"
kill -TERM $pid
wait $pid
trap - EXIT

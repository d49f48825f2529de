#!/bin/bash
# The guest kernel's own TPM stack (QEMU TIS/CRB device -> swtpm) answers a GetRandom on /dev/tpmrm0.
set -eu
[[ -c /dev/tpmrm0 ]] || { echo "FAIL: no /dev/tpmrm0 in the guest"; exit 1; }
hex=$(tpm2_getrandom -T device:/dev/tpmrm0 8 --hex)
[[ $hex =~ ^[0-9a-f]{16}$ ]] || { echo "FAIL: expected 8 random bytes, got '$hex'"; exit 1; }
echo "PASS: /dev/tpmrm0 returned $hex"

#!/bin/bash
# With the kernel driver kept from binding, no /dev/tpm0 exists and QEMU's register window is readable from
# userspace through /dev/mem. $1: tis or crb.
set -eu
if compgen -G '/dev/tpm*' >/dev/null; then echo "FAIL: a kernel TPM driver bound: $(ls /dev/tpm*)"; exit 1; fi
case $1 in
  tis) reg=0xFED40F00 ;;  # TPM_DID_VID_0
  crb) reg=0xFED40030 ;;  # CRB_INTF_ID_0 (low word)
esac
value=$(busybox devmem "$reg" 32)
if [[ $value == 0x00000000 || $value == 0xFFFFFFFF ]]; then echo "FAIL: $reg reads $value"; exit 1; fi
echo "PASS: no /dev/tpm*, $1 register $reg = $value"

#!/bin/bash
# `meson install --destdir` into a temporary directory installs what a package needs, and the unit has every
# @VARIABLE@ substituted.
# Usage: check-install.sh MESON BUILD_DIR WITH_MAN(true|false)
set -eu
meson=$1 build=$2 with_man=$3
dest=$(mktemp -d /tmp/tpmrmd-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
"$meson" install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null
fail=0
expect() {  # a path pattern under the destdir
  local found
  found=$(cd "$dest" && find . -path "./$1" | head -1)
  if [[ -z $found ]]; then echo "FAIL: nothing installed at */$1"; fail=1; else echo "ok: ${found#.}"; fi
}
expect '*/sbin/tpmrmd'
expect '*/bin/tpm-probe'
expect '*/bin/tpmrmctl'
expect '*/systemd/system/tpmrmd.service'
expect '*/sysusers.d/tpmrmd.conf'
expect '*etc/tpmrmd/tpmrmd.conf'
expect '*/share/tpmrmd/command-policy.json'
expect '*/bash-completion/completions/tpmrmd'
expect '*/share/doc/tpmrmd/daemon.md'
expect '*/share/doc/tpmrmd/README.md'
[[ $with_man == true ]] && expect '*/man8/tpmrmd.8' && expect '*/man8/tpmrmctl.8'
unit=$(cd "$dest" && find . -path '*/systemd/system/tpmrmd.service' | head -1)
if [[ -n $unit ]]; then
  if grep -n '@[A-Za-z_]*@' "$dest/$unit"; then echo "FAIL: unsubstituted variables in the unit"; fail=1; fi
  grep -q '^ExecStart=/.*/sbin/tpmrmd ' "$dest/$unit" || { echo "FAIL: ExecStart has no absolute sbin path"; fail=1; }
  grep -q '^Type=notify$' "$dest/$unit" || { echo "FAIL: the unit is not Type=notify"; fail=1; }
fi
conf=$(cd "$dest" && find . -path '*etc/tpmrmd/tpmrmd.conf' | head -1)
if [[ -n $conf ]] && grep -n '@[A-Za-z_]*@' "$dest/$conf"; then echo "FAIL: unsubstituted variables in tpmrmd.conf"; fail=1; fi
# Test binaries are not installed.
if (cd "$dest" && find . -name '*_test' | grep .); then echo "FAIL: test binaries installed"; fail=1; fi
((fail == 0)) && echo PASS
exit $fail

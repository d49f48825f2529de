#!/bin/bash
# In the VM: tpmrmd on its embedded swtpm serves /dev/tpmrm0; tpm2_getrandom reads 16 bytes through it.
# Usage: smoke-getrandom.sh TPMRMD
set -eu
tpmrmd=$1
state=$(mktemp -d /tmp/tpmrmd-state.XXXXXX)
"$tpmrmd" --foreground --state-dir "$state" --log-level debug &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -c /dev/tpmrm0 ]] && break; sleep 0.1; done
[[ -c /dev/tpmrm0 ]] || { echo "FAIL: /dev/tpmrm0 did not appear"; exit 1; }
out=$(tpm2_getrandom -T device:/dev/tpmrm0 --hex 16)
echo "getrandom: $out"
[[ $out =~ ^[0-9a-f]{32}$ ]] || { echo "FAIL: unexpected output"; exit 1; }
kill -TERM $pid
wait $pid
rc=$?
trap - EXIT
[[ $rc -eq 0 ]] || { echo "FAIL: tpmrmd exited with $rc"; exit 1; }
[[ ! -e /dev/tpmrm0 ]] || { echo "FAIL: /dev/tpmrm0 still exists after SIGTERM"; exit 1; }
echo PASS

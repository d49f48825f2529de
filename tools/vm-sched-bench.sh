#!/usr/bin/env bash
# Fair scheduling measured through the CUSE node in the QEMU guest: tpmrmd in front of the guest kernel's
# /dev/tpm0 (QEMU's TIS in front of a host swtpm), a victim uid's ReadPublic latency with and without 16
# processes of another uid sending RSA-2048 CreatePrimary (tools/node_sched_bench.cc).
#   tools/vm-sched-bench.sh [BUILD_DIR] [node_sched_bench options...]
# A benchmark, not a test: it prints figures and fails only if a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
shift || true
if [[ ${TPMRMD_IN_VM:-} != 1 ]]; then
  exec tests/vm/run-in-vm.sh --tpm tis --timeout 1200 -- "$0" "$build" "$@"
fi
name=tpmrmbench0
log=$(mktemp /tmp/tpmrmd-bench.XXXXXX)
"$build/src/daemon/tpmrmd" --foreground --tpm device:/dev/tpm0 --name $name --mode 0666 --lock-dir /run/tpmrmd \
  2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do [[ -c /dev/$name ]] && break; sleep 0.1; done
[[ -c /dev/$name ]] || { cat "$log"; echo "FAIL: /dev/$name did not appear"; exit 1; }
"$build/tools/node_sched_bench" --device /dev/$name "$@"
kill -TERM $pid
wait $pid

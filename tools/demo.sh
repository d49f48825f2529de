#!/usr/bin/env bash
# Runs tpmrmd's embedded default end to end and shows a client call against it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
dir=$(mktemp -d)
trap 'kill $swtpm_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/state"
echo "demo: starting a private swtpm in $dir"
swtpm socket --tpm2 --server type=unixio,path="$dir/data.sock" --ctrl type=unixio,path="$dir/ctrl.sock" \
  --tpmstate dir="$dir/state" --flags not-need-init,startup-clear &
swtpm_pid=$!
for _ in $(seq 100); do [[ -S $dir/ctrl.sock && -S $dir/data.sock ]] && break; sleep 0.05; done
"$build/tools/tpm-probe" --tpm "swtpm:path=$dir/data.sock,ctrl=$dir/ctrl.sock"

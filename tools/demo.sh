#!/usr/bin/env bash
# README command 1, after the build: starts tpmrmd on its embedded default (a private swtpm it starts and
# supervises), shows tpm2-tools working through it, and stops it with SIGTERM.
# With CUSE (/dev/cuse) it serves the /dev/tpmrm0-compatible node; without it, the same RM on a unix socket
# (--no-cuse --socket, tpm2-tools' swtpm: TCTI). TPMRMD_DEMO_VM=1 on a host without CUSE runs the node demo in
# the project's QEMU guest, which has CUSE.
#   tools/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
tpmrmd=$build/src/daemon/tpmrmd

if [[ ! -c /dev/cuse && ${TPMRMD_DEMO_VM:-0} == 1 ]]; then
  echo "demo: this host's kernel has no CUSE (/dev/cuse); running the demo in a QEMU guest that has it (tests/vm)."
  exec tests/vm/run-in-vm.sh --tpm none -- "$PWD/tools/demo.sh" "$build"
fi

client_demo() {  # TPM2TOOLS_TCTI set; runs in the state dir
  echo "demo: \$ tpm2_getrandom --hex 16"
  tpm2_getrandom --hex 16; echo
  echo "demo: \$ tpm2_createprimary -c primary.ctx; tpm2_readpublic -c primary.ctx   (two processes, one key)"
  tpm2_createprimary -Q -c primary.ctx
  # Captured first: piping into head would SIGPIPE tpm2_readpublic and, under pipefail, end the demo early.
  public=$(tpm2_readpublic -c primary.ctx)
  sed -n 1,4p <<<"$public"
}

if [[ ! -c /dev/cuse ]]; then
  state=$(mktemp -d /tmp/tpmrmd-demo.XXXXXX)
  sock=$state/tpmrmd.sock
  echo "demo: this host's kernel has no CUSE (/dev/cuse): serving the RM on a unix socket instead"
  echo "demo: starting tpmrmd --foreground --no-cuse --socket $sock --state-dir $state (embedded swtpm)"
  "$tpmrmd" --foreground --no-cuse --socket "$sock" --state-dir "$state" --lock-dir "$state/lock" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$state"' EXIT
  for _ in $(seq 300); do [[ -S $sock ]] && break; sleep 0.1; done
  [[ -S $sock ]] || { echo "demo: $sock did not appear" >&2; exit 1; }
  ls -l "$sock"
  export TPM2TOOLS_TCTI=swtpm:path=$sock
  echo "demo: TPM2TOOLS_TCTI=$TPM2TOOLS_TCTI"
  (cd "$state" && client_demo)
  echo "demo: stopping tpmrmd (SIGTERM)"
  kill -TERM $pid
  status=0; wait $pid || status=$?
  trap 'rm -rf "$state"' EXIT
  if [[ -e $sock ]]; then echo "demo: tpmrmd exited $status but left $sock behind" >&2; exit 1; fi
  echo "demo: tpmrmd exited $status; $sock removed"
  exit "$status"
fi

name=tpmrm0
[[ -e /dev/$name ]] && name=tpmrmd-demo  # a kernel RM node already exists: serve ours beside it
state=$(mktemp -d /tmp/tpmrmd-demo.XXXXXX)
echo "demo: starting tpmrmd --foreground --name $name --state-dir $state (embedded swtpm)"
"$tpmrmd" --foreground --name "$name" --state-dir "$state" --lock-dir "$state/lock" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$state"' EXIT
for _ in $(seq 200); do [[ -c /dev/$name ]] && break; sleep 0.1; done
[[ -c /dev/$name ]] || { echo "demo: /dev/$name did not appear" >&2; exit 1; }
ls -l "/dev/$name"
export TPM2TOOLS_TCTI=device:/dev/$name
(cd "$state" && client_demo)
echo "demo: stopping tpmrmd (SIGTERM)"
kill -TERM $pid
status=0; wait $pid || status=$?
trap 'rm -rf "$state"' EXIT
if [[ -e /dev/$name ]]; then echo "demo: tpmrmd exited $status but left /dev/$name behind" >&2; exit 1; fi
echo "demo: tpmrmd exited $status; /dev/$name removed"
exit "$status"

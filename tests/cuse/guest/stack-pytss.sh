#!/bin/bash
# tpm2-pytss (ESAPI): a salted, encrypted HMAC session, a PCR policy session held across many commands and more
# loaded objects than the TPM has slots, in one process (stack-pytss.py). On the kernel's /dev/tpmrm0 the 4th
# object in one connection is refused, as the kernel does; through tpmrmd all of them load. In the VM one
# interpreter does both targets (python's start is what costs under TCG): it asks for tpmrmd once it is done
# with the kernel's node, and gets it only then.
# Usage: stack-pytss.sh vm|cuse|socket TPMRMD (stack-lib.sh)
source "$(dirname "$0")/stack-lib.sh"
[[ -x $PY ]] || fail "$PY is missing (tools/install-deps.sh)"
script=$stack_dir/stack-pytss.py

if [[ $mode != vm ]]; then
  run_checks() { t 180 $PY "$script" "$target=$TCTI" || fail "stack-pytss.py"; }
  run_targets
  echo "PASS: tpm2-pytss ($mode)"
  exit 0
fi

need_guest_tpm
mkfifo "$work/ask" "$work/go"
exec 3<>"$work/ask" 4<>"$work/go"  # read-write: never block in open() or write, whatever the interpreter does
t0=$SECONDS
timeout -k 5 400 $PY "$script" --ctl "$work" kernel=device:/dev/tpmrm0 tpmrmd=device:/dev/tpmrmstack0 &
py=$!
target=kernel
until read -r -t 1 -u 3 _; do
  kill -0 $py 2>/dev/null || { wait $py || fail "stack-pytss.py exited with $?"; fail "stack-pytss.py ended early"; }
  ((SECONDS - t0 < 300)) || fail "stack-pytss.py did not finish with the kernel's node within 300 s"
done
echo "=== [kernel] passed in $((SECONDS - t0)) s (with the interpreter's start)"
start_tpmrmd --tpm device:/dev/tpm0
t0=$SECONDS
echo go >&4
wait $py || fail "stack-pytss.py exited with $?"
stop_tpmrmd
echo "=== [tpmrmd] passed in $((SECONDS - t0)) s"
echo "PASS: tpm2-pytss ($mode)"

# Sourced by the client-stack tests (stack-*.sh): where the stack is pointed, and timeouts that fail clearly.
#
# A stack test runs its checks (a function run_checks, reading $TCTI, $NODE and $target) against each target
# its mode names:
#   vm      (in the VM with --tpm tis) first the guest kernel's /dev/tpmrm0 as the reference, then tpmrmd's
#           CUSE node in front of the same TPM (--tpm device:/dev/tpm0): never both at once
#   cuse    (in the VM, any --tpm) tpmrmd's CUSE node on its embedded swtpm only
#   socket  (on the host) tpmrmd --no-cuse --socket on its embedded swtpm, TCTI swtpm:path=SOCKET
# Usage of a stack test: stack-NAME.sh vm|cuse|socket TPMRMD
set -euo pipefail
mode=${1:?usage: $0 vm|cuse|socket TPMRMD}
tpmrmd=${2:?usage: $0 vm|cuse|socket TPMRMD}
stack_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$stack_dir/../../support/tpmrmd-ready.sh"
work=$(mktemp -d /tmp/tpmrmd-stack.XXXXXX)
chmod 0755 "$work"
target=setup
TCTI=
NODE=
daemon=
# The Debian interpreter and its packages (python3-tpm2-pytss, ...), not one a user's PATH may put first.
PY=/usr/bin/python3

# The guest's /dev is a bare devtmpfs: no /dev/fd (udev or systemd make it on a real system), so bash's process
# substitution `< <(...)`, which clevis-encrypt-tpm2 uses, fails there with "/dev/fd/63: No such file".
if [[ ${TPMRMD_IN_VM:-} == 1 && ! -e /dev/fd ]]; then
  ln -s /proc/self/fd /dev/fd
  ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
fi

stack_cleanup() {
  if [[ -n $daemon ]]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  if [[ -n ${STACK_KEEP:-} ]]; then echo "(kept $work)"; else rm -rf "$work"; fi
}
trap stack_cleanup EXIT

fail() {
  echo "FAIL [$target]: $*"
  if [[ -n $daemon && -f $work/tpmrmd.log ]]; then echo "--- tpmrmd log (last 30 lines):"; tail -n 30 "$work/tpmrmd.log"; fi
  exit 1
}
step() { echo "--- [$target] $*"; }

# t SECONDS CMD...: CMD with a deadline; past it the test fails naming the command (never the VM's 600 s).
t() {
  local secs=$1 rc=0
  shift
  timeout -k 5 "$secs" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then fail "timed out after ${secs} s: $*"; fi
  return $rc
}

need() {  # need PROGRAM... : installed, or the test fails naming the installer
  local p
  for p in "$@"; do command -v "$p" >/dev/null || fail "$p is not installed (tools/install-deps.sh)"; done
}

start_tpmrmd() {  # start_tpmrmd [tpmrmd options...]: tpmrmd for $mode; sets TCTI, NODE, target=tpmrmd
  target=tpmrmd
  local served
  if [[ $mode == socket ]]; then
    served=(--no-cuse --socket "$work/tpm.sock")
  else
    served=(--name tpmrmstack0 --mode 0666)
  fi
  "$tpmrmd" --config /dev/null --foreground --control-socket "" --state-dir "$work/state" \
    --lock-dir "$work/lock" "${served[@]}" "$@" >"$work/tpmrmd.log" 2>&1 &
  daemon=$!
  local why
  why=$(tpmrmd_ready "$work/tpmrmd.log" "$daemon") || fail "$why"
  if [[ $mode == socket ]]; then
    TCTI=swtpm:path=$work/tpm.sock NODE=
  else
    [[ -c /dev/tpmrmstack0 ]] || fail "/dev/tpmrmstack0 did not appear"
    TCTI=device:/dev/tpmrmstack0 NODE=/dev/tpmrmstack0
  fi
}

stop_tpmrmd() {  # SIGTERM; a clean exit and no RM inconsistency in the log, or the test fails
  grep -E 'event=physical-collision' "$work/tpmrmd.log" && fail "the RM found two objects in one TPM slot"
  kill -TERM "$daemon"
  local rc=0
  t 30 tail --pid="$daemon" -f /dev/null
  wait "$daemon" || rc=$?
  daemon=
  ((rc == 0)) || fail "tpmrmd exited with $rc"
}

need_guest_tpm() {  # the vm mode's reference: the guest kernel's own nodes on QEMU's TPM
  [[ -c /dev/tpmrm0 && -c /dev/tpm0 ]] || fail "no /dev/tpm0 + /dev/tpmrm0 in the guest (run-in-vm.sh --tpm tis)"
}

# Runs run_checks against every target of $mode, printing each target's time.
run_targets() {
  local t0
  case $mode in
    vm)
      need_guest_tpm
      target=kernel TCTI=device:/dev/tpmrm0 NODE=/dev/tpmrm0
      t0=$SECONDS
      run_checks
      echo "=== [kernel] passed in $((SECONDS - t0)) s"
      start_tpmrmd --tpm device:/dev/tpm0
      t0=$SECONDS
      run_checks
      stop_tpmrmd
      echo "=== [tpmrmd] passed in $((SECONDS - t0)) s"
      ;;
    cuse | socket)
      start_tpmrmd
      t0=$SECONDS
      run_checks
      stop_tpmrmd
      echo "=== [tpmrmd] passed in $((SECONDS - t0)) s"
      ;;
    *) fail "unknown mode $mode" ;;
  esac
}

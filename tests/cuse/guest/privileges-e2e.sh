#!/bin/bash
# In the VM: the embedded swtpm as firmware leaves a TPM, under an unprivileged daemon. A provisioned EK
# certificate reads back; platform auth is not empty for clients (tpm2_clear -c p fails) unless
# --platform-auth empty; with --runas the daemon and swtpm run as that user (Uid: in /proc/PID/status), and a
# killed swtpm is restarted by the unprivileged daemon and serves again, still with a non-empty platform auth.
# Usage: privileges-e2e.sh TPMRMD
set -euo pipefail
tpmrmd=$1
name=tpmrmpriv0
user=nobody
uid=$(id -u $user)
work=$(mktemp -d /tmp/tpmrmd-priv.XXXXXX)
chmod 755 "$work"  # the swtpm user must reach its state dir
cd "$work"
export TPM2TOOLS_TCTI=device:/dev/$name
step() { echo "--- $*"; }
fail() { echo "FAIL: $*"; [[ -f log ]] && sed 's/^/  log: /' log; exit 1; }
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; true' EXIT

# Starts tpmrmd with the given extra options and waits for its node (the first start provisions the TPM).
start() {
  "$tpmrmd" --foreground --name $name --state-dir "$work/state" --lock-dir "$work/lock" "$@" 2>>log &
  pid=$!
  for _ in $(seq 1200); do [[ -c /dev/$name ]] && grep -q "event=ready" log && return 0; sleep 0.1; done
  fail "/dev/$name did not become ready"
}
stop() {
  kill -TERM $pid
  wait $pid || fail "tpmrmd exited with $?"
  pid=
  : >log.done; cat log >>log.done; : >log
}
uid_of() { awk '/^Uid:/ {print $2}' /proc/$1/status; }
swtpm_pid() { pgrep -P $pid -x swtpm || true; }

step "first start with --runas $user: provisioning"
start --runas $user --group tss --provision ek-cert
grep "event=swtpm-provisioned" log || fail "no provisioning logged"
grep -q "event=platform-auth-set" log || fail "platform auth not set"

step "the daemon and swtpm run as $user (uid $uid)"
[[ $(uid_of $pid) == "$uid" ]] || fail "daemon Uid: $(uid_of $pid)"
sw=$(swtpm_pid)
[[ -n $sw ]] || fail "no swtpm child"
[[ $(uid_of "$sw") == "$uid" ]] || fail "swtpm Uid: $(uid_of "$sw")"
[[ $(stat -c %G /dev/$name) == tss ]] || fail "node group $(stat -c %G /dev/$name)"

step "EK certificate"
tpm2_getekcertificate -o ek.crt >/dev/null 2>&1 || fail "tpm2_getekcertificate"
[[ -s ek.crt ]] || fail "empty EK certificate"
tpm2_nvread 0x01c00002 -C 0x01c00002 -o ek.der 2>/dev/null || fail "nvread of the RSA EK cert index"
[[ $(od -An -tx1 -N2 ek.der | tr -d ' ') == 3082 ]] || fail "EK cert is not DER"
if command -v openssl >/dev/null; then
  openssl x509 -inform der -in ek.der -noout -issuer || fail "EK cert does not parse"
fi

step "platform auth is not empty for clients"
if tpm2_clear -c p 2>/dev/null; then fail "tpm2_clear -c p passed with the default platform auth"; fi
tpm2_getrandom --hex 8 >/dev/null || fail "getrandom"

step "swtpm killed: the unprivileged daemon restarts it"
kill -KILL "$sw"
new=
for _ in $(seq 600); do
  new=$(swtpm_pid)
  [[ -n $new && $new != "$sw" ]] && tpm2_getrandom --hex 8 >/dev/null 2>&1 && break
  new=
  sleep 0.1
done
[[ -n $new ]] || fail "no working restarted swtpm"
[[ $(uid_of "$new") == "$uid" ]] || fail "restarted swtpm Uid: $(uid_of "$new")"
grep -q "generation=2" log || fail "no generation 2"
[[ $(grep -c "event=platform-auth-set" log) -ge 2 ]] || fail "platform auth not set for generation 2"
if tpm2_clear -c p 2>/dev/null; then fail "tpm2_clear -c p passed after the restart"; fi
tpm2_getekcertificate -o ek2.crt >/dev/null 2>&1 || fail "EK certificate after the restart"
cmp -s ek.crt ek2.crt || fail "EK certificate changed"
stop

step "--platform-auth empty (test rigs): tpm2_clear -c p passes"
start --platform-auth empty --provision ek-cert
if grep -q "event=swtpm-provisioned" log; then fail "provisioned twice"; fi
tpm2_clear -c p || fail "tpm2_clear -c p with --platform-auth empty"
stop

trap - EXIT
echo "privileges-e2e: ok"

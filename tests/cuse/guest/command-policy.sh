#!/bin/bash
# In the VM: tpmrmd --profile strict over real CUSE. tpm2_clear as uid 1000 is refused (the RM-layer
# TPM_RC_COMMAND_CODE, nothing reaches the TPM), as root it runs, and both are in the daemon's audit trail.
# Then a policy file whose group class may Clear: a uid in that group only as a supplementary group may.
# Usage: command-policy.sh TPMRMD
set -euo pipefail
tpmrmd=$1
name=tpmrmpolicy0
work=$(mktemp -d /tmp/tpmrmd-policy.XXXXXX)
chmod 0755 "$work"
export TPM2TOOLS_TCTI=device:/dev/$name
fail() { echo "FAIL: $*"; [[ -f $work/log ]] && sed 's/^/  log: /' "$work/log"; exit 1; }
as_user() { setpriv --reuid 1000 --regid 1000 "$@"; }

pid=
start() {
  "$tpmrmd" --foreground --name $name --mode 0666 --state-dir "$work/state" --lock-dir "$work/lock" "$@" \
    2>"$work/log" &
  pid=$!
  for _ in $(seq 300); do [[ -c /dev/$name ]] && return; sleep 0.1; done
  fail "/dev/$name did not appear"
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || fail "tpmrmd exited with $?"
  pid=
}
trap '[[ -n $pid ]] && kill $pid 2>/dev/null || true' EXIT

echo "--- strict: tpm2_clear as uid 1000 is refused"
start --profile strict
if out=$(as_user --clear-groups tpm2_clear 2>&1); then fail "uid 1000 ran Clear: $out"; fi
echo "$out"
grep -qi "0xb0143\|command code" <<<"$out" || fail "tpm2_clear did not report the RM's TPM_RC_COMMAND_CODE: $out"
as_user --clear-groups tpm2_getrandom --hex 8 >/dev/null || fail "uid 1000 could not run GetRandom"
grep -q 'event=audit outcome=refused .*uid=1000 .*comm="tpm2_clear" class=other cc=0x00000126 command=Clear rc=0x000b0143' \
  "$work/log" || fail "no audit line for the refused Clear"

echo "--- strict: tpm2_clear as root runs"
tpm2_clear || fail "root could not run Clear"
grep -q 'event=audit outcome=ran .*uid=0 .*comm="tpm2_clear" class=root cc=0x00000126 command=Clear rc=0x00000000' \
  "$work/log" || fail "no audit line for root's Clear"
grep -q 'command=GetRandom' "$work/log" && fail "an ordinary command was audited"
stop

echo "--- policy file: the group class (a supplementary group) may Clear"
cat >"$work/policy.json" <<'JSON'
{ "profile": "strict", "group": "2000", "classes": { "group": { "allow": ["Clear"] } } }
JSON
start --policy "$work/policy.json"
as_user --groups 2000 tpm2_clear || fail "a member of group 2000 could not run Clear"
if as_user --clear-groups tpm2_clear 2>/dev/null; then fail "a non-member ran Clear"; fi
grep -q 'outcome=ran .*uid=1000 .*class=group .*command=Clear rc=0x00000000' "$work/log" \
  || fail "no audit line for the group member's Clear"
grep -q 'outcome=refused .*uid=1000 .*class=other .*command=Clear' "$work/log" \
  || fail "no audit line for the non-member's refused Clear"
stop

echo "--- a bad policy file is a usage error"
echo '{"classes": {"other": {"deny": ["Clearr"]}}}' >"$work/bad.json"
set +e
"$tpmrmd" --foreground --name $name --state-dir "$work/state" --lock-dir "$work/lock" --policy "$work/bad.json" \
  2>"$work/bad.log"
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "bad policy: exit $rc, expected 2"
grep -q "classes.other.deny\[0\]: unknown command 'Clearr'" "$work/bad.log" || fail "bad policy: $(cat "$work/bad.log")"
trap - EXIT
echo PASS

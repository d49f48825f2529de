#!/bin/bash
# In the VM: tpmrmd on its embedded swtpm with three clients holding their fds open (bash processes writing raw
# commands to fd 3: CreatePrimary and StartAuthSession), one of them as uid 1000; then tpmrmctl status, clients
# and metrics show their pids, uids, counts and the slot use, the Prometheus text passes a strict parser, a
# member of the node's group may read but not change, a non-member is refused, root may flush abandoned
# sessions and change the log level, and the socket is removed at SIGTERM.
# Usage: tpmrmctl-e2e.sh TPMRMD TPMRMCTL
set -euo pipefail
tpmrmd=$1
ctl=$2
name=tpmrmctl0
work=$(mktemp -d /tmp/tpmrmd-ctl.XXXXXX)
chmod 1777 "$work"  # the uid-1000 client writes its pid and rcs here
sock=$work/lock/control
fail() { echo "FAIL: $*"; [[ -f $work/log ]] && sed 's/^/  log: /' "$work/log"; exit 1; }

# Raw commands (tests/support/tpm_commands.h): ECC CreatePrimary (owner, two unique values), HMAC StartAuthSession.
CP1='\x80\x02\x00\x00\x00\x42\x00\x00\x01\x31\x40\x00\x00\x01\x00\x00\x00\x09\x40\x00\x00\x09\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x19\x00\x23\x00\x0b\x00\x04\x00\x72\x00\x00\x00\x10\x00\x18\x00\x0b\x00\x03\x00\x10\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00'
CP2='\x80\x02\x00\x00\x00\x42\x00\x00\x01\x31\x40\x00\x00\x01\x00\x00\x00\x09\x40\x00\x00\x09\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x19\x00\x23\x00\x0b\x00\x04\x00\x72\x00\x00\x00\x10\x00\x18\x00\x0b\x00\x03\x00\x10\x00\x01\x02\x00\x00\x00\x00\x00\x00\x00\x00'
SAS='\x80\x01\x00\x00\x00\x2b\x00\x00\x01\x76\x40\x00\x00\x07\x40\x00\x00\x07\x00\x10\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x00\x00\x00\x00\x10\x00\x0b'

"$tpmrmd" --foreground --name $name --mode 0666 --group 2000 --state-dir "$work/state" --lock-dir "$work/lock" \
  2>"$work/log" &
pid=$!
pids=($pid)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 300); do [[ -c /dev/$name && -S $sock ]] && break; sleep 0.1; done
[[ -c /dev/$name && -S $sock ]] || fail "/dev/$name or $sock did not appear"
[[ $(stat -c '%a %g' "$sock") == "660 2000" ]] || fail "socket mode/group: $(stat -c '%a %g' "$sock")"

# client NAME COMMAND...: a bash that opens the node on fd 3, runs each raw command, reports its pid, waits.
client() {
  local cname=$1; shift
  mkfifo "$work/$cname.go"
  local script='exec 3<>/dev/'$name'
    for c in "$@"; do printf "$c" >&3; dd bs=4096 count=1 status=none <&3 | od -An -tx1 | tr -d " \n" | cut -c13-20 >>"'$work/$cname'.rc"; done
    echo $$ >"'$work/$cname'.pid"
    read -r _ <"'$work/$cname'.go"'
  "${runner[@]}" bash -c "$script" bash "$@" &
  pids+=($!)
}
runner=(); client a "$CP1" "$CP2" "$SAS"
runner=(setpriv --reuid 1000 --regid 1000 --clear-groups); client b "$CP1"
runner=(); client c "$SAS" "$SAS"
for c in a b c; do
  for _ in $(seq 200); do [[ -s $work/$c.pid ]] && break; sleep 0.1; done
  [[ -s $work/$c.pid ]] || fail "client $c did not start"
  grep -qv 00000000 "$work/$c.rc" && fail "client $c: a command failed: $(cat "$work/$c.rc")"
done
apid=$(cat "$work/a.pid"); bpid=$(cat "$work/b.pid"); cpid=$(cat "$work/c.pid")

echo "--- tpmrmctl clients"
"$ctl" --socket "$sock" clients | tee "$work/clients.txt"
"$ctl" --socket "$sock" clients --json >"$work/clients.json"
check_client() {  # pid uid objects sessions commands
  jq -e --argjson p "$1" --argjson u "$2" --argjson o "$3" --argjson s "$4" --argjson n "$5" \
    '.clients[] | select(.pid == $p) | select(.uid == $u and .objects == $o and .sessions == $s and .commands == $n
      and .comm == "bash" and .last_command != null)' "$work/clients.json" >/dev/null \
    || fail "clients: no entry pid=$1 uid=$2 objects=$3 sessions=$4 commands=$5: $(cat "$work/clients.json")"
}
check_client "$apid" 0 2 1 3
check_client "$bpid" 1000 1 0 1
check_client "$cpid" 0 0 2 2
[[ $(jq '.clients | length' "$work/clients.json") == 3 ]] || fail "clients: not 3 connections"
grep -q "StartAuthSession -> 0x0" "$work/clients.txt" || fail "clients table: no last command and rc"

echo "--- tpmrmctl status"
"$ctl" --socket "$sock" status | tee "$work/status.txt"
"$ctl" --socket "$sock" status --json >"$work/status.json"
jq -e '.connections.open == 3 and .slots.objects_total == 3 and .slots.sessions_total == 3
  and .slots.objects_resident <= .slots.object_slots and .slots.sessions_resident <= .slots.session_slots
  and .backend.generation == 1 and (.backend.spec | startswith("swtpm")) and .tpm.manufacturer != ""
  and .counters.client_commands >= 6 and (.policy | length) > 0' "$work/status.json" >/dev/null \
  || fail "status: $(cat "$work/status.json")"

echo "--- tpmrmctl metrics (strict exposition format check)"
"$ctl" --socket "$sock" metrics >"$work/metrics.txt"
awk '
  function fam(n) { sub(/_(bucket|sum|count)$/, "", n); return n }
  /^# HELP tpmrmd_[a-zA-Z0-9_]+ ./ { help[$3] = 1; next }
  /^# TYPE tpmrmd_[a-zA-Z0-9_]+ (counter|gauge|histogram)$/ {
    if (!($3 in help)) { print "TYPE before HELP: " $0; bad = 1 } type[$3] = $4; next }
  /^tpmrmd_[a-zA-Z0-9_]+(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+0-9.eE]+$/ {
    n = $1; sub(/\{.*/, "", n); f = (n in type) ? n : fam(n)
    if (!(f in type)) { print "sample before TYPE: " $0; bad = 1 }
    if (type[f] == "histogram" && n ~ /_bucket$/) {
      if ($2 + 0 < last[f]) { print "not cumulative: " $0; bad = 1 } last[f] = $2 + 0
      if ($0 ~ /le="\+Inf"/) inf[f] = $2 + 0
    }
    if (type[f] == "histogram" && n ~ /_count$/ && inf[f] != $2 + 0) { print "+Inf != _count: " $0; bad = 1 }
    next }
  { print "bad line: " $0; bad = 1 }
  END { exit bad }' "$work/metrics.txt" || fail "metrics do not parse"
grep -q '^tpmrmd_connections 3$' "$work/metrics.txt" || fail "metrics: connections"
grep -q '^tpmrmd_objects 3$' "$work/metrics.txt" || fail "metrics: objects"
grep -q '^tpmrmd_commands_total{command="CreatePrimary",rc_class="success"} 3$' "$work/metrics.txt" \
  || fail "metrics: CreatePrimary count"
grep -q '^tpmrmd_commands_total{command="StartAuthSession",rc_class="success"} 3$' "$work/metrics.txt" \
  || fail "metrics: StartAuthSession count"
grep -q '^tpmrmd_command_latency_seconds_bucket{le="+Inf"} ' "$work/metrics.txt" || fail "metrics: histogram"

echo "--- permissions"
setpriv --reuid 1001 --regid 1001 --groups 2000 "$ctl" --socket "$sock" status >/dev/null \
  || fail "a member of the node's group could not read the status"
if out=$(setpriv --reuid 1001 --regid 1001 --groups 2000 "$ctl" --socket "$sock" log-level debug 2>&1); then
  fail "a group member changed the log level"
fi
echo "$out"; grep -q "root only" <<<"$out" || fail "group member: unclear refusal: $out"
if out=$(setpriv --reuid 1001 --regid 1001 --groups 2000 "$ctl" --socket "$sock" flush-abandoned 2>&1); then
  fail "a group member flushed abandoned sessions"
fi
if out=$(setpriv --reuid 1002 --regid 1002 --clear-groups "$ctl" --socket "$sock" status 2>&1); then
  fail "a non-member read the status"
fi
echo "$out"; grep -q "permission denied" <<<"$out" || fail "non-member: unclear refusal: $out"

echo "--- root: log-level, flush-abandoned"
"$ctl" --socket "$sock" log-level debug | grep -q "log level debug" || fail "log-level"
"$ctl" --socket "$sock" flush-abandoned --json | jq -e '.flushed == 0' >/dev/null || fail "flush-abandoned"

echo "--- clients close; SIGTERM removes the socket"
for c in a b c; do echo go >"$work/$c.go"; done
wait "${pids[@]:1}" || true
for _ in $(seq 50); do
  "$ctl" --socket "$sock" status --json | jq -e '.connections.open == 0' >/dev/null && break; sleep 0.1
done
"$ctl" --socket "$sock" status --json | jq -e '.connections.open == 0 and .slots.objects_total == 0' >/dev/null \
  || fail "connections did not close"
kill -TERM "$pid"
wait "$pid" || fail "tpmrmd exited with $?"
[[ -e $sock ]] && fail "the control socket was left behind"
trap - EXIT
echo PASS

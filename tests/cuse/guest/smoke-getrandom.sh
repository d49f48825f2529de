#!/bin/bash
# In the VM: tpmrmd on its embedded swtpm serves /dev/tpmrm0; tpm2_getrandom reads 16 bytes through it.
# The daemon runs as under systemd's Type=notify (NOTIFY_SOCKET, WATCHDOG_USEC): READY=1 arrives once the node
# exists, then STATUS= lines and WATCHDOG=1 pings, STOPPING=1 at SIGTERM. The node has the fixed device number
# of --major/--minor, and works when passed into a private mount namespace whose /dev holds only a mknod of it
# (what a container runtime's --device does).
# Usage: smoke-getrandom.sh TPMRMD
set -eu
tpmrmd=$1
here=$(dirname "$0")
state=$(mktemp -d /tmp/tpmrmd-state.XXXXXX)
notify=$(mktemp -d /tmp/tpmrmd-notify.XXXXXX)
/usr/bin/python3 "$here/notify-listener.py" "$notify/sock" "$notify/log" /dev/tpmrm0 &
listener=$!
for _ in $(seq 100); do grep -q LISTENING "$notify/log" 2>/dev/null && break; sleep 0.1; done
grep -q LISTENING "$notify/log" || { echo "FAIL: the notification listener did not start"; exit 1; }
NOTIFY_SOCKET=$notify/sock WATCHDOG_USEC=1000000 \
  "$tpmrmd" --foreground --state-dir "$state" --log-level debug --major 240 --minor 5 --config /dev/null &
pid=$!
trap 'kill $pid $listener 2>/dev/null || true' EXIT
for _ in $(seq 300); do grep -q '^READY=1' "$notify/log" && break; sleep 0.1; done
grep -q '^READY=1' "$notify/log" || { echo "FAIL: no READY=1"; cat "$notify/log"; exit 1; }
grep -q '^READY=1 node=yes$' "$notify/log" || { echo "FAIL: READY=1 before /dev/tpmrm0 existed"; exit 1; }
[[ -c /dev/tpmrm0 ]] || { echo "FAIL: /dev/tpmrm0 did not appear"; exit 1; }
echo "notify: READY=1 after /dev/tpmrm0 existed"

numbers=$(stat -c '%t:%T' /dev/tpmrm0)
[[ $numbers == f0:5 ]] || { echo "FAIL: /dev/tpmrm0 is $numbers (hex), not 240:5"; exit 1; }
echo "node: char 240:5, $(stat -c '%A %U:%G' /dev/tpmrm0)"

out=$(tpm2_getrandom -T device:/dev/tpmrm0 --hex 16)
echo "getrandom: $out"
[[ $out =~ ^[0-9a-f]{32}$ ]] || { echo "FAIL: unexpected output"; exit 1; }

# The node by its number in a private /dev, as a container sees it.
inside=$(unshare -m /bin/bash -c '
  set -eu
  mount -t tmpfs -o mode=0755 none /dev
  mknod -m 0666 /dev/tpm-passed c 240 5
  ls /dev >&2
  TPM2TOOLS_TCTI=device:/dev/tpm-passed tpm2_getrandom --hex 16')
echo "getrandom in a private /dev: $inside"
[[ $inside =~ ^[0-9a-f]{32}$ ]] || { echo "FAIL: unexpected output through the passed node"; exit 1; }

# STATUS= with the counts and watchdog pings (every half WATCHDOG_USEC) while the worker answers.
for _ in $(seq 50); do grep -q 'commands$' "$notify/log" && grep -q '^WATCHDOG=1' "$notify/log" && break; sleep 0.1; done
grep -q '^STATUS=serving /dev/tpmrm0, generation 1, [0-9]* connections, [0-9]* commands$' "$notify/log" ||
  { echo "FAIL: no STATUS= with counts"; cat "$notify/log"; exit 1; }
grep -q '^WATCHDOG=1$' "$notify/log" || { echo "FAIL: no WATCHDOG=1"; cat "$notify/log"; exit 1; }
echo "notify: $(grep '^STATUS=' "$notify/log" | tail -1), $(grep -c '^WATCHDOG=1$' "$notify/log") watchdog pings"

kill -TERM $pid
rc=0
wait $pid || rc=$?
trap 'kill $listener 2>/dev/null || true' EXIT
[[ $rc -eq 0 ]] || { echo "FAIL: tpmrmd exited with $rc"; exit 1; }
[[ ! -e /dev/tpmrm0 ]] || { echo "FAIL: /dev/tpmrm0 still exists after SIGTERM"; exit 1; }
sleep 0.2
grep -q '^STOPPING=1$' "$notify/log" || { echo "FAIL: no STOPPING=1"; cat "$notify/log"; exit 1; }
echo "notify: STOPPING=1"
echo PASS

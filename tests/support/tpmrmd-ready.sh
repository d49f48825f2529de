# Sourced by the shell tests that start tpmrmd in the background with its log in a file.
# tpmrmd_ready LOG PID: returns 0 once LOG has tpmrmd's event=ready line (within 30 s); otherwise prints why
# (the daemon exited, or the time ran out) and returns 1. The caller fails with that reason.
tpmrmd_ready() {
  local log=$1 pid=$2 _
  for _ in $(seq 300); do
    grep -q 'event=ready' "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "tpmrmd exited at start"; return 1; }
    sleep 0.1
  done
  echo "tpmrmd not ready within 30 s"
  return 1
}

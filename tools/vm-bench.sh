#!/usr/bin/env bash
# The side-by-side benchmark (docs/benchmarks.md): tools/tpm_bench's workloads through the guest kernel's RM
# (/dev/tpmrm0), the bare /dev/tpm0, tpmrmd (device:/dev/tpm0), tpm2-abrmd and the CUSE floor device, in one
# QEMU guest boot (QEMU's TIS in front of a host swtpm, or its CRB with --tpm crb); then per-command syscalls,
# FUSE requests and context switches of each daemon, and tpmrmd's memory for idle connections.
#
#   tools/vm-bench.sh [--build DIR] [--out DIR] [--seconds S] [--rounds N] [--many-keys 1,10,100,1000,10000]
#                     [--idle N] [--count N] [--targets kernel-rm,tpm0,tpmrmd,abrmd,socket,floor] [--no-plot]
#                     [--counts-only] [--tpm tis|crb] [--tools-suite DIR [--tools-tests a,b,...]]
#
# Results go to --out (default docs/benchmarks): bench.csv (one line per target and workload), memory.csv,
# counts.csv, table.md and bench.svg (gnuplot). A benchmark, not a test: it fails only if a step fails (a
# workload failing through tpmrmd is such a step; through the other targets it is a result, "fails (rc)").
# --tools-suite: DIR is test/integration of a tpm2-tools source tree of the installed version; the named tests of
# that suite then run through the kernel RM and through tpmrmd, timed one by one (tools-suite.csv).
set -euo pipefail
cd "$(dirname "$0")/.."

build=build out=docs/benchmarks seconds=1 rounds=2 many=1,10,100,1000,10000 idle=10000 count=300
targets=kernel-rm,tpm0,tpmrmd,abrmd,socket,floor plot=1 guest=0 benches=1 tpm=tis
suite=''
suite_tests=createprimary,create,load,readpublic,sign,verifysignature,unseal,hmac,nv,quote,abrmd_policypcr
suite_tests+=,flushcontext
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --many-keys) many=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --no-plot) plot=0; shift ;;
    --counts-only) benches=0; shift ;;
    --tpm) tpm=$2; shift 2 ;;
    --tools-suite) suite=$(realpath "$2"); shift 2 ;;
    --tools-tests) suite_tests=$2; shift 2 ;;
    --in-guest) guest=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "vm-bench: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ $tpm == tis || $tpm == crb ]] || { echo "vm-bench: --tpm is tis or crb" >&2; exit 2; }
build=$(realpath "$build")
[[ -z $suite || -f $suite/helpers.sh ]] || { echo "vm-bench: $suite/helpers.sh missing (--tools-suite)" >&2; exit 2; }
for exe in tools/tpm_bench tools/cuse_floor tools/tpmrmctl src/daemon/tpmrmd; do
  [[ -x $build/$exe ]] || { echo "vm-bench: $build/$exe missing (tools/build.sh $build)" >&2; exit 1; }
done

# --- on the host: boot the guest, take its results off the console, tabulate and plot -------------------------
begin_marker='=== vm-bench results (tar.gz, base64) ==='
end_marker='=== vm-bench results end ==='
if [[ ${TPMRMD_IN_VM:-} != 1 ]]; then
  # The harness removes its shared results directory when the guest ends: the results travel on the console.
  log=$(mktemp /tmp/vm-bench.XXXXXX.log)
  trap 'rm -f "$log"' EXIT
  tests/vm/run-in-vm.sh --tpm "$tpm" --timeout 3600 --mem 2048 -- "$0" --in-guest --build "$build" \
    --seconds "$seconds" --rounds "$rounds" --many-keys "$many" --idle "$idle" --count "$count" --targets "$targets" \
    ${suite:+--tools-suite "$suite" --tools-tests "$suite_tests"} $( ((benches)) || echo --counts-only) | tee "$log"
  mkdir -p "$out"
  tr -d '\r' < "$log" | sed -n "/^$begin_marker\$/,/^$end_marker\$/p" | sed '1d;$d' | base64 -d | tar -xz -C "$out"
  if ((!benches)); then cat "$out/counts.csv"; exit 0; fi
  python3 tools/bench-table.py "$out" > "$out/table.md"
  cat "$out/table.md"
  if ((plot)); then
    command -v gnuplot >/dev/null || { echo "vm-bench: gnuplot missing (tools/install-deps.sh)" >&2; exit 1; }
    gnuplot -e "dir='$out'" tools/bench-plot.gp
    echo "vm-bench: $out/bench.svg"
  fi
  exit 0
fi

# --- in the guest -------------------------------------------------------------------------------------------------
res=$(mktemp -d /tmp/vm-bench-results.XXXXXX)
work=$(mktemp -d /tmp/vm-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step() { echo; echo "=== $* ($(date +%T))"; }
has() { [[ ,$targets, == *,$1,* ]]; }
die() { echo "vm-bench: FAIL: $*" >&2; exit 1; }

# tpm_bench against one target; exit 2 (some workload failed) is a result unless `strict`.
bench() {
  local label=$1 strict=$2 rc=0
  shift 2
  ((benches)) || return 0
  "$build/tools/tpm_bench" --label "$label" --csv "$res/bench.csv" --seconds "$seconds" --rounds "$rounds" \
    --many-keys "$many" "$@" || rc=$?
  ((rc == 0)) && return 0
  ((rc == 2 && !strict)) && return 0
  die "tpm_bench through $label exited $rc"
}

wait_for() {  # a test(1) condition, up to 30 s
  local _
  for _ in $(seq 300); do test "$@" && return 0; sleep 0.1; done
  return 1
}

# Context switches of every thread the process has now (threads that already ended are not counted).
ctxt_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n + 0}'
}

# Per client command: the daemon's context switches, then (under strace) its syscalls, FUSE requests (its
# writes to /dev/cuse: one reply per request) and its writes to the TPM device. `count` GetRandoms.
per_command_counts() {
  local label=$1 pid=$2
  shift 2
  local before after spid trace=$work/strace-$label.log
  echo "$label: $count GetRandoms, context switches"
  before=$(ctxt_switches "$pid")
  timeout 300 "$build/tools/tpm_bench" --workload getrandom --rounds 1 --count "$count" "$@" >/dev/null ||
    die "$label: $count GetRandoms"
  after=$(ctxt_switches "$pid")
  echo "$label: $count GetRandoms under strace"
  strace -f -qq -y -o "$trace" -p "$pid" &
  spid=$!
  # Commands before strace holds every thread would go uncounted: wait until each one names it as its tracer.
  local _ all
  for _ in $(seq 600); do
    all=1
    grep -h '^TracerPid:' /proc/"$pid"/task/*/status | grep -qv "[[:space:]]$spid\$" && all=0
    ((all)) && break
    sleep 0.1
  done
  ((all)) || die "strace did not attach to every thread of $label"
  timeout 300 "$build/tools/tpm_bench" --workload getrandom --rounds 1 --count "$count" "$@" >/dev/null ||
    die "$label: $count GetRandoms under strace"
  sleep 1
  kill -INT "$spid"
  timeout 60 tail --pid="$spid" -f /dev/null || die "strace did not end"
  # A syscall split across threads' lines ("<unfinished ...>" then "<... resumed>") counts once.
  awk -v label="$label" -v n="$count" -v ctx=$((after - before)) '
    / resumed>/ || /^[0-9]+ (\+\+\+|---)/ {next}
    {calls++; name = $2; sub(/\(.*/, "", name); by[name]++}
    /(write|writev)\([0-9]+<\/dev\/cuse>/ {fuse++}
    /write\([0-9]+<\/dev\/tpm/ {tpm++}
    END {
      top = ""
      for (k in by) top = top sprintf("%s=%.2f ", k, by[k] / n)
      printf "%s,%d,%.2f,%.2f,%.2f,%.2f,%s\n", label, n, calls / n, fuse / n, tpm / n, ctx / n, top
    }' "$trace" >> "$res/counts.csv"
  tail -1 "$res/counts.csv"
}

echo "target,commands,syscalls_per_cmd,fuse_requests_per_cmd,tpm_writes_per_cmd,ctxt_switches_per_cmd,by_syscall" \
  > "$res/counts.csv"
"$build/tools/tpm_bench" --list

if has kernel-rm; then
  step "kernel RM: /dev/tpmrm0"
  bench kernel-rm 0 --device /dev/tpmrm0
fi

if has tpm0; then
  step "bare TPM: /dev/tpm0"
  bench tpm0 0 --device /dev/tpm0
fi

if has abrmd; then
  step "tpm2-abrmd (session bus) on /dev/tpm0"
  command -v tpm2-abrmd >/dev/null || die "tpm2-abrmd missing (tools/install-deps.sh)"
  export DBUS_SESSION_BUS_ADDRESS
  DBUS_SESSION_BUS_ADDRESS=$(dbus-daemon --session --fork --print-address=1 --print-pid=3 3>"$work/dbus.pid")
  pids+=("$(cat "$work/dbus.pid")")
  # Its own limits: at most 100 transient objects per connection, 64 sessions.
  tpm2-abrmd --session --allow-root --tcti device:/dev/tpm0 --max-transients 100 --max-connections 100 \
    --flush-all >"$work/abrmd.log" 2>&1 &
  abrmd=$!
  pids+=("$abrmd")
  for _ in $(seq 300); do
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.NameHasOwner string:com.intel.tss2.Tabrmd 2>/dev/null | grep -q 'boolean true' && break
    kill -0 "$abrmd" 2>/dev/null || { cat "$work/abrmd.log"; die "tpm2-abrmd exited"; }
    sleep 0.1
  done
  bench abrmd 0 --tcti tabrmd:bus_type=session
  per_command_counts abrmd "$abrmd" --tcti tabrmd:bus_type=session
  kill -TERM "$abrmd"; wait "$abrmd" || true
fi

if has tpmrmd; then
  step "tpmrmd --tpm device:/dev/tpm0"
  node=tpmrmbench0 control=/run/tpmrmd/control
  # The caps tpmrmd puts on one connection and one uid would stop keys-10000 and the idle connections.
  "$build/src/daemon/tpmrmd" --foreground --tpm device:/dev/tpm0 --name $node --mode 0666 --lock-dir /run/tpmrmd \
    --control-socket $control --shutdown none --log-level warn --max-objects 20000 --max-connections 20000 \
    --max-connections-per-uid 20000 --max-objects-per-uid 0 --root-exempt-from-uid-caps 2>"$work/tpmrmd.log" &
  tpmrmd=$!
  pids+=("$tpmrmd")
  wait_for -c /dev/$node -a -S $control || { cat "$work/tpmrmd.log"; die "/dev/$node did not appear"; }
  bench tpmrmd 1 --device /dev/$node --control-socket $control
  per_command_counts tpmrmd "$tpmrmd" --device /dev/$node
  if ((benches)); then
    step "tpmrmd: $idle idle connections"
    "$build/tools/tpm_bench" --device /dev/$node --idle-connections "$idle" --daemon-pid "$tpmrmd" \
      --label tpmrmd --csv "$res/memory.csv" || die "idle connections"
  fi
  "$build/tools/tpmrmctl" --socket $control status | sed -n '1,12p'
  kill -TERM "$tpmrmd"; wait "$tpmrmd" || die "tpmrmd exited $?: $(cat "$work/tpmrmd.log")"
fi

if has socket; then
  step "tpmrmd --no-cuse --socket (swtpm: TCTI) on device:/dev/tpm0"
  sock=/run/tpmrmd-bench.sock control=/run/tpmrmd/control
  "$build/src/daemon/tpmrmd" --foreground --tpm device:/dev/tpm0 --no-cuse --socket $sock --mode 0666 \
    --lock-dir /run/tpmrmd --control-socket $control --shutdown none --log-level warn --max-objects 20000 \
    --max-objects-per-uid 0 --root-exempt-from-uid-caps 2>"$work/socket.log" &
  sockd=$!
  pids+=("$sockd")
  wait_for -S $sock -a -S $control || { cat "$work/socket.log"; die "$sock did not appear"; }
  bench socket 1 --tcti "swtpm:path=$sock" --control-socket $control --workload getrandom --workload readpublic \
    --workload sign --workload rr3 --workload policy
  kill -TERM "$sockd"; wait "$sockd" || die "tpmrmd (socket) exited $?: $(cat "$work/socket.log")"
fi

if has floor; then
  step "the floor: cuse_floor (answers at once, no TPM)"
  "$build/tools/cuse_floor" --name tpmfloor0 2>"$work/floor.log" &
  floor=$!
  pids+=("$floor")
  wait_for -c /dev/tpmfloor0 || { cat "$work/floor.log"; die "/dev/tpmfloor0 did not appear"; }
  bench floor 1 --device /dev/tpmfloor0 --workload getrandom --workload 16clients --workload open-close
  per_command_counts floor "$floor" --device /dev/tpmfloor0
  kill -TERM "$floor"; wait "$floor" || true
fi

# The named tests of tpm2-tools' own integration suite, one process per tool call as the suite is written, each
# timed; a test that fails is a result (its status is recorded), not a failure of the benchmark.
tools_suite() {  # label tcti
  local label=$1 tcti=$2 t rc start end
  local -a tests
  IFS=, read -ra tests <<<"$suite_tests"
  for t in "${tests[@]}"; do
    start=$(date +%s%N)
    rc=0
    (cd "$work" && PATH=$suite:$PATH TPM2TOOLS_TEST_TCTI=$tcti timeout 900 bash "$suite/tests/$t.sh") \
      >"$work/suite-$label-$t.log" 2>&1 || rc=$?
    end=$(date +%s%N)
    echo "$label,$t,$rc,$(((end - start) / 1000000))" | tee -a "$res/tools-suite.csv"
    ((rc == 0)) || tail -5 "$work/suite-$label-$t.log" | sed "s/^/  $label $t: /"
  done
}

if [[ -n $suite ]] && ((benches)); then
  echo "target,test,status,ms" > "$res/tools-suite.csv"
  step "tpm2-tools integration tests through the kernel RM"
  tools_suite kernel-rm device:/dev/tpmrm0
  step "tpm2-tools integration tests through tpmrmd"
  node=tpmrmsuite0
  "$build/src/daemon/tpmrmd" --foreground --tpm device:/dev/tpm0 --name $node --mode 0666 --lock-dir /run/tpmrmd \
    --shutdown none --log-level warn 2>"$work/tpmrmd-suite.log" &
  tpmrmd=$!
  pids+=("$tpmrmd")
  wait_for -c /dev/$node || { cat "$work/tpmrmd-suite.log"; die "/dev/$node did not appear"; }
  tools_suite tpmrmd device:/dev/$node
  kill -TERM "$tpmrmd"; wait "$tpmrmd" || die "tpmrmd exited $?: $(cat "$work/tpmrmd-suite.log")"
fi

step "results"
for f in bench.csv counts.csv memory.csv tools-suite.csv; do [[ -f $res/$f ]] && cat "$res/$f"; done
echo "$begin_marker"
tar -C "$res" -cz . | base64
echo "$end_marker"

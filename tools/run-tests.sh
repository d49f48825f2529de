#!/usr/bin/env bash
# The project's test command: installs dependencies, builds, runs every suite (unit, swtpm, VM), then the
# host suites again under ASan+UBSan and under TSan, then every fuzz target for a bounded time, and prints one
# summary line "tests: N passed, N failed".
#
#   tools/run-tests.sh                     everything (what CI runs)
#   TPMRMD_SANITIZE=0 tools/run-tests.sh   skip the ASan+UBSan pass
#   TPMRMD_TSAN=0 tools/run-tests.sh       skip the ThreadSanitizer pass
#   TPMRMD_FUZZ=0 tools/run-tests.sh       skip the bounded libFuzzer runs (tools/run-fuzz.sh)
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
junits=()

# Sanitizer builds keep line tables only (-g1): backtraces still name file and line, and compiling is about a
# third faster than with full debug information.
lean_debug=-Dcpp_args=-g1

run_suites() {  # dir, meson test args...
  local dir=$1; shift
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
  local rc=$?
  junits+=("$dir/meson-logs/testlog.junit.xml")
  return $rc
}

echo "=== build and test: all suites (build/)"
tools/build.sh build && run_suites build || status=1

if [[ ${TPMRMD_SANITIZE:-1} != 0 ]]; then
  echo "=== ASan+UBSan: host suites (build-asan/)"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  tools/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dvm_tests=disabled $lean_debug &&
    run_suites build-asan --no-suite vm || status=1
fi

if [[ ${TPMRMD_TSAN:-1} != 0 ]]; then
  echo "=== TSan: host suites (build-tsan/)"
  export TSAN_OPTIONS=second_deadlock_stack=1
  tools/build.sh build-tsan -Db_sanitize=thread -Db_lundef=false -Dvm_tests=disabled $lean_debug &&
    run_suites build-tsan --no-suite vm || status=1
fi

if [[ ${TPMRMD_FUZZ:-1} != 0 ]]; then
  # A fixed seed and a number of executions, not a time bound: the run replays exactly, so what passes here passes
  # on any machine, however fast. Long, time-bound runs are tools/run-fuzz.sh --long.
  echo "=== libFuzzer: every *_fuzzer under ASan+UBSan, ${FUZZ_RUNS:-5000} executions each, seed ${FUZZ_SEED:-1} (build-fuzz/)"
  FUZZ_RUNS=${FUZZ_RUNS:-5000} FUZZ_SEED=${FUZZ_SEED:-1} tools/run-fuzz.sh || status=1
  junits+=(build-fuzz/meson-logs/testlog.junit.xml)
fi

python3 tools/test-summary.py "${junits[@]}" || status=1
exit $status

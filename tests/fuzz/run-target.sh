#!/usr/bin/env bash
# Runs one libFuzzer target over a scratch copy of its seed corpus and prints one result line; the exit status
# is libFuzzer's (non-zero on a crash, leak, timeout, out-of-memory or invariant violation).
#
#   tests/fuzz/run-target.sh FUZZER SEED_DIR WORK_DIR [libFuzzer flags...]
#
# WORK_DIR (emptied first) gets corpus/ (the seeds plus what the run found), the crash artifact if any, and
# fuzz.log. The seed directory is only read.
# Environment: FUZZ_SECONDS (default 20) bounds the run; FUZZ_RUNS, when set, bounds it by executions instead
# (long runs); FUZZ_SEED fixes libFuzzer's random seed (with FUZZ_RUNS a run then replays exactly: what CI runs);
# FUZZ_TIMEOUT (default 10 s per input), FUZZ_RSS_MB (default 2048); FUZZ_ASAN_OPTIONS.
set -uo pipefail

if (($# < 3)); then
  echo "usage: $0 FUZZER SEED_DIR WORK_DIR [libFuzzer flags...]" >&2
  exit 2
fi
fuzzer=$1 seeds=$2 work=$3
shift 3
name=$(basename "$fuzzer")

rm -rf "$work"
mkdir -p "$work/corpus"
if [[ -d $seeds ]]; then
  find "$seeds" -maxdepth 1 -type f -exec cp -t "$work/corpus" {} +
fi

if [[ -n ${FUZZ_RUNS:-} ]]; then
  bound=(-runs="$FUZZ_RUNS")
else
  bound=(-max_total_time="${FUZZ_SECONDS:-20}")
fi
if [[ -n ${FUZZ_SEED:-} ]]; then bound+=(-seed="$FUZZ_SEED"); fi
# Our own sanitizer settings, whatever the caller's suites exported (FUZZ_ASAN_OPTIONS adds to them).
# malloc_context_size=0: recording the allocation stack of every malloc was a third of the RM targets' time. It
# changes no check, only the "allocated by / freed by" part of a report, and reproducing the kept input (the
# command printed below, without these options) shows those stacks in full.
export ASAN_OPTIONS="detect_leaks=1:malloc_context_size=0${FUZZ_ASAN_OPTIONS:+:$FUZZ_ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

"$fuzzer" "${bound[@]}" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
  -print_final_stats=1 -artifact_prefix="$work/" "$@" "$work/corpus" >"$work/fuzz.log" 2>&1
rc=$?

done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/fuzz.log" | tail -1)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
corpus=$(find "$work/corpus" -type f | wc -l)

if ((rc == 0)); then
  echo "$name: ok, ${execs:-?} execs, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus $corpus"
else
  artifact=$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'slow-unit-*' \) | head -1)
  echo "$name: FAILED (libFuzzer exit $rc) after ${execs:-?} execs; log $work/fuzz.log"
  grep -E 'invariant violated|ERROR: |SUMMARY: |runtime error' -A2 "$work/fuzz.log" | head -20 | sed 's/^/  /'
  if [[ -n $artifact ]]; then
    echo "  input kept: $artifact"
    echo "  reproduce:  $fuzzer $artifact"
  fi
fi
exit $rc

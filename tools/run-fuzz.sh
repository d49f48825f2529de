#!/usr/bin/env bash
# Builds the libFuzzer targets (every executable named *_fuzzer) under ASan+UBSan in build-fuzz/ and runs each
# for FUZZ_SECONDS over a scratch copy of its seed corpus (tests/fuzz/corpus/NAME/, never written unless
# --merge). Prints execs, exec/s and coverage per target, writes build-fuzz/meson-logs/testlog.junit.xml (one
# testcase per target) and exits non-zero on any crash, leak, timeout or invariant violation; the input that
# caused it stays in build-fuzz/fuzz-work/NAME/. See docs/fuzzing.md.
#
#   tools/run-fuzz.sh [TARGET...]      every target (or the named ones), FUZZ_SECONDS each (default 20)
#   tools/run-fuzz.sh --long           FUZZ_RUNS executions each (default 10000000) instead of a time bound
#   tools/run-fuzz.sh --merge          then add what the runs found that reaches new features to
#                                      tests/fuzz/corpus/ (libFuzzer -merge=1; review before committing; not in CI)
#   tools/run-fuzz.sh --coverage       replay the corpora in build-fuzz-cov/ (source-based coverage, no
#                                      sanitizers) and print llvm-cov's line coverage of src/; no fuzzing
set -uo pipefail
cd "$(dirname "$0")/.."

long=0 merge=0 coverage=0 wanted=()
for arg in "$@"; do
  case $arg in
    --long) long=1 ;;
    --merge) merge=1 ;;
    --coverage) coverage=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "run-fuzz: unknown option $arg" >&2; exit 2 ;;
    *) wanted+=("$arg") ;;
  esac
done
if ((merge)) && [[ ${CI:-} == true ]]; then
  echo "run-fuzz: --merge writes into the source tree; not in CI" >&2
  exit 2
fi

tools/install-deps.sh >/dev/null || exit 1
export CXX=${FUZZ_CXX:-clang++} CC=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-2}

configure() {  # dir, meson options...
  local dir=$1; shift
  local opts=(-Dfuzzing=true -Dtests=false -Dvm_tests=disabled -Dwerror=true "$@")
  local reconfigure=()
  [[ -f $dir/build.ninja ]] && reconfigure=(--reconfigure)
  mkdir -p "$dir"
  # Meson's compiler checks run what they link; with coverage flags each would drop a profile in the cwd.
  LLVM_PROFILE_FILE="$PWD/$dir/meson-check-%p.profraw" \
    meson setup "${reconfigure[@]}" "$dir" "${opts[@]}" >"$dir/fuzz-setup.log" 2>&1 ||
    { tail -30 "$dir/fuzz-setup.log" >&2; echo "run-fuzz: meson setup $dir failed" >&2; return 1; }
}

# "name path" per fuzz target of the build dir (paths relative to it), the named ones only if any were named.
targets_of() {
  meson introspect --targets "$1" | python3 -c '
import json, os, sys
build, wanted = sys.argv[1], set(sys.argv[2:])
for t in json.load(sys.stdin):
    if t["type"] == "executable" and t["name"].endswith("_fuzzer") and (not wanted or t["name"] in wanted):
        print(t["name"], os.path.relpath(t["filename"][0], os.path.abspath(build)))
' "$1" "${wanted[@]}"
}

build_targets() {  # dir -> fills names[] and paths[]
  names=() paths=()
  local name path
  while read -r name path; do names+=("$name"); paths+=("$path"); done < <(targets_of "$1")
  if ((${#names[@]} == 0)); then
    echo "run-fuzz: no *_fuzzer targets${wanted:+ named ${wanted[*]}} in $1" >&2
    return 1
  fi
  echo "=== run-fuzz: building ${names[*]} in $1/"
  ninja -C "$1" -j"$jobs" "${paths[@]}" >"$1/fuzz-build.log" 2>&1 ||
    { tail -40 "$1/fuzz-build.log" >&2; echo "run-fuzz: build failed (log $1/fuzz-build.log)" >&2; return 1; }
}

if ((coverage)); then
  dir=build-fuzz-cov
  flags="-fprofile-instr-generate -fcoverage-mapping"
  configure "$dir" -Dcpp_args="$flags" -Dcpp_link_args="$flags" && build_targets "$dir" || exit 1
  mkdir -p "$dir/coverage"
  for i in "${!names[@]}"; do
    name=${names[$i]} bin=$dir/${paths[$i]}
    corpora=()
    for c in tests/fuzz/corpus/"$name" build-fuzz/fuzz-work/"$name"/corpus; do [[ -d $c ]] && corpora+=("$c"); done
    rm -f "$dir/coverage/$name".*
    LLVM_PROFILE_FILE="$dir/coverage/$name.profraw" "$bin" -runs=0 "${corpora[@]}" >"$dir/coverage/$name.log" 2>&1 ||
      { echo "run-fuzz: $name failed replaying its corpus (log $dir/coverage/$name.log)" >&2; exit 1; }
    llvm-profdata merge -sparse "$dir/coverage/$name.profraw" -o "$dir/coverage/$name.profdata" || exit 1
    echo "=== $name: line coverage of src/ by ${corpora[*]}"
    # The files the corpus reached (some line executed), and the total over them.
    llvm-cov report "$bin" -instr-profile="$dir/coverage/$name.profdata" "$PWD/src" >"$dir/coverage/$name.txt" ||
      exit 1
    awk -v root="$PWD/" '
      /^Filename/ { printf "  %-48s %8s %8s %7s\n", "file", "lines", "missed", "cover" }
      NR > 2 && $1 != "TOTAL" && $1 !~ /^-/ && $8 > $9 { sub(root, "", $1); if ($1 !~ /^src\//) next; printf "  %-48s %8d %8d %6.1f%%\n", $1, $8, $9, 100 * ($8 - $9) / $8
                              lines += $8; missed += $9 }
      END { if (lines) printf "  %-48s %8d %8d %6.1f%%\n", "(files reached)", lines, missed, 100 * (lines - missed) / lines }
    ' "$dir/coverage/$name.txt"
  done
  exit 0
fi

dir=build-fuzz
configure "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=-g1 && build_targets "$dir" || exit 1
if ((long)); then export FUZZ_RUNS=${FUZZ_RUNS:-10000000}; fi

status=0
mkdir -p "$dir/meson-logs" "$dir/fuzz-work"
results=$dir/fuzz-work/results.tsv
: >"$results"
for i in "${!names[@]}"; do
  name=${names[$i]} bin=$dir/${paths[$i]}
  start=$(date +%s)
  tests/fuzz/run-target.sh "$bin" "tests/fuzz/corpus/$name" "$dir/fuzz-work/$name" | tee "$dir/fuzz-work/$name.result"
  rc=${PIPESTATUS[0]}
  ((rc == 0)) || status=1
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" "$dir/fuzz-work/$name" >>"$results"
  if ((merge && rc == 0)); then
    mkdir -p "tests/fuzz/corpus/$name"
    before=$(find "tests/fuzz/corpus/$name" -type f | wc -l)
    "$bin" -merge=1 "tests/fuzz/corpus/$name" "$dir/fuzz-work/$name/corpus" >"$dir/fuzz-work/$name/merge.log" 2>&1 ||
      { echo "run-fuzz: merging $name failed (log $dir/fuzz-work/$name/merge.log)" >&2; status=1; }
    echo "  merged: $before -> $(find "tests/fuzz/corpus/$name" -type f | wc -l) files in tests/fuzz/corpus/$name"
  fi
done

# One JUnit testcase per target, for tools/test-summary.py.
python3 - "$results" "$dir/meson-logs/testlog.junit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
suite = ET.Element("testsuite", name="fuzz", tests=str(len(rows)),
                   failures=str(sum(1 for r in rows if r[1] != "0")))
for name, rc, secs, work in rows:
    case = ET.SubElement(suite, "testcase", classname="fuzz", name=name, time=secs)
    summary = open(work + ".result", errors="replace").read()
    if rc != "0":
        log = open(work + "/fuzz.log", errors="replace").read().splitlines()
        ET.SubElement(case, "failure", message=summary.splitlines()[0] if summary else "libFuzzer exit " + rc).text = \
            "\n".join(log[-80:])
    ET.SubElement(case, "system-out").text = summary
root = ET.Element("testsuites")
root.append(suite)
ET.ElementTree(root).write(sys.argv[2], encoding="utf-8", xml_declaration=True)
EOF
echo "=== run-fuzz: ${#names[@]} targets, $( ((status == 0)) && echo "all passed" || echo "FAILURES" ); junit: $dir/meson-logs/testlog.junit.xml"
exit $status

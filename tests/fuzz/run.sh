#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each one for a while over a scratch copy of its
# committed corpus (tests/fuzz/corpus/<target>/ stays as committed) with its dictionary,
# and prints a table of what each run did (executions from libFuzzer's final stats).
# Usage: tests/fuzz/run.sh [seconds-per-target] [--merge] [--summary FILE]
#   seconds   default 20 (CI runs 10: a smoke run)
#   --merge   afterwards merge what the run found into tests/fuzz/corpus/<target>/
#             with -merge=1 (only inputs that add coverage are added); commit those
#   --summary also write the table (markdown) to FILE
# The budget run of docs/conformance.md: bash tests/fuzz/run.sh 600 --merge
# Exits non-zero if the build fails or any target finds a crash, leak, timeout or
# sanitizer report; the scratch directory with the reproducer is then kept and printed.
set -u

S=20
merge=0
summary_file=
while [ $# -gt 0 ]; do
    case $1 in
    --merge) merge=1; shift ;;
    --summary) summary_file=$2; shift 2 ;;
    '' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [--merge] [--summary FILE]" >&2; exit 2 ;;
    *) S=$1; shift ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

make -C "$repo" fuzz || { echo "run.sh: make fuzz failed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-fuzz.XXXXXX")
# UBSan in the library recovers by default: make any report fatal here
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}

failed=()
rows=()
for src in "$here"/fuzz_*.c; do
    t=$(basename "$src" .c)
    bin="$repo/build-fuzz/$t"
    [ -x "$bin" ] || { echo "run.sh: $bin missing" >&2; failed+=("$t(missing)"); continue; }
    work="$tmp/$t"
    mkdir -p "$work/corpus" "$work/artifacts"
    if [ -d "$here/corpus/$t" ]; then
        cp -R "$here/corpus/$t/." "$work/corpus/"
    fi
    dict=()
    [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
    echo "== $t: ${S}s over $(ls "$work/corpus" | wc -l) seeds"
    (cd "$work" && "$bin" "$work/corpus" "${dict[@]}" \
        -max_total_time="$S" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1)
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$work/log" | tail -1)
    seeds=$(ls "$here/corpus/$t" 2>/dev/null | wc -l)
    echo "   exit $rc, ${execs:-?} executions, ${cov:-cov: ?}, corpus now $(ls "$work/corpus" | wc -l)"
    added=-
    if [ $merge = 1 ] && [ $rc -eq 0 ] && [ -z "$(ls -A "$work/artifacts")" ]; then
        mkdir -p "$here/corpus/$t"
        # -merge=1: into the committed corpus, only what adds coverage to it
        (cd "$work" && "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
            "$here/corpus/$t" "$work/corpus" >"$work/merge.log" 2>&1) ||
            echo "   merge failed: $work/merge.log" >&2
        added=$(( $(ls "$here/corpus/$t" | wc -l) - seeds ))
        echo "   merged: $added new inputs in tests/fuzz/corpus/$t"
    fi
    result=clean
    [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ] && result=FAILED
    rate=$(awk -v e="${execs:-0}" -v s="$S" 'BEGIN {printf "%d", e / s}')
    rows+=("| $t | ${S} s | ${execs:-?} | $rate | ${cov#cov: } | $seeds | $added | $result |")
    if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
        failed+=("$t")
        echo "   FAILED: log $work/log, reproducers in $work/artifacts/:" >&2
        ls "$work/artifacts" >&2
        grep -E "ERROR|SUMMARY|runtime error" "$work/log" | head -5 >&2
    fi
done

table=$(printf '%s\n' "| target | time | executions | exec/s | coverage | seeds | merged | result |" \
    "|---|---|---|---|---|---|---|---|" "${rows[@]}")
echo
echo "$table"
[ -n "$summary_file" ] && echo "$table" >"$summary_file"

if [ ${#failed[@]} -ne 0 ]; then
    echo "run.sh: failing targets: ${failed[*]} (scratch kept in $tmp)" >&2
    exit 1
fi
rm -rf "$tmp"
echo "run.sh: all targets ran ${S}s without a finding"

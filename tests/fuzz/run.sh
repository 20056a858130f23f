#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each one for a while over a scratch copy of its
# committed corpus (tests/fuzz/corpus/<target>/ stays as committed) with its dictionary.
# Usage: tests/fuzz/run.sh [seconds-per-target]   (default 20)
# Exits non-zero if the build fails or any target finds a crash, leak, timeout or
# sanitizer report; the scratch directory with the reproducer is then kept and printed.
set -u

S=${1:-20}
case $S in '' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;; esac

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

make -C "$repo" fuzz || { echo "run.sh: make fuzz failed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-fuzz.XXXXXX")
# UBSan in the library recovers by default: make any report fatal here
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}

failed=()
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
    echo "   exit $rc, ${execs:-?} executions, ${cov:-cov: ?}, corpus now $(ls "$work/corpus" | wc -l)"
    if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
        failed+=("$t")
        echo "   FAILED: log $work/log, reproducers in $work/artifacts/:" >&2
        ls "$work/artifacts" >&2
        grep -E "ERROR|SUMMARY|runtime error" "$work/log" | head -5 >&2
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "run.sh: failing targets: ${failed[*]} (scratch kept in $tmp)" >&2
    exit 1
fi
rm -rf "$tmp"
echo "run.sh: all targets ran ${S}s without a finding"

#!/usr/bin/env bash
# Sets up and runs every test: unit (Criterion), integration (node:test against the real
# binary), the same two under AddressSanitizer + UndefinedBehaviorSanitizer, the
# multi-worker tests under ThreadSanitizer, and a short smoke run of every fuzz target.
#
# The integration suite mostly waits on sockets, so the sanitizer and fuzzer builds run
# beside it (niced, in the background) instead of after it: that keeps the whole run
# within CI's budget on a 2-core machine. Their logs are printed when they are waited for.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)

step() { echo; echo "==== $*"; }

step "build"
make -j"$JOBS"
step "lint (cppcheck, clang-tidy)"
make lint
step "unit tests"
make -j"$JOBS" unit

mkdir -p build
step "building ASan+UBSan, TSan and the fuzz targets in the background"
(
  nice -n 15 make -j"$JOBS" SAN=1 all unit-build >build/bg-asan.log 2>&1 &&
    nice -n 15 make -j"$JOBS" SAN=thread >build/bg-tsan.log 2>&1 &&
    nice -n 15 make fuzz >build/bg-fuzz.log 2>&1
) &
bg=$!

step "integration tests"
node --test --test-concurrency=1 tests/integration/

step "waiting for the background builds"
if ! wait "$bg"; then
  for f in build/bg-asan.log build/bg-tsan.log build/bg-fuzz.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -40 "$f"; }
  done
  echo "test.sh: a background build failed" >&2
  exit 1
fi

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=86"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
step "build with ASan+UBSan"
make -j"$JOBS" SAN=1
step "unit tests under ASan+UBSan"
make -j"$JOBS" SAN=1 unit
step "integration tests under ASan+UBSan"
PUSHGATE_BIN=build-asan/pushgate PUSHGATE_SANITIZED=1 \
  node --test --test-concurrency=1 tests/integration/

step "multi-worker tests under ThreadSanitizer"
bash scripts/tsan.sh tests/integration/fanout.test.mjs tests/integration/channels.test.mjs

step "fuzz smoke"
bash tests/fuzz/run.sh "${FUZZ_SECONDS:-5}"
step "all tests passed"

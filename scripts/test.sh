#!/usr/bin/env bash
# Sets up and runs every test: unit (Criterion), integration (node:test against the real
# binary), the same two under AddressSanitizer + UndefinedBehaviorSanitizer, the
# multi-worker tests under ThreadSanitizer, and a short smoke run of every fuzz target.
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
step "integration tests"
node --test --test-concurrency=1 tests/integration/

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
bash tests/fuzz/run.sh "${FUZZ_SECONDS:-10}"
step "all tests passed"

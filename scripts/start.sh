#!/usr/bin/env bash
# Sets up, builds, and starts one pushgate node on the defaults (127.0.0.1:8080, no
# Redis, data under ./data). Extra arguments go to `pushgate serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -j"$(nproc)"
exec ./build/pushgate serve "$@"

#!/usr/bin/env bash
# Installs what building and testing pushgate needs, and nothing that is already there:
# Debian packages with apt-get, the integration suite's npm packages from its lockfile.
# Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
  build-essential pkg-config ca-certificates curl openssl
  libuv1-dev node-llhttp libwslay-dev libssl-dev libjansson-dev libpcre2-dev libjwt-dev
  libsqlite3-dev libhiredis-dev redis-server libnghttp2-dev zlib1g-dev libnats-dev nats-server
  libcriterion-dev clang libclang-rt-14-dev clang-tidy cppcheck
  chromium
)
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci only when the lockfile changed since the last install
if [ -f tests/integration/package-lock.json ]; then
  stamp=tests/integration/node_modules/.pushgate-lock
  if ! cmp -s tests/integration/package-lock.json "$stamp" 2>/dev/null; then
    echo "setup: npm ci in tests/integration"
    (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/integration/package-lock.json "$stamp"
  fi
fi
echo "setup: ok"

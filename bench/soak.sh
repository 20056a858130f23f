#!/usr/bin/env bash
# Soak (issue 10 item 4): bench/soak.sh MINUTES runs a node under mixed traffic
# (bench/soak.mjs: WebSocket, SSE, socket.io, slow readers, churn, channel pushes,
# targeted pushes with acks, device commands with Idempotency-Keys and device
# simulators) for MINUTES (fractions allowed), kills the node with SIGKILL at 1/3 and
# 2/3 of the time and restarts it on the same port and data directory. At the end it
# stops the node with SIGTERM and checks: the node never died other than by the two
# kills and exited 0 at the end, no sanitizer report in its log (run the ASan build
# with PUSHGATE_BIN=build-asan/pushgate), and the driver's checks (every acknowledged
# device command done, none enqueued twice, every push report adds up).
#
#   bench/soak.sh MINUTES [--workers N] [--keep]      (PUSHGATE_BIN picks the binary)
#
# Prints the driver's JSON summary and "soak: PASS" or "soak: FAIL (...)"; exit 0/1.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -ge 1 ] || { sed -n 2,14p "$0"; exit 64; }
minutes=$1; shift
workers=2
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --workers) workers=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) sed -n 2,14p "$0"; exit 64 ;;
    esac
done
bin=${PUSHGATE_BIN:-build/pushgate}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
[ -x "$bin" ] || { echo "soak: no binary at $bin (make, or make SAN=1)" >&2; exit 64; }
[ -d "$root/tests/integration/node_modules/ws" ] || { echo "soak: npm install in tests/integration first" >&2; exit 64; }
seconds=$(awk -v m="$minutes" 'BEGIN {s = int(m * 60); print (s < 30) ? 30 : s}')

tmp=$(mktemp -d /tmp/pushgate-soak.XXXXXX)
log=$tmp/node.log
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/config.json" <<JSON
{"sessions": [{"sessionId": "s-soak", "user": "soak", "roles": ["soaker"]}],
 "apiKeys": [{"key": "soak-key", "scopes": ["admin"]}],
 "limits": {"maxOutputBytes": 262144, "maxBodyBytes": 2097152},
 "device": {"holdMs": 2000, "redeliveryMs": 2000, "maxQueue": 100000},
 "logLevel": "warn"}
JSON

pid=
starts=0
start_node() {
    starts=$((starts + 1))
    echo "=== soak: start $starts $(date -u +%FT%TZ)" >>"$log"
    "$bin" serve --config "$tmp/config.json" --listen "127.0.0.1:$port" --workers "$workers" \
        --data-dir "$tmp/data" >>"$log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "soak: the node did not start" >&2
    return 1
}

problems=()
driver=
cleanup() {
    [ -n "$driver" ] && kill "$driver" 2>/dev/null
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    if [ "$keep" = 1 ]; then echo "soak: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

start_node || exit 1
node "$root/bench/soak.mjs" --port "$port" --seconds "$seconds" >"$tmp/summary.json" 2>"$tmp/driver.log" &
driver=$!

# watch the node; kill -9 it at 1/3 and 2/3 of the time and start it again
t0=$(date +%s)
kills=0
while kill -0 "$driver" 2>/dev/null; do
    sleep 1
    now=$(( $(date +%s) - t0 ))
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"; rc=$?
        problems+=("the node died by itself (status $rc) after ${now}s")
        start_node || { problems+=("the node did not restart"); break; }
        continue
    fi
    if [ $kills -lt 2 ] && [ $now -ge $(( seconds * (kills + 1) / 3 )) ]; then
        kill -9 "$pid"; wait "$pid" 2>/dev/null
        kills=$((kills + 1))
        echo "soak: kill -9 number $kills after ${now}s" >&2
        echo "=== soak: kill -9 $kills" >>"$log"
        sleep 1
        start_node || { problems+=("the node did not restart after kill $kills"); break; }
    fi
done
wait "$driver"; drc=$?
driver=
cat "$tmp/summary.json"
tail -3 "$tmp/driver.log" >&2
[ $drc -eq 0 ] || problems+=("the driver's checks failed (status $drc; see the summary)")
[ $kills -eq 2 ] || problems+=("the node was killed $kills times, not 2")

if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        problems+=("the node did not stop within 10 s of SIGTERM"); kill -9 "$pid"
    fi
    wait "$pid"; rc=$?
    [ $rc -eq 0 ] || problems+=("the node exited $rc on SIGTERM")
    pid=
else
    problems+=("the node was not running at the end")
fi
if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$log"; then
    problems+=("sanitizer report in the node's log")
    grep -E -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" | head -60 >&2
fi
echo "soak: $seconds s, $starts node starts, $kills kills, binary $bin"
if [ ${#problems[@]} -eq 0 ]; then
    echo "soak: PASS"
else
    printf 'soak: FAIL (%s)\n' "$(IFS=';'; echo "${problems[*]}")"
    tail -20 "$log" >&2
    exit 1
fi

#!/usr/bin/env bash
# socket.io fan-out benchmark: pushgate against the npm `socket.io` server, same run,
# same clients, same messages. For each subscriber count in --clients and each target
# it starts a fresh server on loopback and runs bench/sio-load.mjs:
#   pushgate   build/pushgate (a private copy), tenant `bench` with the public stream
#              `ticks`; clients: io(`${url}/bench?stream=ticks`, {transports:
#              ['websocket']}) (seed 002's code, WebSocket transport); events POSTed to
#              /event/v1/events?tenantId=bench, emitted as `bench:tick`
#   socket.io  bench/sio-ref.mjs (npm socket.io v4, bench/package-lock.json): the same
#              namespace, query, event endpoint and event name; one broadcast per event
# and prints deliveries/s, messages/s fully fanned out, publish→receive latency, and
# server memory per client (VmRSS after all N connected minus before, / N; the Node
# server is GC'd before each reading), and the server's CPU time per delivery. Every run checks N×M deliveries, each client
# every message once and in order. Bounded: every load run is capped with timeout(1),
# servers get SIGTERM (SIGKILL after 5 s); loopback only.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/socketio.sh [options]
  --clients LIST       comma-separated subscriber counts (1000,5000)
  --messages M         events published per run (100)
  --payload-bytes B    approximate size of each event's payload (100)
  --publishers K       concurrent publish requests (1)
  --targets LIST       pushgate,socket.io (both, in this order)
  --rounds R           repeat every (count, target) pair R times, alternating (1)
  --workers W          pushgate --workers (nproc)
  --procs P            client processes (nproc)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (configs, logs, raw outputs)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
clients_list=1000,5000
messages=100
payload=100
publishers=1
targets=pushgate,socket.io
rounds=1
workers=$(nproc)
procs=$(nproc)
keep=0

while [ $# -gt 0 ]; do
    case $1 in
    --clients) clients_list=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --publishers) publishers=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

die() {
    echo "socketio.sh: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no server at $bin; build it first with: make -C $root"
command -v node >/dev/null || die "node is required"
if [ ! -d "$root/bench/node_modules/socket.io" ] || [ ! -d "$root/bench/node_modules/socket.io-client" ]; then
    echo "socketio.sh: installing socket.io and socket.io-client from bench/package-lock.json" >&2
    (cd "$root/bench" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in bench/"
fi

max_clients=0
IFS=, read -r -a counts <<<"$clients_list"
for n in "${counts[@]}"; do
    case $n in '' | *[!0-9]*) die "--clients takes numbers: $clients_list" ;; esac
    [ "$n" -gt "$max_clients" ] && max_clients=$n
done
IFS=, read -r -a target_list <<<"$targets"
for t in "${target_list[@]}"; do
    case $t in pushgate | socket.io) ;; *) die "unknown target $t" ;; esac
done
need=$((max_clients + 512))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    die "ulimit -Hn is $hard; $max_clients clients need $need (raise it or lower --clients)"
fi
ulimit -n "$need"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-sio-bench.XXXXXX")
server_pid=

stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=
}

cleanup() {
    local rc=$?
    stop_server
    if [ "$keep" = 1 ]; then
        echo "socketio.sh: outputs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

wait_ready() {
    local url=$1 log=$2
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || die "server exited at start: $(tail -5 "$log")"
        sleep 0.1
    done
    die "server not ready after 10 s: $(tail -5 "$log")"
}

cp "$bin" "$tmp/pushgate"

# Starts target $1 on a fresh port; sets url, server_pid, gc_url, log.
start_server() {
    local t=$1 port
    port=$(free_port)
    url=http://127.0.0.1:$port
    log=$tmp/$t-$port.log
    gc_url=
    if [ "$t" = pushgate ]; then
        mkdir -p "$tmp/data-$port"
        cat >"$tmp/pushgate-$port.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "workers": $workers,
  "dataDir": "$tmp/data-$port",
  "logLevel": "warn",
  "apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
  "streams": {"bench": {"ticks": {"name": "Ticks", "publicSubscribe": true,
              "events": [{"namespace": "bench", "name": "tick"}]}}},
  "socketio": {"pingIntervalMs": 3600000, "pingTimeoutMs": 3600000},
  "limits": {"maxOutputBytes": 67108864, "maxConnections": 0}
}
EOF
        "$tmp/pushgate" serve --config "$tmp/pushgate-$port.json" --workers "$workers" 2>"$log" &
        server_pid=$!
    else
        node --expose-gc "$root/bench/sio-ref.mjs" "$port" 2>"$log" &
        server_pid=$!
        gc_url=$url/gc
    fi
    wait_ready "$url" "$log"
}

field() {
    sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"
}

sio_version=$(node -p "require('$root/bench/node_modules/socket.io/package.json').version")
client_version=$(node -p "require('$root/bench/node_modules/socket.io-client/package.json').version")
echo "socketio.sh: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), pushgate --workers $workers, socket.io $sio_version (node $(node --version)), socket.io-client $client_version in $procs processes" >&2

results=()
failures=0
for n in "${counts[@]}"; do
    for r in $(seq "$rounds"); do
        for t in "${target_list[@]}"; do
            start_server "$t"
            out=$tmp/$t-$n-$r.out
            echo "socketio.sh: $t, $n clients, $messages messages (round $r)" >&2
            rc=0
            timeout --signal=INT --kill-after=10 600 node "$root/bench/sio-load.mjs" --url "$url" \
                --clients "$n" --messages "$messages" --payload-bytes "$payload" \
                --publishers "$publishers" --procs "$procs" --server-pid "$server_pid" \
                ${gc_url:+--gc-url "$gc_url"} --label "$t" >"$out" 2>"$tmp/$t-$n-$r.err" || rc=$?
            sed 's/^/    /' "$tmp/$t-$n-$r.err" >&2
            if [ "$rc" != 0 ]; then
                echo "socketio.sh: $t ($n clients) exited $rc" >&2
                failures=$((failures + 1))
            fi
            kill -0 "$server_pid" 2>/dev/null || {
                echo "socketio.sh: $t died; log:" >&2
                tail -20 "$log" >&2
                exit 1
            }
            results+=("$(grep '^RESULT ' "$out" || echo "RESULT tool=sio-load target=$t clients=$n errors=missing")")
            stop_server
        done
    done
done

echo
printf '%-10s %8s %9s %14s %11s %8s %8s %8s %14s %12s %s\n' target clients messages deliveries/s messages/s p50_ms p99_ms max_ms cpu_us/deliv B/client checks
for res in "${results[@]}"; do
    checks=ok
    [ "$(field "$res" missing)" = 0 ] && [ "$(field "$res" duplicates)" = 0 ] &&
        [ "$(field "$res" out_of_order)" = 0 ] && [ "$(field "$res" connected)" = "$(field "$res" clients)" ] || checks=FAILED
    printf '%-10s %8s %9s %14s %11s %8s %8s %8s %14s %12s %s\n' "$(field "$res" target)" "$(field "$res" clients)" \
        "$(field "$res" messages)" "$(field "$res" deliveries_per_s)" "$(field "$res" messages_per_s)" \
        "$(field "$res" p50_ms)" "$(field "$res" p99_ms)" "$(field "$res" max_ms)" \
        "$(field "$res" server_cpu_us_per_delivery)" "$(field "$res" bytes_per_client)" "$checks"
done
echo
printf '%s\n' "${results[@]}"
[ "$failures" = 0 ] || exit 1

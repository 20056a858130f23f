#!/usr/bin/env bash
# SSE and channel fan-out benchmark: starts its own pushgate on loopback and runs
# bench/build/sseload (built here from bench/sseload.c if missing) for each subscriber
# count in --clients:
#   stream-sse   N raw EventSource-style readers on one stream
#                (GET /stream/v1/streams/ticks?token=…), events POSTed to
#                /event/v1/events
#   channel-sse  N raw SSE readers on one channel (GET /sse?channel=bench),
#                pushes POSTed to /api/push
#   channel-ws   N WebSocket channel subscribers ({"type":"subscribe",…}),
#                pushes POSTed to /api/push
# and prints a table (deliveries/s, pushes/s fully fanned out, publish→receive
# latency p50/p99/max) plus the RESULT lines. Bounded in time: every tool run is
# capped with timeout(1); the server is sent SIGTERM (SIGKILL after 5 s) on exit.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/sse.sh [options]
  --clients LIST       comma-separated subscriber counts (2000,10000)
  --scenarios LIST     any of stream-sse,channel-sse,channel-ws (all three)
  --pushes M           pushes per scenario (100)
  --publishers P       concurrent publishers, one request in flight each (1)
  --rate R             at most R pushes a second (0: as fast as they are answered)
  --payload-bytes B    size of each push's data (100)
  --workers W          pushgate --workers (nproc)
  --threads T          sseload reader threads (1)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (config, logs, raw outputs)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
tool=$root/bench/build/sseload
clients_list=2000,10000
scenarios=stream-sse,channel-sse,channel-ws
pushes=100
publishers=1
rate=0
payload=100
workers=$(nproc)
threads=1
keep=0

while [ $# -gt 0 ]; do
    case $1 in
    --clients) clients_list=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --pushes) pushes=$2; shift 2 ;;
    --publishers) publishers=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

die() {
    echo "sse.sh: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no server at $bin; build it first with: make -C $root"
if [ ! -x "$tool" ] || [ "$root/bench/sseload.c" -nt "$tool" ]; then
    mkdir -p "$root/bench/build"
    ${CC:-cc} -O2 -std=c11 -Wall -Wextra -Werror -pthread -o "$tool" \
        "$root/bench/sseload.c" "$root/bench/bench_util.c" || die "cannot build sseload"
fi

max_clients=0
IFS=, read -r -a counts <<<"$clients_list"
for n in "${counts[@]}"; do
    case $n in '' | *[!0-9]*) die "--clients takes numbers: $clients_list" ;; esac
    [ "$n" -gt "$max_clients" ] && max_clients=$n
done
need=$((max_clients + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    die "ulimit -Hn is $hard; $max_clients subscribers need $need (raise it or lower --clients)"
fi
ulimit -n "$need"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-sse-bench.XXXXXX")
server_pid=

cleanup() {
    local rc=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "sse.sh: outputs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=
for _ in $(seq 100); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        port=$p
        break
    fi
done
[ -n "$port" ] || die "no free port found"
url=http://127.0.0.1:$port

# The session `bench` is bound to tenant `bench` with the stream-listener role: stream
# readers authenticate with ?token=bench (an anonymous reader of a public stream would
# name the tenant with ?tenantId= instead). Pings and heartbeats are pushed out of the
# measured window.
cat >"$tmp/pushgate.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "workers": $workers,
  "dataDir": "$tmp/data",
  "logLevel": "info",
  "apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
  "sessions": [{"sessionId": "bench", "user": "bench", "tenant": "bench", "roles": ["stream-listener"]}],
  "streams": {"bench": {"ticks": {"name": "Ticks", "publicSubscribe": true,
              "events": [{"namespace": "bench", "name": "tick"}]}}},
  "sse": {"heartbeatMs": 600000},
  "limits": {"maxOutputBytes": 67108864, "maxConnections": 0,
             "wsPingIntervalMs": 3600000, "wsPongTimeoutMs": 3600000}
}
EOF
mkdir -p "$tmp/data"
cp "$bin" "$tmp/pushgate"
"$tmp/pushgate" serve --config "$tmp/pushgate.json" --workers "$workers" 2>"$tmp/pushgate.log" &
server_pid=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || die "pushgate exited at start: $(tail -5 "$tmp/pushgate.log")"
    sleep 0.1
done
curl -fsS -o /dev/null "$url/readyz" || die "pushgate not ready after 10 s"

field() {
    sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"
}

# Waits until the server has let go of the previous scenario's subscribers.
settle() {
    local body n
    for _ in $(seq 100); do
        body=$(curl -fsS -H 'Authorization: Bearer bench-key' "$url/api/nodes" 2>/dev/null) || break
        n=$(grep -o '"connections":[0-9]*' <<<"$body" | head -1 | cut -d: -f2)
        [ "${n:-0}" -le 1 ] && return 0
        sleep 0.1
    done
    sleep 2
}

next_src=1
results=()
names=()
run_scenario() {
    local name=$1 n=$2
    shift 2
    local out=$tmp/$name-$n.out rc=0
    [ $next_src -le 250 ] || next_src=1 # .254 is the warm-up's
    local src=127.0.0.$next_src
    next_src=$((next_src + 1))
    echo "sse.sh: $name, $n subscribers" >&2
    timeout --signal=INT --kill-after=10 300 "$tool" --url "$url" --clients "$n" \
        --sources "$src" --threads "$threads" --pushes "$pushes" --publishers "$publishers" \
        --rate "$rate" --payload-bytes "$payload" --key bench-key "$@" \
        >"$out" 2>"$tmp/$name-$n.err" || rc=$?
    sed 's/^/    /' "$tmp/$name-$n.err" >&2
    [ "$rc" = 0 ] || echo "sse.sh: $name ($n) exited $rc" >&2
    kill -0 "$server_pid" 2>/dev/null || {
        echo "sse.sh: pushgate died during $name; log:" >&2
        tail -20 "$tmp/pushgate.log" >&2
        exit 1
    }
    local res
    res=$(grep '^RESULT ' "$out" || echo "RESULT tool=none errors=missing")
    results+=("$res")
    names+=("$name $n")
    settle
}

# warm-up, not reported: the first fan-out of a fresh server pays for page faults and
# allocator growth
echo "sse.sh: warm-up" >&2
timeout --signal=INT --kill-after=10 60 "$tool" --url "$url" --clients 500 --sources 127.0.0.254 \
    --pushes 10 --mode sse --path /stream/v1/streams/ticks?token=bench --publish event \
    --publish-path /event/v1/events?tenantId=bench --key bench-key >/dev/null 2>&1 || true
settle

IFS=, read -r -a scen <<<"$scenarios"
for n in "${counts[@]}"; do
    for s in "${scen[@]}"; do
        case $s in
        stream-sse)
            run_scenario stream-sse "$n" --mode sse --path /stream/v1/streams/ticks?token=bench \
                --publish event --publish-path /event/v1/events?tenantId=bench ;;
        channel-sse)
            run_scenario channel-sse "$n" --mode sse --path /sse?channel=bench --publish channel \
                --channel bench ;;
        channel-ws)
            run_scenario channel-ws "$n" --mode ws --channel bench --publish channel ;;
        *) die "unknown scenario $s" ;;
        esac
    done
done

fmt='%-20s %12s %12s %13s %11s %8s %8s %8s\n'
echo
echo "machine   $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), kernel $(uname -r)"
echo "server    --workers $workers; $pushes pushes per scenario, $publishers publisher(s)," \
    "rate ${rate:-0}/s (0: closed loop), payload $payload B"
echo
printf "$fmt" scenario subscribers delivered deliveries/s "pushes/s" "p50 ms" "p99 ms" "max ms"
for i in "${!results[@]}"; do
    r=${results[$i]}
    printf "$fmt" "${names[$i]% *}" "$(field "$r" ready)" \
        "$(field "$r" delivered)/$(field "$r" expected)" "$(field "$r" deliveries_per_s)" \
        "$(field "$r" pushes_per_s)" "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" \
        "$(field "$r" max_ms)"
done
echo
echo "RESULT lines:"
printf '  %s\n' "${results[@]}"

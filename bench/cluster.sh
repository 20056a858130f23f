#!/usr/bin/env bash
# Cluster benchmark (docs/benchmarks.md, "Cluster"): a redis-server, a nats-server and
# three pushgate nodes per bus on this box, WebSocket clients from bench/build/wsload,
# push requests broadcast to every client. The scenarios, with the same clients and
# pushes, for each bus (Redis, then NATS: --buses):
#   single   one node, local bus (the baseline)
#   bus      the same clients all on n1 of a 3-node cluster: every push goes through
#            the bus and back (n2, n3 receive and match it too): the bus's added latency
#   spread   the clients spread over n1, n2, n3, pushes published on n1: cross-node
#            fan-out; deliveries/s counts all three nodes (n1's from wsload, n2's and
#            n3's from their pushgate_deliveries_total), latency is n1's clients'
# single and bus run again paced (one publisher, a fixed rate), where latency is the
# fan-out time without queueing: the difference is what the bus adds. One cluster
# runs at a time (the other bus's nodes are stopped first).
# Starts everything it needs and kills what it started.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/cluster.sh [options]
  --clients N          WebSocket clients in every scenario (3000)
  --pushes M           push requests per scenario (200)
  --publishers P       concurrent publishers (4)
  --payload-bytes B    size of each push's serviceRequest (100)
  --workers W          pushgate --workers of each node (1)
  --paced-pushes M     pushes of the paced scenarios (40)
  --rate R             pushes a second of the paced scenarios (20)
  --buses LIST         the cluster buses to measure, side by side (redis,nats)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (configs, logs, raw outputs)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
tools=$root/bench/build
clients=3000
pushes=200
publishers=4
payload=100
workers=1
paced=40
rate=20
keep=0
buses=redis,nats
while [ $# -gt 0 ]; do
    case $1 in
    --clients) clients=$2; shift 2 ;;
    --pushes) pushes=$2; shift 2 ;;
    --publishers) publishers=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --paced-pushes) paced=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --buses) buses=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}
[ -x "$bin" ] || die "no server at $bin; build it first with: make -C $root"
case ",$buses," in *,redis,*) command -v redis-server >/dev/null || die "redis-server is not installed (scripts/setup.sh)" ;; esac
case ",$buses," in *,nats,*) command -v nats-server >/dev/null || die "nats-server is not installed (scripts/setup.sh)" ;; esac
[ -x "$tools/wsload" ] || make -s -C "$root/bench" >&2
ulimit -n $((clients + 1024)) 2>/dev/null || die "cannot raise ulimit -n to $((clients + 1024))"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-cluster-bench.XXXXXX")
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$keep" = 1 ]; then echo "cluster.sh: outputs kept in $tmp" >&2; else rm -rf "$tmp"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    die "no free port"
}

cp "$bin" "$tmp/pushgate"
rport=$(free_port)
redis-server --port "$rport" --save '' --appendonly no --bind 127.0.0.1 >"$tmp/redis.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break
    sleep 0.1
done
nport=$(free_port)
if command -v nats-server >/dev/null; then
    nats-server -a 127.0.0.1 -p "$nport" >"$tmp/nats.log" 2>&1 </dev/null &
    pids+=($!)
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break
        sleep 0.1
    done
fi

# start_node NAME [--redis URL | --nats URL] [--node-id ID]: sets $port and $pid
start_node() {
    local name=$1
    shift
    port=$(free_port)
    mkdir -p "$tmp/$name"
    cat >"$tmp/$name/config.json" <<EOF
{"apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
 "sessions": [{"sessionId": "bench", "user": "bench"}],
 "limits": {"maxOutputBytes": 67108864, "maxConnections": 0}}
EOF
    "$tmp/pushgate" serve --config "$tmp/$name/config.json" --listen "127.0.0.1:$port" \
        --workers "$workers" --data-dir "$tmp/$name/data" "$@" >/dev/null 2>"$tmp/$name.log" &
    pid=$!
    pids+=($pid)
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" || die "$name not ready: $(tail -3 "$tmp/$name.log")"
}

field() { sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"; }
delivered_ok() {
    curl -fsS "http://127.0.0.1:$1/metrics" | sed -n 's/^pushgate_deliveries_total{result="ok"} //p'
}

src=1
wsload() { # wsload NAME PORT CLIENTS [args...]
    local name=$1 port=$2 n=$3
    shift 3
    "$tools/wsload" --url "http://127.0.0.1:$port" --clients "$n" --key bench-key \
        --client-id-prefix "$name-" --sources "127.0.0.$src" --payload-bytes "$payload" "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" || echo "cluster.sh: wsload $name exited $?" >&2
    grep '^RESULT ' "$tmp/$name.out" || echo "RESULT errors=missing"
}

stop_nodes() { # stop_nodes PID...: SIGTERM, wait
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
}

echo "cluster.sh: single node" >&2
start_node single
p0=$port
single=$(wsload single "$p0" "$clients" --pushes "$pushes" --publishers "$publishers")
src=$((src + 1))
single_paced=$(wsload single-paced "$p0" "$clients" --pushes "$paced" --publishers 1 --rate "$rate")
src=$((src + 1))
stop_nodes "$pid"


# run_cluster BUS ARGS...: a 3-node cluster on BUS (its nodes' extra flags), the bus,
# bus-paced and spread scenarios; sets bus_$BUS, bus_paced_$BUS, spread_$BUS,
# remote_$BUS; stops its nodes at the end
run_cluster() {
    local b=$1
    shift
    local p1 p2 p3 n c2 c3 before2 before3 after2 after3 idle waiters nodes=()
    start_node "$b-n1" "$@" --node-id n1
    p1=$port
    nodes+=($pid)
    start_node "$b-n2" "$@" --node-id n2
    p2=$port
    nodes+=($pid)
    start_node "$b-n3" "$@" --node-id n3
    p3=$port
    nodes+=($pid)
    for _ in $(seq 100); do
        n=$(curl -fsS -H 'Authorization: Bearer bench-key' "http://127.0.0.1:$p1/api/nodes" | grep -o '"nodeId"' | wc -l)
        [ "$n" = 3 ] && break
        sleep 0.1
    done

    echo "cluster.sh: $b bus (all clients on n1 of 3)" >&2
    printf -v "bus_$b" '%s' "$(wsload "$b-bus" "$p1" "$clients" --pushes "$pushes" --publishers "$publishers")"
    src=$((src + 1))
    printf -v "bus_paced_$b" '%s' "$(wsload "$b-bus-paced" "$p1" "$clients" --pushes "$paced" --publishers 1 --rate "$rate")"
    src=$((src + 1))

    echo "cluster.sh: $b spread (clients on n1, n2, n3; published on n1)" >&2
    before2=$(delivered_ok "$p2")
    before3=$(delivered_ok "$p3")
    idle=$((12 + pushes / 20))
    (wsload "$b-spread-n2" "$p2" "$share" --idle-seconds "$idle" >"$tmp/$b-spread-n2.result") &
    waiters=($!)
    (src=$((src + 1)); wsload "$b-spread-n3" "$p3" "$share" --idle-seconds "$idle" >"$tmp/$b-spread-n3.result") &
    waiters+=($!)
    src=$((src + 2))
    for _ in $(seq 300); do
        c2=$(curl -fsS -H 'Authorization: Bearer bench-key' "http://127.0.0.1:$p2/api/nodes" | grep -o '"connections":[0-9]*' | head -1 | cut -d: -f2)
        c3=$(curl -fsS -H 'Authorization: Bearer bench-key' "http://127.0.0.1:$p3/api/nodes" | grep -o '"connections":[0-9]*' | head -1 | cut -d: -f2)
        [ "${c2:-0}" -ge "$share" ] && [ "${c3:-0}" -ge "$share" ] && break
        sleep 0.1
    done
    printf -v "spread_$b" '%s' "$(wsload "$b-spread-n1" "$p1" "$share" --pushes "$pushes" --publishers "$publishers")"
    sleep 1
    after2=$(delivered_ok "$p2")
    after3=$(delivered_ok "$p3")
    printf -v "remote_$b" '%s' "$(((after2 - before2) + (after3 - before3)))"
    wait "${waiters[@]}" 2>/dev/null || true
    stop_nodes "${nodes[@]}"
}

share=$((clients / 3))
IFS=, read -r -a bus_list <<<"$buses"
for b in "${bus_list[@]}"; do
    case $b in
    redis) run_cluster redis --redis "redis://127.0.0.1:$rport" ;;
    nats) run_cluster nats --nats "nats://127.0.0.1:$nport" ;;
    *) die "unknown bus $b (redis, nats)" ;;
    esac
done

row() { # row NAME RESULT [extra deliveries]
    local res=$2 extra=${3:-0} d w
    d=$(field "$res" deliveries)
    w=$(field "$res" window_s)
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(field "$res" alive)" \
        "$((d + extra))" "$w" "$(awk -v d="$((d + extra))" -v w="$w" 'BEGIN { printf "%.0f", (w > 0 ? d / w : 0) }')" \
        "$(field "$res" p50_ms)" "$(field "$res" p99_ms)"
}
echo
echo "clients $clients, pushes $pushes, publishers $publishers, payload $payload B, workers/node $workers, $(nproc) cores"
echo
echo '| scenario | clients (measured node) | deliveries (all nodes) | window s | deliveries/s | p50 ms | p99 ms |'
echo '|---|---:|---:|---:|---:|---:|---:|'
row "single node" "$single"
for b in "${bus_list[@]}"; do
    v=bus_$b
    row "$b bus, all on n1 of 3" "${!v}"
    v=spread_$b
    r=remote_$b
    row "$b bus, spread over n1, n2, n3" "${!v}" "${!r}"
done
echo
for b in "${bus_list[@]}"; do
    r=remote_$b
    echo "$b spread: n2 and n3 delivered ${!r} of $((2 * share * pushes)) (their pushgate_deliveries_total); the window is n1's"
done
echo
echo "paced, $paced pushes at $rate/s, one publisher (latency without queueing; bus adds = p50 - single's p50):"
echo
echo '| scenario | clients | p50 ms | p99 ms | max ms | bus adds p50 ms |'
echo '|---|---:|---:|---:|---:|---:|'
base=$(field "$single_paced" p50_ms)
paced_row() { # paced_row NAME RESULT
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(field "$2" alive)" "$(field "$2" p50_ms)" \
        "$(field "$2" p99_ms)" "$(field "$2" max_ms)" \
        "$(awk -v a="$(field "$2" p50_ms)" -v b="$base" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.1f", a - b }')"
}
paced_row "single node" "$single_paced"
for b in "${bus_list[@]}"; do
    v=bus_paced_$b
    paced_row "$b bus, all on n1 of 3" "${!v}"
done

#!/usr/bin/env bash
# permessage-deflate against plain WebSocket on one pushgate with websocket.compression
# on: (a) server memory per idle WebSocket with and without compression negotiated,
# (b) the same broadcasts to plain clients and to compressing clients: server CPU per
# delivery, bytes on the wire per delivery, latency. Starts its own pushgate on
# loopback and kills what it started.
set -euo pipefail

usage() {
    cat <<'EOF2'
usage: bench/deflate.sh [options]
  --clients N          WebSocket clients in every scenario (5000)
  --pushes M           push requests per closed-loop scenario (60)
  --rate R             pushes a second of the paced scenarios (5)
  --paced-pushes M     push requests of the paced scenarios (20)
  --payload-bytes B    size of each push's serviceRequest (400)
  --workers W          pushgate --workers (nproc)
  --idle-seconds S     how long the idle clients are held before RSS is read (5)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (config, logs, raw outputs)
Payloads are padded with pseudo-random words (wsload --pad-words), not one repeated
letter, so the compression ratio is that of text-like JSON.
EOF2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
tools=$root/bench/build
clients=5000
pushes=60
rate=5
paced_pushes=20
payload=400
workers=$(nproc)
idle=5
keep=0

while [ $# -gt 0 ]; do
    case $1 in
    --clients) clients=$2; shift 2 ;;
    --pushes) pushes=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --paced-pushes) paced_pushes=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --idle-seconds) idle=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

die() {
    echo "deflate.sh: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no server at $bin; build it first with: make -C $root"
make -s -C "$root/bench" >&2

need=$((clients + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    die "ulimit -Hn is $hard; $clients clients need $need (raise the hard limit or lower --clients)"
fi
ulimit -n "$need"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-deflate.XXXXXX")
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
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then
        echo "deflate.sh: outputs kept in $tmp" >&2
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

per_source=25000
nsrc=$(((clients + per_source - 1) / per_source))
next_src=1
sources=
take_sources() {
    local i
    [ $((next_src + nsrc)) -le 255 ] || next_src=1
    sources=
    for ((i = 0; i < nsrc; i++)); do
        sources+=${sources:+,}127.0.0.$((next_src + i))
    done
    next_src=$((next_src + nsrc))
}

cat >"$tmp/pushgate.json" <<EOF2
{
  "listen": "127.0.0.1:$port",
  "workers": $workers,
  "dataDir": "$tmp/data",
  "logLevel": "info",
  "apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
  "sessions": [{"sessionId": "bench", "user": "bench"}],
  "limits": {"maxOutputBytes": 67108864, "maxConnections": 0},
  "websocket": {"compression": true}
}
EOF2
mkdir -p "$tmp/data"

cp "$bin" "$tmp/pushgate"
# A fresh server for each idle measurement: memory freed by an earlier scenario's
# clients would otherwise be reused and hide the cost.
start_server() {
    "$tmp/pushgate" serve --config "$tmp/pushgate.json" --workers "$workers" 2>>"$tmp/pushgate.log" &
    server_pid=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || die "pushgate exited at start: $(tail -5 "$tmp/pushgate.log")"
        sleep 0.1
    done
    curl -fsS -o /dev/null "$url/readyz" || die "pushgate not ready after 10 s"
}
stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

field() {
    sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"
}

run_tool() {
    local name=$1
    shift
    local out=$tmp/$name.out rc=0 status=0
    echo "deflate.sh: $name: $*" >&2
    timeout --signal=INT --kill-after=10 300 "$@" >"$out" 2>"$tmp/$name.err" || rc=$?
    sed 's/^/    /' "$tmp/$name.err" >&2
    [ "$rc" = 0 ] || echo "deflate.sh: $name exited $rc" >&2
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid" || status=$?
        server_pid=
        echo "deflate.sh: pushgate exited (status $status) during $name; its log ends with:" >&2
        tail -20 "$tmp/pushgate.log" >&2
        exit 1
    fi
    grep '^RESULT ' "$out" >"$tmp/$name.result" ||
        echo "RESULT tool=none errors=missing" >"$tmp/$name.result"
}

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

common=(--url "$url" --clients "$clients" --key bench-key --payload-bytes "$payload" --pad-words)
declare -A res
for mode in plain deflate; do
    start_server
    take_sources
    flag=()
    [ "$mode" = deflate ] && flag=(--deflate)
    run_tool "idle-$mode" "$tools/wsload" "${common[@]}" "${flag[@]}" --sources "$sources" \
        --server-pid "$server_pid" --client-id-prefix "i$mode-" --idle-seconds "$idle"
    res[idle-$mode]=$(<"$tmp/idle-$mode.result")
    stop_server
done
# The broadcasts share one server; plain and compressed alternate, so that load from
# elsewhere on the box hits both.
start_server
for scen in paced closed; do
    for mode in plain deflate; do
        take_sources
        flag=()
        [ "$mode" = deflate ] && flag=(--deflate)
        if [ "$scen" = paced ]; then
            load=(--pushes "$paced_pushes" --publishers 1 --rate "$rate")
        else
            load=(--pushes "$pushes" --publishers 1)
        fi
        run_tool "$scen-$mode" "$tools/wsload" "${common[@]}" "${flag[@]}" --sources "$sources" \
            --server-pid "$server_pid" --client-id-prefix "$scen$mode-" "${load[@]}"
        res[$scen-$mode]=$(<"$tmp/$scen-$mode.result")
        settle
    done
done

echo
echo "machine   $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), kernel $(uname -r)"
echo "server    $("$bin" version 2>/dev/null | head -1), --workers $workers, websocket.compression on;" \
    "$clients clients, payload $payload B (words)"
echo
for mode in plain deflate; do
    r=${res[idle-$mode]}
    echo "(a) idle, $mode: $(field "$r" alive) of $clients open; server RSS" \
        "$(field "$r" rss_before_kb) -> $(field "$r" rss_after_kb) KiB =" \
        "$(field "$r" rss_per_client_b) B per idle WebSocket"
done
echo
fmt='%-22s %10s %6s %11s %10s %12s %13s %8s %8s\n'
printf "$fmt" scenario deliveries errors compressed "wire B/del" "deliveries/s" "srv cpu us/del" \
    "p50 ms" "p99 ms"
for scen in paced closed; do
    for mode in plain deflate; do
        r=${res[$scen-$mode]}
        printf "$fmt" "(b) $scen, $mode" "$(field "$r" deliveries)" "$(field "$r" errors)" \
            "$(field "$r" compressed)" "$(field "$r" wire_bytes_per_delivery)" \
            "$(field "$r" deliveries_per_s)" "$(field "$r" server_cpu_us_per_delivery)" \
            "$(field "$r" p50_ms)" "$(field "$r" p99_ms)"
    done
done
echo
echo "RESULT lines:"
for k in idle-plain idle-deflate paced-plain paced-deflate closed-plain closed-deflate; do
    printf '  %s %s\n' "$k" "${res[$k]}"
done

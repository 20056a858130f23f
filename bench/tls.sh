#!/usr/bin/env bash
# TLS benchmark on loopback: (a) full TLS handshakes a second (and resumed ones) with
# parallel `openssl s_time` clients, (b) server memory per idle wss:// connection against
# ws://, (c) broadcast deliveries a second over wss:// against ws://, in the same run,
# with the same pushgate binary and config (bench/build/wsload; an https:// URL makes it
# speak TLS on every connection). Makes its own CA and certificate, starts a plain and a
# TLS pushgate one after the other, and kills what it started.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/tls.sh [options]
  --clients N          WebSocket clients of the idle and broadcast scenarios (2000)
  --pushes M           push requests of the broadcast scenario (50)
  --publishers P       publishers of the broadcast scenario (4)
  --payload-bytes B    size of each push's serviceRequest (100)
  --workers W          pushgate --workers (nproc)
  --idle-seconds S     how long idle clients are held before RSS is read (3)
  --handshake-seconds T  how long each s_time client runs (5)
  --handshake-clients K  parallel s_time clients (nproc)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (certificates, logs, raw outputs)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
tools=$root/bench/build
clients=2000
pushes=50
publishers=4
payload=100
workers=$(nproc)
idle=3
hs_time=5
hs_clients=$(nproc)
keep=0

while [ $# -gt 0 ]; do
    case $1 in
    --clients) clients=$2; shift 2 ;;
    --pushes) pushes=$2; shift 2 ;;
    --publishers) publishers=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --idle-seconds) idle=$2; shift 2 ;;
    --handshake-seconds) hs_time=$2; shift 2 ;;
    --handshake-clients) hs_clients=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

die() {
    echo "tls.sh: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no server at $bin; build it first with: make -C $root"
[ -x "$tools/wsload" ] || make -s -C "$root/bench" >&2
need=$((clients + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    die "ulimit -Hn is $hard; $clients clients need $need"
fi
ulimit -n "$need"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-tls-bench.XXXXXX")
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
        echo "tls.sh: outputs kept in $tmp" >&2
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

# a CA and a P-256 server certificate it signs (what the integration tests use too)
(
    cd "$tmp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 2 -subj "/CN=pushgate bench CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj "/CN=localhost" 2>/dev/null
    echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 1 -days 2 \
        -out server.pem -extfile server.ext 2>/dev/null
)
cp "$bin" "$tmp/pushgate"

# start_server NAME TLS(0|1): writes its config, starts it, waits for /readyz
start_server() {
    local name=$1 tls=$2 port scheme=http curl_ca=()
    port=$(free_port)
    local tls_json=
    if [ "$tls" = 1 ]; then
        scheme=https
        curl_ca=(--cacert "$tmp/ca.pem")
        tls_json=", \"tls\": {\"cert\": \"$tmp/server.pem\", \"key\": \"$tmp/server.key\"}"
    fi
    mkdir -p "$tmp/data-$name"
    cat >"$tmp/$name.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "workers": $workers,
  "dataDir": "$tmp/data-$name",
  "apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
  "sessions": [{"sessionId": "bench", "user": "bench"}],
  "limits": {"maxOutputBytes": 67108864}$tls_json
}
EOF
    "$tmp/pushgate" serve --config "$tmp/$name.json" 2>"$tmp/$name.log" &
    server_pid=$!
    url=$scheme://127.0.0.1:$port
    server_port=$port
    for _ in $(seq 100); do
        curl -fsS "${curl_ca[@]}" -o /dev/null "$url/readyz" 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || die "pushgate ($name) exited: $(tail -3 "$tmp/$name.log")"
        sleep 0.1
    done
    die "pushgate ($name) not ready"
}

field() {
    sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"
}

# run_wsload NAME ARGS...: keeps the RESULT line in $tmp/NAME.result
run_wsload() {
    local name=$1
    shift
    echo "tls.sh: $name: wsload $*" >&2
    timeout --signal=INT --kill-after=10 300 "$tools/wsload" "$@" >"$tmp/$name.out" \
        2>"$tmp/$name.err" || echo "tls.sh: $name: wsload exited $?" >&2
    sed 's/^/    /' "$tmp/$name.err" >&2
    grep '^RESULT ' "$tmp/$name.out" >"$tmp/$name.result" ||
        echo "RESULT errors=missing" >"$tmp/$name.result"
}

# s_time: K clients for T seconds; prints the sum of their connections a second.
# (TLS 1.3 resumption is not measured: s_time closes before the server's ticket arrives.)
handshakes() {
    local tag=$1 i total=0 n secs pids=()
    shift
    for ((i = 0; i < hs_clients; i++)); do
        openssl s_time -connect "127.0.0.1:$server_port" "$@" -time "$hs_time" \
            -CAfile "$tmp/ca.pem" >"$tmp/stime-$tag-$i.out" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < hs_clients; i++)); do
        # "N connections in S real seconds, ..."
        read -r n secs < <(sed -n 's/^\([0-9]*\) connections in \([0-9.]*\) real seconds.*/\1 \2/p' \
            "$tmp/stime-$tag-$i.out" | tail -1)
        [ -n "${n:-}" ] || { echo "tls.sh: s_time $tag: $(tail -2 "$tmp/stime-$tag-$i.out")" >&2; continue; }
        total=$(awk -v t="$total" -v n="$n" -v s="$secs" 'BEGIN {printf "%.1f", t + n / s}')
    done
    echo "$total"
}

results=()
for kind in plain tls; do
    start_server "$kind" "$([ $kind = tls ] && echo 1 || echo 0)"
    if [ "$kind" = tls ]; then
        hs_new13=$(handshakes new13 -new -tls1_3)
        hs_new12=$(handshakes new12 -new -tls1_2)
        hs_reuse12=$(handshakes reuse12 -reuse -tls1_2)
    fi
    run_wsload "$kind-idle" --url "$url" --clients "$clients" --client-id-prefix i- \
        --idle-seconds "$idle" --server-pid "$server_pid"
    run_wsload "$kind-broadcast" --url "$url" --clients "$clients" --client-id-prefix b- \
        --pushes "$pushes" --publishers "$publishers" --payload-bytes "$payload" \
        --key bench-key --server-pid "$server_pid"
    stop_server
done

row() {
    local idle_res bc_res
    idle_res=$(<"$tmp/$1-idle.result")
    bc_res=$(<"$tmp/$1-broadcast.result")
    local cpu deliv us
    cpu=$(field "$bc_res" server_cpu_s)
    deliv=$(field "$bc_res" deliveries)
    us=$(awk -v c="${cpu:-0}" -v d="${deliv:-0}" 'BEGIN {if (d > 0) printf "%.2f", c * 1e6 / d; else print "?"}')
    printf '| %-5s | %s | %s | %s | %s | %s | %s |\n' "$1" \
        "$(field "$idle_res" rss_per_client_b)" "$(field "$bc_res" deliveries_per_s)" \
        "$(field "$bc_res" p50_ms)" "$(field "$bc_res" p99_ms)" "$us" "$(field "$bc_res" errors)"
}

echo
echo "TLS handshakes a second ($hs_clients s_time clients x ${hs_time}s, P-256 certificate):"
echo "  TLS 1.3 full: $hs_new13   TLS 1.2 full: $hs_new12   TLS 1.2 resumed (ticket): $hs_reuse12"
echo
echo "$clients clients, $pushes pushes, $publishers publishers, $workers workers:"
echo "| proto | idle B/conn | deliveries/s | p50 ms | p99 ms | server CPU us/delivery | errors |"
echo "|-------|-------------|--------------|--------|--------|------------------------|--------|"
row plain
row tls

#!/usr/bin/env bash
# Runs pushgate's benchmark scenarios on loopback and prints a summary table:
# (a) server memory per idle WebSocket, (b) broadcast throughput and latency
# with one publisher, with several, and with one paced publisher, (c) the
# kernel's write ceiling for the same number of connections. Starts its own
# pushgate and kills what it started.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [options]
  --clients N          WebSocket clients in every scenario (10000)
  --pushes M           push requests per broadcast scenario (100)
  --publishers P       publishers of the concurrent broadcast scenario (8)
  --rate R             pushes a second of the paced scenario (5)
  --paced-pushes M     push requests of the paced scenario (25)
  --payload-bytes B    size of each push's serviceRequest (100)
  --workers W          pushgate --workers (nproc)
  --idle-seconds S     how long the idle clients are held before RSS is read (5)
  --client-threads T   wsload client threads (1)
  --ceiling-pushes M   rounds of the ceiling program (same as --pushes)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (config, logs, raw outputs)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
tools=$root/bench/build
clients=10000
pushes=100
publishers=8
rate=5
paced_pushes=25
payload=100
workers=$(nproc)
idle=5
client_threads=1
ceiling_pushes=
keep=0

while [ $# -gt 0 ]; do
    case $1 in
    --clients) clients=$2; shift 2 ;;
    --pushes) pushes=$2; shift 2 ;;
    --publishers) publishers=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --paced-pushes) paced_pushes=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --idle-seconds) idle=$2; shift 2 ;;
    --client-threads) client_threads=$2; shift 2 ;;
    --ceiling-pushes) ceiling_pushes=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
ceiling_pushes=${ceiling_pushes:-$pushes}

die() {
    echo "run.sh: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "no server at $bin; build it first with: make -C $root"
if [ ! -x "$tools/wsload" ] || [ ! -x "$tools/ceiling" ]; then
    make -s -C "$root/bench" >&2
fi

# Each side of a scenario holds one descriptor per connection, in its own
# process, so the soft limit must cover the clients plus some slack.
need=$((clients + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    die "ulimit -Hn is $hard; $clients clients need $need (raise the hard limit or lower --clients)"
fi
ulimit -n "$need"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-bench.XXXXXX")
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
        echo "run.sh: outputs kept in $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port below the ephemeral range, so that the clients' own ports can
# never collide with it.
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

# Each scenario connects from its own loopback source addresses: the previous
# scenario's closed sockets sit in TIME_WAIT on theirs for a minute.
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

cat >"$tmp/pushgate.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "workers": $workers,
  "dataDir": "$tmp/data",
  "logLevel": "info",
  "apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
  "sessions": [{"sessionId": "bench", "user": "bench"}],
  "limits": {"maxOutputBytes": 67108864, "maxConnections": 0}
}
EOF
mkdir -p "$tmp/data"

# Run a private copy: a rebuild of build/pushgate during the run must not
# swap the code under the running server.
cp "$bin" "$tmp/pushgate"
"$tmp/pushgate" serve --config "$tmp/pushgate.json" --workers "$workers" 2>"$tmp/pushgate.log" &
server_pid=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || die "pushgate exited at start: $(tail -5 "$tmp/pushgate.log")"
    sleep 0.1
done
curl -fsS -o /dev/null "$url/readyz" || die "pushgate not ready after 10 s"

# Reads key=value out of a RESULT line.
field() {
    sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"
}

# Runs one tool bounded in time and keeps its RESULT line in $tmp/<name>.result.
# Stops the whole run, with the server's exit status and log, if the server
# died meanwhile: later numbers would be measured against nothing.
run_tool() {
    local name=$1
    shift
    local out=$tmp/$name.out rc=0 status=0
    echo "run.sh: $name: $*" >&2
    timeout --signal=INT --kill-after=10 300 "$@" >"$out" 2>"$tmp/$name.err" || rc=$?
    sed 's/^/    /' "$tmp/$name.err" >&2
    [ "$rc" = 0 ] || echo "run.sh: $name exited $rc" >&2
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid" || status=$?
        server_pid=
        echo "run.sh: pushgate exited (status $status) during $name; its log ends with:" >&2
        tail -20 "$tmp/pushgate.log" >&2
        exit 1
    fi
    grep '^RESULT ' "$out" >"$tmp/$name.result" ||
        echo "RESULT tool=none errors=missing" >"$tmp/$name.result"
}

# The server notices the previous scenario's clients going away in its own
# time; the next scenario should not start while it is still tearing down.
settle() {
    local body n
    for _ in $(seq 100); do
        body=$(curl -fsS -H 'Authorization: Bearer bench-key' "$url/api/nodes" 2>/dev/null) || break
        n=$(grep -o '"connections":[0-9]*' <<<"$body" | head -1 | cut -d: -f2)
        # The count includes this request's own HTTP connection.
        [ "${n:-0}" -le 1 ] && return 0
        sleep 0.1
    done
    sleep 2
}

# (a) idle memory
take_sources
run_tool idle "$tools/wsload" --url "$url" --clients "$clients" \
    --client-id-prefix idle- --sources "$sources" --threads "$client_threads" \
    --idle-seconds "$idle" --server-pid "$server_pid"
idle_res=$(<"$tmp/idle.result")
settle

# (b) broadcast with one publisher, then several at once
take_sources
run_tool broadcast-1 "$tools/wsload" --url "$url" --clients "$clients" \
    --client-id-prefix b1- --sources "$sources" --threads "$client_threads" \
    --pushes "$pushes" --publishers 1 --payload-bytes "$payload" --key bench-key \
    --server-pid "$server_pid"
b1_res=$(<"$tmp/broadcast-1.result")
settle
take_sources
run_tool "broadcast-$publishers" "$tools/wsload" --url "$url" --clients "$clients" \
    --client-id-prefix bp- --sources "$sources" --threads "$client_threads" \
    --pushes "$pushes" --publishers "$publishers" --payload-bytes "$payload" --key bench-key \
    --server-pid "$server_pid"
bp_res=$(<"$tmp/broadcast-$publishers.result")
settle
take_sources
run_tool paced "$tools/wsload" --url "$url" --clients "$clients" \
    --client-id-prefix pc- --sources "$sources" --threads "$client_threads" \
    --pushes "$paced_pushes" --publishers 1 --rate "$rate" --payload-bytes "$payload" \
    --key bench-key --server-pid "$server_pid"
pc_res=$(<"$tmp/paced.result")
settle

# (c) the kernel's ceiling, with the frame size pushgate actually sent
frame=$(field "$b1_res" frame_bytes)
if [ -z "$frame" ] || [ "$frame" = 0 ]; then
    frame_opt=(--payload-bytes "$payload")
else
    frame_opt=(--frame-bytes "$frame")
fi
take_sources
run_tool ceiling-1 "$tools/ceiling" --clients "$clients" --pushes "$ceiling_pushes" \
    "${frame_opt[@]}" --sources "$sources" --threads 1
c1_res=$(<"$tmp/ceiling-1.result")
# As many writers as pushgate has workers, when that is more than one.
cw_res=
if [ "$workers" -gt 1 ]; then
    take_sources
    run_tool "ceiling-$workers" "$tools/ceiling" --clients "$clients" \
        --pushes "$ceiling_pushes" "${frame_opt[@]}" --sources "$sources" \
        --threads "$workers"
    cw_res=$(<"$tmp/ceiling-$workers.result")
fi
# The same, writing as many frames per write() as pushgate did with several
# publishers: the bound for a server that coalesces that well.
batch=$(awk -v f="$(field "$bp_res" frames_per_write)" 'BEGIN {printf "%d", f + 0.5}')
cb_res=
if [ "$batch" -ge 2 ]; then
    take_sources
    run_tool ceiling-batch "$tools/ceiling" --clients "$clients" \
        --pushes "$(((ceiling_pushes + batch - 1) / batch))" "${frame_opt[@]}" \
        --sources "$sources" --threads 1 --batch "$batch"
    cb_res=$(<"$tmp/ceiling-batch.result")
fi

fmt='%-28s %10s %6s %13s %8s %8s %8s %8s %8s %7s\n'
row() {
    printf "$fmt" "$1" "$(field "$2" deliveries)" "$(field "$2" errors)" \
        "$(field "$2" deliveries_per_s)" "$(field "$2" p50_ms)" "$(field "$2" p99_ms)" \
        "$(field "$2" max_ms)" "$(field "$2" server_cpu_s)" "$(field "$2" wsload_cpu_s)" \
        "$(field "$2" frames_per_write)"
}
crow() {
    [ -n "$2" ] || return 0
    printf "$fmt" "$1" "$(field "$2" deliveries)" "$(field "$2" errors)" \
        "$(field "$2" deliveries_per_s)" - - - - - "$(field "$2" batch)"
}

echo
echo "machine   $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), kernel $(uname -r)"
echo "server    $("$bin" version 2>/dev/null | head -1), --workers $workers;" \
    "$clients clients, $pushes pushes, payload $payload B, push frame $(field "$b1_res" frame_bytes) B"
echo
echo "(a) idle: $(field "$idle_res" alive) of $clients clients open after ${idle}s;" \
    "server RSS $(field "$idle_res" rss_before_kb) -> $(field "$idle_res" rss_after_kb) KiB" \
    "= $(field "$idle_res" rss_per_client_b) B of user memory per idle WebSocket"
echo "    (kernel socket memory is not in RSS: system slab grew by $(field "$idle_res" slab_delta_kb) KiB" \
    "for both ends of $clients loopback connections)"
echo
printf "$fmt" scenario deliveries errors deliveries/s "p50 ms" "p99 ms" "max ms" "srv cpu" \
    "gen cpu" "fr/wr"
row "(b) 1 publisher" "$b1_res"
row "(b) $publishers publishers" "$bp_res"
row "(b) 1 publisher, $rate/s" "$pc_res"
crow "(c) ceiling, 1 writer" "$c1_res"
crow "(c) ceiling, $workers writers" "$cw_res"
crow "(c) ceiling, 1 writer, batch" "$cb_res"
echo
echo "RESULT lines:"
printf '  %s\n' "$idle_res" "$b1_res" "$bp_res" "$pc_res" "$c1_res" ${cw_res:+"$cw_res"} \
    ${cb_res:+"$cb_res"}

#!/usr/bin/env bash
# Runs the same fan-out scenarios, with the same C load generator (bench/build/sseload),
# against pushgate and its peers in turn, on loopback, and prints one markdown table
# with absolute figures and ratios to pushgate, plus a PNG plot of deliveries/s and p99
# against subscribers. Peers: Nchan (nginx-light + libnginx-mod-nchan from Debian,
# bench/peers/nginx.conf.in), the npm `ws` server (bench/peers/ws-server.mjs) and the
# npm `socket.io` server (bench/peers/sio-server.mjs), from bench/package-lock.json.
# Installs what is missing, starts and stops every server itself, and is bounded in
# time. Not part of the test suite: docs/benchmarks.md says how to read it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/peers.sh [options]
  --servers LIST        any of pushgate,nchan,ws,socketio (all four)
  --workers W           pushgate workers and nginx worker_processes (nproc)
  --idle-clients N      idle WebSocket clients whose memory is measured (5000)
  --clients N           subscribers of the fan-out scenarios (2000)
  --pushes M            pushes of each fan-out scenario (500)
  --publishers P        publishers of the burst scenario (8)
  --paced-clients N     subscribers of the paced scenario (1000)
  --rate R              pushes a second of the paced scenario (20)
  --paced-pushes M      pushes of the paced scenario (200)
  --payload-bytes B     size of each pushed document (90)
  --sweep LIST          subscriber counts of the flatness sweep (1000,2000,4000,8000,16000;
                        "" skips it)
  --sweep-pushes M      pushes per sweep point (200)
  --plot FILE           where the PNG goes (docs/img/peers.png)
  --out FILE            also write the markdown table here
  --runs N              run every scenario N times; the table shows medians (1)
  --keep                keep the temp directory (configs, logs, raw RESULT lines)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
servers=pushgate,nchan,ws,socketio
workers=$(nproc)
idle_clients=5000
clients=2000
pushes=500
publishers=8
paced_clients=1000
rate=20
paced_pushes=200
payload=90
sweep=1000,2000,4000,8000,16000
sweep_pushes=200
plot=$root/docs/img/peers.png
out=
keep=0
runs=1
while [ $# -gt 0 ]; do
    case $1 in
    --servers) servers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --idle-clients) idle_clients=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --pushes) pushes=$2; shift 2 ;;
    --publishers) publishers=$2; shift 2 ;;
    --paced-clients) paced_clients=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --paced-pushes) paced_pushes=$2; shift 2 ;;
    --payload-bytes) payload=$2; shift 2 ;;
    --sweep) sweep=$2; shift 2 ;;
    --sweep-pushes) sweep_pushes=$2; shift 2 ;;
    --plot) plot=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --runs) runs=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

die() {
    echo "peers.sh: $*" >&2
    exit 1
}

# ---- what the run needs
need_pkgs=()
for p in nginx-light libnginx-mod-nchan gnuplot-nox curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
    SUDO=
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "peers.sh: installing ${need_pkgs[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi
# Debian starts the nginx it installs; the benchmark runs its own
pkill -x nginx -U 0 2>/dev/null || true
if ! cmp -s "$root/bench/package-lock.json" "$root/bench/node_modules/.pushgate-lock" 2>/dev/null; then
    (cd "$root/bench" && npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$root/bench/package-lock.json" "$root/bench/node_modules/.pushgate-lock"
fi
[ -x "$root/build/pushgate" ] || make -s -C "$root" -j"$(nproc)" >&2
make -s -C "$root/bench" >&2
tool=$root/bench/build/sseload

biggest=$idle_clients
for n in $clients $paced_clients ${sweep//,/ }; do
    [ "$n" -gt "$biggest" ] && biggest=$n
done
ulimit -n $((biggest + 1024)) 2>/dev/null || die "cannot raise the descriptor limit to $((biggest + 1024))"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-peers.XXXXXX")
server_pid=
cleanup() {
    local rc=$?
    stop_server
    if [ "$keep" = 1 ]; then echo "peers.sh: outputs kept in $tmp" >&2; else rm -rf "$tmp"; fi
    exit "$rc"
}
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    die "no free port"
}

# Every scenario connects from its own loopback source addresses: the previous
# scenario's sockets sit in TIME_WAIT on theirs for a minute.
next_src=1
sources() {
    local n=$(((($1) + 20000 - 1) / 20000)) s='' i
    [ $((next_src + n)) -le 254 ] || next_src=1
    for ((i = 0; i < n; i++)); do s+=${s:+,}127.0.0.$((next_src + i)); done
    next_src=$((next_src + n))
    echo "$s"
}

# The pids whose memory and CPU count as the server's (nginx: master and workers).
pids=
start_server() {
    local name=$1 port
    port=$(free_port)
    url=http://127.0.0.1:$port
    mkdir -p "$tmp/$name"
    case $name in
    pushgate)
        cat >"$tmp/$name/pushgate.json" <<EOF
{
  "listen": "127.0.0.1:$port",
  "workers": $workers,
  "dataDir": "$tmp/$name/data",
  "logLevel": "warn",
  "apiKeys": [{"key": "bench-key", "scopes": ["publish", "admin"]}],
  "sessions": [{"sessionId": "bench", "user": "bench"}],
  "limits": {"maxOutputBytes": 67108864, "maxConnections": 0}
}
EOF
        cp "$root/build/pushgate" "$tmp/$name/pushgate"
        "$tmp/$name/pushgate" serve --config "$tmp/$name/pushgate.json" 2>"$tmp/$name/log" &
        ;;
    nchan)
        mkdir -p "$tmp/$name/body"
        sed -e "s#@PORT@#$port#g" -e "s#@WORKERS@#$workers#g" -e "s#@PREFIX@#$tmp/$name#g" \
            "$root/bench/peers/nginx.conf.in" >"$tmp/$name/nginx.conf"
        nginx -p "$tmp/$name" -c "$tmp/$name/nginx.conf" 2>"$tmp/$name/log" &
        ;;
    ws) node "$root/bench/peers/ws-server.mjs" "$port" 2>"$tmp/$name/log" & ;;
    socketio) node "$root/bench/peers/sio-server.mjs" "$port" 2>"$tmp/$name/log" & ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || die "$name exited at start: $(tail -5 "$tmp/$name/log")"
        sleep 0.1
    done
    curl -fsS -o /dev/null "$url/readyz" || die "$name not ready after 10 s"
    pids=$server_pid
    if [ "$name" = nchan ]; then
        local kids
        kids=$(pgrep -P "$server_pid" | paste -sd, -)
        [ -n "$kids" ] && pids+=,$kids
    fi
}

# The sseload arguments that make a subscriber of server $1 over transport $2
# (ws, sse or sio) on channel $3, and its publisher. The Node peers have one
# audience (every client, or the room `bench`), and a scenario's clients are gone
# before the next one starts.
client_args() {
    local ch=$3
    case $1:$2 in
    pushgate:ws) echo "--mode ws --publish channel --channel $ch" ;;
    pushgate:sse) echo "--mode sse --path /sse?channel=$ch --publish channel --channel $ch" ;;
    pushgate:sio) echo "--mode sio --ws-path /socket.io/?EIO=4&transport=websocket --publish channel --channel $ch" ;;
    nchan:ws) echo "--mode ws --ws-path /sub?chan=$ch --publish raw --publish-path /pub?chan=$ch" ;;
    nchan:sse) echo "--mode sse --path /sse?chan=$ch --publish raw --publish-path /pub?chan=$ch" ;;
    ws:ws) echo "--mode ws --ws-path / --publish raw --publish-path /pub" ;;
    socketio:sio) echo "--mode sio --ws-path /socket.io/?EIO=4&transport=websocket --publish raw --publish-path /pub --channel bench" ;;
    *) return 1 ;;
    esac
}

# What each server's WebSocket-like transport is called here.
main_transport() {
    case $1 in socketio) echo sio ;; *) echo ws ;; esac
}

field() { sed -n 's/.*[[:space:]]'"$2"'=\([^[:space:]]*\).*/\1/p' <<<"$1"; }

# run NAME SERVER TRANSPORT CLIENTS [sseload options]: one scenario, $runs times; its
# RESULT lines land in $tmp/results as "NAME SERVER RESULT…". With fresh=1, every run
# after the first is on a server started afresh (the caller starts the first): what a
# process grew to in one run and kept (freed heap, a garbage collector's arena) would
# hide the memory the next run's clients cost.
run() {
    local name=$1 srv=$2 tr=$3 n=$4 k
    shift 4
    for ((k = 1; k <= runs; k++)); do
        if [ "${fresh:-0}" = 1 ] && [ "$k" -gt 1 ]; then
            stop_server
            start_server "$srv"
        fi
        run_once "$name" "$srv" "$tr" "$n" "$k" "$@"
    done
}
run_once() {
    local name=$1 srv=$2 tr=$3 n=$4 k=$5 rc=0
    shift 5
    local args
    args=$(client_args "$srv" "$tr" "b-$name-$k") || return 0
    echo "peers.sh: $srv $name ($tr, $n subscribers, run $k of $runs)" >&2
    # shellcheck disable=SC2086
    timeout --signal=INT --kill-after=10 300 "$tool" --url "$url" $args --clients "$n" \
        --sources "$(sources "$n")" --payload-bytes "$payload" --server-pids "$pids" "$@" \
        >"$tmp/$srv-$name-$k.out" 2>"$tmp/$srv-$name-$k.err" || rc=$?
    [ "$rc" = 0 ] || { echo "peers.sh: $srv $name: sseload exited $rc" >&2; tail -3 "$tmp/$srv-$name-$k.err" >&2; }
    kill -0 "$server_pid" 2>/dev/null || die "$srv died during $name: $(tail -5 "$tmp/$srv/log")"
    local res
    res=$(grep "^RESULT " "$tmp/$srv-$name-$k.out" || echo "RESULT tool=none")
    echo "$name $srv $res" >>"$tmp/results"
    sleep 1
}

: >"$tmp/results"
for srv in ${servers//,/ }; do
    start_server "$srv"
    tr=$(main_transport "$srv")
    fresh=1 run idle "$srv" "$tr" "$idle_clients" --pushes 0 --hold 5
    run fanout1 "$srv" "$tr" "$clients" --pushes "$pushes" --publishers 1 --hold 1 --warmup
    run fanout8 "$srv" "$tr" "$clients" --pushes "$pushes" --publishers "$publishers" --hold 1 --warmup
    run paced "$srv" "$tr" "$paced_clients" --pushes "$paced_pushes" --rate "$rate" --hold 1 --warmup
    run sse "$srv" sse "$clients" --pushes "$pushes" --publishers 1 --hold 1 --warmup
    for n in ${sweep//,/ }; do
        run "sweep$n" "$srv" "$tr" "$n" --pushes "$sweep_pushes" --publishers 1 --hold 1 --warmup
    done
    stop_server
done

# ---- the table
get() { # get SCENARIO SERVER KEY: the median over the runs
    local line vals=
    while IFS= read -r line; do
        vals+="$(field "$line" "$3") "
    done < <(grep "^$1 $2 " "$tmp/results" || true)
    [ -n "${vals// /}" ] || return 0
    tr ' ' '\n' <<<"$vals" | sed '/^$/d' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { # pushgate's figure against the peer's: higher is better for pushgate when $3=up
    awk -v p="$1" -v q="$2" -v dir="$3" 'BEGIN {
        if (p == "" || q == "" || p + 0 == 0 || q + 0 == 0) { print "–"; exit }
        printf "%.2f×", (dir == "up") ? p / q : q / p }'
}
kib() { awk -v b="$1" 'BEGIN { if (b == "") print "–"; else printf "%.2f KiB", b / 1024 }'; }
num() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else printf "%.0f", v }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else printf "%.1f", v }'; }
us() { awk -v v="$1" 'BEGIN { if (v == "" || v + 0 == 0) print "–"; else printf "%.2f", v }'; }

{
    echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), kernel $(uname -r); loopback; $workers workers each"
    echo "scenarios: idle $idle_clients clients; fan-out $clients subscribers × $pushes pushes of $payload B;" \
        "paced $paced_clients subscribers × $rate pushes/s ($paced_pushes pushes); median of $runs run(s)"
    echo
    echo "| server | transport | idle per conn | fan-out, 1 pub (deliv/s) | fan-out, $publishers pubs | paced p50 ms | p99 ms | max ms | SSE fan-out | CPU µs/delivery | deliveries/write |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for srv in ${servers//,/ }; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$srv" "$(main_transport "$srv")" \
            "$(kib "$(get idle "$srv" rss_per_client_b)")" "$(num "$(get fanout1 "$srv" deliveries_per_s)")" \
            "$(num "$(get fanout8 "$srv" deliveries_per_s)")" "$(ms "$(get paced "$srv" p50_ms)")" \
            "$(ms "$(get paced "$srv" p99_ms)")" "$(ms "$(get paced "$srv" max_ms)")" \
            "$(num "$(get sse "$srv" deliveries_per_s)")" "$(us "$(get fanout1 "$srv" server_us_per_delivery)")" \
            "$(us "$(get fanout1 "$srv" deliveries_per_write)")"
    done
    if [[ ,$servers, == *,pushgate,* ]]; then
        echo
        echo "pushgate against each peer (>1 means pushgate is better: less memory, more deliveries/s, lower latency, less CPU):"
        echo
        echo "| peer | idle memory | fan-out, 1 pub | fan-out, $publishers pubs | paced p99 | SSE fan-out | CPU/delivery |"
        echo "|---|---|---|---|---|---|---|"
        for srv in ${servers//,/ }; do
            [ "$srv" = pushgate ] && continue
            printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$srv" \
                "$(ratio "$(get idle pushgate rss_per_client_b)" "$(get idle "$srv" rss_per_client_b)" down)" \
                "$(ratio "$(get fanout1 pushgate deliveries_per_s)" "$(get fanout1 "$srv" deliveries_per_s)" up)" \
                "$(ratio "$(get fanout8 pushgate deliveries_per_s)" "$(get fanout8 "$srv" deliveries_per_s)" up)" \
                "$(ratio "$(get paced pushgate p99_ms)" "$(get paced "$srv" p99_ms)" down)" \
                "$(ratio "$(get sse pushgate deliveries_per_s)" "$(get sse "$srv" deliveries_per_s)" up)" \
                "$(ratio "$(get fanout1 pushgate server_us_per_delivery)" "$(get fanout1 "$srv" server_us_per_delivery)" down)"
        done
    fi
    if [ -n "$sweep" ]; then
        echo
        echo "Sweep ($sweep_pushes pushes, 1 publisher): deliveries/s and p99 ms by subscribers"
        echo
        printf '| server |'
        for n in ${sweep//,/ }; do printf ' %s |' "$n"; done
        echo " spread |"
        printf '|---|'
        for _ in ${sweep//,/ }; do printf -- '---|'; done
        echo "---|"
        for srv in ${servers//,/ }; do
            printf '| %s |' "$srv"
            vals=
            for n in ${sweep//,/ }; do
                d=$(get "sweep$n" "$srv" deliveries_per_s)
                printf ' %s / %s |' "$(num "$d")" "$(ms "$(get "sweep$n" "$srv" p99_ms)")"
                vals+=" ${d:-0}"
            done
            # spread: (max - min) / median of the deliveries/s, the flatness target
            awk -v v="$vals" 'BEGIN { n = split(v, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
                if (med > 0) printf " ±%.0f%% |\n", 50 * (a[n] - a[1]) / med; else print " – |" }'
        done
    fi
} >"$tmp/table.md"
cat "$tmp/table.md"
[ -n "$out" ] && cp "$tmp/table.md" "$out"

# ---- the plot
if [ -n "$sweep" ] && command -v gnuplot >/dev/null; then
    mkdir -p "$(dirname "$plot")"
    for srv in ${servers//,/ }; do
        for n in ${sweep//,/ }; do
            d=$(get "sweep$n" "$srv" deliveries_per_s)
            p=$(get "sweep$n" "$srv" p99_ms)
            [ -n "$d" ] && echo "$n $d ${p:-0}"
        done >"$tmp/$srv.dat"
    done
    {
        echo "set terminal pngcairo size 1100,450 font 'sans,10'"
        echo "set output '$plot'"
        echo "set multiplot layout 1,2 title 'fan-out on $(nproc) cores, loopback, $sweep_pushes pushes of $payload B'"
        echo "set logscale x 2; set xlabel 'subscribers'; set key top left; set grid"
        echo "set ylabel 'deliveries/s'; set format y '%.0s%c'; set logscale y"
        printf "plot "
        sep=
        for srv in ${servers//,/ }; do printf "%s'%s' using 1:2 with linespoints title '%s'" "$sep" "$tmp/$srv.dat" "$srv"; sep=", "; done
        echo
        echo "set ylabel 'p99 latency of the burst (ms)'; set format y '%g'; set logscale y"
        printf "plot "
        sep=
        for srv in ${servers//,/ }; do printf "%s'%s' using 1:3 with linespoints title '%s'" "$sep" "$tmp/$srv.dat" "$srv"; sep=", "; done
        echo
        echo "unset multiplot"
    } >"$tmp/plot.gp"
    gnuplot "$tmp/plot.gp" && echo "peers.sh: plot written to $plot" >&2
fi

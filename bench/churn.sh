#!/usr/bin/env bash
# Churn (issue 10 item 3): N WebSocket connect / subscribe / disconnect cycles
# (bench/churn.c: 8 threads, each with a window of 256 open clients, from the source
# addresses 127.0.0.2..127.0.0.9 so that no single address runs out of ephemeral
# ports) against a pushgate it starts, sampling the node's RSS from /proc/PID/status.
# After the cycles and an idle pause it compares the RSS with the RSS after the
# warm-up (the first 10% of the cycles) and fails when it is more than 10% above.
# Writes the samples and plots them with gnuplot (installed with apt-get when missing).
#
#   bench/churn.sh [--cycles N] [--workers W] [--threads T] [--window W]
#                  [--idle-seconds S] [--binary PATH] [--png FILE] [--keep]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE_BIN:-$root/build/pushgate}
cycles=100000
workers=2
threads=8
window=256
idle=5
png=$root/docs/img/churn.png
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --cycles) cycles=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --idle-seconds) idle=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --png) png=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) sed -n 2,12p "$0"; exit 64 ;;
    esac
done
case $bin in /*) ;; *) bin=$root/$bin ;; esac

make -s -C "$root/bench" build/churn >/dev/null
[ -x "$bin" ] || make -s -C "$root" -j2 >/dev/null
if ! command -v gnuplot >/dev/null; then
    echo "churn: installing gnuplot-nox for the plot" >&2
    (apt-get install -y -qq gnuplot-nox || sudo apt-get install -y -qq gnuplot-nox) >/dev/null
fi

tmp=$(mktemp -d /tmp/pushgate-churn.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ "$keep" = 1 ] && echo "churn: kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/config.json" <<EOF
{"sessions": [{"sessionId": "s-churn", "user": "churn", "roles": ["r"]}],
 "apiKeys": [{"key": "churn-key", "scopes": ["admin"]}], "logLevel": "warn"}
EOF
"$bin" serve --config "$tmp/config.json" --listen "127.0.0.1:$port" --workers "$workers" \
    --data-dir "$tmp/data" 2>"$tmp/node.log" &
pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
rss0=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

"$root/bench/build/churn" --url "http://127.0.0.1:$port" --pid "$pid" --cycles "$cycles" \
    --threads "$threads" --window "$window" \
    --sources 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9 \
    --sample-ms 100 --out "$tmp/samples.txt"
# idle: the node trims what it freed once it has nothing to do
t_end=$(tail -1 "$tmp/samples.txt" | awk '{print $1}')
for i in $(seq $((idle * 4))); do
    sleep 0.25
    echo "$(awk -v t="$t_end" -v i="$i" 'BEGIN {printf "%.2f", t + i * 0.25}') $cycles $(awk '/VmRSS/ {print $2}' /proc/$pid/status)" >>"$tmp/samples.txt"
done
kill -0 "$pid" || { echo "churn: the node died" >&2; cat "$tmp/node.log" >&2; exit 1; }

warm=$((cycles / 10))
base=$(awk -v w="$warm" '$2 >= w {print $3; exit}' "$tmp/samples.txt")
peak=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$tmp/samples.txt")
final=$(tail -1 "$tmp/samples.txt" | awk '{print $3}')
ratio=$(awk -v f="$final" -v b="$base" 'BEGIN {printf "%.3f", f / b}')
verdict=$(awk -v r="$ratio" 'BEGIN {print (r <= 1.10) ? "PASS" : "FAIL"}')

mkdir -p "$(dirname "$png")"
cp "$tmp/samples.txt" "${png%.png}.dat"
gnuplot <<EOF
set terminal pngcairo size 900,450 noenhanced
set output "$png"
set title "pushgate RSS over $cycles WebSocket connect/subscribe/disconnect cycles ($workers workers)"
set xlabel "seconds"
set ylabel "RSS (MiB)"
set y2label "cycles done"
set y2tics
set ytics nomirror
set grid
set key left top
plot "$tmp/samples.txt" using 1:(\$3/1024.0) with lines lw 2 title "RSS", \
     "$tmp/samples.txt" using 1:2 axes x1y2 with lines dt 2 title "cycles", \
     $base/1024.0 with lines dt 3 title "after warm-up", \
     $base*1.1/1024.0 with lines dt 4 title "+10%"
EOF

printf 'churn: %s cycles, RSS KiB: start %s, after warm-up (%s cycles) %s, peak %s, end (idle %ss) %s; end/warm-up %s: %s\n' \
    "$cycles" "$rss0" "$warm" "$base" "$peak" "$idle" "$final" "$ratio" "$verdict"
echo "churn: plot $png, samples ${png%.png}.dat"
[ "$verdict" = PASS ]

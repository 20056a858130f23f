#!/usr/bin/env bash
# Device command queue benchmark (seed 004): enqueue → delivered → result round trips
# per second with many devices, durability on (every step is a committed SQLite
# transaction in WAL mode before its HTTP answer). Starts its own pushgate on a free
# loopback port with a temp data dir, drives it with Node load processes (node:http,
# keep-alive), prints a summary and one `RESULT tool=devices …` line, and kills what it
# started.
#
# One round trip, for a device picked in turn from --devices:
#   operator  POST /api/devices/{id}/commands {"endpoint":"bench","body":{"seq":n}}  → 201
#   device    GET  /push?deviceId={id}                                               → the command
#   device    POST /result?deviceId={id} {"response":{"seq":n}}                      → 200 empty
# --mode wait: the enqueue carries ?waitMs=10000 and is answered with the result (the
# face's delivery report), the device polls and answers on its own connection.
# --mode longpoll: device.holdMs=10000; the device's poll is held first and woken by
# the enqueue (made on another connection, any worker).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/devices.sh [options]
  --devices D          distinct device ids cycled through (10000)
  --concurrency C      round trips in flight (= device loops), over C keep-alive
                       connections per role (200)
  --seconds S          measured window (15)
  --warmup S           unmeasured warm-up (2)
  --mode M             poll | wait | longpoll (poll)
  --workers W          pushgate --workers (nproc)
  --client-procs P     Node load processes sharing the loops (nproc)
  --binary PATH        pushgate binary (build/pushgate, or $PUSHGATE)
  --keep               keep the temp directory (config, log, database)
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${PUSHGATE:-$root/build/pushgate}
devices=10000
concurrency=200
seconds=15
warmup=2
mode=poll
workers=$(nproc)
procs=$(nproc)
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --devices) devices=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --client-procs) procs=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
case $mode in poll | wait | longpoll) ;; *) echo "devices.sh: --mode must be poll, wait or longpoll" >&2; exit 2 ;; esac
[ -x "$bin" ] || { echo "devices.sh: $bin not found (run make)" >&2; exit 1; }
command -v node >/dev/null || { echo "devices.sh: node is required" >&2; exit 1; }
[ "$procs" -ge 1 ] && [ "$concurrency" -ge "$procs" ] || { echo "devices.sh: need 1 <= client-procs <= concurrency" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pushgate-devbench.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ "$keep" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

hold=0
[ "$mode" = longpoll ] && hold=10000
cat >"$tmp/config.json" <<EOF
{
  "apiKeys": [{"key": "bench-key", "scopes": ["publish"]}],
  "logLevel": "warn",
  "device": {"holdMs": $hold, "redeliveryMs": 30000, "maxQueue": 1000}
}
EOF
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$bin" serve --config "$tmp/config.json" --listen "127.0.0.1:$port" --workers "$workers" \
    --data-dir "$tmp/data" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
    sleep 0.1
done

cat >"$tmp/load.mjs" <<'EOF'
// One load process: `loops` device loops over keep-alive agents, device ids
// first, first+step, … below `devices`; prints one JSON line with counts and latencies.
import http from 'node:http';
const [port, loops, first, step, devices, warmupS, seconds, mode] = process.argv.slice(2);
const P = Number(port), L = Number(loops), D = Number(devices);
const opAgent = new http.Agent({ keepAlive: true, maxSockets: L });
const devAgent = new http.Agent({ keepAlive: true, maxSockets: L });
function req(agent, method, path, body, key) {
  return new Promise((resolve, reject) => {
    const headers = {};
    if (key) headers.authorization = `Bearer ${key}`;
    let data = null;
    if (body !== undefined) { data = JSON.stringify(body); headers['content-type'] = 'application/json'; headers['content-length'] = Buffer.byteLength(data); }
    const r = http.request({ host: '127.0.0.1', port: P, method, path, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    r.on('error', reject);
    if (data) r.write(data);
    r.end();
  });
}
let measuring = false, stop = false, done = 0, errors = 0, seq = 0;
const lat = [];
async function loop(k) {
  let dev = Number(first) + k * Number(step);
  const stride = L * Number(step);
  while (!stop) {
    const n = seq++;
    const t0 = process.hrtime.bigint();
    try {
      if (mode === 'poll') {
        const e = await req(opAgent, 'POST', `/api/devices/${dev}/commands`, { endpoint: 'bench', body: { seq: n } }, 'bench-key');
        if (e.status !== 201) throw new Error(`enqueue ${e.status} ${e.text}`);
        const p = await req(devAgent, 'GET', `/push?deviceId=${dev}`);
        if (p.status !== 200 || !p.text.includes(`"seq":${n}`)) throw new Error(`poll ${p.status} ${p.text}`);
        const r = await req(devAgent, 'POST', `/result?deviceId=${dev}`, { response: { seq: n } });
        if (r.status !== 200) throw new Error(`result ${r.status}`);
      } else if (mode === 'wait') {
        const waited = req(opAgent, 'POST', `/api/devices/${dev}/commands?waitMs=10000`, { endpoint: 'bench', body: { seq: n } }, 'bench-key');
        let p;
        for (;;) {
          p = await req(devAgent, 'GET', `/push?deviceId=${dev}`);
          if (p.text.length) break;
        }
        if (!p.text.includes(`"seq":${n}`)) throw new Error(`poll ${p.status} ${p.text}`);
        await req(devAgent, 'POST', `/result?deviceId=${dev}`, { response: { seq: n } });
        const e = await waited;
        if (e.status !== 201 || !e.text.includes('"status":"done"')) throw new Error(`enqueue ${e.status} ${e.text}`);
      } else {
        const polled = req(devAgent, 'GET', `/push?deviceId=${dev}`);
        await new Promise((r) => setImmediate(r));
        const e = await req(opAgent, 'POST', `/api/devices/${dev}/commands`, { endpoint: 'bench', body: { seq: n } }, 'bench-key');
        if (e.status !== 201) throw new Error(`enqueue ${e.status} ${e.text}`);
        let p = await polled;
        while (!p.text.length) p = await req(devAgent, 'GET', `/push?deviceId=${dev}`);
        if (!p.text.includes(`"seq":${n}`)) throw new Error(`poll ${p.status} ${p.text}`);
        const r = await req(devAgent, 'POST', `/result?deviceId=${dev}`, { response: { seq: n } });
        if (r.status !== 200) throw new Error(`result ${r.status}`);
      }
      if (measuring) {
        done++;
        if (lat.length < 2e6) lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    } catch (err) {
      if (errors++ < 3) console.error(String(err.message || err).slice(0, 300));
      if (errors > 1000) { stop = true; }
    }
    dev += stride;
    if (dev >= D) dev -= Math.floor((dev) / stride) * stride;
  }
}
const all = Array.from({ length: L }, (_, k) => loop(k));
setTimeout(() => { measuring = true; console.log(JSON.stringify({ event: 'start' })); }, Number(warmupS) * 1000);
setTimeout(() => { measuring = false; stop = true; }, (Number(warmupS) + Number(seconds)) * 1000);
await Promise.all(all);
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : 0);
console.log(JSON.stringify({ event: 'end', done, errors, p50: q(0.5), p99: q(0.99), max: lat.at(-1) || 0 }));
opAgent.destroy();
devAgent.destroy();
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
per=$((concurrency / procs))
echo "pushgate: $workers workers, mode $mode, $devices devices, $concurrency loops in $procs load processes, ${seconds}s after ${warmup}s warm-up"
outs=()
for i in $(seq 0 $((procs - 1))); do
    n=$per
    [ "$i" = $((procs - 1)) ] && n=$((concurrency - per * (procs - 1)))
    node "$tmp/load.mjs" "$port" "$n" "$i" "$procs" "$devices" "$warmup" "$seconds" "$mode" >"$tmp/load.$i.out" 2>"$tmp/load.$i.err" &
    outs+=($!)
done
sleep "$warmup"
c0=$(cpu_ticks)
sleep "$seconds"
c1=$(cpu_ticks)
fail=0
for p in "${outs[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { cat "$tmp"/load.*.err >&2; exit 1; }
cat "$tmp"/load.*.err >&2 || true
node - "$tmp" "$procs" "$seconds" "$((c1 - c0))" "$hz" "$mode" "$workers" "$devices" "$concurrency" <<'EOF'
const fs = require('fs');
const [dir, procs, seconds, ticks, hz, mode, workers, devices, conc] = process.argv.slice(2);
let done = 0, errors = 0, p50 = 0, p99 = 0, max = 0;
for (let i = 0; i < Number(procs); i++) {
  const lines = fs.readFileSync(`${dir}/load.${i}.out`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const end = lines.find((l) => l.event === 'end');
  done += end.done; errors += end.errors;
  p50 = Math.max(p50, end.p50); p99 = Math.max(p99, end.p99); max = Math.max(max, end.max);
}
const rate = done / Number(seconds);
const cpu = Number(ticks) / Number(hz);
console.log(`round trips: ${done} in ${seconds}s = ${rate.toFixed(0)}/s (errors ${errors})`);
console.log(`latency per round trip (worst load process): p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${max.toFixed(1)} ms`);
console.log(`server CPU: ${cpu.toFixed(2)} s over the window = ${(cpu / Number(seconds) * 100).toFixed(0)}% of one core, ${(cpu * 1e6 / Math.max(1, done)).toFixed(0)} µs per round trip`);
console.log(`RESULT tool=devices mode=${mode} workers=${workers} devices=${devices} concurrency=${conc} seconds=${seconds} round_trips=${done} rate=${rate.toFixed(0)} p50_ms=${p50.toFixed(2)} p99_ms=${p99.toFixed(2)} server_cpu_us_per_rt=${(cpu * 1e6 / Math.max(1, done)).toFixed(0)} errors=${errors}`);
if (errors) process.exitCode = 1;
EOF
db=$tmp/data/devices.db
if command -v sqlite3 >/dev/null; then
    echo "store: $(sqlite3 "$db" 'select count(*) from device_commands') commands, $(sqlite3 "$db" 'select count(*) from device_commands where status=2') done; database $(du -sh "$tmp/data" | cut -f1)"
fi

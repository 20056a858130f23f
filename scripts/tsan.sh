#!/usr/bin/env bash
# Builds pushgate with ThreadSanitizer (make SAN=thread -> build-tsan/) and runs the
# multi-worker integration tests against it; with --load, also a mixed load of its own
# (WebSocket, SSE and socket.io clients, concurrent publishers, churn, SIGTERM). Every
# TSan report lands in build-tsan/tsan-logs/; the script prints them deduplicated by their
# top frames and fails when there is one, or when a test fails.
#
#   bash scripts/tsan.sh                    # the multi-worker test files
#   bash scripts/tsan.sh --load             # the same, then the load run
#   bash scripts/tsan.sh --load-only        # only the load run
#   bash scripts/tsan.sh tests/integration/fanout.test.mjs   # chosen files
#
# TSAN_EXITCODE=0 keeps a node that reported races exiting 0, so the tests judge only
# behaviour (the races still fail the script). TSAN_LOG_DIR moves the reports.
set -uo pipefail
cd "$(dirname "$0")/.."

LOAD=0
LOAD_ONLY=0
FILES=()
for a in "$@"; do
  case "$a" in
    --load) LOAD=1 ;;
    --load-only) LOAD=1; LOAD_ONLY=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) FILES+=("$a") ;;
  esac
done
if ((${#FILES[@]} == 0)); then
  FILES=(
    tests/integration/fanout.test.mjs
    tests/integration/channels.test.mjs
    tests/integration/socketio.test.mjs
    tests/integration/push-requests.test.mjs
    tests/integration/streams.test.mjs
    tests/integration/lifecycle.test.mjs
    tests/integration/devices.test.mjs
  )
fi

if [ ! -d tests/integration/node_modules/ws ]; then
  echo "tsan: tests/integration/node_modules is missing; run scripts/setup.sh first" >&2
  exit 2
fi

echo "==== build with ThreadSanitizer (make SAN=thread)"
make -j"$(nproc)" SAN=thread || exit 1

LOG_DIR=${TSAN_LOG_DIR:-build-tsan/tsan-logs}
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
LOG_DIR=$(cd "$LOG_DIR" && pwd)
# log_path: one file per process (tsan.<pid>), so reports survive whatever the harness
# does with stderr (its sanitizer pattern looks for "ERROR: ThreadSanitizer", and a data
# race is a "WARNING: ThreadSanitizer")
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 history_size=4 exitcode=${TSAN_EXITCODE:-66} log_path=$LOG_DIR/tsan ${TSAN_OPTIONS:-}"
export PUSHGATE_BIN=build-tsan/pushgate PUSHGATE_SANITIZED=1

status=0
if ((LOAD_ONLY == 0)); then
  echo "==== integration tests under TSan: ${FILES[*]}"
  node --test --test-concurrency=1 "${FILES[@]}" || status=1
fi

if ((LOAD)); then
  echo "==== load under TSan (4 workers)"
  LOAD_JS=$(mktemp --suffix=.mjs -p tests/integration tsan-load-XXXXXX)
  trap 'rm -f "$LOAD_JS"' EXIT
  cat >"$LOAD_JS" <<'EOF'
// Mixed load against one 4-worker node: WebSocket clients (some answering pushes),
// SSE channel and stream subscribers, socket.io clients, concurrent publishers
// (push requests with awaitAcks, channel pushes, stream events), churn, then SIGTERM.
import { io } from 'socket.io-client';
import {
  startNode, baseConfig, connectClient, pushRequest, api, makeJwt, sleep, PUB_KEY, ADMIN_KEY,
} from './lib/harness.mjs';
import { sseOpen } from './lib/sse.mjs';

const N_WS = Number(process.env.LOAD_WS || 200);
const ROUNDS = Number(process.env.LOAD_ROUNDS || 8);
const ORDERS = { namespace: 'orders', name: 'placed' };
const cfg = baseConfig({
  history: { maxEvents: 64 },
  streams: { t1: { orders: { publicSubscribe: true, subscriberRoles: ['viewer'], events: [{ ...ORDERS }] } } },
});
const node = await startNode({ workers: 4, config: cfg, readyTimeoutMs: 60000 });
const log = (...a) => console.log('[load]', ...a);
const errors = [];
const tryIt = async (what, fn) => {
  try {
    const r = await fn();
    if (r && typeof r.status === 'number' && r.status >= 400) errors.push(`${what}: ${r.status} ${r.text}`);
    return r;
  } catch (e) { errors.push(`${what}: ${e.message}`); return null; }
};

const clients = [];
async function openWs(i) {
  const sessionId = i % 2 ? 's-john' : 's-mary';
  const c = await tryIt(`ws ${i}`, () => connectClient(node, { sessionId, clientId: `load.${i}` }, { timeoutMs: 30000 }));
  if (!c) return null;
  c.ws.on('message', (d) => {
    let m;
    try { m = JSON.parse(d.toString()); } catch { return; }
    // every third client answers pushes, so awaitAcks sees responses
    if (i % 3 === 0 && m && m.type === 'push' && m.channel === null) c.ws.send(JSON.stringify({ type: 'response', id: m.id, successful: true, message: 'ok' }));
  });
  c.send({ type: 'subscribe', channels: [`ch${i % 4}`, 'all'] });
  return c;
}
for (let i = 0; i < N_WS; i += 20) {
  const batch = await Promise.all(Array.from({ length: Math.min(20, N_WS - i) }, (_, k) => openWs(i + k)));
  clients.push(...batch.filter(Boolean));
}
log(`${clients.length} WebSocket clients`);

const sses = [];
for (let i = 0; i < 20; i++) {
  const s = await tryIt(`sse ${i}`, () => sseOpen(node, `/sse?channel=ch${i % 4}&channel=all`));
  if (s) sses.push(s);
}
const token = makeJwt({ sub: 'ann', roles: ['viewer'], tenant: 't1', exp: Math.floor(Date.now() / 1000) + 3600 });
for (let i = 0; i < 6; i++) {
  const s = await tryIt(`stream sse ${i}`, () => sseOpen(node, '/stream/v1/streams/orders', { headers: { authorization: `Bearer ${token}` } }));
  if (s) sses.push(s);
}
log(`${sses.length} SSE subscribers`);

const sios = [];
function openSio(i) {
  const path = i % 4 === 3 ? '/t1?stream=orders' : '/';
  const s = io(node.url + path, {
    forceNew: true,
    transports: i % 2 ? ['websocket'] : ['polling', 'websocket'],
    auth: { clientId: `sio.${i}`, token: 's-john' },
    reconnection: false,
    timeout: 30000,
  });
  s.on('push', (payload, id, ack) => { if (typeof ack === 'function') ack({ successful: true, message: 'sio ok' }); });
  s.on('connect', () => { if (path === '/') s.emit('subscribe', [`ch${i % 4}`, 'all'], () => {}); });
  s.on('connect_error', (e) => errors.push(`sio ${i}: ${e.message}`));
  return s;
}
for (let i = 0; i < 24; i++) sios.push(openSio(i));
await sleep(3000);
log(`${sios.filter((s) => s.connected).length} socket.io clients connected`);

let pushes = 0;
async function publisher(p) {
  for (let r = 0; r < ROUNDS; r++) {
    const jobs = [
      tryIt('push-request acks', () => pushRequest(node, { serviceRequest: { _type: 'x.Notify', n: r, p }, options: { awaitAcks: true, timeoutMs: 2000 } })),
      tryIt('push-request role', () => pushRequest(node, { serviceRequest: { _type: 'x.Notify', n: r }, rolePattern: '\\$user-john', options: { report: 'summary' } })),
      tryIt('push-request none', () => pushRequest(node, { serviceRequest: { _type: 'x.Notify', n: r }, clientIdPattern: 'load\\.1.*', options: { report: 'none' } })),
      tryIt('channel push', () => api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: [`ch${(r + p) % 4}`, 'all'], data: { n: r, p }, event: 'tick' } })),
      tryIt('event', () => api(node, 'POST', '/event/v1/events?tenantId=t1', { key: PUB_KEY, body: { ...ORDERS, timestamp: '2026-01-01T00:00:00Z', payload: { n: r, p } } })),
      tryIt('metrics', () => api(node, 'GET', '/metrics')),
      tryIt('connections', () => api(node, 'GET', '/api/connections', { key: ADMIN_KEY })),
      tryIt('nodes', () => api(node, 'GET', '/api/nodes', { key: ADMIN_KEY })),
      tryIt('session', () => api(node, 'POST', '/api/sessions', { key: ADMIN_KEY, body: { user: `u${p}${r}`, roles: ['viewer'], ttlSeconds: 60 } })),
      tryIt('stream config', () => api(node, 'PATCH', '/configuration/v2/configuration/platform/push-service?tenantId=t1', {
        key: ADMIN_KEY, body: { operation: 'UPDATE', update: { [`s${p}`]: { publicSubscribe: true, events: [{ ...ORDERS }] } } },
      })),
    ];
    await Promise.all(jobs);
    pushes += jobs.length;
  }
}
async function churn() {
  for (let r = 0; r < ROUNDS; r++) {
    const gone = clients.splice(0, 10);
    for (const c of gone) { try { if (r % 2) c.ws.terminate(); else c.ws.close(); } catch { /* gone */ } }
    const fresh = await Promise.all(Array.from({ length: 10 }, (_, k) => openWs(N_WS + r * 10 + k)));
    clients.push(...fresh.filter(Boolean));
    const s = sses.shift();
    if (s) s.close();
    const t = await tryIt('sse churn', () => sseOpen(node, `/sse?channel=ch${r % 4}&lastEventId=0000000000000-00000000-00000000`));
    if (t) sses.push(t);
    const old = sios.shift();
    if (old) old.disconnect();
    sios.push(openSio(100 + r));
    await sleep(100);
  }
}
await Promise.all([publisher(0), publisher(1), publisher(2), publisher(3), churn()]);
log(`${pushes} requests published`);
// SIGTERM with everyone still connected and pushes still in flight: shutdown races
const inflight = [];
for (let i = 0; i < 20; i++) {
  inflight.push(pushRequest(node, { serviceRequest: { _type: 'x.Notify', last: i }, options: { awaitAcks: i % 2 === 0, timeoutMs: 2000 } }).catch(() => null));
  inflight.push(api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: ['all'], data: { last: i }, event: 'tick' } }).catch(() => null));
}
await sleep(Number(process.env.LOAD_STOP_DELAY_MS || 30));
const info = await node.stop('SIGTERM', 60000);
await Promise.all(inflight);
for (const s of sios) s.disconnect();
for (const s of sses) s.close();
for (const c of clients) c.terminate();
log(`exit ${JSON.stringify(info)}; ${errors.length} client-side errors`);
for (const e of errors.slice(0, 10)) log('  ', e);
if (info.code !== 0 || info.signal) {
  console.log(node.logs().slice(-4000));
  process.exit(1);
}
process.exit(0);
EOF
  node "$LOAD_JS" || status=1
fi

# -------------------------------------------------------------------------------------
# every report, deduplicated by the top two frames of each of the two accesses
node - "$LOG_DIR" <<'EOF' || status=1
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const files = fs.readdirSync(dir).filter((f) => f.startsWith('tsan.')).map((f) => path.join(dir, f));
const groups = new Map();
let total = 0;
// "#3 auth_resolve src/auth/auth.c:348 (pushgate+0x1c52e)" -> "auth_resolve src/auth/auth.c:348";
// a frame without symbols -> its module; the sanitizer's own interceptors are skipped
const frame = (l) => {
  const m = /#\d+\s+(\S+)\s+(\S+)(?:\s+\((\S+?)\+0x[0-9a-f]+\))?/.exec(l);
  if (!m) return l.trim();
  if (m[2].includes('libsanitizer')) return null;
  if (m[1] === '<null>') return m[3] || '?';
  return `${m[1]} ${m[2].replace(/^.*\/(src|tests)\//, '$1/')}`;
};
for (const f of files) {
  const text = fs.readFileSync(f, 'utf8');
  const reports = text.split(/^==================$/m).filter((r) => /WARNING: ThreadSanitizer|ERROR: ThreadSanitizer/.test(r));
  for (const r of reports) {
    total++;
    const lines = r.split('\n');
    const kind = (/(WARNING|ERROR): ThreadSanitizer: ([^(\n]*)/.exec(r) || [])[2]?.trim() || '?';
    const sections = [];
    let cur = null;
    for (const l of lines) {
      if (/^\s{2}\S/.test(l) && !/^\s{2}#/.test(l)) { cur = { head: l.trim(), frames: [] }; sections.push(cur); continue; }
      if (cur && /^\s+#\d+/.test(l)) { const f = frame(l); if (f) cur.frames.push(f); }
    }
    const acc = sections.filter((s) => /^(Write|Read|Previous|Atomic|Mutex|Thread|Location|Use|Lock)/.test(s.head)).slice(0, 2);
    const key = kind + ' | ' + acc.map((s) => s.frames.slice(0, 2).join(' < ')).join(' || ');
    if (!groups.has(key)) groups.set(key, { count: 0, kind, example: r.trim(), file: f });
    groups.get(key).count++;
  }
}
console.log(`\n==== ThreadSanitizer: ${total} report(s), ${groups.size} distinct (full reports in ${dir})`);
let i = 0;
for (const [key, g] of groups) {
  i++;
  console.log(`\n---- #${i} ${g.kind} (x${g.count}, e.g. ${path.basename(g.file)})\n${key}\n${g.example}`);
}
process.exit(total ? 1 : 0);
EOF
[ $status -eq 0 ] && echo "==== tsan: no races, tests passed" || echo "==== tsan: FAILED (races above, or a test failed)"
exit $status

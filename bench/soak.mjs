// The soak driver (issue 10 item 4; bench/soak.sh starts the node, kills it and runs
// this). For --seconds it runs, against http://127.0.0.1:--port, at once:
//   - WebSocket clients on channel "soak" that answer targeted pushes (acks);
//   - slow readers: WebSocket clients on "soak-big" that stop reading, so the node cuts
//     them off as slow consumers, and come back;
//   - SSE clients (npm eventsource) and socket.io clients (socket.io-client, acking);
//   - churn: WebSocket connect / subscribe / disconnect, over and over;
//   - a publisher: channel pushes, big pushes, push requests with awaitAcks (report
//     full) and without (report summary);
//   - devices: enqueues with an Idempotency-Key, retried with the same key until
//     acknowledged (201), and device simulators that long-poll and post results.
// Every client reconnects when the node goes away (it is killed twice). At the end it
// stops publishing, lets the devices finish (bounded), and checks: every acknowledged
// device command reached done, no logical command was enqueued twice, and every push
// report adds up (delivered + failed = matched; a full report lists matched entries).
// Prints a JSON summary; exits 0 when the checks pass, 1 when not.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(resolve(root, 'tests/integration/package.json'));
const WebSocket = require('ws');
const { io } = require('socket.io-client');
const { EventSource } = require('eventsource');

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const PORT = Number(arg('port'));
const SECONDS = Number(arg('seconds', '120'));
const KEY = arg('key', 'soak-key');
const SESSION = arg('session', 's-soak');
const BASE = `http://127.0.0.1:${PORT}`;
const WS_BASE = `ws://127.0.0.1:${PORT}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

let running = true;
const s = {
  wsConnects: 0, wsPushes: 0, wsAcks: 0, slowConnects: 0, slowCutOff: 0,
  sseEvents: 0, sseErrors: 0, sioConnects: 0, sioEvents: 0, sioAcks: 0,
  churnCycles: 0, churnFailures: 0,
  channelPushes: 0, bigPushes: 0, pushRequests: 0, publishErrors: 0,
  reportsChecked: 0, reportProblems: [],
  enqueued: 0, enqueueRetries: 0, enqueueReplayed: 0, deviceResults: 0, deviceErrors: 0,
  driverErrors: [],
};

function req(method, path, body, headers = {}, timeoutMs = 10000) {
  return new Promise((res, rej) => {
    const h = { authorization: `Bearer ${KEY}`, ...headers };
    let data = null;
    if (body !== undefined) {
      data = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(data);
    }
    const r = http.request({ host: '127.0.0.1', port: PORT, method, path, headers: h, agent }, (resp) => {
      const chunks = [];
      resp.on('data', (c) => chunks.push(c));
      resp.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : null; } catch { json = undefined; }
        res({ status: resp.statusCode, headers: resp.headers, text, body: json });
      });
      resp.on('error', rej);
    });
    r.setTimeout(timeoutMs, () => r.destroy(new Error('timeout')));
    r.on('error', rej);
    if (data !== null) r.write(data);
    r.end();
  });
}

function noteError(where, e) {
  if (s.driverErrors.length < 20) s.driverErrors.push(`${where}: ${e?.message || e}`);
}

// ---- WebSocket clients (acking) and slow readers ----

function wsOnce(clientId, channel, { slow = false } = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${WS_BASE}/websocket?sessionId=${SESSION}&clientId=${clientId}`);
    let closed = false;
    const done = (code) => { if (!closed) { closed = true; resolve(code); } };
    ws.on('open', () => {
      if (slow) s.slowConnects++; else s.wsConnects++;
      ws.send(JSON.stringify({ type: 'subscribe', channels: [channel] }));
    });
    ws.on('message', (data) => {
      let m;
      try { m = JSON.parse(data.toString()); } catch { return; }
      if (m.type === 'subscribed' && slow) {
        ws._socket.pause(); // reads nothing more: the node must cut it off
        return;
      }
      if (m.type !== 'push') return;
      s.wsPushes++;
      if (m.channel === null) {
        ws.send(JSON.stringify({ type: 'response', id: m.id, successful: true, message: 'ok' }));
        s.wsAcks++;
      }
    });
    ws.on('close', (code) => { if (slow && code === 1008) s.slowCutOff++; done(code); });
    ws.on('error', () => done(0));
    const stop = setInterval(() => { if (!running) { clearInterval(stop); ws.terminate(); } }, 200);
    ws.on('close', () => clearInterval(stop));
    if (slow) setTimeout(() => ws.terminate(), 30000); // bounded, cut off or not
  });
}

async function wsLoop(clientId, channel, opts) {
  while (running) {
    await wsOnce(clientId, channel, opts);
    if (running) await sleep(200 + Math.random() * 300);
  }
}

async function churnLoop(n) {
  for (let i = 0; running; i++) {
    const ok = await new Promise((resolve) => {
      const ws = new WebSocket(`${WS_BASE}/websocket?sessionId=${SESSION}&clientId=churn-${n}-${i}`);
      const t = setTimeout(() => { ws.terminate(); resolve(false); }, 5000);
      ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', channels: [`churn-${i % 32}`] })));
      ws.on('message', () => {
        clearTimeout(t);
        if (i % 2) ws.terminate(); else ws.close();
        resolve(true);
      });
      ws.on('error', () => { clearTimeout(t); resolve(false); });
    });
    if (ok) s.churnCycles++; else { s.churnFailures++; await sleep(300); }
    await sleep(20);
  }
}

// ---- SSE and socket.io ----

function sseClient() {
  const es = new EventSource(`${BASE}/sse?channel=soak`);
  es.onmessage = () => { s.sseEvents++; };
  es.onerror = () => { s.sseErrors++; };
  return es;
}

function sioClient(i) {
  const sock = io(BASE, {
    auth: { token: SESSION, clientId: `soak-sio-${i}` },
    reconnectionDelay: 300, reconnectionDelayMax: 1000, timeout: 5000,
  });
  sock.on('connect', () => {
    s.sioConnects++;
    sock.emit('subscribe', ['soak'], () => {});
  });
  sock.on('tick', () => { s.sioEvents++; });
  sock.on('push', (...a) => {
    s.sioEvents++;
    const ack = a[a.length - 1];
    if (typeof ack === 'function') { ack({ successful: true, message: 'ok' }); s.sioAcks++; }
  });
  return sock;
}

// ---- the publisher and the report checks ----

function checkReport(r, what, full) {
  const sum = r.body?.summary;
  if (!sum) { s.reportProblems.push(`${what}: no summary: ${r.text.slice(0, 200)}`); return; }
  s.reportsChecked++;
  if (sum.delivered + sum.failed !== sum.matched)
    s.reportProblems.push(`${what} ${r.body.pushId}: delivered ${sum.delivered} + failed ${sum.failed} != matched ${sum.matched}`);
  if (full && r.body.responseMessages.length !== sum.matched)
    s.reportProblems.push(`${what} ${r.body.pushId}: ${r.body.responseMessages.length} entries for matched ${sum.matched}`);
  if (full) {
    const ok = r.body.responseMessages.filter((m) => m.successful).length;
    if (ok !== sum.delivered)
      s.reportProblems.push(`${what} ${r.body.pushId}: ${ok} successful entries, delivered ${sum.delivered}`);
  }
}

async function publisher() {
  const big = 'x'.repeat(512 * 1024);
  for (let i = 0; running; i++) {
    try {
      const r = await req('POST', '/api/push', { channel: 'soak', event: 'tick', data: { i } });
      if (r.status === 200) s.channelPushes++; else s.publishErrors++;
      if (i % 5 === 0) {
        const b = await req('POST', '/api/push', { channel: 'soak-big', event: 'big', data: big });
        if (b.status === 200) s.bigPushes++; else s.publishErrors++;
      }
      if (i % 3 === 0) {
        const acks = await req('POST', '/api/push-requests', {
          serviceRequest: { i, kind: 'targeted' }, clientIdPattern: 'soak-(ws|sio)-[0-4]',
          options: { awaitAcks: true, timeoutMs: 2000, report: 'full' },
        });
        if (acks.status === 200) { s.pushRequests++; checkReport(acks, 'awaitAcks', true); } else s.publishErrors++;
      }
      if (i % 7 === 0) {
        const all = await req('POST', '/api/push-requests', {
          serviceRequest: { i, kind: 'everyone' }, options: { report: 'summary' },
        });
        if (all.status === 200) { s.pushRequests++; checkReport(all, 'summary', false); } else s.publishErrors++;
      }
    } catch {
      s.publishErrors++;
      await sleep(200);
    }
    await sleep(100);
  }
}

// ---- devices ----

const DEVICES = 10;
const acknowledged = new Map(); // seq -> {dev, id}

async function enqueuer() {
  for (let seq = 0; running; seq++) {
    const dev = 9000 + (seq % DEVICES);
    const key = `soak-${process.pid}-${seq}`;
    // retried with the same key until acknowledged: at most one command per seq
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await req('POST', `/api/devices/${dev}/commands`, { endpoint: `/do/${seq}`, body: { seq } }, { 'idempotency-key': key }, 5000);
        if (r.status === 201) {
          acknowledged.set(seq, { dev, id: r.body.id });
          s.enqueued++;
          if (r.headers['idempotent-replayed']) s.enqueueReplayed++;
          break;
        }
        if (r.status !== 503) { noteError('enqueue', new Error(`${r.status} ${r.text}`)); break; }
      } catch { /* the node is down: retry */ }
      s.enqueueRetries++;
      await sleep(250);
      if (attempt > 400) { noteError('enqueue', new Error(`seq ${seq} never acknowledged`)); break; }
    }
    await sleep(50);
  }
}

let devicesStop = false;
async function deviceLoop(dev) {
  while (!devicesStop) {
    try {
      const p = await req('GET', `/push?deviceId=${dev}`, undefined, {}, 10000);
      if (p.status !== 200) { s.deviceErrors++; await sleep(200); continue; }
      if (!p.text) continue;
      const r = await req('POST', `/result?deviceId=${dev}`, { response: { ok: true, endpoint: p.body.endpoint } });
      if (r.status === 200) s.deviceResults++; else s.deviceErrors++;
    } catch {
      s.deviceErrors++;
      await sleep(200);
    }
  }
}

async function commandsOf(dev) {
  const r = await req('GET', `/api/devices/${dev}/commands?limit=10000`);
  if (r.status !== 200) throw new Error(`list ${dev}: ${r.status}`);
  return r.body.commands;
}

// ---- run ----

process.on('unhandledRejection', (e) => noteError('unhandled', e));
const loops = [];
for (let i = 0; i < 20; i++) loops.push(wsLoop(`soak-ws-${i}`, 'soak'));
for (let i = 0; i < 5; i++) loops.push(wsLoop(`soak-slow-${i}`, 'soak-big', { slow: true }));
for (let i = 0; i < 2; i++) loops.push(churnLoop(i));
const sse = Array.from({ length: 10 }, () => sseClient());
const sio = Array.from({ length: 10 }, (_, i) => sioClient(i));
loops.push(publisher(), enqueuer());
const devLoops = Array.from({ length: DEVICES }, (_, i) => deviceLoop(9000 + i));

const t0 = Date.now();
const progress = setInterval(() => {
  process.stderr.write(`soak: ${Math.round((Date.now() - t0) / 1000)}s ws=${s.wsPushes} sse=${s.sseEvents} sio=${s.sioEvents} churn=${s.churnCycles} pushes=${s.channelPushes}/${s.pushRequests} reports=${s.reportsChecked} enq=${s.enqueued} results=${s.deviceResults} slowCut=${s.slowCutOff}\n`);
}, 10000);
await sleep(SECONDS * 1000);
running = false;
for (const e of sse) e.close();
for (const c of sio) c.close();
await Promise.all(loops);

// the devices finish what was acknowledged (bounded)
const check = { lost: [], duplicates: [], notDone: [] };
const deadline = Date.now() + 90000;
let pending = [...acknowledged.values()];
while (Date.now() < deadline) {
  const still = [];
  for (let d = 0; d < DEVICES; d++) {
    const dev = 9000 + d;
    let cmds;
    try { cmds = await commandsOf(dev); } catch { still.push(...pending.filter((x) => x.dev === dev)); continue; }
    const byId = new Map(cmds.map((c) => [c.id, c]));
    for (const a of pending.filter((x) => x.dev === dev)) {
      const c = byId.get(a.id);
      if (!c || c.status !== 'done') still.push(a);
    }
  }
  pending = still;
  if (!pending.length) break;
  await sleep(1000);
}
devicesStop = true;
await Promise.all(devLoops);
clearInterval(progress);
for (const d of Array.from({ length: DEVICES }, (_, i) => 9000 + i)) {
  const cmds = await commandsOf(d);
  const seen = new Map();
  for (const c of cmds) {
    const seq = Number(c.endpoint.split('/').pop());
    if (seen.has(seq)) check.duplicates.push({ dev: d, seq, ids: [seen.get(seq), c.id] });
    seen.set(seq, c.id);
  }
}
for (const a of pending) {
  const cmds = await commandsOf(a.dev);
  const c = cmds.find((x) => x.id === a.id);
  (c ? check.notDone : check.lost).push({ ...a, status: c?.status });
}
const m = await req('GET', '/metrics');
const metric = (name) => {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)$`, 'gm');
  let sum = 0;
  for (const x of m.text.matchAll(re)) sum += Number(x[1]);
  return sum;
};
const summary = {
  seconds: SECONDS, ...s,
  deviceCommandsAcknowledged: acknowledged.size,
  lost: check.lost.length, notDone: check.notDone.length, duplicates: check.duplicates.length,
  lostSample: check.lost.slice(0, 5), notDoneSample: check.notDone.slice(0, 5), duplicateSample: check.duplicates.slice(0, 5),
  metricsAfterLastRestart: { queued: metric('pushgate_device_queue_depth'), inFlight: metric('pushgate_device_commands_in_flight') },
};
const ok = !check.lost.length && !check.notDone.length && !check.duplicates.length &&
  !s.reportProblems.length && s.reportsChecked > 0 && acknowledged.size > 0;
summary.pass = ok;
console.log(JSON.stringify(summary, null, 1));
agent.destroy();
process.exit(ok ? 0 : 1);

// socket.io fan-out load for bench/socketio.sh: N stock socket.io-client v4 sockets
// (WebSocket transport, one Engine.IO connection each) on a stream namespace, M events
// published over HTTP, every delivery checked. The same script, clients and messages
// run against pushgate (/<tenant>?stream=<id>, events POSTed to /event/v1/events) and
// against the npm socket.io reference server (bench/sio-ref.mjs, same URLs).
//
//   node bench/sio-load.mjs --url http://127.0.0.1:PORT --clients N --messages M
//        [--path '/bench?stream=ticks'] [--event bench:tick] [--procs P]
//        [--payload-bytes B] [--publishers K] [--key KEY] [--query '?tenantId=bench']
//        [--server-pid PID] [--gc-url URL] [--label NAME] [--connect-concurrency C]
//        [--drain-timeout-s S]
//
// The clients live in P child processes (node:child_process fork of this file); the
// parent measures the server's VmRSS (/proc/PID/status) before the clients connect and
// after they are all connected (POSTing --gc-url first, when given, so a GC'd runtime is
// measured after a GC), then publishes M events, K requests in flight, each event
// {namespace, name, timestamp, payload: {seq, t, pad}} with t the wall clock in ms
// (performance.timeOrigin + now: comparable across the processes of one machine) just
// before its request is written. Each client checks it gets seq 0..M-1 once each, in
// order, and records now - t. deliveries/s is N×M over [first publish, last delivery].
// Prints a summary on stderr and one line `RESULT tool=sio-load key=value …` on stdout;
// exits 1 when a client failed to connect or a delivery is missing, repeated or out of
// order. With --server-pid it also reports the server's CPU time (utime+stime) from the
// first publish to the last delivery, per delivery: less sensitive than deliveries/s to
// the clients and other load sharing the machine. Loopback only.

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv) {
  const o = {
    url: '', clients: 1000, messages: 100, path: '/bench?stream=ticks', event: 'bench:tick',
    procs: 2, payloadBytes: 100, publishers: 1, key: 'bench-key', query: '?tenantId=bench',
    serverPid: 0, gcUrl: '', label: 'server', connectConcurrency: 100, drainTimeoutS: 30,
    child: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    switch (a) {
      case '--url': o.url = v(); break;
      case '--clients': o.clients = Number(v()); break;
      case '--messages': o.messages = Number(v()); break;
      case '--path': o.path = v(); break;
      case '--event': o.event = v(); break;
      case '--procs': o.procs = Number(v()); break;
      case '--payload-bytes': o.payloadBytes = Number(v()); break;
      case '--publishers': o.publishers = Number(v()); break;
      case '--key': o.key = v(); break;
      case '--query': o.query = v(); break;
      case '--server-pid': o.serverPid = Number(v()); break;
      case '--gc-url': o.gcUrl = v(); break;
      case '--label': o.label = v(); break;
      case '--connect-concurrency': o.connectConcurrency = Number(v()); break;
      case '--drain-timeout-s': o.drainTimeoutS = Number(v()); break;
      case '--child': o.child = true; break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------
// child: the clients

async function child() {
  const sockets = [];
  let got; // per client: next expected seq
  let bad = { dup: 0, order: 0 };
  let lat = [];
  let lastAt = 0;
  let delivered = 0;
  const send = (m) => process.send(m);

  process.on('message', async (m) => {
    if (m.cmd === 'connect') {
      const { url, path, event, n, conc } = m;
      got = new Int32Array(n);
      let failed = 0;
      let errMsg = '';
      let next = 0;
      const one = (i) => new Promise((res) => {
        const s = io(url + path, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20000 });
        s.on(event, (ev, offset) => {
          const seq = ev?.payload?.seq;
          const t = now();
          if (seq === got[i]) {
            got[i]++;
          } else if (seq < got[i]) {
            bad.dup++;
          } else {
            bad.order++;
            got[i] = seq + 1;
          }
          if (typeof offset !== 'string') bad.order++;
          lat.push(t - ev.payload.t);
          delivered++;
          lastAt = t;
        });
        s.once('connect', () => res());
        s.once('connect_error', (e) => { failed++; errMsg = e.message; res(); });
        sockets[i] = s;
      });
      const t0 = now();
      await Promise.all(Array.from({ length: Math.min(conc, n) }, async () => {
        while (next < n) await one(next++);
      }));
      send({ cmd: 'ready', failed, errMsg, connectMs: now() - t0 });
    } else if (m.cmd === 'expect') {
      const { messages, drainMs } = m;
      let last = delivered;
      let quietSince = now();
      for (;;) {
        let done = true;
        for (let i = 0; i < got.length; i++) if (got[i] < messages) { done = false; break; }
        if (done) break;
        await sleep(20);
        if (delivered !== last) { last = delivered; quietSince = now(); }
        if (now() - quietSince > drainMs) break;
      }
      let missing = 0;
      for (let i = 0; i < got.length; i++) if (got[i] < messages) missing += messages - got[i];
      send({ cmd: 'result', delivered, missing, dup: bad.dup, order: bad.order, lastAt, lat: Array.from(lat) });
    } else if (m.cmd === 'close') {
      for (const s of sockets) s?.disconnect();
      await sleep(200);
      process.exit(0);
    }
  });
  send({ cmd: 'up' });
}

// ---------------------------------------------------------------------------------
// parent: RSS, publishing, results

function rssKb(pid) {
  if (!pid) return 0;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

// utime + stime of the process, in seconds (/proc/PID/stat fields 14 and 15)
function cpuS(pid) {
  if (!pid) return 0;
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
}

function request(agent, url, method, body, headers = {}) {
  return new Promise((res, rej) => {
    const u = new URL(url);
    if (!/^127\./.test(u.hostname) && u.hostname !== 'localhost') {
      rej(new Error(`refusing non-loopback ${u.hostname}`));
      return;
    }
    const req = http.request({ agent, host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers }, (r) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (d) => { text += d; });
      r.on('end', () => res({ status: r.statusCode, text }));
    });
    req.on('error', rej);
    if (body) req.end(body); else req.end();
  });
}

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function parent(o) {
  const u = new URL(o.url);
  if (!/^127\./.test(u.hostname)) throw new Error('loopback only');
  const self = fileURLToPath(import.meta.url);
  const procs = Math.max(1, Math.min(o.procs, o.clients));
  const kids = [];
  const waiters = new Map(); // kid -> resolve of its next message
  const nextMsg = (k) => new Promise((res) => waiters.set(k, res));
  for (let p = 0; p < procs; p++) {
    const k = fork(self, ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    k.on('message', (m) => { const w = waiters.get(k); waiters.delete(k); w?.(m); });
    kids.push(k);
  }
  await Promise.all(kids.map(async (k) => { await nextMsg(k); }));

  const gc = async () => {
    if (!o.gcUrl) return;
    await request(undefined, o.gcUrl, 'POST', '').catch(() => {});
    await sleep(200);
  };
  await gc();
  const rss0 = rssKb(o.serverPid);

  // connect
  const per = kids.map((_, i) => Math.floor(o.clients / procs) + (i < o.clients % procs ? 1 : 0));
  const tc0 = now();
  const ready = await Promise.all(kids.map((k, i) => {
    const w = nextMsg(k);
    k.send({ cmd: 'connect', url: o.url, path: o.path, event: o.event, n: per[i], conc: Math.ceil(o.connectConcurrency / procs) });
    return w;
  }));
  const connectS = (now() - tc0) / 1000;
  const failed = ready.reduce((a, r) => a + r.failed, 0);
  if (failed) console.error(`sio-load ${o.label}: ${failed} clients failed to connect (${ready.find((r) => r.failed).errMsg})`);
  await sleep(1000);
  await gc();
  const rss1 = rssKb(o.serverPid);

  // publish
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.publishers });
  const pad = 'x'.repeat(Math.max(0, o.payloadBytes - 40));
  const results = kids.map((k) => nextMsg(k));
  let seq = 0;
  let publishErrors = 0;
  const cpu0 = cpuS(o.serverPid);
  const tp0 = now();
  await Promise.all(Array.from({ length: o.publishers }, async () => {
    while (seq < o.messages) {
      const s = seq++;
      const ev = { namespace: 'bench', name: 'tick', timestamp: '2026-11-23T10:00:00Z', payload: { seq: s, t: now(), pad } };
      const r = await request(agent, `${o.url}/event/v1/events${o.query}`, 'POST', JSON.stringify(ev), {
        'content-type': 'application/json', authorization: `Bearer ${o.key}`,
      }).catch((e) => ({ status: 0, text: e.message }));
      if (r.status !== 200) {
        publishErrors++;
        if (publishErrors === 1) console.error(`sio-load ${o.label}: publish ${s} → ${r.status} ${r.text.slice(0, 200)}`);
      }
    }
  }));
  const publishS = (now() - tp0) / 1000;
  for (const k of kids) k.send({ cmd: 'expect', messages: o.messages, drainMs: o.drainTimeoutS * 1000 });
  const res = await Promise.all(results);
  const cpu1 = cpuS(o.serverPid);
  agent.destroy();
  for (const k of kids) k.send({ cmd: 'close' });

  const delivered = res.reduce((a, r) => a + r.delivered, 0);
  const missing = res.reduce((a, r) => a + r.missing, 0) + failed * o.messages;
  const dup = res.reduce((a, r) => a + r.dup, 0);
  const order = res.reduce((a, r) => a + r.order, 0);
  const lastAt = Math.max(...res.map((r) => r.lastAt));
  const lat = res.flatMap((r) => r.lat).sort((a, b) => a - b);
  const windowS = (lastAt - tp0) / 1000;
  const expected = o.clients * o.messages;
  const dps = delivered / windowS;
  const bytesPerClient = ((rss1 - rss0) * 1024) / Math.max(1, o.clients - failed);
  const out = {
    tool: 'sio-load', target: o.label, clients: o.clients, messages: o.messages, procs,
    payload_bytes: o.payloadBytes, publishers: o.publishers, connected: o.clients - failed,
    deliveries: delivered, expected, missing, duplicates: dup, out_of_order: order,
    publish_errors: publishErrors, connect_s: connectS.toFixed(2), publish_s: publishS.toFixed(3),
    window_s: windowS.toFixed(3), deliveries_per_s: Math.round(dps),
    messages_per_s: (o.messages / windowS).toFixed(1),
    p50_ms: pct(lat, 50).toFixed(1), p99_ms: pct(lat, 99).toFixed(1), max_ms: (lat[lat.length - 1] ?? NaN).toFixed(1),
    rss_before_kb: rss0, rss_after_kb: rss1, bytes_per_client: Math.round(bytesPerClient),
    server_cpu_s: (cpu1 - cpu0).toFixed(2),
    server_cpu_us_per_delivery: delivered ? (((cpu1 - cpu0) * 1e6) / delivered).toFixed(2) : 'nan',
  };
  console.error(`sio-load ${o.label}: ${o.clients} clients (${failed} failed) in ${connectS.toFixed(1)} s, ` +
    `server RSS ${rss0} → ${rss1} kB (${out.bytes_per_client} B/client); ${o.messages} messages published in ${publishS.toFixed(2)} s; ` +
    `${delivered}/${expected} deliveries in ${windowS.toFixed(2)} s = ${out.deliveries_per_s}/s, ` +
    `latency p50 ${out.p50_ms} p99 ${out.p99_ms} max ${out.max_ms} ms; server CPU ${out.server_cpu_s} s ` +
    `(${out.server_cpu_us_per_delivery} µs/delivery, until the last delivery); missing ${missing}, duplicates ${dup}, out of order ${order}`);
  console.log('RESULT ' + Object.entries(out).map(([k, v]) => `${k}=${v}`).join(' '));
  await sleep(300);
  return failed || missing || dup || order || publishErrors ? 1 : 0;
}

const opts = parseArgs(process.argv.slice(2));
if (opts.child) {
  child();
} else {
  if (!opts.url) {
    console.error('usage: node bench/sio-load.mjs --url http://127.0.0.1:PORT [--clients N] [--messages M] …');
    process.exit(2);
  }
  parent(opts).then((rc) => process.exit(rc), (e) => { console.error(`sio-load: ${e.stack || e}`); process.exit(1); });
}

// SSE fan-out over HTTP/2 against HTTP/1.1, in the same run and against the same
// pushgate: N subscribers on one channel, first as N HTTP/1.1 connections, then as N
// HTTP/2 streams (maxConcurrentStreams per connection, so N/100 connections); M pushes
// are published one after another (each waits for its answer) and the run ends when
// every subscriber has every push. Prints deliveries/s for both.
//
// usage: node bench/h2-sse.mjs [--clients N] [--pushes M] [--payload-bytes B]
//                              [--workers W] [--binary PATH]
// The readers are Node (node:http, node:http2) in one process: on a small machine they,
// not the server, are the bottleneck, so read the numbers as a comparison, not a ceiling.
import { spawn } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const opt = { clients: 1000, pushes: 200, payload: 100, workers: 2, binary: join(root, 'build/pushgate') };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, ''); const v = process.argv[i + 1];
  if (k === 'clients') opt.clients = Number(v);
  else if (k === 'pushes') opt.pushes = Number(v);
  else if (k === 'payload-bytes') opt.payload = Number(v);
  else if (k === 'workers') opt.workers = Number(v);
  else if (k === 'binary') opt.binary = v;
  else { console.error(`unknown option ${k}`); process.exit(2); }
}
const STREAMS_PER_CONN = 100;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const port = await new Promise((res) => {
  const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
});
const dir = mkdtempSync(join(tmpdir(), 'pushgate-h2bench-'));
writeFileSync(join(dir, 'config.json'), JSON.stringify({
  apiKeys: [{ key: 'pub', scopes: ['publish'] }],
  http2: { maxConcurrentStreams: STREAMS_PER_CONN },
  limits: { maxConnections: 0, maxOutputBytes: 16 << 20 },
  sse: { heartbeatMs: 600000 },
}));
const srv = spawn(opt.binary, ['serve', '--config', join(dir, 'config.json'), '--listen', `127.0.0.1:${port}`,
  '--workers', String(opt.workers), '--data-dir', join(dir, 'data')], { stdio: 'ignore' });
const kill = () => { try { srv.kill('SIGKILL'); } catch { /* gone */ } rmSync(dir, { recursive: true, force: true }); };
process.on('exit', kill);
const url = `http://127.0.0.1:${port}`;
for (let i = 0; i < 100; i++) {
  try { const r = await fetch(`${url}/readyz`); if (r.status === 200) break; } catch { /* not yet */ }
  await sleep(50);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
async function publish(data) {
  const r = await fetch(`${url}/api/push`, { method: 'POST', headers: { authorization: 'Bearer pub' }, body: JSON.stringify({ channel: 'bench', event: 'e', data }) });
  await r.arrayBuffer();
}

/** Counts `data:` lines per subscriber; resolves when everyone has `want`. */
function counter(n, want) {
  const got = new Array(n).fill(0); let done = 0; let resolveAll;
  const all = new Promise((r) => { resolveAll = r; });
  return {
    all,
    feed(i, chunk) {
      const k = chunk.split('\ndata: ').length - 1 + (chunk.startsWith('data: ') ? 1 : 0);
      if (!k) return;
      const before = got[i] >= want; got[i] += k;
      if (!before && got[i] >= want && ++done === n) resolveAll();
    },
  };
}

async function run(kind) {
  const c = counter(opt.clients, opt.pushes);
  const closers = [];
  let open = 0;
  const opened = new Promise((res) => {
    const one = () => { if (++open === opt.clients) res(); };
    if (kind === 'h1') {
      for (let i = 0; i < opt.clients; i++) {
        const req = http.get(`${url}/sse?channel=bench`, { agent: false }, (res) => {
          res.setEncoding('utf8'); res.on('data', (d) => c.feed(i, d)); one();
        });
        req.on('error', () => {});
        closers.push(() => req.destroy());
      }
    } else {
      let s = null;
      for (let i = 0; i < opt.clients; i++) {
        if (i % STREAMS_PER_CONN === 0) {
          s = http2.connect(url); s.on('error', () => {});
          const sess = s; closers.push(() => sess.destroy());
        }
        const req = s.request({ ':path': '/sse?channel=bench' });
        req.setEncoding('utf8');
        req.on('response', one);
        req.on('data', (d) => c.feed(i, d));
        req.on('error', () => {});
      }
    }
  });
  await opened;
  await sleep(300);
  const data = 'x'.repeat(opt.payload);
  const t0 = process.hrtime.bigint();
  for (let p = 0; p < opt.pushes; p++) await publish(data);
  await c.all;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const f of closers) f();
  await sleep(500);
  return { secs, rate: (opt.clients * opt.pushes) / secs };
}

const h1 = await run('h1');
const h2 = await run('h2');
console.log(`clients=${opt.clients} pushes=${opt.pushes} payload=${opt.payload}B workers=${opt.workers}`);
console.log(`transport  connections  seconds  deliveries/s`);
console.log(`http/1.1   ${String(opt.clients).padEnd(11)}  ${h1.secs.toFixed(2).padEnd(7)}  ${Math.round(h1.rate)}`);
console.log(`http/2     ${String(Math.ceil(opt.clients / STREAMS_PER_CONN)).padEnd(11)}  ${h2.secs.toFixed(2).padEnd(7)}  ${Math.round(h2.rate)}`);
console.log(`RESULT h1_deliveries_per_s=${Math.round(h1.rate)} h2_deliveries_per_s=${Math.round(h2.rate)}`);
agent.destroy();
kill();
process.exit(0);

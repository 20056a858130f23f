// Hostile clients (issue 10, item 2): a slowloris (SLOWLORIS connections sending one
// header byte per second) and a flood of half-open handshakes (connections that send a
// partial WebSocket upgrade, or nothing) run against a node on loopback for RUN_MS,
// while a well-behaved client connects, subscribes and receives pushes, each within 1 s.
// The node cuts an attacker after limits.handshakeTimeoutMs; a cut slowloris connects
// again at once, so the pressure stays on for the whole run. Afterwards every attacker
// has been answered 408 and pushgate_refused_total counts them as handshake timeouts.
//
// Bounded: counts and durations are fixed (scaled down under sanitizers), sockets are
// loopback only and all destroyed at the end. The test process holds about
// SLOWLORIS + HALF_OPEN sockets and so does the node: under a low `ulimit -n` the counts
// shrink to fit (the suite's box has 20000).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import {
  startNode, cleanup, withLogs, baseConfig, sleep, PUB_KEY, api, connectClient,
} from './lib/harness.mjs';

const SANITIZED = !!process.env.PUSHGATE_SANITIZED;
function fdLimit() {
  try { return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()) || Infinity; } catch { return Infinity; }
}
// node cannot raise its own soft limit: the counts shrink to fit it instead (each side,
// the test process and the node, holds about SLOWLORIS + HALF_OPEN sockets)
const FIT = Math.max(50, Math.floor((fdLimit() - 200) / 2));
const SLOWLORIS = Math.min(SANITIZED ? 300 : 1000, FIT);
const HALF_OPEN = Math.min(SANITIZED ? 300 : 1000, FIT);
const HANDSHAKE_MS = 3000;
const RUN_MS = 6000;

const attackers = new Set();
after(async () => {
  for (const s of attackers) s.destroy();
  await cleanup();
});

/** Opens n sockets (in batches, so the test never waits on one) and runs setup on each. */
async function openMany(port, n, setup) {
  const out = [];
  for (let i = 0; i < n; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 100); j++) {
      batch.push(new Promise((res) => {
        const s = net.connect(port, '127.0.0.1');
        attackers.add(s);
        const a = { s, got: '', closed: false, connected: false };
        s.setEncoding('latin1');
        s.on('data', (d) => { a.got += d; });
        s.on('error', () => { /* reset: seen as closed */ });
        s.on('close', () => { a.closed = true; res(a); });
        s.on('connect', () => { a.connected = true; setup(a); res(a); });
      }));
    }
    out.push(...await Promise.all(batch));
  }
  return out;
}

async function refused(node, reason) {
  const r = await api(node, 'GET', '/metrics');
  const m = new RegExp(`^pushgate_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(r.text);
  return Number(m[1]);
}

test(`slowloris (${SLOWLORIS}) and half-open handshakes (${HALF_OPEN}) do not stop service for a well-behaved client`, withLogs(async (t) => {
  if (SLOWLORIS < 1000 && !SANITIZED) t.diagnostic(`ulimit -n ${fdLimit()}: counts scaled down to ${SLOWLORIS} + ${HALF_OPEN}`);
  const node = await startNode({
    workers: 2,
    config: baseConfig({
      limits: { handshakeTimeoutMs: HANDSHAKE_MS },
      channels: { subscribe: [{ channelPattern: '.*' }] },
    }),
  });
  const before = await refused(node, 'handshake_timeout');
  const t0 = Date.now();

  // slowloris: a request line, then one header byte per second; cut, it comes back
  const slowStart = (a) => a.s.write('GET /healthz HTTP/1.1\r\n');
  const slow = await openMany(node.port, SLOWLORIS, slowStart);
  let reconnecting = 0;
  const drip = setInterval(async () => {
    const cut = [];
    for (const a of slow) if (!a.closed) a.s.write('X'); else if (!a.replaced) { a.replaced = true; cut.push(a); }
    if (cut.length && Date.now() - t0 < RUN_MS - 1000) {
      reconnecting++;
      slow.push(...await openMany(node.port, cut.length, slowStart));
      reconnecting--;
    }
  }, 1000);
  // half-open: half send a partial WebSocket upgrade, half send nothing at all
  const half = await openMany(node.port, HALF_OPEN, (a) => {
    if (attackers.size % 2) a.s.write('GET /websocket?sessionId=s-john&clientId=x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upg');
  });
  const connected = [...slow, ...half].filter((a) => a.connected).length;
  const slowAtStart = slow.length;
  assert.equal(connected, slowAtStart + HALF_OPEN, 'every attacking connection was accepted');

  // the well-behaved client, again and again while the attack runs
  const rounds = [];
  let round = 0;
  while (Date.now() - t0 < RUN_MS) {
    const c0 = Date.now();
    const c = await connectClient(node, { clientId: `good${round}` });
    c.send({ type: 'subscribe', channels: ['news'] });
    assert.equal((await c.next(1000)).type, 'subscribed');
    const connectMs = Date.now() - c0;
    const pushes = [];
    for (let i = 0; i < 3; i++) {
      const p0 = Date.now();
      const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'news', event: 'e', data: { round, i } } });
      assert.equal(r.status, 200, r.text);
      const m = await c.next(1000);
      assert.deepEqual(m.payload, { round, i });
      pushes.push(Date.now() - p0);
      await sleep(150);
    }
    await c.close();
    rounds.push({ at: Date.now() - t0, connectMs, pushMs: Math.max(...pushes) });
    round++;
  }
  clearInterval(drip);
  while (reconnecting) await sleep(50);
  for (const r of rounds) {
    assert.ok(r.connectMs < 1000, `connect+subscribe took ${r.connectMs} ms at ${r.at} ms`);
    assert.ok(r.pushMs < 1000, `a push took ${r.pushMs} ms at ${r.at} ms`);
  }
  assert.ok(rounds.length >= 4, `only ${rounds.length} rounds of the good client`);

  assert.ok(slow.length >= 2 * SLOWLORIS, `the slowloris came back after its cut: ${slow.length} connections in all`);
  // every attacker was answered 408 and closed by the handshake timeout
  const deadline = Date.now() + HANDSHAKE_MS + 2000;
  while ([...slow, ...half].some((a) => !a.closed) && Date.now() < deadline) await sleep(100);
  const open = [...slow, ...half].filter((a) => !a.closed).length;
  assert.equal(open, 0, `${open} attacking connections still open after ${Date.now() - t0} ms`);
  const answered408 = [...slow, ...half].filter((a) => /^HTTP\/1\.1 408 /.test(a.got)).length;
  const attacks = slow.length + half.length;
  assert.equal(answered408, attacks);
  const counted = (await refused(node, 'handshake_timeout')) - before;
  assert.equal(counted, attacks, `handshake_timeout counted ${counted} of ${attacks}`);
  t.diagnostic(`${rounds.length} good rounds, worst connect ${Math.max(...rounds.map((r) => r.connectMs))} ms, `
    + `worst push ${Math.max(...rounds.map((r) => r.pushMs))} ms; ${attacks} attacking connections, ${counted} handshake timeouts`);
}));

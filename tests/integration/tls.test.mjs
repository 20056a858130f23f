// TLS on the listener (issue 9 part 1), with certificates made at test time (a CA and
// server certificates it signs): `ws` with a CA file (rejectUnauthorized) receiving a
// push request, `eventsource` over https receiving a channel push, socket.io-client
// over https (polling, then the WebSocket upgrade; 4 workers, so polling requests move
// between workers with their TLS session), Engine.IO polls on fresh connections, a
// device long poll over https, TLS 1.2 and 1.3 and ALPN, SIGHUP reloading a second
// certificate while a client stays connected, a broken pair on SIGHUP keeping the old
// one, a wrong key / missing file at start (exit 1), a plain-HTTP client and garbage on
// the TLS port (closed, the node still serves), a silent client closed by the read
// timeout, and a large response through the record layer.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { Duplex } from 'node:stream';
import { io } from 'socket.io-client';
import {
  startNode, cleanup, withLogs, api, baseConfig, connectClient, pushRequest, pushFrame,
  sleep, runCli, PUB_KEY, SLOW, BIN,
} from './lib/harness.mjs';
import { openEventSource, closeAllSse, until } from './lib/sse.mjs';
import { makeCa, makeServerCert, httpsFetch, tlsConnect } from './lib/tls.mjs';

const dir = mkdtempSync(join(tmpdir(), 'pushgate-tls-'));
const ca = makeCa(dir);
const certA = makeServerCert(dir, ca, 'server-a');
const certB = makeServerCert(dir, ca, 'server-b');
const other = makeServerCert(dir, ca, 'other'); // its key matches neither A nor B
const fetchers = [];
const sockets = new Set();

function tlsOpts(opts) {
  const f = httpsFetch(ca.cert, opts);
  fetchers.push(f);
  return { fetch: f };
}

after(async () => {
  for (const s of sockets) {
    try { s.disconnect(); s.io.engine?.close(); } catch { /* ignore */ }
  }
  await sleep(200 * SLOW);
  closeAllSse();
  for (const f of fetchers) f.agent.destroy();
  await cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const NOTIFY = { _type: 'com.braintribe.model.notification.Notify', message: 'over tls' };
const RULES = { subscribe: [{ channelPattern: 'public\\..*' }] };

function tlsConfig(extra = {}, cert = certA) {
  return baseConfig({ tls: { cert: cert.certPath, key: cert.keyPath }, channels: RULES, ...extra });
}

/** A socket.io-client socket trusting the test CA. */
function sio(node, path, opts = {}) {
  const s = io(node.url + path, {
    forceNew: true, reconnection: false, timeout: 5000 * SLOW, ca: ca.cert, rejectUnauthorized: true, ...opts,
  });
  sockets.add(s);
  return s;
}

function connected(s, ms = 5000 * SLOW) {
  return new Promise((res, rej) => {
    if (s.connected) { res(s); return; }
    const t = setTimeout(() => rej(new Error(`no connect within ${ms} ms`)), ms);
    s.once('connect', () => { clearTimeout(t); res(s); });
    s.once('connect_error', (e) => { clearTimeout(t); rej(new Error(`connect_error: ${e.message} ${e.description?.message ?? ''}`)); });
  });
}

/** Resolves when the raw socket is closed by the server (true) or ms pass (false). */
function closedBy(sock, ms) {
  return new Promise((res) => {
    const t = setTimeout(() => res(false), ms);
    sock.on('close', () => { clearTimeout(t); res(true); });
    sock.on('error', () => {});
  });
}

// =================================================================================

describe('a TLS node (2 workers): every protocol over TLS', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: tlsConfig(), tls: tlsOpts() }); });

  test('ws with the CA (rejectUnauthorized) receives a push request; its report says delivered', withLogs(async () => {
    const c = await connectClient(node, { clientId: 'tls.ws' }, { wsOptions: { ca: ca.cert, rejectUnauthorized: true } });
    const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tls\\.ws' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.responseMessages.length, 1);
    assert.equal(r.body.responseMessages[0].successful, true);
    assert.deepEqual(await c.next(3000 * SLOW), pushFrame(r.body.pushId, NOTIFY));
    await c.close();
  }));

  test('a ws client that does not trust the CA fails the handshake; plain ws:// gets nothing', withLogs(async () => {
    await assert.rejects(connectClient(node, { clientId: 'tls.untrusted' }, { wsOptions: { rejectUnauthorized: true } }),
      /self[- ]signed|unable to (get|verify)/i);
    const plain = { ...node, wsUrl: `ws://127.0.0.1:${node.port}` };
    await assert.rejects(connectClient(plain, { clientId: 'tls.plain' }, { timeoutMs: 3000 }));
    assert.equal((await api(node, 'GET', '/healthz')).status, 200);
  }));

  test('eventsource over https receives a channel push', withLogs(async () => {
    const es = openEventSource(`${node.url}/sse?channel=public.es`, { fetchImpl: node.fetch });
    await es.opened;
    const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'public.es', data: { n: 1 }, event: 'tls-ev' } });
    assert.equal(r.status, 200, r.text);
    const id = r.headers.get('x-push-id');
    const m = await es.next(3000 * SLOW);
    assert.equal(m.lastEventId, id);
    assert.deepEqual(JSON.parse(m.data), { id, channel: 'public.es', event: 'tls-ev', data: { n: 1 } });
    es.close();
  }));

  test('a device long poll over https is answered by an enqueue on another connection', withLogs(async () => {
    const n2 = await startNode({ workers: 2, config: tlsConfig({ device: { holdMs: 20000 } }), tls: tlsOpts() });
    const t0 = Date.now();
    const poll = api(n2, 'GET', '/push?deviceId=4242');
    await sleep(300);
    const e = await api(n2, 'POST', '/api/devices/4242/commands', { key: PUB_KEY, body: { endpoint: 'tls_wake' } });
    assert.equal(e.status, 201, e.text);
    const p = await poll;
    assert.equal(p.status, 200, p.text);
    assert.equal(p.body.endpoint, 'tls_wake');
    assert.ok(Date.now() - t0 < 5000 * SLOW);
    const info = await n2.stop('SIGTERM');
    assert.deepEqual(info, { code: 0, signal: null });
  }));

  test('pipelined requests in separate records behind a held long poll are answered in order', withLogs(async () => {
    const n2 = await startNode({ workers: 1, config: tlsConfig({ device: { holdMs: 20000 } }), tls: tlsOpts() });
    // the client's records go through a gate, so three records leave in one TCP write
    const raw = net.connect(n2.port, '127.0.0.1');
    let held = null;
    const gate = new Duplex({
      read() {},
      write(chunk, enc, cb) { if (held) held.push(chunk); else raw.write(chunk); cb(); },
      final(cb) { raw.end(); cb(); },
      destroy(err, cb) { raw.destroy(); cb(err); },
    });
    raw.on('data', (c) => gate.push(c));
    raw.on('end', () => gate.push(null));
    raw.on('error', (e) => gate.destroy(e));
    const socket = tls.connect({ socket: gate, ca: ca.cert, servername: 'localhost' });
    await new Promise((res, rej) => { socket.once('secureConnect', res); socket.once('error', rej); });
    let got = '';
    socket.on('data', (d) => { got += d.toString('latin1'); });
    socket.on('error', () => {});
    await sleep(100); // the session ticket, so nothing else is in flight
    held = [];
    for (const path of ['/push?deviceId=77', '/healthz', '/readyz']) {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await sleep(20); // one record each
    }
    assert.equal(held.length, 3, 'three records');
    const all = Buffer.concat(held);
    held = null;
    raw.write(all);
    // the server reads them at once, holds the first request (reading pauses) and must
    // keep the other two records, still encrypted, for later
    await sleep(300);
    assert.equal(got, '', 'the long poll is held, nothing answered yet');
    const e = await api(n2, 'POST', '/api/devices/77/commands', { key: PUB_KEY, body: { endpoint: 'pipelined' } });
    assert.equal(e.status, 201, e.text);
    await until(() => (got.match(/HTTP\/1\.1 /g) || []).length >= 3, 3000 * SLOW);
    const parts = got.split(/(?=HTTP\/1\.1 )/);
    assert.match(parts[0], /^HTTP\/1\.1 200[\s\S]*"endpoint":"pipelined"/);
    assert.match(parts[1], /^HTTP\/1\.1 200[\s\S]*\{"status":"ok"\}/);
    assert.match(parts[2], /^HTTP\/1\.1 200[\s\S]*\{"status":"ready"\}/);
    socket.destroy();
    assert.deepEqual(await n2.stop('SIGTERM'), { code: 0, signal: null });
  }));

  test('pushgate push / push-request over https (trust from SSL_CERT_FILE); an untrusted server is refused', withLogs(async () => {
    const cli = (args, env) => new Promise((res) => {
      execFile(BIN, args, { env: { ...process.env, ...env }, timeout: 15000 }, (err, stdout, stderr) => res({ code: err ? err.code : 0, stdout, stderr }));
    });
    const es = openEventSource(`${node.url}/sse?channel=public.cli`, { fetchImpl: node.fetch });
    await es.opened;
    let r = await cli(['push', '--url', node.url, '--key', PUB_KEY, '--channel', 'public.cli', '--event', 'cli-ev', '--data', '{"x":1}'], { SSL_CERT_FILE: ca.certPath });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '{"channel":["public.cli"],"data":{"x":1},"event":"cli-ev"}');
    assert.deepEqual(JSON.parse((await es.next(3000 * SLOW)).data).data, { x: 1 });
    const c = await connectClient(node, { clientId: 'tls.cli' }, { wsOptions: { ca: ca.cert } });
    r = await cli(['push-request', '--url', `https://localhost:${node.port}`, '--key', PUB_KEY, '--client-id-pattern', 'tls\\.cli', '--payload', '{"a":2}'], { SSL_CERT_FILE: ca.certPath });
    assert.equal(r.code, 0, r.stderr);
    const pushId = JSON.parse(r.stdout).pushId;
    assert.deepEqual(await c.next(3000 * SLOW), pushFrame(pushId, { a: 2 }));
    r = await cli(['push', '--url', node.url, '--key', PUB_KEY, '--channel', 'public.cli', '--event', 'e', '--data', '1'], { SSL_CERT_FILE: join(dir, 'nope.pem') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /TLS handshake with 127\.0\.0\.1 failed/);
    es.close();
    await c.close();
  }));

  test('a paused wss client is cut off as "slow consumer" (limits.maxOutputBytes); a reading one gets every push', withLogs(async () => {
    const n2 = await startNode({ workers: 2, config: tlsConfig({ limits: { maxOutputBytes: 65536 } }), tls: tlsOpts() });
    const slow = await connectClient(n2, { clientId: 'tls.slow' }, { wsOptions: { ca: ca.cert } });
    const fast = await connectClient(n2, { sessionId: 's-mary', clientId: 'tls.fast' }, { wsOptions: { ca: ca.cert } });
    slow.ws._socket.pause();
    const blob = 'x'.repeat(16 * 1024);
    let cutAt = -1;
    for (let i = 0; i < 1000 && cutAt < 0; i++) {
      const r = await pushRequest(n2, { serviceRequest: { i, blob }, clientIdPattern: 'tls\\..*' });
      assert.equal(r.status, 200, r.text);
      const byId = Object.fromEntries(r.body.responseMessages.map((m) => [m.clientId, m]));
      assert.equal(byId['tls.fast'].successful, true, `push ${i}`);
      if (byId['tls.slow'].successful === false) {
        assert.equal(byId['tls.slow'].message, 'slow consumer');
        cutAt = i;
      }
      assert.deepEqual(await fast.next(5000 * SLOW), pushFrame(r.body.pushId, { i, blob }));
    }
    assert.ok(cutAt >= 3, `cut off after ${cutAt + 1} pushes of 16 KiB (limit 64 KiB)`);
    slow.ws._socket.resume();
    await fast.close();
    assert.deepEqual(await n2.stop('SIGTERM'), { code: 0, signal: null });
  }));

  test('TLS 1.2 and 1.3 both handshake; ALPN prefers h2, serves http/1.1 to those that ask for it', withLogs(async () => {
    const t12 = await tlsConnect(node.port, { ca: ca.cert, maxVersion: 'TLSv1.2' });
    assert.equal(t12.protocol, 'TLSv1.2');
    t12.socket.destroy();
    const t13 = await tlsConnect(node.port, { ca: ca.cert, ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(t13.protocol, 'TLSv1.3');
    assert.equal(t13.alpn, 'h2');
    assert.equal(t13.fingerprint256, certA.fingerprint256);
    t13.socket.destroy();
    const h1 = await tlsConnect(node.port, { ca: ca.cert, ALPNProtocols: ['http/1.1'] });
    assert.equal(h1.alpn, 'http/1.1');
    h1.socket.destroy();
    await assert.rejects(tlsConnect(node.port, { ca: ca.cert, ALPNProtocols: ['spdy/3'] }), /no.application.protocol|alert/i);
  }));

  test('ALPN h2: the API and SSE streams over HTTP/2 on TLS (Node http2 client)', withLogs(async () => {
    const session = http2.connect(node.url, { ca: ca.cert });
    try {
      await new Promise((res, rej) => { session.once('connect', res); session.once('error', rej); });
      assert.equal(session.alpnProtocol, 'h2');
      // two SSE subscriptions on the one connection
      const streams = [0, 1].map(() => session.request({ ':path': '/sse?channel=public.h2tls', accept: 'text/event-stream' }));
      const got = streams.map(() => '');
      await Promise.all(streams.map((st, i) => new Promise((res, rej) => {
        st.setEncoding('utf8');
        st.on('response', (h) => { if (h[':status'] !== 200) rej(new Error(`status ${h[':status']}`)); });
        st.on('data', (d) => { got[i] += d; if (got[i].includes('retry:')) res(); });
        st.on('error', rej);
      })));
      // a channel push over the same connection
      const push = session.request({
        ':method': 'POST', ':path': '/api/push', authorization: `Bearer ${PUB_KEY}`, 'content-type': 'application/json',
      });
      let body = '';
      let status = 0;
      push.setEncoding('utf8');
      push.on('response', (h) => { status = h[':status']; });
      push.on('data', (d) => { body += d; });
      push.end(JSON.stringify({ channel: 'public.h2tls', event: 'e', data: { over: 'h2+tls' } }));
      await new Promise((res) => push.on('end', res));
      assert.equal(status, 200, body);
      await until(() => got.every((g) => g.includes('"over":"h2+tls"')), 3000 * SLOW);
      for (const st of streams) st.close();
    } finally {
      session.close();
    }
  }));

  test('with http2.enabled false, ALPN offers http/1.1 only', withLogs(async () => {
    const n2 = await startNode({ workers: 1, config: tlsConfig({ http2: { enabled: false } }), tls: tlsOpts() });
    const t = await tlsConnect(n2.port, { ca: ca.cert, ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(t.alpn, 'http/1.1');
    t.socket.destroy();
    await assert.rejects(tlsConnect(n2.port, { ca: ca.cert, ALPNProtocols: ['h2'] }), /no.application.protocol|alert/i);
    await n2.stop('SIGTERM');
  }));

  test('a 1 MiB response and a 256 KiB request body cross the record layer intact', withLogs(async () => {
    const data = 'x'.repeat(200000);
    // delivered before the subscriber below opens, so that it is not the push it gets
    const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'public.big', data, event: 'big' }, headers: { 'x-push-wait': 'delivered' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.data.length, data.length);
    const es = openEventSource(`${node.url}/sse?channel=public.big`, { fetchImpl: node.fetch });
    await es.opened;
    const big = 'y'.repeat(1 << 20);
    const p = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'public.big', data: big.slice(0, 900000), event: 'big' } });
    assert.equal(p.status, 200, p.text);
    const m = await es.next(5000 * SLOW);
    assert.equal(JSON.parse(m.data).data.length, 900000);
    es.close();
  }));

  test('plain HTTP and garbage on the TLS port are closed; the node goes on serving', withLogs(async () => {
    for (const bytes of ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3]), '\x00'.repeat(4096)]) {
      const sock = net.connect(node.port, '127.0.0.1');
      await new Promise((res) => sock.once('connect', res));
      let got = Buffer.alloc(0);
      sock.on('data', (d) => { got = Buffer.concat([got, d]); });
      const closed = closedBy(sock, 3000 * SLOW);
      sock.write(bytes);
      assert.equal(await closed, true, `closed after ${JSON.stringify(String(bytes).slice(0, 20))}`);
      assert.ok(!got.toString('latin1').includes('HTTP/1.1 200'), 'no plaintext answer');
    }
    assert.equal((await api(node, 'GET', '/healthz')).status, 200);
  }));
});

// =================================================================================

describe('socket.io over https (4 workers)', () => {
  let node;
  before(async () => { node = await startNode({ workers: 4, config: tlsConfig(), tls: tlsOpts() }); });

  test('polling upgraded to websocket receives a channel push before and after the upgrade', withLogs(async () => {
    const s = sio(node, '/', { transports: ['polling', 'websocket'] });
    const upgraded = new Promise((res) => s.io.on('open', () => s.io.engine.once('upgrade', (t) => res(t.name))));
    await connected(s);
    assert.deepEqual(await s.timeout(3000 * SLOW).emitWithAck('subscribe', ['public.sio']), { channels: ['public.sio'] });
    const got = [];
    s.on('sio-ev', (...a) => got.push(a));
    const p1 = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'public.sio', data: 1, event: 'sio-ev' } });
    assert.equal(p1.status, 200, p1.text);
    assert.equal(await Promise.race([upgraded, sleep(5000 * SLOW).then(() => 'no upgrade')]), 'websocket');
    const p2 = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'public.sio', data: 2, event: 'sio-ev' } });
    await until(() => got.length >= 2, 3000 * SLOW);
    assert.deepEqual(got, [[1, p1.headers.get('x-push-id')], [2, p2.headers.get('x-push-id')]]);
    s.disconnect();
  }));

  test('polling only, several clients: pushes arrive while polls move between workers', withLogs(async () => {
    const clients = [];
    for (let i = 0; i < 6; i++) {
      const s = sio(node, '/', { transports: ['polling'], upgrade: false });
      const got = [];
      s.on('poll-ev', (...a) => got.push(a));
      clients.push({ s, got });
    }
    await Promise.all(clients.map((c) => connected(c.s)));
    for (const c of clients) assert.deepEqual(await c.s.timeout(3000 * SLOW).emitWithAck('subscribe', ['public.poll']), { channels: ['public.poll'] });
    for (let k = 0; k < 3; k++) {
      const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'public.poll', data: k, event: 'poll-ev' } });
      assert.equal(r.status, 200, r.text);
    }
    for (const c of clients) await until(() => c.got.length >= 3, 5000 * SLOW);
    for (const c of clients) assert.deepEqual(c.got.map((a) => a[0]), [0, 1, 2]);
    for (const c of clients) c.s.disconnect();
  }));

  test('Engine.IO polls on fresh TLS connections reach the owning worker (migration with the session)', withLogs(async () => {
    // no keep-alive: every request is a new TCP + TLS connection on a random worker
    const f = (u, init = {}) => node.fetch(u, { ...init, headers: { ...(init.headers || {}), connection: 'close' } });
    const base = `${node.url}/socket.io/?EIO=4&transport=polling`;
    const open = await f(base);
    assert.equal(open.status, 200);
    const sid = JSON.parse((await open.text()).slice(1)).sid;
    const post = await f(`${base}&sid=${sid}`, { method: 'POST', body: '40', headers: { 'content-type': 'text/plain' } });
    assert.equal(post.status, 200, await post.text());
    const first = await f(`${base}&sid=${sid}`);
    assert.equal(first.status, 200);
    assert.match(await first.text(), /^40\{"sid":/);
    // 12 round trips: with 4 workers, most land on a worker that does not own the session
    for (let i = 0; i < 12; i++) {
      const p = await f(`${base}&sid=${sid}`, { method: 'POST', body: '3', headers: { 'content-type': 'text/plain' } });
      assert.equal(p.status, 200, `POST ${i}`);
      assert.equal(await p.text(), 'ok');
    }
    const close = await f(`${base}&sid=${sid}`, { method: 'POST', body: '1', headers: { 'content-type': 'text/plain' } });
    assert.equal(close.status, 200);
    await close.text();
  }));
});

// =================================================================================

describe('certificate reload (SIGHUP)', () => {
  test('a second certificate: new connections see it, an open client keeps receiving pushes', withLogs(async () => {
    // the node reads the pair from fixed paths; the test swaps the files, then SIGHUP
    const live = { certPath: join(dir, 'live.pem'), keyPath: join(dir, 'live.key') };
    copyFileSync(certA.certPath, live.certPath);
    copyFileSync(certA.keyPath, live.keyPath);
    const node = await startNode({ workers: 2, config: baseConfig(), extraArgs: ['--tls-cert', live.certPath, '--tls-key', live.keyPath], tls: tlsOpts() });
    assert.equal((await tlsConnect(node.port, { ca: ca.cert })).fingerprint256, certA.fingerprint256);
    const c = await connectClient(node, { clientId: 'tls.reload' }, { wsOptions: { ca: ca.cert } });
    copyFileSync(certB.certPath, live.certPath);
    copyFileSync(certB.keyPath, live.keyPath);
    node.proc.kill('SIGHUP');
    await until(() => node.logs().includes('TLS certificate reloaded'), 3000 * SLOW);
    for (let i = 0; i < 4; i++) {
      const t = await tlsConnect(node.port, { ca: ca.cert });
      assert.equal(t.fingerprint256, certB.fingerprint256, `new connection ${i}`);
      t.socket.destroy();
    }
    const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tls\\.reload' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(await c.next(3000 * SLOW), pushFrame(r.body.pushId, NOTIFY));
    // a broken pair (B's certificate with another key; then a missing file) is refused
    copyFileSync(other.keyPath, live.keyPath);
    node.proc.kill('SIGHUP');
    await until(() => /TLS reload refused.*does not match/.test(node.logs()), 3000 * SLOW);
    rmSync(live.certPath);
    node.proc.kill('SIGHUP');
    await until(() => /TLS reload refused.*cannot open the TLS certificate/.test(node.logs()), 3000 * SLOW);
    const t = await tlsConnect(node.port, { ca: ca.cert });
    assert.equal(t.fingerprint256, certB.fingerprint256, 'the previous pair stays');
    t.socket.destroy();
    const r2 = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tls\\.reload' });
    assert.deepEqual(await c.next(3000 * SLOW), pushFrame(r2.body.pushId, NOTIFY));
    await c.close();
    assert.deepEqual(await node.stop('SIGTERM'), { code: 0, signal: null });
  }));
});

// =================================================================================

describe('start-up errors and timeouts', () => {
  const serve = (extra) => runCli(['serve', '--listen', '127.0.0.1:0', '--workers', '1', '--data-dir', join(dir, 'data-err'), ...extra]);

  test('a key that does not match the certificate: exit 1 with a clear message', withLogs(async () => {
    const r = await serve(['--tls-cert', certA.certPath, '--tls-key', other.keyPath]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot load the TLS certificate.*private key .*other\.key does not match the certificate .*server-a\.pem/);
  }));

  test('a missing file, a key that is not a key, a half pair, a bad minVersion', withLogs(async () => {
    let r = await serve(['--tls-cert', join(dir, 'nope.pem'), '--tls-key', certA.keyPath]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot open the TLS certificate .*nope\.pem: No such file/);
    const junk = join(dir, 'junk.key');
    writeFileSync(junk, 'not a key\n');
    r = await serve(['--tls-cert', certA.certPath, '--tls-key', junk]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /junk\.key is not an unencrypted PEM private key/);
    r = await serve(['--tls-cert', certA.keyPath, '--tls-key', certA.keyPath]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /server-a\.key is not a PEM certificate/);
    r = await serve(['--tls-cert', certA.certPath]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /TLS needs both a certificate and a key/);
    const cfg = join(dir, 'bad-tls.json');
    writeFileSync(cfg, JSON.stringify({ tls: { cert: certA.certPath, key: certA.keyPath, minVersion: '1.1' } }));
    r = await serve(['--config', cfg]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /tls.minVersion must be "1.2" or "1.3"/);
  }));

  test('minVersion 1.3 refuses TLS 1.2; a silent client is closed by limits.readTimeoutMs', withLogs(async () => {
    const node = await startNode({
      config: baseConfig({ tls: { cert: certA.certPath, key: certA.keyPath, minVersion: '1.3' }, limits: { readTimeoutMs: 500 } }),
      tls: tlsOpts({ keepAlive: false }), // idle connections close after 500 ms
    });
    await assert.rejects(tlsConnect(node.port, { ca: ca.cert, maxVersion: 'TLSv1.2' }), /protocol version|alert/i);
    assert.equal((await tlsConnect(node.port, { ca: ca.cert })).protocol, 'TLSv1.3');
    // connected, half a ClientHello, then nothing: the handshake is bounded by the read timeout
    const sock = net.connect(node.port, '127.0.0.1');
    await new Promise((res) => sock.once('connect', res));
    const closed = closedBy(sock, 3000 * SLOW);
    sock.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const t0 = Date.now();
    assert.equal(await closed, true);
    assert.ok(Date.now() - t0 >= 300, `closed after ${Date.now() - t0} ms`);
    assert.equal((await api(node, 'GET', '/healthz')).status, 200);
  }));
});

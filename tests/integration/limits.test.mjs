// Limits (issue 10, item 1): each limit is refused with the protocol's own error and
// counted in /metrics as pushgate_refused_total{reason="..."}. Every test checks both
// the answer the client sees and the counter's delta.
//
// /metrics is read over a raw socket with `Connection: close` (refusedCounts), so the
// test process keeps no idle keep-alive connection of its own that a limit would count.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import { io } from 'socket.io-client';
import {
  startNode, cleanup, withLogs, baseConfig, sleep, SLOW, PUB_KEY, rawHttp, closedWithin,
  connectClient, tryConnect, parseHttpResponses, encodeFrame, decodeFrames, OP,
} from './lib/harness.mjs';
import { sseOpen, closeAllSse } from './lib/sse.mjs';

const sockets = new Set();
after(async () => {
  for (const s of sockets) { try { s.disconnect(); s.io.engine?.close(); } catch { /* ignore */ } }
  closeAllSse();
  await cleanup();
});

/** One HTTP request over a fresh socket (optionally from another loopback address). */
function rawRequest(node, text, { localAddress, timeoutMs = 5000 * SLOW } = {}) {
  return new Promise((res, rej) => {
    const sock = net.connect({ host: '127.0.0.1', port: node.port, localAddress });
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { sock.destroy(); rej(new Error(`no answer within ${timeoutMs} ms: ${buf.toString('latin1').slice(0, 200)}`)); }, timeoutMs);
    const finish = () => {
      clearTimeout(t);
      try {
        const { responses } = parseHttpResponses(buf);
        if (!responses.length) throw new Error(`no response: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
        res(responses[0]);
      } catch (e) { rej(e); }
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    sock.on('error', () => { /* reported through close */ });
    sock.on('close', finish);
    sock.on('connect', () => sock.write(text));
  });
}

const GET = (path, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`;

/** {reason: count} from /metrics. */
async function refusedCounts(node, opts) {
  const r = await rawRequest(node, GET('/metrics'), opts);
  assert.equal(r.status, 200);
  const out = {};
  for (const m of r.text.matchAll(/^pushgate_refused_total\{reason="([a-z_]+)"\} (\d+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** Runs fn and returns how each refusal counter moved. */
async function delta(node, fn, opts) {
  const a = await refusedCounts(node, opts);
  await fn();
  const b = await refusedCounts(node, opts);
  const d = {};
  for (const k of Object.keys(b)) if (b[k] !== (a[k] || 0)) d[k] = b[k] - (a[k] || 0);
  return d;
}

/** Waits until the counters reach want (a subset) or times out; returns the last delta. */
async function deltaEventually(node, before, want, ms = 4000 * SLOW) {
  const deadline = Date.now() + ms;
  let d = {};
  for (;;) {
    const b = await refusedCounts(node);
    d = {};
    for (const k of Object.keys(b)) if (b[k] !== (before[k] || 0)) d[k] = b[k] - (before[k] || 0);
    if (Object.entries(want).every(([k, v]) => d[k] === v) || Date.now() > deadline) return d;
    await sleep(100);
  }
}

function connectRaw(node, localAddress) {
  return new Promise((res, rej) => {
    const s = net.connect({ host: '127.0.0.1', port: node.port, localAddress });
    s.on('connect', () => res(s));
    s.on('error', rej);
  });
}

/** Reads one HTTP response from a socket already connected (null if it closes bare). */
function readResponse(sock, ms = 3000 * SLOW) {
  return new Promise((res) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => res(null), ms);
    const check = () => {
      const { responses } = parseHttpResponses(buf);
      if (responses.length) { clearTimeout(t); res(responses[0]); }
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); check(); });
    sock.on('close', () => { clearTimeout(t); const { responses } = parseHttpResponses(buf); res(responses[0] || null); });
  });
}

test('the metric lists every reason, at zero on a fresh node', withLogs(async () => {
  const node = await startNode({ workers: 1 });
  const r = await rawRequest(node, GET('/metrics'));
  assert.match(r.text, /# TYPE pushgate_refused_total counter/);
  const reasons = [...r.text.matchAll(/^pushgate_refused_total\{reason="([a-z_]+)"\} (\d+)$/gm)].map((m) => m[1]);
  assert.deepEqual(reasons, ['max_connections', 'max_connections_per_ip', 'handshake_timeout', 'request_timeout',
    'idle_timeout', 'header_count', 'header_size', 'body_size', 'message_size', 'message_rate', 'subscriptions', 'origin']);
}));

describe('connections per node and per client address', () => {
  test('limits.maxConnections: the connection past it gets 503 JSON and is closed', withLogs(async () => {
    const node = await startNode({ workers: 2, config: baseConfig({ limits: { maxConnections: 4, idleTimeoutMs: 200 } }) });
    await sleep(600); // the harness's readiness connection is idle-closed by now (usually)
    const before = await refusedCounts(node);
    // five at once: two workers accept in their own order, so which one is refused varies
    const socks = [];
    for (let i = 0; i < 5; i++) {
      const s = await connectRaw(node);
      socks.push({ s, answer: readResponse(s, 1000 * SLOW) });
    }
    const answers = await Promise.all(socks.map((x) => x.answer));
    const refusedAnswers = answers.filter(Boolean);
    // a connection the test does not own (the readiness probe's) may still count
    assert.ok(refusedAnswers.length >= 1 && refusedAnswers.length <= 2, `${refusedAnswers.length} refused of 5`);
    for (const r of refusedAnswers) {
      assert.equal(r.status, 503);
      assert.deepEqual(r.body, { error: 'too many connections' });
    }
    for (const x of socks) x.s.destroy();
    await sleep(300);
    const d = await deltaEventually(node, before, { max_connections: refusedAnswers.length });
    assert.equal(d.max_connections, refusedAnswers.length, JSON.stringify(d));
    // capacity comes back once the held connections are gone
    const ok = await rawRequest(node, GET('/healthz'));
    assert.equal(ok.status, 200);
  }));

  test('limits.maxConnectionsPerIp: one address is refused, another is served', withLogs(async () => {
    const node = await startNode({ workers: 2, config: baseConfig({ limits: { maxConnectionsPerIp: 3, idleTimeoutMs: 200 } }) });
    await sleep(600);
    const before = await refusedCounts(node, { localAddress: '127.0.0.2' });
    const socks = [];
    for (let i = 0; i < 4; i++) {
      const s = await connectRaw(node, '127.0.0.1');
      socks.push({ s, answer: readResponse(s, 1000 * SLOW) });
    }
    const refusedAnswers = (await Promise.all(socks.map((x) => x.answer))).filter(Boolean);
    // one, or two when the readiness probe's connection (also 127.0.0.1) still counts
    assert.ok(refusedAnswers.length >= 1 && refusedAnswers.length <= 2, `${refusedAnswers.length} of four connections from 127.0.0.1 refused`);
    for (const r of refusedAnswers) {
      assert.equal(r.status, 503);
      assert.deepEqual(r.body, { error: 'too many connections from this address' });
    }
    const held = socks.map((x) => x.s);
    const extra = held.pop();
    // another client address is not affected
    const other = await rawRequest(node, GET('/healthz'), { localAddress: '127.0.0.2' });
    assert.equal(other.status, 200);
    const after1 = await refusedCounts(node, { localAddress: '127.0.0.2' });
    assert.equal(after1.max_connections_per_ip - (before.max_connections_per_ip || 0), refusedAnswers.length);
    for (const s of held) s.destroy();
    extra.destroy();
    await sleep(300 * SLOW);
    // the count comes back down as connections close
    const again = await rawRequest(node, GET('/healthz'), { localAddress: '127.0.0.1' });
    assert.equal(again.status, 200);
  }));
});

test('maxConnectionsPerIp: the count follows connections that move between workers (Engine.IO polling)', { timeout: 60000 }, withLogs(async () => {
  // room for the polling client's concurrent requests and idle keep-alive connections
  const LIMIT = 12;
  const node = await startNode({ workers: 4, config: baseConfig({ limits: { maxConnectionsPerIp: LIMIT, idleTimeoutMs: 300 } }) });
  const within = (p, what) => Promise.race([p, sleep(5000 * SLOW).then(() => { throw new Error(`${what}: no answer`); })]);
  for (let round = 0; round < 3; round++) {
    const s = io(node.url + '/', { forceNew: true, reconnection: false, transports: ['polling'] });
    sockets.add(s);
    await within(new Promise((res, rej) => { s.on('connect', res); s.on('connect_error', rej); }), 'connect');
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await within(new Promise((res) => s.emit('unsubscribe', ['x'], res)), 'ack'), { channels: ['x'] });
    }
    s.disconnect();
  }
  await sleep(1500 * SLOW); // every connection of the clients is gone (idle ones closed)
  const socks = [];
  for (let i = 0; i < LIMIT; i++) {
    const x = await connectRaw(node);
    socks.push({ s: x, answer: readResponse(x, 800 * SLOW) });
  }
  const refusedAnswers = (await Promise.all(socks.map((x) => x.answer))).filter(Boolean);
  assert.equal(refusedAnswers.length, 0, 'a connection that moved between workers left its count behind');
  for (const x of socks) x.s.destroy();
}));

describe('timeouts', () => {
  let node;
  before(async () => {
    node = await startNode({
      workers: 1,
      config: baseConfig({ limits: { handshakeTimeoutMs: 600, readTimeoutMs: 900, idleTimeoutMs: 700 } }),
    });
    await sleep(1000); // the readiness probe's keep-alive connection is gone
  });

  test('handshakeTimeoutMs: a first request still partial is 408; a silent socket too', withLogs(async () => {
    const before = await refusedCounts(node);
    const slow = await rawHttp(node);
    const silent = await rawHttp(node);
    const t0 = Date.now();
    await slow.write('GET /healthz HTTP/1.1\r\nHo');
    const [r] = await slow.responses(1, 3000 * SLOW);
    const took = Date.now() - t0;
    assert.equal(r.status, 408);
    assert.equal(typeof r.body.error, 'string');
    assert.ok(took >= 450 && took < 2000 * SLOW, `408 after ${took} ms`);
    const [r2] = await silent.responses(1, 3000 * SLOW);
    assert.equal(r2.status, 408);
    assert.equal(await closedWithin(slow.ended, 3000), true);
    const d = await deltaEventually(node, before, { handshake_timeout: 2 });
    assert.deepEqual(d, { handshake_timeout: 2 });
  }));

  test('readTimeoutMs: a later request on a keep-alive connection, partial, is 408', withLogs(async () => {
    const before = await refusedCounts(node);
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.responses(1);
    await sleep(400); // past the handshake bound: only the request bound applies now
    const t0 = Date.now();
    await c.write('GET /healthz HTTP/1.1\r\nHost');
    const rs = await c.responses(2, 3000 * SLOW);
    const took = Date.now() - t0;
    assert.equal(rs[1].status, 408);
    assert.ok(took >= 700, `408 after ${took} ms, before readTimeoutMs 900`);
    const d = await deltaEventually(node, before, { request_timeout: 1 });
    assert.deepEqual(d, { request_timeout: 1 });
  }));

  test('idleTimeoutMs: an idle keep-alive connection is closed', withLogs(async () => {
    const before = await refusedCounts(node);
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.responses(1);
    const t0 = Date.now();
    assert.equal(await closedWithin(c.ended, 3000 * SLOW), true, 'idle connection not closed');
    const took = Date.now() - t0;
    assert.ok(took >= 550, `closed after ${took} ms, before idleTimeoutMs 700`);
    const d = await deltaEventually(node, before, { idle_timeout: 1 });
    assert.deepEqual(d, { idle_timeout: 1 });
  }));
});

describe('request sizes', () => {
  let node;
  before(async () => {
    node = await startNode({
      workers: 1,
      config: baseConfig({
        limits: {
          maxHeaders: 10, maxHeaderBytes: 1024, maxBodyBytes: 1024,
          maxBodyBytesByPath: { '/api/push': 256, '/result': 8192 },
        },
      }),
    });
  });

  test('maxHeaders: 431 counted as header_count', withLogs(async () => {
    let extra = '';
    for (let i = 0; i < 12; i++) extra += `X-H${i}: v\r\n`;
    let r;
    const d = await delta(node, async () => { r = await rawRequest(node, GET('/healthz', extra)); });
    assert.equal(r.status, 431);
    assert.equal(r.body.error, 'too many headers');
    assert.deepEqual(d, { header_count: 1 });
  }));

  test('maxHeaderBytes: 431 counted as header_size', withLogs(async () => {
    let r;
    const d = await delta(node, async () => { r = await rawRequest(node, GET('/healthz', `X-Big: ${'a'.repeat(2000)}\r\n`)); });
    assert.equal(r.status, 431);
    assert.equal(r.body.error, 'request line and headers are too large');
    assert.deepEqual(d, { header_size: 1 });
  }));

  const post = (path, body) => `POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${PUB_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

  test('maxBodyBytesByPath: /api/push has its own smaller limit (413, body_size)', withLogs(async () => {
    const body = JSON.stringify({ channel: 'c', event: 'e', data: 'x'.repeat(300) });
    let r;
    const d = await delta(node, async () => { r = await rawRequest(node, post('/api/push', body)); });
    assert.equal(r.status, 413);
    assert.equal(r.body.error, 'request body is too large');
    assert.deepEqual(d, { body_size: 1 });
    // the same size on a path without an override is within maxBodyBytes
    const pr = JSON.stringify({ serviceRequest: { blob: 'x'.repeat(300) }, clientIdPattern: 'nobody' });
    const ok = await rawRequest(node, post('/api/push-requests', pr));
    assert.equal(ok.status, 200, ok.text);
  }));

  test('maxBodyBytesByPath: /result may be larger than maxBodyBytes; the general limit holds elsewhere', withLogs(async () => {
    const big = JSON.stringify({ response: 'x'.repeat(4000) });
    const r = await rawRequest(node, post('/result?deviceId=7', big));
    assert.notEqual(r.status, 413, r.text);
    let r2;
    const d = await delta(node, async () => {
      r2 = await rawRequest(node, post('/api/push-requests', JSON.stringify({ serviceRequest: { blob: 'x'.repeat(2000) } })));
    });
    assert.equal(r2.status, 413);
    assert.deepEqual(d, { body_size: 1 });
  }));
});

describe('WebSocket and socket.io messages, subscriptions, origins', () => {
  let node;
  before(async () => {
    node = await startNode({
      workers: 1,
      config: baseConfig({
        limits: { maxMessageBytes: 1024, maxMessagesPerSecond: 5, messageBurst: 5, maxSubscriptions: 3 },
        channels: { subscribe: [{ channelPattern: '.*' }] },
        allowedOrigins: ['https://app.example.com', 'https://*.example.org'],
      }),
    });
  });

  test('maxMessageBytes: a message too big is closed with 1009 (message_size)', withLogs(async () => {
    let info;
    const d = await delta(node, async () => {
      const c = await connectClient(node, { clientId: 'big' });
      c.send(JSON.stringify({ type: 'subscribe', channels: ['x'], pad: 'y'.repeat(2000) }));
      info = await c.closed;
    });
    assert.equal(info.code, 1009);
    assert.deepEqual(d, { message_size: 1 });
  }));

  test('maxMessageBytes bounds the sum of fragments, not just each frame', withLogs(async () => {
    const key = crypto.randomBytes(16).toString('base64');
    let frames;
    const d = await delta(node, async () => {
      const sock = await connectRaw(node);
      let buf = Buffer.alloc(0);
      const closed = new Promise((res) => sock.on('close', res));
      sock.on('data', (x) => { buf = Buffer.concat([buf, x]); });
      sock.write(`GET /websocket?sessionId=s-john&clientId=frag HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      await sleep(200);
      const part = Buffer.alloc(600, 0x61);
      sock.write(encodeFrame({ fin: false, opcode: OP.TEXT, payload: part }));
      sock.write(encodeFrame({ fin: true, opcode: OP.CONT, payload: part }));
      await Promise.race([closed, sleep(3000 * SLOW)]);
      sock.destroy();
      const i = buf.indexOf('\r\n\r\n');
      frames = decodeFrames(buf.subarray(i + 4)).frames;
    });
    const close = frames.find((f) => f.opcode === OP.CLOSE);
    assert.ok(close, 'no close frame');
    assert.equal(close.payload.readUInt16BE(0), 1009);
    assert.deepEqual(d, { message_size: 1 });
  }));

  test('maxMessagesPerSecond: a WebSocket client past its rate is closed with 1008', withLogs(async () => {
    let info;
    const d = await delta(node, async () => {
      const c = await connectClient(node, { clientId: 'chatty' });
      for (let i = 0; i < 20; i++) c.send({ type: 'unsubscribe', channels: ['x'] });
      info = await c.closed;
    });
    assert.equal(info.code, 1008);
    assert.equal(info.reason, 'message rate exceeded');
    assert.deepEqual(d, { message_rate: 1 });
    // a client within its rate is left alone
    const calm = await connectClient(node, { clientId: 'calm' });
    for (let i = 0; i < 3; i++) {
      calm.send({ type: 'subscribe', channels: ['calm'] });
      assert.equal((await calm.next()).type, 'subscribed');
    }
    await sleep(250);
    assert.equal(calm.closeInfo, null);
    await calm.close();
  }));

  test('maxMessagesPerSecond: a socket.io client past its rate is disconnected by the server', withLogs(async () => {
    let reason;
    const d = await delta(node, async () => {
      const s = io(node.url + '/', { forceNew: true, reconnection: false, transports: ['websocket'] });
      sockets.add(s);
      await new Promise((res, rej) => { s.on('connect', res); s.on('connect_error', rej); });
      const gone = new Promise((res) => s.on('disconnect', res));
      for (let i = 0; i < 20; i++) s.emit('unsubscribe', ['x']);
      reason = await Promise.race([gone, sleep(3000 * SLOW).then(() => 'none')]);
    });
    assert.equal(reason, 'io server disconnect');
    assert.deepEqual(d, { message_rate: 1 });
  }));

  test('maxSubscriptions: WebSocket subscribe past it gets an error frame; what was subscribed stays', withLogs(async () => {
    const c = await connectClient(node, { clientId: 'subs' });
    c.send({ type: 'subscribe', channels: ['a', 'b'] });
    assert.deepEqual(await c.next(), { type: 'subscribed', channels: ['a', 'b'] });
    await sleep(450); // the message bucket refills
    let m;
    const d = await delta(node, async () => {
      c.send({ type: 'subscribe', channels: ['c', 'd'] });
      m = await c.next();
    });
    assert.deepEqual(m, { type: 'error', error: 'subscribe: more than 3 subscriptions on one connection' });
    assert.deepEqual(d, { subscriptions: 1 });
    // nothing of the refused request was kept: one more still fits
    c.send({ type: 'subscribe', channels: ['c'] });
    assert.deepEqual(await c.next(), { type: 'subscribed', channels: ['c'] });
    await c.close();
  }));

  test('maxSubscriptions: SSE with too many channels is 400 JSON', withLogs(async () => {
    let s;
    const d = await delta(node, async () => { s = await sseOpen(node, '/sse?channel=a&channel=b&channel=c&channel=d'); });
    assert.equal(s.status, 400);
    assert.deepEqual(s.body, { error: 'more than 3 channels on one connection' });
    assert.deepEqual(d, { subscriptions: 1 });
    const ok = await sseOpen(node, '/sse?channel=a&channel=b&channel=c');
    assert.equal(ok.status, 200);
    ok.close();
  }));

  test('maxSubscriptions: socket.io subscribe past it gets an error ack', withLogs(async () => {
    const s = io(node.url + '/', { forceNew: true, reconnection: false, transports: ['websocket'] });
    sockets.add(s);
    await new Promise((res, rej) => { s.on('connect', res); s.on('connect_error', rej); });
    const ack = (chans) => new Promise((res) => s.emit('subscribe', chans, res));
    assert.deepEqual(await ack(['a', 'b']), { channels: ['a', 'b'] });
    let r;
    const d = await delta(node, async () => { r = await ack(['c', 'd']); });
    assert.deepEqual(r, { error: 'more than 3 subscriptions on one connection' });
    assert.deepEqual(d, { subscriptions: 1 });
    s.disconnect();
  }));

  test('allowedOrigins: a WebSocket upgrade from another origin is 403; allowed and absent origins pass', withLogs(async () => {
    let r;
    const d = await delta(node, async () => {
      r = await tryConnect(node, { sessionId: 's-john', clientId: 'o1' }, { wsOptions: { origin: 'https://evil.example.com' } });
    });
    assert.equal(r.open, false);
    assert.equal(r.status, 403);
    assert.deepEqual(r.body, { error: 'origin not allowed' });
    assert.deepEqual(d, { origin: 1 });
    for (const origin of ['https://app.example.com', 'https://a.b.example.org', undefined]) {
      const ok = await tryConnect(node, { sessionId: 's-john', clientId: 'o2' }, { wsOptions: origin ? { origin } : {} });
      assert.equal(ok.open, true, `origin ${origin}`);
      ok.ws.close();
    }
  }));

  test('allowedOrigins: SSE is 403 JSON and the Engine.IO handshake 403 {code:4}', withLogs(async () => {
    let s; let e;
    const d = await delta(node, async () => {
      s = await sseOpen(node, '/sse?channel=a', { headers: { Origin: 'https://example.org' } });
      e = await rawRequest(node, GET('/socket.io/?EIO=4&transport=polling', 'Origin: http://app.example.com\r\n'));
    });
    assert.equal(s.status, 403);
    assert.deepEqual(s.body, { error: 'origin not allowed' });
    assert.equal(e.status, 403);
    assert.deepEqual(e.body, { code: 4, message: 'Forbidden' });
    assert.deepEqual(d, { origin: 2 });
    const ok = await rawRequest(node, GET('/socket.io/?EIO=4&transport=polling', 'Origin: https://app.example.com\r\n'));
    assert.equal(ok.status, 200);
    assert.match(ok.text, /^0\{"sid":/);
  }));
});

test('config: bad limits and origins are refused with the key named', withLogs(async () => {
  const { spawnSync } = await import('node:child_process');
  const { BIN } = await import('./lib/harness.mjs');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'pushgate-lim-'));
  const cases = [
    [{ allowedOrigins: ['https://a.com/path'] }, /allowedOrigins\[0\]/],
    [{ allowedOrigins: 'https://a.com' }, /allowedOrigins must be an array/],
    [{ limits: { maxBodyBytesByPath: { 'api/push': 10 } } }, /maxBodyBytesByPath/],
    [{ limits: { maxSubscriptions: 0 } }, /limits.maxSubscriptions must be at least 1/],
    [{ shutdownGraceMs: -1 }, /shutdownGraceMs/],
  ];
  for (const [cfg, re] of cases) {
    const p = join(dir, 'c.json');
    writeFileSync(p, JSON.stringify(cfg));
    const r = spawnSync(BIN, ['serve', '--config', p, '--listen', '127.0.0.1:1', '--data-dir', join(dir, 'd')], { encoding: 'utf8', timeout: 5000 });
    assert.notEqual(r.status, 0, JSON.stringify(cfg));
    assert.match(r.stderr, re, JSON.stringify(cfg));
  }
}));

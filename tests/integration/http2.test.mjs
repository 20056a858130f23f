// HTTP/2 by prior knowledge (h2c) on the plain listener, with Node's http2 client and
// curl --http2-prior-knowledge: the API, many SSE streams on one connection, stream
// resets freeing subscribers, the device long poll, limits, GOAWAY on shutdown, and
// HTTP/1.1 clients on the same listener.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { execFile } from 'node:child_process';
import net from 'node:net';
import {
  startNode, cleanup, withLogs, baseConfig, connectClient, waitForConnections, get, api, sleep,
  ADMIN_KEY, PUB_KEY, SLOW,
} from './lib/harness.mjs';
import { parseSse, until } from './lib/sse.mjs';

const sessions = new Set();

function connect(node) {
  const s = http2.connect(node.url);
  s.on('error', () => {});
  sessions.add(s);
  return s;
}

after(async () => {
  for (const s of sessions) s.destroy();
  await cleanup();
});

/** One request on session s; resolves {status, headers, text, body}. */
function h2req(s, method, path, { headers = {}, body, timeoutMs = 10000 * SLOW } = {}) {
  return new Promise((resolve, reject) => {
    const req = s.request({ ':method': method, ':path': path, ...headers });
    const timer = setTimeout(() => { req.close(); reject(new Error(`${method} ${path}: no answer`)); }, timeoutMs);
    let status = 0; let hdrs = {}; let text = '';
    req.setEncoding('utf8');
    req.on('response', (h) => { status = h[':status']; hdrs = h; });
    req.on('data', (d) => { text += d; });
    req.on('end', () => {
      clearTimeout(timer);
      let parsed = null;
      try { parsed = text ? JSON.parse(text) : null; } catch { parsed = undefined; }
      resolve({ status, headers: hdrs, text, body: parsed });
    });
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    if (body !== undefined) req.end(typeof body === 'string' ? body : JSON.stringify(body));
    else req.end();
  });
}

/** An SSE subscription on session s: {req, status(), events, comments, next(), closed}. */
function h2sse(s, path, headers = {}) {
  const req = s.request({ ':path': path, ...headers });
  const events = []; const comments = []; const waiters = [];
  let status = 0; let ctype = '';
  const p = parseSse({
    onEvent: (ev) => { events.push(ev); while (waiters.length) waiters.shift()(); },
    onComment: (c) => { comments.push(c); while (waiters.length) waiters.shift()(); },
  });
  req.setEncoding('utf8');
  req.on('response', (h) => { status = h[':status']; ctype = h['content-type']; });
  req.on('data', (d) => p.feed(d));
  req.on('error', () => {});
  const closed = new Promise((r) => req.on('close', r));
  const ended = new Promise((r) => req.on('end', r));
  let taken = 0;
  return {
    req, events, comments, closed, ended,
    status: () => status,
    ctype: () => ctype,
    async next(timeoutMs = 5000 * SLOW) {
      const deadline = Date.now() + timeoutMs;
      while (events.length <= taken) {
        if (Date.now() > deadline) throw new Error(`${path}: no event within ${timeoutMs} ms`);
        await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
      }
      return events[taken++];
    },
  };
}

function metric(text, name, labels) {
  const want = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
  const line = text.split('\n').find((l) => l.startsWith(want + ' '));
  return line ? Number(line.slice(want.length + 1)) : NaN;
}

async function connections(node, transport) {
  const r = await get(node, '/metrics');
  return metric(r.text, 'pushgate_connections', { transport });
}

function curl(args) {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '--max-time', String(10 * SLOW), ...args], (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

const auth = (key) => ({ authorization: `Bearer ${key}` });

function h2Config(extra = {}) {
  const cfg = baseConfig({
    streams: {
      t1: { health: { publicSubscribe: true, events: [{ namespace: 'status', name: 'up' }] } },
    },
    sse: { heartbeatMs: 300 },
    http2: { maxConcurrentStreams: 120 },
    ...extra,
  });
  cfg.apiKeys.push({ key: 't1-pub', scopes: ['publish'], tenant: 't1' });
  cfg.sessions.push({ sessionId: 's-t1', user: 'tia', roles: ['viewer'], tenant: 't1' });
  return cfg;
}

describe('HTTP/2 (h2c by prior knowledge)', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: h2Config() }); });

  test('HTTP/2 and HTTP/1.1 on the same listener; SETTINGS carry the configured limits', withLogs(async () => {
    const s = connect(node);
    const r = await h2req(s, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'ok' });
    assert.equal(s.remoteSettings.maxConcurrentStreams, 120);
    assert.ok(s.remoteSettings.maxHeaderListSize >= 16384, `maxHeaderListSize ${s.remoteSettings.maxHeaderListSize}`);
    // curl speaks h2c by prior knowledge, and plain HTTP/1.1 on the same port
    const c2 = await curl(['--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `${node.url}/healthz`]);
    assert.equal(c2.stdout, '2 200', c2.stderr);
    const c1 = await curl(['--http1.1', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', `${node.url}/healthz`]);
    assert.equal(c1.stdout, '1.1 200', c1.stderr);
    const h1 = await get(node, '/healthz');
    assert.equal(h1.status, 200);
    // HEAD keeps GET's content-length and sends no body
    const head = await h2req(s, 'HEAD', '/healthz');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    assert.equal(Number(head.headers['content-length']), JSON.stringify({ status: 'ok' }).length);
    const nf = await h2req(s, 'GET', '/nope');
    assert.equal(nf.status, 404);
    assert.deepEqual(nf.body, { error: 'not found' });
  }));

  test('POST /api/push over HTTP/2: 200 with the sanitized push, 422, 403 (curl too)', withLogs(async () => {
    const s = connect(node);
    const ok = await h2req(s, 'POST', '/api/push', {
      headers: { ...auth(PUB_KEY), 'content-type': 'application/json' },
      body: { channel: ['a', 'b', 'a'], event: 'e', data: { n: 1 } },
    });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.body, { channel: ['a', 'b'], event: 'e', data: { n: 1 } });
    assert.ok(ok.headers['x-push-id'], 'x-push-id header');
    const bad = await h2req(s, 'POST', '/api/push', { headers: auth(PUB_KEY), body: { event: 'e', data: 1 } });
    assert.equal(bad.status, 422, bad.text);
    assert.equal(typeof bad.body.error, 'string');
    const forbidden = await h2req(s, 'POST', '/api/push', { headers: auth('wrong'), body: { channel: 'a', data: 1 } });
    assert.equal(forbidden.status, 403);
    assert.deepEqual(forbidden.body, { error: 'Access Forbidden' });
    const c = await curl(['--http2-prior-knowledge', '-X', 'POST', '-H', `Authorization: Bearer ${PUB_KEY}`,
      '-H', 'content-type: application/json', '-d', '{"channel":"a","event":"e","data":2}',
      '-w', '\n%{http_version} %{http_code}', `${node.url}/api/push`]);
    const [body, tail] = c.stdout.split('\n');
    assert.equal(tail, '2 200', c.stderr);
    assert.deepEqual(JSON.parse(body), { channel: ['a'], event: 'e', data: 2 });
  }));

  test('a push request over HTTP/2 returns the PushResponse with the WebSocket client\'s row', withLogs(async () => {
    const ws = await connectClient(node, { sessionId: 's-john', clientId: 'h2-target' });
    await waitForConnections(node, 1);
    const s = connect(node);
    const serviceRequest = { _type: 'Notify', message: 'over h2' };
    const r = await h2req(s, 'POST', '/api/push-requests', {
      headers: { ...auth(PUB_KEY), 'content-type': 'application/json' },
      body: { serviceRequest, clientIdPattern: 'h2-target' },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.responseMessages.length, 1);
    assert.deepEqual(r.body.responseMessages[0], {
      clientId: 'h2-target', sessionId: 's-john', originId: { applicationId: 'pushgate', nodeId: 'n1' },
      successful: true, message: 'delivered',
    });
    assert.equal(r.body.summary.delivered, 1);
    const frame = await ws.next();
    assert.equal(frame.id, r.body.pushId);
    assert.deepEqual(frame.payload, serviceRequest);
    ws.close();
  }));

  test('50 SSE streams on one connection (channels and a domain-event stream) all receive a push', withLogs(async () => {
    const s = connect(node);
    const subs = [];
    for (let i = 0; i < 50; i++) subs.push(h2sse(s, i % 2 ? '/sse?channel=news' : '/sse?channel=news&channel=other'));
    const streamSub = h2sse(s, '/stream/v1/streams/health', auth('s-t1'));
    await until(() => subs.every((x) => x.status() === 200) && streamSub.status() === 200);
    assert.equal(subs[0].ctype(), 'text/event-stream');
    // all 51 are subscribers now, on one HTTP/2 connection (this worker's metrics)
    await until(async () => (await connections(node, 'sse')) === 51);
    const push = await h2req(s, 'POST', '/api/push', { headers: auth(PUB_KEY), body: { channel: 'news', event: 'hello', data: { k: 'v' } } });
    assert.equal(push.status, 200, push.text);
    const id = push.headers['x-push-id'];
    for (const sub of subs) {
      const ev = await sub.next();
      assert.equal(ev.id, id);
      assert.deepEqual(JSON.parse(ev.data), { id, channel: 'news', event: 'hello', data: { k: 'v' } });
    }
    const evr = await h2req(s, 'POST', '/event/v1/events', {
      headers: auth('t1-pub'),
      body: { namespace: 'status', name: 'up', timestamp: new Date().toISOString(), payload: { ok: true } },
    });
    assert.equal(evr.status, 200, evr.text);
    const se = await streamSub.next();
    assert.equal(JSON.parse(se.data).payload.ok, true);
    // heartbeats arrive on every stream
    await until(() => subs.every((x) => x.comments.includes('heartbeat')), 3000 * SLOW);
    for (const sub of subs) sub.req.close(http2.constants.NGHTTP2_CANCEL);
    streamSub.req.close(http2.constants.NGHTTP2_CANCEL);
    await until(async () => (await connections(node, 'sse')) === 0);
  }));

  test('a stream reset by the client frees its SSE subscriber; Last-Event-ID resumes', withLogs(async () => {
    const s = connect(node);
    const a = h2sse(s, '/sse?channel=reset&clientId=keep');
    const b = h2sse(s, '/sse?channel=reset&clientId=gone');
    await until(async () => (await connections(node, 'sse')) === 2);
    const list = async () => (await get(node, '/api/connections', { key: ADMIN_KEY })).body.connections.map((c) => c.clientId).sort();
    assert.deepEqual(await list(), ['gone', 'keep']);
    b.req.close(http2.constants.NGHTTP2_CANCEL);
    await until(async () => (await connections(node, 'sse')) === 1);
    assert.deepEqual(await list(), ['keep']);
    const p1 = await h2req(s, 'POST', '/api/push', { headers: auth(PUB_KEY), body: { channel: 'reset', event: 'e', data: 1 } });
    const p2 = await h2req(s, 'POST', '/api/push', { headers: auth(PUB_KEY), body: { channel: 'reset', event: 'e', data: 2 } });
    assert.equal(p1.status, 200, p1.text);
    assert.equal(p2.status, 200, p2.text);
    assert.equal((await a.next()).id, p1.headers['x-push-id']);
    assert.equal((await a.next()).id, p2.headers['x-push-id']);
    assert.equal(b.events.length, 0);
    // a new stream resumes after the first push from the history
    const c = h2sse(s, '/sse?channel=reset', { 'last-event-id': p1.headers['x-push-id'] });
    const replayed = await c.next();
    assert.equal(replayed.id, p2.headers['x-push-id']);
    assert.equal(JSON.parse(replayed.data).data, 2);
    // the connection itself keeps serving
    assert.equal((await h2req(s, 'GET', '/healthz')).status, 200);
    a.req.close(http2.constants.NGHTTP2_CANCEL);
    c.req.close(http2.constants.NGHTTP2_CANCEL);
    await until(async () => (await connections(node, 'sse')) === 0);
  }));

  test('limits: 431 for oversized headers, 413 for an oversized body; the connection lives on', withLogs(async () => {
    const s = connect(node);
    const big = await h2req(s, 'GET', '/healthz', { headers: { 'x-big': 'x'.repeat(15000), 'x-big2': 'y'.repeat(3000) } });
    assert.equal(big.status, 431);
    assert.deepEqual(big.body, { error: 'request line and headers are too large' });
    const many = {};
    for (let i = 0; i < 70; i++) many[`x-h${i}`] = 'v';
    const m = await h2req(s, 'GET', '/healthz', { headers: many });
    assert.equal(m.status, 431);
    assert.deepEqual(m.body, { error: 'too many headers' });
    const body = await h2req(s, 'POST', '/api/push', { headers: auth(PUB_KEY), body: 'x'.repeat((1 << 20) + 10) });
    assert.equal(body.status, 413);
    assert.deepEqual(body.body, { error: 'request body is too large' });
    assert.equal((await h2req(s, 'GET', '/healthz')).status, 200);
  }));

  test('the preface may arrive in pieces; an HTTP/1.1 request that starts like it is not held back', withLogs(async () => {
    const raw = (chunks) => new Promise((resolve, reject) => {
      const sock = net.connect(node.port, '127.0.0.1');
      let got = Buffer.alloc(0);
      sock.on('data', (d) => { got = Buffer.concat([got, d]); });
      sock.on('error', reject);
      sock.on('connect', async () => {
        for (const c of chunks) { sock.write(c); await sleep(60); }
        await sleep(200);
        sock.destroy();
        resolve(got);
      });
    });
    // the preface in three writes, then an empty SETTINGS: the server's SETTINGS come back
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    const h2 = await raw(['PRI * HT', 'TP/2.0\r\n\r\nS', Buffer.concat([Buffer.from('M\r\n\r\n'), settings])]);
    assert.ok(h2.length >= 9, 'an HTTP/2 answer');
    assert.equal(h2[3], 4, 'the first frame is SETTINGS');
    // "P" could start the preface; "OST" says it does not: an ordinary HTTP/1.1 request
    const body = JSON.stringify({ channel: 'a', event: 'e', data: 1 });
    const h1 = await raw(['P', `OST /api/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB_KEY}\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`]);
    assert.match(h1.toString(), /^HTTP\/1\.1 200 OK\r\n/);
  }));

  test('WebSocket over HTTP/2 is refused with a clear error; Engine.IO polling handshake works', withLogs(async () => {
    const s = connect(node);
    const r = await h2req(s, 'GET', '/websocket?sessionId=s-john&clientId=x');
    assert.equal(r.status, 400);
    assert.deepEqual(r.body, { error: 'a WebSocket handshake needs HTTP/1.1' });
    const eio = await h2req(s, 'GET', '/socket.io/?EIO=4&transport=polling');
    assert.equal(eio.status, 200, eio.text);
    assert.equal(eio.text[0], '0');
    assert.ok(JSON.parse(eio.text.slice(1)).sid);
  }));
});

describe('HTTP/2: device long poll and shutdown', () => {
  test('a long poll over HTTP/2 gets a command enqueued on another stream while it waits; a reset poll loses nothing', withLogs(async () => {
    const node = await startNode({ workers: 1, config: h2Config({ device: { holdMs: 20000 } }) });
    const s = connect(node);
    const t0 = Date.now();
    const poll = h2req(s, 'GET', '/push?deviceId=77', { timeoutMs: 30000 });
    await sleep(300);
    const enq = await h2req(s, 'POST', '/api/devices/77/commands', { headers: auth(PUB_KEY), body: { endpoint: 'wake' } });
    assert.equal(enq.status, 201, enq.text);
    const got = await poll;
    assert.equal(got.status, 200, got.text);
    assert.equal(got.body.endpoint, 'wake');
    assert.ok(Date.now() - t0 < 5000 * SLOW);
    // a held poll the client resets: the command enqueued afterwards waits for the next poll
    const held = s.request({ ':path': '/push?deviceId=78' });
    held.on('error', () => {});
    held.on('data', () => assert.fail('a reset poll must get nothing'));
    await sleep(300);
    held.close(http2.constants.NGHTTP2_CANCEL);
    await sleep(200);
    assert.equal((await h2req(s, 'POST', '/api/devices/78/commands', { headers: auth(PUB_KEY), body: { endpoint: 'later' } })).status, 201);
    const again = await h2req(s, 'GET', '/push?deviceId=78');
    assert.equal(again.body?.endpoint, 'later', again.text);
    await node.stop('SIGTERM');
  }));

  test('SIGTERM: GOAWAY, open SSE streams end, held polls are answered, exit 0', withLogs(async () => {
    const node = await startNode({ workers: 1, config: h2Config({ device: { holdMs: 20000 } }) });
    const s = connect(node);
    const goaway = new Promise((r) => s.on('goaway', (code) => r(code)));
    const sub = h2sse(s, '/sse?channel=bye');
    await until(() => sub.status() === 200);
    const poll = h2req(s, 'GET', '/push?deviceId=90', { timeoutMs: 30000 });
    await sleep(300);
    const t0 = Date.now();
    const info = await node.stop('SIGTERM');
    assert.deepEqual(info, { code: 0, signal: null });
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    await sub.ended;
    const p = await poll;
    assert.equal(p.status, 200);
    assert.equal(p.text, '');
    assert.ok(Date.now() - t0 < 4000 * SLOW, `shutdown took ${Date.now() - t0} ms`);
  }));

  test('a stream that does not read is cut off (CANCEL) at limits.maxOutputBytes; the connection lives on', withLogs(async () => {
    const node = await startNode({ workers: 1, config: h2Config({ limits: { maxOutputBytes: 8192 } }) });
    const s = connect(node);
    // a roomy connection window: only the stream's own window stops the bytes
    await new Promise((r) => s.once('connect', r));
    s.setLocalWindowSize(16 << 20);
    const slow = s.request({ ':path': '/sse?channel=flood&clientId=slow' });
    slow.on('error', () => {});
    let cut = false;
    const rst = new Promise((r) => slow.on('close', () => { cut = true; r(slow.rstCode); }));
    await new Promise((r) => slow.once('response', r));
    slow.pause(); // nothing read: Node stops crediting the stream's window
    await until(async () => (await connections(node, 'sse')) === 1);
    const data = 'x'.repeat(2000);
    let pushes = 0;
    for (; pushes < 200; pushes++) {
      const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'flood', event: 'e', data } });
      assert.equal(r.status, 200, r.text);
      if (cut) break;
    }
    assert.ok(cut, `still open after ${pushes} pushes of 2 kB`);
    assert.equal(await rst, http2.constants.NGHTTP2_CANCEL);
    await until(async () => (await connections(node, 'sse')) === 0);
    const m = await get(node, '/metrics');
    assert.match(m.text, /^pushgate_slow_consumer_closes_total [1-9]/m, 'slow consumer counted');
    assert.equal((await h2req(s, 'GET', '/healthz')).status, 200);
    await node.stop('SIGTERM');
  }));

  test('an idle HTTP/2 connection gets a GOAWAY after limits.readTimeoutMs', withLogs(async () => {
    const node = await startNode({ workers: 1, config: h2Config({ limits: { readTimeoutMs: 300 } }) });
    const s = connect(node);
    const goaway = new Promise((r) => s.on('goaway', (code) => r(code)));
    const closed = new Promise((r) => s.on('close', r));
    assert.equal((await h2req(s, 'GET', '/healthz')).status, 200);
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    await closed;
    await node.stop('SIGTERM');
  }));

  test('http2.enabled false: the preface is just a bad HTTP/1.1 request', withLogs(async () => {
    const node = await startNode({ workers: 1, config: h2Config({ http2: { enabled: false } }) });
    const c = await curl(['--http2-prior-knowledge', '-o', '/dev/null', '-w', '%{http_code}', `${node.url}/healthz`]);
    assert.notEqual(c.stdout, '200');
    assert.equal((await get(node, '/healthz')).status, 200);
  }));
});

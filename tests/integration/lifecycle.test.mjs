// Operations endpoints, HTTP/1.1 behaviour on raw sockets (keep-alive, pipelining,
// limits), and graceful shutdown on SIGTERM/SIGINT.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, connectClient, pushRequest, get, api, baseConfig, rawHttp,
  closedWithin, sleep, waitForConnections, parseHttpResponses, PUB_KEY,
} from './lib/harness.mjs';

after(cleanup);

/**
 * Sum of the samples of a metric in Prometheus text, over every label set that has the
 * given labels (e.g. {transport: 'websocket'}; series without that label count too).
 */
function metricSum(text, name, want = {}) {
  const re = new RegExp(`^${name}(?:\\{([^}]*)\\})?\\s+([0-9.eE+-]+)(?:\\s+-?\\d+)?$`, 'gm');
  let sum = 0;
  let found = false;
  for (const m of text.matchAll(re)) {
    const labels = Object.fromEntries([...(m[1] || '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(want).some(([k, v]) => k in labels && labels[k] !== v)) continue;
    sum += Number(m[2]);
    found = true;
  }
  return found ? sum : null;
}

describe('operations endpoints and HTTP behaviour', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2 }); });

  test('GET /healthz is 200 {"status":"ok"}', withLogs(async () => {
    const r = await get(node, '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type')?.split(';')[0], 'application/json');
    assert.deepEqual(r.body, { status: 'ok' });
  }));

  test('GET /readyz is 200 {"status":"ready"}', withLogs(async () => {
    const r = await get(node, '/readyz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'ready' });
  }));

  test('GET /metrics: Prometheus text with pushgate_connections and pushgate_pushes_received_total', withLogs(async () => {
    const c1 = await connectClient(node, { sessionId: 's-john', clientId: 'm1' });
    const c2 = await connectClient(node, { sessionId: 's-mary', clientId: 'm2' });
    await waitForConnections(node, 2);
    let r = await get(node, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    assert.match(r.text, /^pushgate_connections(\{[^}]*\})? /m);
    assert.match(r.text, /^pushgate_pushes_received_total(\{[^}]*\})? /m);
    assert.equal(metricSum(r.text, 'pushgate_connections', { transport: 'websocket' }), 2);
    const before = metricSum(r.text, 'pushgate_pushes_received_total');
    const p = await pushRequest(node, { serviceRequest: { m: 1 } });
    assert.equal(p.status, 200, p.text);
    await c1.next();
    await c2.next();
    r = await get(node, '/metrics');
    assert.equal(metricSum(r.text, 'pushgate_pushes_received_total'), before + 1);
    await c1.close();
    await c2.close();
    await waitForConnections(node, 0);
    r = await get(node, '/metrics');
    assert.equal(metricSum(r.text, 'pushgate_connections', { transport: 'websocket' }), 0);
    // every sample line is well-formed
    for (const line of r.text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? ([0-9.eE+-]+|NaN|[+-]Inf)( -?\d+)?$/, `metrics line ${JSON.stringify(line)}`);
    }
  }));

  test('stderr log lines follow ts=… level=… node=…', withLogs(async () => {
    const lines = node.logs().split('\n').filter((l) => l.length);
    assert.ok(lines.length > 0, 'serve logs at least one line');
    assert.ok(lines.some((l) => /^ts=\S+ level=\w+ node=n1 .*msg="[^"]*"/.test(l)), `no line like ts=… level=… node=n1 … msg="…": ${lines.slice(0, 5).join(' | ')}`);
  }));

  test('unknown path is 404 {"error":"not found"}', withLogs(async () => {
    for (const path of ['/nope', '/api/nope', '/healthz/x', '/websocketx']) {
      const r = await get(node, path);
      assert.equal(r.status, 404, `${path}: ${r.text}`);
      assert.deepEqual(r.body, { error: 'not found' });
    }
  }));

  test('wrong method is 405', withLogs(async () => {
    let r = await api(node, 'POST', '/healthz', { body: {} });
    assert.equal(r.status, 405, r.text);
    assert.equal(typeof r.body?.error, 'string', r.text);
    r = await api(node, 'DELETE', '/metrics');
    assert.equal(r.status, 405, r.text);
  }));

  test('keep-alive: two requests on one connection get two responses', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [r1] = await c.responses(1);
    assert.equal(r1.status, 200);
    assert.deepEqual(r1.body, { status: 'ok' });
    assert.notEqual(r1.headers.connection?.toLowerCase(), 'close');
    await sleep(50);
    assert.equal(c.isEnded(), false, 'server closed a keep-alive connection');
    await c.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
    const rs = await c.responses(2);
    assert.equal(rs[1].status, 200);
    assert.deepEqual(rs[1].body, { status: 'ready' });
    c.destroy();
  }));

  test('pipelining: three requests in one write are answered in order', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n');
    const rs = await c.responses(3);
    assert.deepEqual(rs.map((r) => r.status), [200, 404, 200]);
    assert.deepEqual(rs.map((r) => r.body), [{ status: 'ok' }, { error: 'not found' }, { status: 'ready' }]);
    c.destroy();
  }));

  test('pipelining: three GET /healthz in one write get three responses', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(3));
    const rs = await c.responses(3);
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200]);
    await sleep(100);
    const { responses, rest } = parseHttpResponses(c.raw());
    assert.equal(responses.length, 3, 'exactly three responses');
    assert.equal(rest.length, 0, `extra bytes after the third response: ${JSON.stringify(rest.toString('latin1').slice(0, 200))}`);
    c.destroy();
  }));

  test('pipelined POST push requests are answered in order', withLogs(async () => {
    const body = (i) => JSON.stringify({ serviceRequest: { i }, clientIdPattern: 'nobody' });
    const req = (i) => `POST /api/push-requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body(i))}\r\n\r\n${body(i)}`;
    const c = await rawHttp(node);
    await c.write(req(0) + 'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n' + req(1));
    const rs = await c.responses(3);
    assert.deepEqual(rs.map((r) => r.status), [200, 404, 200]);
    assert.equal(rs[0].body.summary.matched, 0);
    assert.notEqual(rs[0].body.pushId, rs[2].body.pushId);
    c.destroy();
  }));

  test('HTTP/1.0 without keep-alive is answered and closed', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.0\r\n\r\n');
    const [r] = await c.responses(1);
    assert.equal(r.status, 200);
    assert.equal(await closedWithin(c.ended, 2000), true, 'HTTP/1.0 connection left open');
  }));

  test('Connection: close is honoured', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const [r] = await c.responses(1);
    assert.equal(r.status, 200);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection left open after Connection: close');
  }));

  test('header too large is 431 with a JSON body, then the connection closes', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    const [r] = await c.responses(1);
    assert.equal(r.status, 431, r.text);
    assert.equal(typeof r.body?.error, 'string', r.text);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection not closed after 431');
    const h = await get(node, '/healthz');
    assert.equal(h.status, 200);
  }));

  test('malformed request line is 400, then the connection closes', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('THIS IS NOT HTTP\r\n\r\n');
    const [r] = await c.responses(1);
    assert.equal(r.status, 400, r.text);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection not closed after 400');
    const h = await get(node, '/healthz');
    assert.equal(h.status, 200);
  }));

  test('a client that vanishes mid-request does not hurt the node', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write('POST /api/push-requests HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"serv');
    c.destroy();
    await sleep(100);
    const h = await get(node, '/healthz');
    assert.equal(h.status, 200);
  }));
});

describe('request limits', () => {
  let node;
  before(async () => {
    node = await startNode({
      workers: 1,
      config: baseConfig({ limits: { maxBodyBytes: 1024, maxHeaders: 20, readTimeoutMs: 1000 } }),
    });
  });

  test('body over limits.maxBodyBytes is 413 (Content-Length)', withLogs(async () => {
    const body = JSON.stringify({ serviceRequest: { blob: 'x'.repeat(2000) } });
    const r = await pushRequest(node, body);
    assert.equal(r.status, 413, r.text);
    assert.equal(typeof r.body?.error, 'string', r.text);
    // a body just under the limit is fine
    const small = JSON.stringify({ serviceRequest: { blob: 'x'.repeat(900) } });
    assert.ok(small.length <= 1024);
    const ok = await pushRequest(node, small);
    assert.equal(ok.status, 200, ok.text);
  }));

  test('413 is answered from the Content-Length alone, then the connection closes', withLogs(async () => {
    const c = await rawHttp(node);
    await c.write(`POST /api/push-requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"serviceRequest":`);
    const [r] = await c.responses(1, 3000);
    assert.equal(r.status, 413, r.text);
    assert.equal(typeof r.body?.error, 'string', r.text);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection not closed after 413');
  }));

  test('chunked body over the limit is 413', withLogs(async () => {
    const c = await rawHttp(node);
    const chunk = 'x'.repeat(500);
    let req = `POST /api/push-requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    for (let i = 0; i < 5; i++) req += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    req += '0\r\n\r\n';
    await c.write(req);
    const [r] = await c.responses(1, 3000);
    assert.equal(r.status, 413, r.text);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection not closed after 413');
  }));

  test('a chunked body under the limit is accepted', withLogs(async () => {
    const c = await rawHttp(node);
    const body = JSON.stringify({ serviceRequest: { a: 1 }, clientIdPattern: 'nobody' });
    const half = Math.floor(body.length / 2);
    const parts = [body.slice(0, half), body.slice(half)];
    let req = `POST /api/push-requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    for (const p of parts) req += `${p.length.toString(16)}\r\n${p}\r\n`;
    req += '0\r\n\r\n';
    await c.write(req);
    const [r] = await c.responses(1, 3000);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.summary.matched, 0);
    c.destroy();
  }));

  test('more than limits.maxHeaders headers is 431', withLogs(async () => {
    const c = await rawHttp(node);
    let req = 'GET /healthz HTTP/1.1\r\nHost: x\r\n';
    for (let i = 0; i < 40; i++) req += `X-H${i}: v\r\n`;
    await c.write(req + '\r\n');
    const [r] = await c.responses(1);
    assert.equal(r.status, 431, r.text);
    assert.equal(typeof r.body?.error, 'string', r.text);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection not closed after 431');
  }));

  test('a request not complete within readTimeoutMs is 408', withLogs(async () => {
    const c = await rawHttp(node);
    const t0 = Date.now();
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    const [r] = await c.responses(1, 5000);
    const took = Date.now() - t0;
    assert.equal(r.status, 408, r.text);
    assert.ok(took >= 800, `408 after ${took} ms, before readTimeoutMs 1000`);
    assert.equal(await closedWithin(c.ended, 2000), true, 'connection not closed after 408');
  }));

  test('the node still serves after every bad request', withLogs(async () => {
    const h = await get(node, '/healthz');
    assert.equal(h.status, 200);
    assert.deepEqual(h.body, { status: 'ok' });
    const c = await connectClient(node, { sessionId: 's-john', clientId: 'after-bad' });
    const p = await pushRequest(node, { serviceRequest: { ok: 1 }, clientIdPattern: 'after-bad' });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.body.summary.delivered, 1);
    assert.equal((await c.next()).payload.ok, 1);
    await c.close();
    assert.equal(node.isRunning(), true);
  }));
});

describe('graceful shutdown', () => {
  test('SIGTERM: clients see 1001, the process exits 0 within 5 s', withLogs(async () => {
    const node = await startNode({ workers: 2 });
    const clients = [];
    for (let i = 0; i < 6; i++) clients.push(await connectClient(node, { sessionId: 's-john', clientId: `bye${i}` }));
    await waitForConnections(node, 6);
    const t0 = Date.now();
    const exitP = node.stop('SIGTERM', 15000);
    const closes = await Promise.all(clients.map((c) => Promise.race([c.closed, sleep(6000).then(() => null)])));
    for (const [i, info] of closes.entries()) {
      assert.ok(info, `client bye${i} not closed`);
      assert.equal(info.code, 1001, `client bye${i} close code`);
    }
    const exit = await exitP;
    const took = Date.now() - t0;
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(took < 5000, `exit took ${took} ms`);
    for (const c of clients) assert.deepEqual(c.errors, []);
    // nothing listens any more
    await assert.rejects(fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(2000) }));
  }));

  test('SIGINT: the process exits 0', withLogs(async () => {
    const node = await startNode({ workers: 1 });
    const c = await connectClient(node, { sessionId: 's-mary', clientId: 'int' });
    const t0 = Date.now();
    const exit = await node.stop('SIGINT', 15000);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 5000);
    const info = await Promise.race([c.closed, sleep(2000).then(() => null)]);
    assert.equal(info?.code, 1001);
  }));

  test('SIGTERM with no clients exits 0 quickly', withLogs(async () => {
    const node = await startNode({ workers: 4 });
    const t0 = Date.now();
    const exit = await node.stop('SIGTERM', 15000);
    assert.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 3000, `exit took ${Date.now() - t0} ms`);
  }));
});

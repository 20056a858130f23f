// Idempotency-Key (issue 10 item 6, docs/api.md): a repeat of POST /api/devices/{id}/commands,
// POST /api/push and POST /api/push-requests with the same key returns the first answer
// (same status, body, X-Push-Id / command id) and acts once; a key reused with another
// request is 422; a repeat while the first is still in progress is 409; keys are scoped
// per API key; single node (device keys survive kill -9: they are committed with the
// command) and clustered (keys in Redis; a device enqueue cut off by a Redis paused with
// SIGSTOP, answered 503, is found by its retry once Redis runs again, and the device gets
// the command exactly once; a keyed push cut off the same way pushes once, on its retry).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, connectClient, api, baseConfig, sleep, PUB_KEY, SLOW,
} from './lib/harness.mjs';
import { startRedis, startClusterNode, waitMembers } from './lib/cluster.mjs';
import { request, DeviceSim, listCommands } from './lib/device-sim.mjs';

const PUB2 = 'pub-key-2';

function config(extra = {}) {
  const c = baseConfig(extra);
  c.apiKeys.push({ key: PUB2, scopes: ['publish'] });
  return c;
}

function enqueueKey(node, deviceId, body, key, { apiKey = PUB_KEY, query = '' } = {}) {
  const headers = key === undefined ? {} : { 'idempotency-key': key };
  return request(node, 'POST', `/api/devices/${deviceId}/commands${query}`, { body, key: apiKey, headers });
}

function pushKey(node, path, body, key, apiKey = PUB_KEY, extra = {}) {
  const headers = key === undefined ? { ...extra } : { 'idempotency-key': key, ...extra };
  return request(node, 'POST', path, { body, key: apiKey, headers });
}

async function subscriber(node, clientId, channel) {
  const c = await connectClient(node, { sessionId: 's-john', clientId });
  c.send({ type: 'subscribe', channels: [channel] });
  assert.deepEqual(await c.next(), { type: 'subscribed', channels: [channel] });
  return c;
}

after(cleanup);

describe('single node', () => {
  let node;
  before(async () => {
    node = await startNode({ workers: 2, config: config() });
  });

  test('device enqueue: a repeat gets the first command id, the device gets it once', withLogs(async () => {
    const cmd = { endpoint: '/reboot', body: { at: 1 } };
    const a = await enqueueKey(node, 501, cmd, 'k-1');
    assert.equal(a.status, 201, a.text);
    assert.equal(a.headers['idempotent-replayed'], undefined);
    const b = await enqueueKey(node, 501, cmd, 'k-1');
    assert.equal(b.status, 201, b.text);
    assert.equal(b.text, a.text, 'the same body');
    assert.equal(b.headers.location, a.headers.location);
    assert.equal(b.headers['idempotent-replayed'], 'true');

    // the same key with another body, or for another device: refused, nothing enqueued
    const c = await enqueueKey(node, 501, { endpoint: '/other' }, 'k-1');
    assert.equal(c.status, 422, c.text);
    assert.match(c.body.error, /Idempotency-Key/);
    const d = await enqueueKey(node, 502, cmd, 'k-1');
    assert.equal(d.status, 422, d.text);

    // the key is the API key's own: another publisher's k-1 is another request
    const e = await enqueueKey(node, 501, cmd, 'k-1', { apiKey: PUB2 });
    assert.equal(e.status, 201, e.text);
    assert.notEqual(e.body.id, a.body.id);

    // without a key, every call enqueues
    const f1 = await enqueueKey(node, 503, cmd);
    const f2 = await enqueueKey(node, 503, cmd);
    assert.notEqual(f1.body.id, f2.body.id);

    const dev = new DeviceSim(node, 501);
    const done = await dev.drain();
    assert.equal(done.length, 2, 'PUB_KEY k-1 and PUB2 k-1: two commands, not three');
    const l = await listCommands(node, 501);
    assert.deepEqual(l.body.commands.map((x) => x.id), [a.body.id, e.body.id]);
    assert.ok(l.body.commands.every((x) => x.status === 'done'));

    // a repeat after the command is done still gets the first answer
    const g = await enqueueKey(node, 501, cmd, 'k-1');
    assert.equal(g.status, 201);
    assert.equal(g.text, a.text);
    assert.equal((await dev.poll()).command, null, 'nothing new for the device');

    // with waitMs a repeat waits on the same command
    const h = await enqueueKey(node, 501, cmd, 'k-1', { query: '?waitMs=200' });
    assert.equal(h.status, 201, h.text);
    assert.equal(h.body.id, a.body.id);
    assert.equal(h.body.status, 'done');
  }));

  test('bad keys are refused with 400', withLogs(async () => {
    for (const k of ['x'.repeat(256), 'a b']) {
      const r = await enqueueKey(node, 510, { endpoint: '/x' }, k);
      assert.equal(r.status, 400, r.text);
      assert.match(r.body.error, /Idempotency-Key/);
      const p = await pushKey(node, '/api/push', { channel: 'c', data: 1, event: 'e' }, k);
      assert.equal(p.status, 400, p.text);
    }
  }));

  test('POST /api/push: a repeat gets the same X-Push-Id and body; delivered once', withLogs(async () => {
    const c = await subscriber(node, 'idem-ws-1', 'idem-news');
    const body = { channel: 'idem-news', data: { n: 1 }, event: 'e' };
    const wait = { 'x-push-wait': 'delivered' };
    const a = await pushKey(node, '/api/push', body, 'p-1', PUB_KEY, wait);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers['x-push-subscribers'], '1');
    const f = await c.next();
    assert.equal(f.id, a.headers['x-push-id']);
    const b = await pushKey(node, '/api/push', body, 'p-1', PUB_KEY, wait);
    assert.equal(b.status, 200, b.text);
    assert.equal(b.headers['x-push-id'], a.headers['x-push-id']);
    assert.equal(b.headers['x-push-subscribers'], '1');
    assert.equal(b.text, a.text);
    assert.equal(b.headers['idempotent-replayed'], 'true');
    const m = await pushKey(node, '/api/push', { ...body, data: { n: 2 } }, 'p-1');
    assert.equal(m.status, 422, m.text);
    // the same key on another endpoint is another request
    const pr = await pushKey(node, '/api/push-requests', { serviceRequest: { x: 1 }, clientIdPattern: 'nobody' }, 'p-1');
    assert.equal(pr.status, 200, pr.text);
    await c.expectNone(300);
    c.close();
  }));

  test('POST /api/push-requests: repeat, 409 while in flight, client gone before the report', withLogs(async () => {
    const c = await connectClient(node, { sessionId: 's-john', clientId: 'idem-ack' });
    const body = { serviceRequest: { op: 'x' }, clientIdPattern: 'idem-ack', options: { awaitAcks: true, timeoutMs: 1200 } };
    const first = pushKey(node, '/api/push-requests', body, 'r-1');
    const f = await c.next();
    // the first has not answered yet (no ack): a repeat is refused, not delivered again
    const busy = await pushKey(node, '/api/push-requests', body, 'r-1');
    assert.equal(busy.status, 409, busy.text);
    c.send({ type: 'response', id: f.id, successful: true, message: 'ok' });
    const a = await first;
    assert.equal(a.status, 200, a.text);
    assert.equal(a.body.pushId, f.id);
    assert.equal(a.headers['x-push-id'], f.id);
    const b = await pushKey(node, '/api/push-requests', body, 'r-1');
    assert.equal(b.status, 200);
    assert.equal(b.text, a.text);
    assert.equal(b.headers['x-push-id'], f.id);
    await c.expectNone(200);

    // the publisher gives up before the report (its timeout): the push went out, and
    // the retry gets its report rather than a second push
    const body2 = { ...body, options: { awaitAcks: true, timeoutMs: 700 } };
    const ac = new AbortController();
    const gone = fetch(`${node.url}/api/push-requests`, {
      method: 'POST', signal: ac.signal, body: JSON.stringify(body2),
      headers: { authorization: `Bearer ${PUB_KEY}`, 'content-type': 'application/json', 'idempotency-key': 'r-2' },
    }).catch((e) => e);
    const g = await c.next();
    ac.abort();
    await gone;
    let r;
    const deadline = Date.now() + 5000 * SLOW;
    do {
      await sleep(100);
      r = await pushKey(node, '/api/push-requests', body2, 'r-2');
    } while (r.status === 409 && Date.now() < deadline);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.pushId, g.id);
    assert.equal(r.body.summary.matched, 1);
    await c.expectNone(200);

    // report "none" answers 202 at once; its repeat too
    const n1 = await pushKey(node, '/api/push-requests', { serviceRequest: { x: 1 }, clientIdPattern: 'nobody', options: { report: 'none' } }, 'r-3');
    const n2 = await pushKey(node, '/api/push-requests', { serviceRequest: { x: 1 }, clientIdPattern: 'nobody', options: { report: 'none' } }, 'r-3');
    assert.equal(n1.status, 202);
    assert.equal(n2.status, 202);
    assert.equal(n2.text, n1.text);
    c.close();
  }));

  test('device keys are durable: a retry after kill -9 gets the same command', withLogs(async () => {
    const n1 = await startNode({ workers: 1, config: config() });
    const a = await enqueueKey(n1, 520, { endpoint: '/keep' }, 'durable-1');
    assert.equal(a.status, 201, a.text);
    await n1.kill();
    const n2 = await startNode({ workers: 1, config: config(), extraArgs: ['--data-dir', `${n1.dir}/data`] });
    const b = await enqueueKey(n2, 520, { endpoint: '/keep' }, 'durable-1');
    assert.equal(b.status, 201, b.text);
    assert.equal(b.body.id, a.body.id);
    assert.equal(b.headers['idempotent-replayed'], 'true');
    assert.equal((await new DeviceSim(n2, 520).drain()).length, 1);
  }));
});

test('a keyed push still waiting for its report when the node stops: clean exit', withLogs(async () => {
  const n = await startNode({ workers: 1, config: config() });
  const c = await connectClient(n, { sessionId: 's-john', clientId: 'idem-stop' });
  const ac = new AbortController();
  const gone = fetch(`${n.url}/api/push-requests`, {
    method: 'POST', signal: ac.signal,
    body: JSON.stringify({ serviceRequest: { x: 1 }, clientIdPattern: 'idem-stop', options: { awaitAcks: true, timeoutMs: 30000 } }),
    headers: { authorization: `Bearer ${PUB_KEY}`, 'content-type': 'application/json', 'idempotency-key': 'stop-1' },
  }).catch((e) => e);
  await c.next();
  ac.abort();
  await gone;
  await sleep(100);
  const info = await n.stop('SIGTERM');
  assert.deepEqual(info, { code: 0, signal: null });
  assert.doesNotMatch(n.logs(), /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
}));

describe('clustered (Redis)', () => {
  let redis, A, B;
  before(async () => {
    redis = await startRedis();
    [A, B] = await Promise.all([
      startClusterNode(redis, 'ia', { workers: 1, config: config() }),
      startClusterNode(redis, 'ib', { workers: 1, config: config() }),
    ]);
    await waitMembers([A, B], ['ia', 'ib']);
  });
  after(async () => {
    try { process.kill(redis.proc.pid, 'SIGCONT'); } catch { /* gone */ }
    await cleanup();
    await redis.stop();
  });

  test('a repeat on another node gets the first answer', withLogs(async () => {
    const cmd = { endpoint: '/c1' };
    const a = await enqueueKey(A, 601, cmd, 'ck-1');
    assert.equal(a.status, 201, a.text);
    const b = await enqueueKey(B, 601, cmd, 'ck-1');
    assert.equal(b.status, 201, b.text);
    assert.equal(b.text, a.text);
    assert.equal(b.headers['idempotent-replayed'], 'true');
    assert.equal((await enqueueKey(B, 601, { endpoint: '/c2' }, 'ck-1')).status, 422);

    const c = await subscriber(B, 'idem-cws', 'idem-cl');
    const body = { channel: 'idem-cl', data: 'x', event: 'e' };
    const p1 = await pushKey(A, '/api/push', body, 'cp-1');
    assert.equal(p1.status, 200, p1.text);
    assert.equal((await c.next()).id, p1.headers['x-push-id']);
    const p2 = await pushKey(B, '/api/push', body, 'cp-1');
    assert.equal(p2.status, 200, p2.text);
    assert.equal(p2.headers['x-push-id'], p1.headers['x-push-id']);
    assert.equal(p2.text, p1.text);
    assert.equal(p2.headers['idempotent-replayed'], 'true');

    // in flight on A (waiting for acks): the repeat on B is 409
    const rq = { serviceRequest: { n: 1 }, clientIdPattern: 'idem-cws', options: { awaitAcks: true, timeoutMs: 1000 } };
    const first = pushKey(A, '/api/push-requests', rq, 'cr-1');
    const f = await c.next();
    const busy = await pushKey(B, '/api/push-requests', rq, 'cr-1');
    assert.equal(busy.status, 409, busy.text);
    c.send({ type: 'response', id: f.id, successful: true, message: 'ok' });
    const r1 = await first;
    assert.equal(r1.status, 200, r1.text);
    const r2 = await pushKey(B, '/api/push-requests', rq, 'cr-1');
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.body.pushId, f.id);
    await c.expectNone(200);
    c.close();
  }));

  test('Redis paused during the first attempt: 503, then the retry finds the command', withLogs(async () => {
    const cmd = { endpoint: '/paused', body: { v: 7 } };
    // warm: the enqueue script is loaded and a pooled connection is open
    assert.equal((await enqueueKey(A, 700, { endpoint: '/warm' })).status, 201);
    await new DeviceSim(B, 700).drain();

    process.kill(redis.proc.pid, 'SIGSTOP');
    let first;
    try {
      first = await enqueueKey(A, 701, cmd, 'pause-1');
    } finally {
      process.kill(redis.proc.pid, 'SIGCONT');
    }
    assert.equal(first.status, 503, `the first attempt times out: ${first.status} ${first.text}`);

    // the retry (on the other node) until the cluster answers: the command Redis ran
    let r;
    const deadline = Date.now() + 10000 * SLOW;
    do {
      await sleep(100);
      r = await enqueueKey(B, 701, cmd, 'pause-1');
    } while (r.status === 503 && Date.now() < deadline);
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers['idempotent-replayed'], 'true', 'the first attempt was applied; the retry found it');
    const l = await listCommands(A, 701);
    assert.deepEqual(l.body.commands.map((x) => x.id), [r.body.id], 'exactly one command');

    const dev = new DeviceSim(A, 701);
    const done = await dev.drain();
    assert.equal(done.length, 1);
    assert.equal(done[0].endpoint, '/paused');
    const again = await enqueueKey(A, 701, cmd, 'pause-1');
    assert.equal(again.body.id, r.body.id);
    assert.equal((await dev.poll()).command, null, 'delivered exactly once');
  }));

  test('a keyed push while Redis is paused: 503 before acting, the retry pushes once', withLogs(async () => {
    const c = await subscriber(B, 'idem-pws', 'idem-paused');
    const body = { channel: 'idem-paused', data: 'p', event: 'e' };
    process.kill(redis.proc.pid, 'SIGSTOP');
    let first;
    try {
      first = await pushKey(A, '/api/push', body, 'pp-1');
    } finally {
      process.kill(redis.proc.pid, 'SIGCONT');
    }
    assert.equal(first.status, 503, first.text);
    await c.expectNone(300);
    let r;
    const deadline = Date.now() + 10000 * SLOW;
    do {
      await sleep(100);
      r = await pushKey(A, '/api/push', body, 'pp-1');
    } while (r.status !== 200 && Date.now() < deadline);
    assert.equal(r.status, 200, r.text);
    assert.equal((await c.next()).id, r.headers['x-push-id']);
    const again = await pushKey(B, '/api/push', body, 'pp-1');
    assert.equal(again.headers['x-push-id'], r.headers['x-push-id']);
    await c.expectNone(300);
    c.close();
  }));
});

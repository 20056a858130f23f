// The cluster on the NATS bus (issue 13, docs/cluster.md "NATS"). Every test of
// cluster.test.mjs runs again with NATS carrying the InternalPushRequests, the reports
// and the membership heartbeats, and Redis keeping the shared state (sessions, stream
// configuration, device queues); its fault tests kill nats-server instead of Redis.
// Then NATS without Redis: every node keeps its own state (SQLite device queue,
// in-memory sessions, its own stream configuration) while pushes, reports and
// membership span the cluster; a node stopped with SIGTERM leaves at once; a bad
// --nats URL is refused at start. And the two engines failing apart: Redis down (pushes
// still cross over NATS, the device queue answers 503), NATS down (the device queue in
// Redis works, pushes stay local with "bus": "down"), and a node started while NATS is
// down, ready only once NATS is there.

import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { clusterBus, startClusterNode, startRedis, startNats, waitMembers, waitReady } from './lib/cluster.mjs';

clusterBus.kind = 'nats';
await import('./cluster.test.mjs');

const {
  baseConfig, withLogs, connectClient, tryConnect, pushRequest, api, createSession, runCli, sleep, PUB_KEY, SLOW,
} = await import('./lib/harness.mjs');
const { DeviceSim, enqueue, getCommand } = await import('./lib/device-sim.mjs');

describe('NATS and Redis fail apart', () => {
  // a Redis and a nats-server of their own: each is killed in turn under two nodes
  test('Redis down: pushes still cross over NATS, the device queue answers 503; NATS down: the device queue works, pushes stay local', withLogs(async () => {
    const redis = await startRedis();
    const nats = await startNats();
    const config = baseConfig({ applicationId: 'apart' });
    const [p, q] = await Promise.all(['p1', 'p2'].map((id) => startClusterNode(redis, id, { config, nats })));
    const c = await connectClient(q, { clientId: 'apart-q' });
    try {
      await waitMembers([p, q], ['p1', 'p2']);
      await redis.kill();
      assert.deepEqual(await waitReady([p, q], 503), [{ status: 'bus down' }, { status: 'bus down' }]);
      let r = await pushRequest(p, { serviceRequest: { a: 1 }, clientIdPattern: 'apart-.*' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.summary, { matched: 1, delivered: 1, failed: 0, acknowledged: 0, nodes: 2, nodesMissing: [] });
      assert.equal((await c.next(3000 * SLOW)).id, r.body.pushId);
      const e = await enqueue(p, 8200, { endpoint: 'x' });
      assert.equal(e.status, 503, e.text);

      await redis.start();
      await waitReady([p, q], 200);
      await nats.kill();
      await waitReady([p, q], 503);
      const e2 = await enqueue(p, 8200, { endpoint: 'while-nats-down' });
      assert.equal(e2.status, 201, e2.text);
      assert.equal((await new DeviceSim(q, 8200).poll()).command?.endpoint, 'while-nats-down');
      r = await pushRequest(p, { serviceRequest: { a: 2 }, clientIdPattern: 'apart-.*' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.summary.bus, 'down');
      assert.deepEqual(r.body.summary.nodesMissing, ['p2']);
      await c.expectNone(200 * SLOW);

      await nats.start();
      await waitReady([p, q], 200);
      r = await pushRequest(p, { serviceRequest: { a: 3 }, clientIdPattern: 'apart-.*' });
      assert.deepEqual(r.body.summary, { matched: 1, delivered: 1, failed: 0, acknowledged: 0, nodes: 2, nodesMissing: [] });
      assert.equal((await c.next(3000 * SLOW)).id, r.body.pushId);
    } finally {
      await c.close();
      await Promise.all([p.stop(), q.stop()]);
      await redis.stop();
      await nats.stop();
    }
  }));

  test('a node started while NATS is down is not ready, and joins once NATS is there', withLogs(async () => {
    const nats = await startNats();
    await nats.kill();
    const { startNode } = await import('./lib/harness.mjs');
    let b;
    try {
      let readyAt = 0;
      const pending = startNode({ config: baseConfig({ applicationId: 'late' }), extraArgs: ['--nats', nats.url, '--node-id', 'l2'], readyTimeoutMs: 15000 * SLOW })
        .then((n) => { readyAt = Date.now(); return n; });
      await sleep(800 * SLOW);
      const natsAt = Date.now();
      await nats.start();
      b = await pending;
      assert.ok(readyAt >= natsAt, 'not ready before NATS was there');
      assert.match(b.logs(), /cannot reach NATS yet/);
      assert.deepEqual(await waitMembers([b], ['l2']), [['l2']]);
    } finally {
      await b?.stop();
      await nats.stop();
    }
  }));
});

describe('NATS without Redis: messages across the cluster, state on each node', () => {
  const SIDS = ['s1', 's2', 's3'];
  let a;
  let b;
  let c;

  before(async () => {
    const config = baseConfig({ applicationId: 'solo' });
    [a, b, c] = await Promise.all(SIDS.map((id) => startClusterNode(null, id, { config })));
    await waitMembers([a, b, c], SIDS);
  });

  test('a push request from any node reaches every node\'s clients; the report names the three', withLogs(async () => {
    const cs = [await connectClient(a, { clientId: 'x1' }), await connectClient(b, { clientId: 'x2' }), await connectClient(c, { clientId: 'x3' })];
    for (const from of [c, a]) {
      const r = await pushRequest(from, { serviceRequest: { n: 1 }, clientIdPattern: 'x.' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.originId.nodeId]).sort(), [['x1', 's1'], ['x2', 's2'], ['x3', 's3']]);
      assert.deepEqual(r.body.summary, { matched: 3, delivered: 3, failed: 0, acknowledged: 0, nodes: 3, nodesMissing: [] });
      for (const cl of cs) assert.equal((await cl.next(3000 * SLOW)).id, r.body.pushId);
    }
    for (const cl of cs) await cl.expectNone(150 * SLOW);
    await Promise.all(cs.map((cl) => cl.close()));
  }));

  test('device queues are per node: a command enqueued on s1 is polled from s1 only', withLogs(async () => {
    const e = await enqueue(a, 8100, { endpoint: 'local_only' });
    assert.equal(e.status, 201, e.text);
    assert.equal((await new DeviceSim(b, 8100).poll()).text, '', 's2 has its own queue');
    assert.equal((await getCommand(b, 8100, e.body.id)).status, 404);
    const p = await new DeviceSim(a, 8100).poll();
    assert.equal(p.command?.endpoint, 'local_only');
    assert.equal((await new DeviceSim(a, 8100).result({ response: 'ok' })).status, 200);
    assert.equal((await getCommand(a, 8100, e.body.id)).body.status, 'done');
  }));

  test('sessions are per node: one made on s1 works there, not on s2', withLogs(async () => {
    const s = await createSession(a, { user: 'solo-user', roles: ['solo'] });
    assert.equal(s.status, 201, JSON.stringify(s.body));
    const here = await tryConnect(a, { sessionId: s.body.sessionId, clientId: 'solo-a' });
    assert.ok(here.open, 'accepted on the node that made it');
    here.ws.terminate();
    const there = await tryConnect(b, { sessionId: s.body.sessionId, clientId: 'solo-b' });
    if (there.open) there.ws.terminate();
    assert.equal(there.open, false);
    assert.equal(there.status, 401);
  }));

  test('a channel push on s3 reaches a WebSocket subscriber on s1', withLogs(async () => {
    const ws = await connectClient(a, { clientId: 'solo-chan' });
    ws.send({ type: 'subscribe', channels: ['solo-news'] });
    assert.equal((await ws.next()).type, 'subscribed');
    const r = await api(c, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'solo-news', event: 'e', data: { v: 3 } } });
    assert.equal(r.status, 200, r.text);
    const m = await ws.next(3000 * SLOW);
    assert.equal(m.id, r.headers.get('x-push-id'));
    assert.deepEqual(m.payload, { v: 3 });
    await ws.close();
  }));

  test('a node stopped with SIGTERM leaves at once (no wait for its heartbeats to expire)', withLogs(async () => {
    await c.stop();
    const t0 = Date.now();
    await waitMembers([a, b], ['s1', 's2'], 1500 * SLOW);
    assert.ok(Date.now() - t0 < 1500 * SLOW);
    const r = await pushRequest(a, { serviceRequest: { n: 2 } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.summary.nodesMissing, []);
    assert.equal(r.body.summary.nodes, 2);
  }));

  test('the nodes are ready, and a bad --nats URL is refused at start, naming it', withLogs(async () => {
    await waitReady([a, b], 200);
    for (const [url, why] of [['redis://127.0.0.1:1', 'the scheme must be nats://'], ['nats://u:p@127.0.0.1:1', 'credentials are not supported']]) {
      const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--data-dir', '/tmp/pushgate-cluster-bad', '--nats', url]);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(`nats URL \\"${url}\\": ${why}`) || r.stderr.includes(`nats URL "${url}": ${why}`), r.stderr);
    }
  }));
});

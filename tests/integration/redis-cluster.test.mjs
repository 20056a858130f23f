// The cluster on a sharded Redis Cluster (issue 13, docs/cluster.md "Redis Cluster"): a
// real 3-master Redis Cluster started by the test (redis-server --cluster-enabled yes
// ×3, redis-cli --cluster create), and three pushgate nodes configured with
// "redis": {"cluster": [seeds]}.
//
// Covered: membership; a push request from one node reaching clients on all three with
// the merged report; a channel push reaching an SSE subscriber and a WebSocket
// subscriber on other nodes; sessions shared (each on the master its slot names) and
// revoked across nodes; stream configuration shared; SSE history replay on another
// node; device command queues spread over the masters (enqueue on A, poll on B,
// result on C); a device's slot migrated to another master while the nodes run
// (ASK while it migrates, MOVED after): the queue keeps working and nothing is lost.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  baseConfig, cleanup, withLogs, connectClient, tryConnect, pushRequest, api, createSession,
  sleep, PUB_KEY, ADMIN_KEY, SLOW,
} from './lib/harness.mjs';
import { sseSubscribe, jsonData, closeAllSse, until } from './lib/sse.mjs';
import { startRedisCluster, startRedisClusterNode, waitMembers, redisCommand } from './lib/cluster.mjs';
import { DeviceSim, enqueue, getCommand, listCommands } from './lib/device-sim.mjs';

const CONFIG_PATH = '/configuration/v2/configuration/platform/push-service';
const IDS = ['r1', 'r2', 'r3'];
const BUCKETS = 16; // DEVICES_REDIS_BUCKETS

let rc;
let n1;
let n2;
let n3;
let nodes;

before(async () => {
  rc = await startRedisCluster({ masters: 3 });
  const config = baseConfig({ device: { redeliveryMs: 60000 } });
  [n1, n2, n3] = await Promise.all(IDS.map((id) => startRedisClusterNode(rc, id, { config })));
  nodes = [n1, n2, n3];
  await waitMembers(nodes, IDS);
});

after(async () => {
  closeAllSse();
  try {
    await cleanup();
  } finally {
    await rc?.stop();
  }
});

const origin = (nodeId) => ({ applicationId: 'pushgate', nodeId });
const byClient = (msgs) => [...msgs].sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));

/** The integer reply of a RESP answer (":N\r\n"). */
const int = (reply) => Number(reply.slice(1, reply.indexOf('\r\n')));

/** Which master holds key now, and whether that master says it exists. */
async function holder(key) {
  const slot = int(await redisCommand(rc.ports[0], 'CLUSTER', 'KEYSLOT', key));
  const port = await rc.slotOwner(slot);
  return { slot, port, exists: int(await redisCommand(port, 'EXISTS', key)) === 1 };
}

/** The device queue's hash tag (bucket) prefix of a device. */
const devTag = (deviceId) => `{pushgate:pushgate:dev:${deviceId % BUCKETS}}:`;

describe('pushes, channels, sessions, streams and history on Redis Cluster', () => {
  test('three masters; every node lists the three members', withLogs(async () => {
    const info = await redisCommand(rc.ports[0], 'CLUSTER', 'INFO');
    assert.match(info, /cluster_state:ok/);
    assert.match(info, /cluster_size:3/);
    // the bus's keys share one hash tag: the heartbeats live on the master of that slot
    for (const id of IDS) {
      const h = await holder(`pushgate:{pushgate}:node:${id}`);
      assert.ok(h.exists, `heartbeat of ${id} not on master ${h.port} of slot ${h.slot}`);
    }
  }));

  test('a push request from any node: every matching client once, the merged report names all three', withLogs(async () => {
    const cs = {};
    for (const [node, clientId] of [[n1, 'a1'], [n2, 'a2'], [n3, 'a3'], [n3, 'b3']]) cs[clientId] = await connectClient(node, { clientId });
    for (const from of [n2, n3]) {
      const r = await pushRequest(from, { serviceRequest: { n: 1 }, rolePattern: '\\$user-john' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(byClient(r.body.responseMessages), [
        { clientId: 'a1', sessionId: 's-john', originId: origin('r1'), successful: true, message: 'delivered' },
        { clientId: 'a2', sessionId: 's-john', originId: origin('r2'), successful: true, message: 'delivered' },
        { clientId: 'a3', sessionId: 's-john', originId: origin('r3'), successful: true, message: 'delivered' },
        { clientId: 'b3', sessionId: 's-john', originId: origin('r3'), successful: true, message: 'delivered' },
      ]);
      assert.deepEqual(r.body.summary, { matched: 4, delivered: 4, failed: 0, acknowledged: 0, nodes: 3, nodesMissing: [] });
      for (const c of Object.values(cs)) {
        const m = await c.next(3000 * SLOW);
        assert.equal(m.id, r.body.pushId);
      }
    }
    for (const c of Object.values(cs)) await c.expectNone(150 * SLOW);
    await Promise.all(Object.values(cs).map((c) => c.close()));
  }));

  test('a channel push on n1 reaches an SSE subscriber on n2 and a WebSocket subscriber on n3, once', withLogs(async () => {
    const sse = await sseSubscribe(n2, '/sse?channel=rc-news');
    const ws = await connectClient(n3, { clientId: 'rc-chan' });
    ws.send({ type: 'subscribe', channels: ['rc-news'] });
    assert.equal((await ws.next()).type, 'subscribed');
    const r = await api(n1, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'rc-news', event: 'flash', data: { x: 1 } } });
    assert.equal(r.status, 200, r.text);
    const id = r.headers.get('x-push-id');
    assert.equal(r.headers.get('x-push-subscribers'), '2');
    const ev = await sse.next();
    assert.deepEqual(jsonData(ev), { id, channel: 'rc-news', event: 'flash', data: { x: 1 } });
    assert.equal((await ws.next()).id, id);
    await sse.expectNone(150 * SLOW);
    sse.close();
    await ws.close();
  }));

  test('sessions live on the master of their own slot; made on n1, used on n3, revoked on n2 everywhere', withLogs(async () => {
    const sids = [];
    for (let i = 0; i < 6; i++) {
      const s = await createSession(n1, { user: `rc-user-${i}`, roles: ['rc-role'] });
      assert.equal(s.status, 201, JSON.stringify(s.body));
      sids.push(s.body.sessionId);
    }
    const masters = new Set();
    for (const sid of sids) {
      const h = await holder(`pushgate:pushgate:session:{${sid}}`);
      assert.ok(h.exists, `session ${sid} not on master ${h.port} of slot ${h.slot}`);
      masters.add(h.port);
    }
    assert.ok(masters.size >= 2, `six sessions all on one master: ${[...masters]}`);
    const sid = sids[0];
    const c = await connectClient(n3, { sessionId: sid, clientId: 'rc-roam' });
    const r = await pushRequest(n2, { serviceRequest: { hi: 1 }, rolePattern: 'rc-role' });
    assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.originId.nodeId]), [['rc-roam', 'r3']]);
    assert.equal((await c.next(3000 * SLOW)).id, r.body.pushId);
    await c.close();
    const d = await api(n2, 'DELETE', `/api/sessions/${sid}`, { key: ADMIN_KEY });
    assert.equal(d.status, 204, d.text);
    assert.equal((await holder(`pushgate:pushgate:session:{${sid}}`)).exists, false);
    for (const n of nodes) {
      const refused = await until(async () => {
        const t = await tryConnect(n, { sessionId: sid, clientId: 'rc-roam' });
        if (t.open) t.ws.terminate();
        return !t.open && t.status === 401;
      });
      assert.ok(refused, `node ${n.port} still accepts the revoked session`);
    }
  }));

  test('a session whose slot is half migrated (ASK): a node that never saw it looks it up on the target', withLogs(async () => {
    const s = await createSession(n1, { user: 'rc-ask', roles: ['rc-ask-role'] });
    assert.equal(s.status, 201);
    const sid = s.body.sessionId;
    const key = `pushgate:pushgate:session:{${sid}}`;
    const { slot, port: src } = await holder(key);
    const dst = rc.ports.find((p) => p !== src);
    const srcId = await rc.nodeIdOf(src);
    const dstId = await rc.nodeIdOf(dst);
    assert.match(await redisCommand(dst, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', srcId), /^\+OK/);
    assert.match(await redisCommand(src, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', dstId), /^\+OK/);
    assert.match(await redisCommand(src, 'MIGRATE', '127.0.0.1', dst, key, 0, 5000), /^\+OK/);
    assert.match(await redisCommand(src, 'GET', key), /^-ASK /);
    try {
      // n3 has not cached the session: it asks src, is sent to dst (ASKING), and gets it
      const c = await connectClient(n3, { sessionId: sid, clientId: 'rc-ask' });
      const r = await pushRequest(n1, { serviceRequest: { ask: 1 }, rolePattern: 'rc-ask-role' });
      assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.originId.nodeId]), [['rc-ask', 'r3']]);
      await c.close();
    } finally {
      for (const port of rc.ports) await redisCommand(port, 'CLUSTER', 'SETSLOT', slot, 'NODE', dstId);
    }
    assert.equal((await holder(key)).port, dst);
    // n2 follows MOVED to the new master
    const c2 = await connectClient(n2, { sessionId: sid, clientId: 'rc-ask-2' });
    await c2.close();
  }));

  test('stream configuration saved on n1 is used by n3; an event posted on n3 reaches a subscriber on n2', withLogs(async () => {
    const T = 'rct';
    const stream = { name: 'Health', publicSubscribe: true, events: [{ namespace: 'svc', name: 'up' }] };
    let r = await api(n1, 'PATCH', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY, body: { operation: 'UPDATE', update: { health: stream } } });
    assert.equal(r.status, 200, r.text);
    assert.ok((await holder(`pushgate:{pushgate}:streams:${T}`)).exists);
    const seen = await until(async () => {
      const g = await api(n3, 'GET', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY });
      return g.status === 200 && g.body.health ? g.body : null;
    });
    assert.deepEqual(seen, { health: { id: 'health', ...stream } });
    await until(async () => {
      const g = await api(n2, 'GET', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY });
      return g.status === 200 && g.body.health ? true : null;
    });
    const sess = await createSession(n1, { user: 'rc-s', tenant: T });
    const sub = await sseSubscribe(n2, '/stream/v1/streams/health', { headers: { authorization: `Bearer ${sess.body.sessionId}` } });
    const ev = { namespace: 'svc', name: 'up', timestamp: '2026-12-06T10:00:00Z', payload: { ok: true } };
    r = await api(n3, 'POST', `/event/v1/events?tenantId=${T}`, { key: PUB_KEY, body: ev });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(jsonData(await sub.next()), ev);
    sub.close();
  }));

  test('SSE reconnect to another node with Last-Event-ID replays exactly the missed events', withLogs(async () => {
    const ch = 'rc.resume';
    const pushOn = async (node, data) => {
      const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: ch, event: 'e', data } });
      assert.equal(r.status, 200, r.text);
      return r.headers.get('x-push-id');
    };
    const s1 = await sseSubscribe(n2, `/sse?channel=${ch}`);
    const first = await pushOn(n1, 'a');
    assert.equal((await s1.next()).id, first);
    const last = s1.lastEventId();
    s1.close();
    await sleep(50);
    const missed = [];
    for (const [i, n] of [n3, n1, n2].entries()) missed.push(await pushOn(n, `m${i}`));
    const s2 = await sseSubscribe(n3, `/sse?channel=${ch}`, { headers: { 'last-event-id': last } });
    const replayed = await s2.nextN(3);
    assert.deepEqual(replayed.map((e) => e.id), missed);
    assert.deepEqual(replayed.map((e) => jsonData(e).data), ['m0', 'm1', 'm2']);
    s2.close();
  }));
});

describe('device command queues on Redis Cluster', () => {
  test('enqueued on A, polled on B, result on C; the devices\' buckets spread over the masters', withLogs(async () => {
    const masters = new Set();
    const ids = {};
    for (let d = 8000; d < 8000 + BUCKETS; d++) {
      const e = await enqueue(nodes[d % 3], d, { endpoint: `cmd-${d}`, body: { d } });
      assert.equal(e.status, 201, e.text);
      ids[d] = e.body.id;
      const h = await holder(`${devTag(d)}q:${d}`);
      assert.ok(h.exists, `queue of device ${d} not on master ${h.port}`);
      masters.add(h.port);
    }
    assert.equal(masters.size, 3, 'the 16 buckets are on all three masters');
    for (let d = 8000; d < 8000 + BUCKETS; d++) {
      const p = await new DeviceSim(nodes[(d + 1) % 3], d).poll();
      assert.equal(p.status, 200, p.text);
      assert.deepEqual(p.command.body, { d });
      const r = await new DeviceSim(nodes[(d + 2) % 3], d).result({ response: { ok: d } });
      assert.equal(r.status, 200, r.text);
      const g = await getCommand(nodes[d % 3], d, ids[d]);
      assert.equal(g.body.status, 'done');
      assert.deepEqual(g.body.response, { ok: d });
    }
    // the depth listing merges the buckets, in device order
    for (const d of [8003, 8001, 8002]) assert.equal((await enqueue(n1, d, { endpoint: 'again' })).status, 201);
    const depths = await api(n2, 'GET', '/api/devices', { key: PUB_KEY });
    assert.equal(depths.status, 200, depths.text);
    // (devices that polled are listed too, with nothing queued)
    assert.deepEqual(depths.body.devices.filter((x) => x.queued).map((x) => [x.deviceId, x.queued]), [[8001, 1], [8002, 1], [8003, 1]]);
  }));

  test('a device\'s slot migrated to another master while the nodes run: ASK during, MOVED after; nothing lost', withLogs(async () => {
    const dev = 8100;
    const first = await enqueue(n1, dev, { endpoint: 'before-move' });
    assert.equal(first.status, 201, first.text);
    const slot = int(await redisCommand(rc.ports[0], 'CLUSTER', 'KEYSLOT', `${devTag(dev)}q:${dev}`));
    const src = await rc.slotOwner(slot);
    const dst = rc.ports.find((p) => p !== src);
    const srcId = await rc.nodeIdOf(src);
    const dstId = await rc.nodeIdOf(dst);
    // migrate every key of the slot, but leave the slot MIGRATING/IMPORTING: the source
    // answers ASK for them
    assert.match(await redisCommand(dst, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', srcId), /^\+OK/);
    assert.match(await redisCommand(src, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', dstId), /^\+OK/);
    const keys = (await redisCommand(src, 'CLUSTER', 'GETKEYSINSLOT', slot, 1000)).split('\r\n').filter((l) => l && !/^[*$]/.test(l));
    assert.ok(keys.includes(`${devTag(dev)}q:${dev}`), JSON.stringify(keys));
    assert.match(await redisCommand(src, 'MIGRATE', '127.0.0.1', dst, '', 0, 5000, 'KEYS', ...keys), /^\+OK/);
    // mid-migration the source answers ASK and the target TRYAGAIN (a script names keys
    // that do not exist yet): the calls wait, and go through once the migration ends
    const t0 = Date.now();
    const polling = new DeviceSim(n2, dev).poll();
    const enqueuing = enqueue(n3, dev, { endpoint: 'during-move' });
    // longer than 8 ASK→TRYAGAIN rounds of 25 ms, well inside the 1 s a command waits
    await sleep(400);
    // the slot now belongs to dst everywhere (MOVED for anyone who asks src)
    for (const port of rc.ports) assert.match(await redisCommand(port, 'CLUSTER', 'SETSLOT', slot, 'NODE', dstId), /^\+OK/);
    const p = await polling;
    const second = await enqueuing;
    assert.ok(Date.now() - t0 >= 400, 'the calls waited for the migration');
    assert.equal(p.status, 200, p.text);
    assert.equal(p.command.endpoint, 'before-move');
    assert.equal(second.status, 201, second.text);
    assert.equal(await rc.slotOwner(slot), dst);
    assert.match(await redisCommand(src, 'GET', `${devTag(dev)}id`), /^-MOVED /);
    // every node's clients were told src: they follow MOVED
    for (const [i, n] of nodes.entries()) {
      const r = await getCommand(n, dev, first.body.id);
      assert.equal(r.status, 200, `node ${IDS[i]}: ${r.text}`);
      assert.equal(r.body.status, 'sent');
    }
    assert.equal((await new DeviceSim(n3, dev).result({ response: 'moved ok' })).status, 200);
    assert.equal((await new DeviceSim(n1, dev).poll()).command.endpoint, 'during-move');
    assert.equal((await new DeviceSim(n2, dev).result({ response: 'second ok' })).status, 200);
    const third = await enqueue(n2, dev, { endpoint: 'after-move' });
    assert.equal(third.status, 201, third.text);
    const list = await listCommands(n3, dev);
    assert.equal(list.status, 200, list.text);
    assert.deepEqual(list.body.commands.map((c) => [c.endpoint, c.status]),
      [['before-move', 'done'], ['during-move', 'done'], ['after-move', 'queued']]);
    assert.ok((await holder(`${devTag(dev)}q:${dev}`)).exists);
    assert.equal((await holder(`${devTag(dev)}q:${dev}`)).port, dst);
  }));
});

describe('the bus on Redis Cluster', () => {
  test('the bus\'s slot migrated to another master: the nodes reconnect there, keep their members and deliver', withLogs(async () => {
    const { slot, port: src } = await holder('pushgate:{pushgate}:node:r1');
    const dst = rc.ports.find((p) => p !== src);
    const srcId = await rc.nodeIdOf(src);
    const dstId = await rc.nodeIdOf(dst);
    assert.match(await redisCommand(dst, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', srcId), /^\+OK/);
    assert.match(await redisCommand(src, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', dstId), /^\+OK/);
    const keys = (await redisCommand(src, 'CLUSTER', 'GETKEYSINSLOT', slot, 1000)).split('\r\n').filter((l) => l && !/^[*$]/.test(l));
    assert.ok(keys.includes('pushgate:{pushgate}:node:r2'), JSON.stringify(keys));
    assert.match(await redisCommand(src, 'MIGRATE', '127.0.0.1', dst, '', 0, 5000, 'KEYS', ...keys), /^\+OK/);
    for (const port of rc.ports) assert.match(await redisCommand(port, 'CLUSTER', 'SETSLOT', slot, 'NODE', dstId), /^\+OK/);
    // every node's heartbeat reaches the new master, and the members are all there
    const fresh = await until(async () => {
      const ttls = await Promise.all(IDS.map((id) => redisCommand(dst, 'PTTL', `pushgate:{pushgate}:node:${id}`)));
      return ttls.every((t) => int(t) > 2000) ? ttls : null;
    });
    assert.ok(fresh, 'heartbeats on the new master');
    await waitMembers(nodes, IDS);
    const c = await connectClient(n1, { clientId: 'after-bus-move' });
    const r = await until(async () => {
      const x = await pushRequest(n3, { serviceRequest: { moved: 1 }, clientIdPattern: 'after-bus-move' });
      return x.status === 200 && x.body.summary.nodes === 3 && x.body.summary.delivered === 1 ? x : null;
    });
    assert.ok(r, 'a push request with every node reporting');
    assert.deepEqual(r.body.summary.nodesMissing, []);
    assert.equal((await c.next(3000 * SLOW)).id, r.body.pushId);
    await c.close();
  }));
});

// The cluster over Redis (issue 6, docs/cluster.md): a real redis-server on a free
// loopback port and three nodes n1, n2, n3. Seed 000: the node that receives a push
// clones it to every node (itself included); every node delivers to its own clients
// and reports to the origin, which merges the reports.
//
// Covered: socket.io clients on other nodes than the publisher's; push requests from any node reach every matching client exactly once with
// a report naming all three originIds (awaitAcks across nodes too); channel pushes and
// stream events across nodes; sessions and stream configuration shared through Redis;
// SSE resume on another node with Last-Event-ID; membership in GET /api/nodes; Redis
// killed and restarted (readyz, local-only reports flagged "bus down", reconnect);
// kill -9 of a node (nodesMissing, then out of the members after the TTL); a bad
// --redis URL; device command queues shared through Redis (enqueue on one node, poll
// on another, result on a third; redelivery, waitMs and the long poll across nodes;
// Redis killed and restarted with its AOF: 503 meanwhile, nothing acknowledged lost).
//
// cluster-nats.test.mjs runs every test here again with NATS carrying the messages and
// Redis keeping the state (clusterBus.kind 'nats'): the faults then kill nats-server.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  baseConfig, cleanup, withLogs, connectClient, tryConnect, pushRequest, api, get, createSession,
  sleep, runCli, ADMIN_KEY, PUB_KEY, SLOW,
} from './lib/harness.mjs';
import { sseSubscribe, jsonData, closeAllSse, until } from './lib/sse.mjs';
import { startRedis, startNats, startClusterNode, waitMembers, waitReady, redisCommand, natsSubscribe, clusterBus } from './lib/cluster.mjs';
import { DeviceSim, request, enqueue, getCommand, listCommands } from './lib/device-sim.mjs';
import { io } from 'socket.io-client';

const CONFIG_PATH = '/configuration/v2/configuration/platform/push-service';
const IDS = ['n1', 'n2', 'n3'];

let redis;
let n1;
let n2;
let n3;
let nodes;

const NATS = clusterBus.kind === 'nats';
/** What carries the messages: killed by the fault tests. */
const messageBus = () => (NATS ? clusterBus.nats : redis);
const BUS_NAME = NATS ? 'NATS' : 'Redis';

before(async () => {
  redis = await startRedis();
  if (NATS) clusterBus.nats = await startNats();
  [n1, n2, n3] = await Promise.all(IDS.map((id) => startClusterNode(redis, id)));
  nodes = [n1, n2, n3];
  await waitMembers(nodes, IDS);
});

after(async () => {
  closeAllSse();
  try {
    await cleanup();
  } finally {
    await redis?.stop();
    await clusterBus.nats?.stop();
  }
});

const origin = (nodeId) => ({ applicationId: 'pushgate', nodeId });
const byClient = (msgs) => [...msgs].sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));

/** One client per (node, clientId); returns them by clientId. */
async function clients(spec) {
  const out = {};
  for (const [node, clientId, sessionId = 's-john'] of spec) out[clientId] = await connectClient(node, { sessionId, clientId });
  return out;
}

async function closeAll(cs) {
  await Promise.all(Object.values(cs).map((c) => c.close()));
}

/** The next message of c, asserting it is the push id with payload. */
async function expectPush(c, id, payload) {
  const m = await c.next(3000 * SLOW);
  assert.equal(m.type, 'push', JSON.stringify(m));
  assert.equal(m.id, id);
  assert.deepEqual(m.payload, payload);
  return m;
}

describe('push requests across nodes', () => {
  test('GET /api/nodes lists the three members on every node, itself first', withLogs(async () => {
    for (const [i, n] of nodes.entries()) {
      const r = await get(n, '/api/nodes', { key: ADMIN_KEY });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.nodes[0].nodeId, IDS[i]);
      assert.deepEqual(r.body.nodes.map((x) => x.nodeId).sort(), IDS);
      for (const x of r.body.nodes) {
        assert.equal(x.applicationId, 'pushgate');
        assert.equal(x.workers, 2);
        assert.equal(typeof x.connections, 'number');
        assert.equal(typeof x.startedAt, 'number');
      }
    }
    const r = await get(n1, '/api/nodes', { key: PUB_KEY });
    assert.equal(r.status, 403);
  }));

  test('from any node: every matching client once, the report names all three originIds', withLogs(async () => {
    const cs = await clients([
      [n1, 'a1'], [n1, 'm1', 's-mary'], [n2, 'a2'], [n2, 'b2'], [n3, 'a3'], [n3, 'm3', 's-mary'],
    ]);
    for (const [i, from] of nodes.entries()) {
      const payload = { from: IDS[i], n: i };
      const r = await pushRequest(from, { serviceRequest: payload, rolePattern: '\\$user-john' });
      assert.equal(r.status, 200, r.text);
      const id = r.body.pushId;
      assert.deepEqual(byClient(r.body.responseMessages), [
        { clientId: 'a1', sessionId: 's-john', originId: origin('n1'), successful: true, message: 'delivered' },
        { clientId: 'a2', sessionId: 's-john', originId: origin('n2'), successful: true, message: 'delivered' },
        { clientId: 'a3', sessionId: 's-john', originId: origin('n3'), successful: true, message: 'delivered' },
        { clientId: 'b2', sessionId: 's-john', originId: origin('n2'), successful: true, message: 'delivered' },
      ]);
      assert.deepEqual(r.body.summary, { matched: 4, delivered: 4, failed: 0, acknowledged: 0, nodes: 3, nodesMissing: [] });
      for (const c of ['a1', 'a2', 'b2', 'a3']) await expectPush(cs[c], id, payload);
    }
    // no duplicates, and mary's clients got nothing
    for (const c of Object.values(cs)) await c.expectNone(200 * SLOW);
    await closeAll(cs);
  }));

  test('awaitAcks: the clients\' own answers come back from every node', withLogs(async () => {
    const cs = await clients([[n1, 'k1'], [n2, 'k2'], [n3, 'k3']]);
    const reply = pushRequest(n3, { serviceRequest: { ack: 1 }, clientIdPattern: 'k.', options: { awaitAcks: true, timeoutMs: 5000 } });
    for (const [name, c] of Object.entries(cs)) {
      const m = await c.next(3000 * SLOW);
      c.send({ type: 'response', id: m.id, successful: true, message: `ok from ${name}` });
    }
    const r = await reply;
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(byClient(r.body.responseMessages).map((m) => [m.clientId, m.originId.nodeId, m.message]),
      [['k1', 'n1', 'ok from k1'], ['k2', 'n2', 'ok from k2'], ['k3', 'n3', 'ok from k3']]);
    assert.equal(r.body.summary.acknowledged, 3);
    assert.equal(r.body.summary.nodes, 3);
    await closeAll(cs);
  }));

  test('report "summary" and "none" across nodes', withLogs(async () => {
    const cs = await clients([[n1, 's1'], [n3, 's3']]);
    let r = await pushRequest(n2, { serviceRequest: { n: 1 }, clientIdPattern: 's.', options: { report: 'summary' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.responseMessages, undefined);
    assert.deepEqual(r.body.summary, { matched: 2, delivered: 2, failed: 0, acknowledged: 0, nodes: 3, nodesMissing: [] });
    await expectPush(cs.s1, r.body.pushId, { n: 1 });
    await expectPush(cs.s3, r.body.pushId, { n: 1 });
    r = await pushRequest(n2, { serviceRequest: { n: 2 }, clientIdPattern: 's.', options: { report: 'none' } });
    assert.equal(r.status, 202, r.text);
    await expectPush(cs.s1, r.body.pushId, { n: 2 });
    await expectPush(cs.s3, r.body.pushId, { n: 2 });
    for (const c of Object.values(cs)) await c.expectNone(150 * SLOW);
    await closeAll(cs);
  }));
});

describe('clients listed over the cluster', () => {
  test('GET /api/connections on one node lists the clients of all three, with their node, filtered by each pattern', withLogs(async () => {
    const cs = await clients([[n1, 'lc-1'], [n2, 'lc-2', 's-mary'], [n3, 'lc-3'], [n3, 'lc-3b', 's-mary']]);
    const list = async (from, q = '') => {
      const r = await get(from, `/api/connections?${q}`, { key: ADMIN_KEY });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.nodesMissing, []);
      assert.equal(r.body.nodes, 3);
      return r.body;
    };
    const mine = (b) => b.connections.filter((c) => c.clientId.startsWith('lc-')).map((c) => [c.clientId, c.node]).sort();
    for (const from of nodes) {
      const b = await list(from, 'clientIdPattern=lc-.*');
      assert.deepEqual(mine(b), [['lc-1', 'n1'], ['lc-2', 'n2'], ['lc-3', 'n3'], ['lc-3b', 'n3']]);
      assert.equal(b.truncated, false);
      assert.equal(b.matched, 4);
      const r3 = b.connections.find((c) => c.clientId === 'lc-3b');
      assert.equal(r3.sessionId, 's-mary');
      assert.equal(r3.user, 'mary');
      assert.equal(r3.transport, 'websocket');
      assert.ok(r3.roles.includes('viewer'), JSON.stringify(r3.roles));
      assert.equal(typeof r3.connectedAt, 'number');
    }
    // each pattern kind, as a push request reads it (full match)
    assert.deepEqual(mine(await list(n2, 'sessionIdPattern=s-mary&clientIdPattern=lc-.*')), [['lc-2', 'n2'], ['lc-3b', 'n3']]);
    assert.deepEqual(mine(await list(n1, `rolePattern=${encodeURIComponent('\\$user-john')}&clientIdPattern=lc-.*`)), [['lc-1', 'n1'], ['lc-3', 'n3']]);
    assert.deepEqual(mine(await list(n3, 'clientIdPattern=lc-3')), [['lc-3', 'n3']]);
    // exactly who a push with those patterns reaches
    const pr = await pushRequest(n1, { serviceRequest: { l: 1 }, sessionIdPattern: 's-mary', clientIdPattern: 'lc-.*' });
    assert.deepEqual(pr.body.responseMessages.map((m) => [m.clientId, m.originId.nodeId]).sort(), [['lc-2', 'n2'], ['lc-3b', 'n3']]);
    // bounded: limit rows, the rest counted and flagged
    const lim = await list(n2, 'clientIdPattern=lc-.*&limit=2');
    assert.equal(lim.connections.length, 2);
    assert.equal(lim.matched, 4);
    assert.equal(lim.truncated, true);
    const bad = await get(n1, '/api/connections?limit=0', { key: ADMIN_KEY });
    assert.equal(bad.status, 422, bad.text);
    const badPat = await get(n1, '/api/connections?rolePattern=(', { key: ADMIN_KEY });
    assert.equal(badPat.status, 422, badPat.text);
    await closeAll(cs);
  }));
});

describe('channels, streams, sessions and history across nodes', () => {
  test('a channel push on n1 reaches an SSE subscriber on n2 and a WebSocket subscriber on n3, once', withLogs(async () => {
    const sse = await sseSubscribe(n2, '/sse?channel=news');
    const ws = await connectClient(n3, { clientId: 'chan-ws' });
    ws.send({ type: 'subscribe', channels: ['news'] });
    assert.equal((await ws.next()).type, 'subscribed');
    const r = await api(n1, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'news', event: 'flash', data: { x: 1 } } });
    assert.equal(r.status, 200, r.text);
    const id = r.headers.get('x-push-id');
    assert.equal(r.headers.get('x-push-subscribers'), '2');
    const ev = await sse.next();
    assert.equal(ev.id, id);
    assert.deepEqual(jsonData(ev), { id, channel: 'news', event: 'flash', data: { x: 1 } });
    const m = await ws.next();
    assert.equal(m.id, id);
    assert.equal(m.channel, 'news');
    assert.deepEqual(m.payload, { x: 1 });
    await sse.expectNone(200 * SLOW);
    await ws.expectNone(1);
    sse.close();
    await ws.close();
  }));

  test('stream configuration saved on n1 is used by n3; a session made on n1 subscribes on n2; an event posted on n3 reaches it', withLogs(async () => {
    const T = 'tcl';
    const stream = { name: 'Health', publicSubscribe: true, events: [{ namespace: 'svc', name: 'up' }] };
    let r = await api(n1, 'PATCH', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY, body: { operation: 'UPDATE', update: { health: stream } } });
    assert.equal(r.status, 200, r.text);
    const seen = await until(async () => {
      const g = await api(n3, 'GET', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY });
      return g.status === 200 && g.body.health ? g.body : null;
    });
    assert.deepEqual(seen, { health: { id: 'health', ...stream } });
    const sess = await createSession(n1, { user: 'cl-user', tenant: T });
    assert.equal(sess.status, 201, JSON.stringify(sess.body));
    const sub = await sseSubscribe(n2, '/stream/v1/streams/health', { headers: { authorization: `Bearer ${sess.body.sessionId}` } });
    const ev = { namespace: 'svc', name: 'up', timestamp: '2026-11-23T10:00:00Z', payload: { ok: true } };
    r = await api(n3, 'POST', `/event/v1/events?tenantId=${T}`, { key: PUB_KEY, body: ev });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.streams, ['health']);
    const got = await sub.next();
    assert.deepEqual(jsonData(got), ev);
    await sub.expectNone(200 * SLOW);
    sub.close();
  }));

  test('socket.io clients on n2 and n3: a push request from n1 and a stream event posted on n1 reach each once', withLogs(async () => {
    const T = 'tsio';
    const stream = { publicSubscribe: true, events: [{ namespace: 'svc', name: 'down' }] };
    let r = await api(n1, 'PATCH', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY, body: { operation: 'UPDATE', update: { alerts: stream } } });
    assert.equal(r.status, 200, r.text);
    await until(async () => {
      const g = await api(n2, 'GET', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY });
      const h = await api(n3, 'GET', `${CONFIG_PATH}?tenantId=${T}`, { key: ADMIN_KEY });
      return g.body?.alerts && h.body?.alerts ? true : null;
    });
    const sockets = [];
    const connect = (node, nsp, opts) => new Promise((resolve, reject) => {
      const s = io(`${node.url}${nsp}`, { transports: ['websocket'], reconnection: false, ...opts });
      sockets.push(s);
      s.on('connect', () => resolve(s));
      s.on('connect_error', reject);
    });
    try {
      const main2 = await connect(n2, '/', { auth: { token: 's-john', clientId: 'sio-cl-2' } });
      const main3 = await connect(n3, '/', { auth: { token: 's-mary', clientId: 'sio-cl-3' } });
      // a second namespace on the same host shares the first one's connection, whose
      // query was fixed at its handshake: the stream goes in auth, or in a new connection
      const st2 = await connect(n2, `/${T}`, { auth: { stream: 'alerts' } });
      const st3 = await connect(n3, `/${T}?stream=alerts`, { forceNew: true });
      const pushes = [main2, main3].map((s) => new Promise((res) => s.on('push', (payload, id) => res({ payload, id }))));
      r = await pushRequest(n1, { serviceRequest: { n: 1 }, clientIdPattern: 'sio-cl-.*' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.summary.matched, 2);
      assert.deepEqual(r.body.responseMessages.map((m) => m.originId.nodeId).sort(), ['n2', 'n3']);
      for (const got of await Promise.all(pushes)) assert.deepEqual(got, { payload: { n: 1 }, id: r.body.pushId });
      const counts = [0, 0];
      const events = [st2, st3].map((s, i) => new Promise((res) => s.on('svc:down', (ev) => { counts[i]++; res(ev); })));
      const ev = { namespace: 'svc', name: 'down', timestamp: '2026-11-23T10:00:00Z', payload: { db: 'x' } };
      r = await api(n1, 'POST', `/event/v1/events?tenantId=${T}`, { key: PUB_KEY, body: ev });
      assert.equal(r.status, 200, r.text);
      for (const got of await Promise.all(events)) assert.deepEqual(got, ev);
      await sleep(200 * SLOW);
      assert.deepEqual(counts, [1, 1]);
    } finally {
      for (const s of sockets) s.close();
    }
  }));

  test('a session created on n1 opens a WebSocket on n3; revoked on n2, it is refused everywhere', withLogs(async () => {
    const s = await createSession(n1, { user: 'roamer', roles: ['r1'] });
    assert.equal(s.status, 201);
    const sid = s.body.sessionId;
    const c = await connectClient(n3, { sessionId: sid, clientId: 'roam' });
    const r = await pushRequest(n2, { serviceRequest: { hi: 1 }, rolePattern: 'r1' });
    assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.originId.nodeId]), [['roam', 'n3']]);
    await expectPush(c, r.body.pushId, { hi: 1 });
    await c.close();
    const d = await api(n2, 'DELETE', `/api/sessions/${sid}`, { key: ADMIN_KEY });
    assert.equal(d.status, 204, d.text);
    for (const n of nodes) {
      const refused = await until(async () => {
        const t = await tryConnect(n, { sessionId: sid, clientId: 'roam' });
        if (t.open) t.ws.terminate();
        return !t.open && t.status === 401;
      });
      assert.ok(refused, `node ${n.port} still accepts the revoked session`);
    }
  }));

  test('SSE reconnect to another node with Last-Event-ID gets exactly the missed events', withLogs(async () => {
    const ch = 'resume.cluster';
    const pushOn = async (node, data) => {
      const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: ch, event: 'e', data } });
      assert.equal(r.status, 200, r.text);
      return r.headers.get('x-push-id');
    };
    const s1 = await sseSubscribe(n2, `/sse?channel=${ch}`);
    const seen = [await pushOn(n1, 'a'), await pushOn(n3, 'b')];
    assert.deepEqual((await s1.nextN(2)).map((e) => e.id), seen);
    const last = s1.lastEventId();
    s1.close();
    await sleep(50);
    // pushes from all three nodes, interleaved
    const missed = [];
    for (const [i, n] of [n3, n1, n2, n3].entries()) missed.push(await pushOn(n, `m${i}`));
    const s2 = await sseSubscribe(n3, `/sse?channel=${ch}`, { headers: { 'last-event-id': last } });
    const replayed = await s2.nextN(4);
    assert.deepEqual(replayed.map((e) => e.id), missed);
    assert.deepEqual(replayed.map((e) => jsonData(e).data), ['m0', 'm1', 'm2', 'm3']);
    assert.ok(replayed.every((e) => e.type === 'message'), 'no gap');
    const live = await pushOn(n1, 'live');
    assert.equal((await s2.next()).id, live);
    await s2.expectNone(200 * SLOW);
    s2.close();
  }));
});

describe('faults', () => {
  test(`${BUS_NAME} killed: readyz 503 "bus down", pushes delivered locally with a flagged report; restarted: nodes reconnect and deliver again`, withLogs(async () => {
    const cs = await clients([[n1, 'f1'], [n2, 'f2'], [n3, 'f3']]);
    const bus = messageBus();
    await bus.kill();
    try {
      await whileDown(cs);
    } finally {
      if (bus.proc.exitCode !== null || bus.proc.signalCode !== null) await bus.start();
    }
    await waitReady(nodes, 200);
    await waitMembers(nodes, IDS);
    const r = await pushRequest(n2, { serviceRequest: { again: 1 }, clientIdPattern: 'f.' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.summary, { matched: 3, delivered: 3, failed: 0, acknowledged: 0, nodes: 3, nodesMissing: [] });
    for (const c of Object.values(cs)) await expectPush(c, r.body.pushId, { again: 1 });
    for (const c of Object.values(cs)) await c.expectNone(200 * SLOW);
    await closeAll(cs);
  }));

  async function whileDown(cs) {
    const bodies = await waitReady(nodes, 503);
    assert.deepEqual(bodies, nodes.map(() => ({ status: 'bus down' })));
    const r = await pushRequest(n1, { serviceRequest: { local: 1 }, clientIdPattern: 'f.' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.originId.nodeId]), [['f1', 'n1']]);
    assert.equal(r.body.summary.bus, 'down');
    assert.equal(r.body.summary.nodes, 1);
    assert.deepEqual([...r.body.summary.nodesMissing].sort(), ['n2', 'n3']);
    await expectPush(cs.f1, r.body.pushId, { local: 1 });
    // the client listing too: this node's rows at once, the others named missing
    const l = await get(n1, '/api/connections?clientIdPattern=f.', { key: ADMIN_KEY });
    assert.equal(l.status, 200, l.text);
    assert.deepEqual(l.body.connections.map((c) => [c.clientId, c.node]), [['f1', 'n1']]);
    assert.deepEqual([...l.body.nodesMissing].sort(), ['n2', 'n3']);
    // channel pushes keep working locally too
    const cp = await api(n2, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'x', event: 'e', data: 1 } });
    assert.equal(cp.status, 200, cp.text);
    await cs.f2.expectNone(100);
    await cs.f3.expectNone(100);
  }

  test('kill -9 of a node: the next report names it in nodesMissing; after the TTL it is no longer a member', withLogs(async () => {
    const n4 = await startClusterNode(redis, 'n4', { workers: 1 });
    await waitMembers([n1, n4], [...IDS, 'n4']);
    const c4 = await connectClient(n4, { clientId: 'gone' });
    const c1 = await connectClient(n1, { clientId: 'stay' });
    await n4.kill();
    c4.terminate();
    const t0 = Date.now();
    // the client listing waits for n4 alongside the push (no added time); n1 knows n4
    const listing = get(n1, '/api/connections?clientIdPattern=gone%7Cstay', { key: ADMIN_KEY });
    let r = await pushRequest(n1, { serviceRequest: { x: 1 }, clientIdPattern: 'gone|stay' });
    const took = Date.now() - t0;
    const l = await listing;
    assert.equal(l.status, 200, l.text);
    assert.deepEqual(l.body.nodesMissing, ['n4']);
    assert.equal(l.body.nodes, 3);
    assert.deepEqual(l.body.connections.map((c) => [c.clientId, c.node]), [['stay', 'n1']]);
    assert.equal(r.status, 200, r.text);
    // its key outlives it by up to 3 s: still a member when we published, so the
    // origin waited for it and named it missing when the wait ended
    assert.deepEqual(r.body.summary.nodesMissing, ['n4']);
    assert.equal(r.body.summary.nodes, 3);
    assert.ok(took < 8000 * SLOW, `report took ${took} ms`);
    assert.deepEqual(r.body.responseMessages.map((m) => m.clientId), ['stay']);
    await expectPush(c1, r.body.pushId, { x: 1 });
    await waitMembers([n1, n2, n3], IDS, 6000 * SLOW);
    r = await pushRequest(n1, { serviceRequest: { y: 1 }, clientIdPattern: 'gone|stay' });
    assert.deepEqual(r.body.summary, { matched: 1, delivered: 1, failed: 0, acknowledged: 0, nodes: 3, nodesMissing: [] });
    await expectPush(c1, r.body.pushId, { y: 1 });
    await c1.close();
  }));

  if (!NATS) {
    test('membership keys live in Redis with a TTL', withLogs(async () => {
      const ttl = await redisCommand(redis.port, 'PTTL', 'pushgate:{pushgate}:node:n1');
      const ms = Number(ttl.slice(1));
      assert.ok(ms > 0 && ms <= 3000, `PTTL ${ttl}`);
    }));
  } else {
    test('membership: every node announces itself on NATS every second', withLogs(async () => {
      const sub = await natsSubscribe(clusterBus.nats.port, 'pushgate.pushgate.member.node');
      try {
        const heard = new Map();
        const t0 = Date.now();
        while (heard.size < 3) {
          const m = await sub.next(2500 * SLOW);
          const doc = JSON.parse(m.data);
          heard.set(doc.nodeId, doc);
        }
        assert.ok(Date.now() - t0 < 2500 * SLOW, 'each within about a second');
        assert.deepEqual([...heard.keys()].sort(), IDS);
        for (const d of heard.values()) assert.deepEqual(Object.keys(d).sort(), ['applicationId', 'connections', 'nodeId', 'startedAt', 'workers']);
      } finally {
        sub.close();
      }
    }));
  }

  test('a bad --redis URL is refused at start, naming it', withLogs(async () => {
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--data-dir', '/tmp/pushgate-cluster-bad', '--redis', 'http://127.0.0.1:1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /redis URL \\?"http:\/\/127\.0\.0\.1:1\\?": the scheme must be redis:\/\//);
  }));
});

describe('device command queues shared through Redis', () => {
  // three nodes of their own (applicationId "devq") on the same Redis: a short
  // redelivery timeout everywhere, and a long poll on dC only
  const REDELIVERY_MS = 700 * SLOW;
  const HOLD_MS = 4000 * SLOW;
  const DIDS = ['dA', 'dB', 'dC'];
  let A;
  let B;
  let C;

  const devConfig = (device = {}) => baseConfig({ applicationId: 'devq', device: { redeliveryMs: REDELIVERY_MS, ...device } });

  before(async () => {
    [A, B, C] = await Promise.all([
      startClusterNode(redis, 'dA', { config: devConfig() }),
      startClusterNode(redis, 'dB', { config: devConfig() }),
      startClusterNode(redis, 'dC', { config: devConfig({ holdMs: HOLD_MS }) }),
    ]);
    await waitMembers([A, B, C], DIDS);
  });

  /** Polls dev every 50 ms until a command comes; resolves the poll. */
  async function pollUntilCommand(dev, timeoutMs = 5000 * SLOW) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const p = await dev.poll();
      assert.equal(p.status, 200, p.text);
      if (p.command) return p;
      await sleep(50);
    }
    throw new Error(`device ${dev.deviceId}: no command within ${timeoutMs} ms`);
  }

  test('enqueued on node A, polled from node C, result posted to node B: A shows it done', withLogs(async () => {
    const cmd = { verb: 'POST', endpoint: 'load_objects', body: { object: 'users' }, contentType: 'application/json' };
    const e = await enqueue(A, 7001, cmd);
    assert.equal(e.status, 201, e.text);
    assert.equal(e.body.status, 'queued');
    assert.equal(e.headers.location, `/api/devices/7001/commands/${e.body.id}`);
    const p = await new DeviceSim(C, 7001).poll();
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(p.command, cmd);
    // one in flight, whichever node is asked (dC would hold the poll: not asked)
    for (const n of [A, B]) assert.equal((await new DeviceSim(n, 7001).poll()).text, '');
    const r = await new DeviceSim(B, 7001).result({ response: { users: [] } });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    const g = await getCommand(A, 7001, e.body.id);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.body.status, 'done');
    assert.deepEqual(g.body.response, { users: [] });
    assert.equal(g.body.attempts, 1);
    assert.equal(g.body.deviceId, 7001);
    assert.ok(g.body.createdAt <= g.body.sentAt && g.body.sentAt <= g.body.completedAt);
    assert.equal((await new DeviceSim(B, 7001).poll()).text, '', 'nothing left');
    // ids are the cluster's: one counter in Redis, growing across nodes
    const ids = [];
    for (const n of [C, B, A]) ids.push((await enqueue(n, 7002, { endpoint: `from-${n.port}` })).body.id);
    assert.ok(ids[0] > e.body.id && ids[0] < ids[1] && ids[1] < ids[2], JSON.stringify(ids));
    const l = await listCommands(B, 7002);
    assert.equal(l.status, 200, l.text);
    assert.deepEqual(l.body.commands.map((c) => c.id), ids);
    assert.deepEqual((await new DeviceSim(A, 7002).drain()).map((c) => c.endpoint), [C, B, A].map((n) => `from-${n.port}`));
  }));

  test('redelivery across nodes: sent by A, no result, sent again by C after redeliveryMs', withLogs(async () => {
    const e = await enqueue(B, 7010, { endpoint: 'open_door' });
    assert.equal(e.status, 201, e.text);
    const first = await new DeviceSim(A, 7010).poll();
    assert.equal(first.command.endpoint, 'open_door');
    // the result is lost; before the timeout no node sends it again
    assert.equal((await new DeviceSim(B, 7010).poll()).text, '');
    await sleep(REDELIVERY_MS + 200);
    const again = await new DeviceSim(C, 7010).poll();
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.command, first.command);
    let g = await getCommand(A, 7010, e.body.id);
    assert.equal(g.body.status, 'sent');
    assert.equal(g.body.attempts, 2);
    assert.equal((await new DeviceSim(C, 7010).result({ error: 'jammed' })).status, 200);
    g = await getCommand(B, 7010, e.body.id);
    assert.equal(g.body.status, 'failed');
    assert.equal(g.body.error, 'jammed');
  }));

  test('waitMs on node A is answered by a result posted to node C', withLogs(async () => {
    const t0 = Date.now();
    const waiting = enqueue(A, 7020, { endpoint: 'read_card' }, { query: { waitMs: 8000 * SLOW } });
    const p = await pollUntilCommand(new DeviceSim(B, 7020));
    assert.equal(p.command.endpoint, 'read_card');
    await sleep(100);
    const r = await new DeviceSim(C, 7020).result({ response: { card: 'ok' } });
    assert.equal(r.status, 200);
    const w = await waiting;
    const took = Date.now() - t0;
    assert.equal(w.status, 201, w.text);
    assert.equal(w.body.status, 'done');
    assert.deepEqual(w.body.response, { card: 'ok' });
    assert.ok(took < 4000 * SLOW, `the wait ended after ${took} ms, not when the result came`);
  }));

  test('a long poll held on node C is answered by an enqueue on node A', withLogs(async () => {
    const dev = new DeviceSim(C, 7030);
    const t0 = Date.now();
    const held = dev.poll();
    await sleep(300);
    const te = Date.now();
    const e = await enqueue(A, 7030, { endpoint: 'wake_up' });
    assert.equal(e.status, 201, e.text);
    const p = await held;
    const waited = Date.now() - t0;
    const afterEnqueue = Date.now() - te;
    assert.equal(p.status, 200, p.text);
    assert.equal(p.command?.endpoint, 'wake_up');
    assert.ok(waited >= 250, `the poll was held (${waited} ms)`);
    assert.ok(afterEnqueue < HOLD_MS / 2, `answered ${afterEnqueue} ms after the enqueue, not at the end of the hold`);
    assert.equal((await getCommand(B, 7030, e.body.id)).body.status, 'sent');
    // and a hold with nothing to do ends empty
    const t1 = Date.now();
    assert.equal((await new DeviceSim(C, 7031).poll()).text, '');
    assert.ok(Date.now() - t1 >= HOLD_MS - 100, 'held for holdMs');
  }));

  test('Redis killed: device endpoints answer 503; restarted: they work again and nothing acknowledged is lost', withLogs(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushgate-redis-aof-'));
    const aof = await startRedis({ persistDir: dir });
    // an application of its own: on the NATS bus, the same nats-server as n1-n3
    const cfg = baseConfig({ applicationId: 'aofq', device: { redeliveryMs: REDELIVERY_MS } });
    const [E, F] = await Promise.all([
      startClusterNode(aof, 'e1', { config: cfg }),
      startClusterNode(aof, 'e2', { config: cfg }),
    ]);
    try {
      await waitMembers([E, F], ['e1', 'e2']);
      const a = await enqueue(E, 7040, { endpoint: 'a', body: { n: 1 } });
      const b = await enqueue(F, 7040, { endpoint: 'b' });
      assert.equal(a.status, 201, a.text);
      assert.equal(b.status, 201, b.text);
      assert.equal((await new DeviceSim(F, 7040).poll()).command.endpoint, 'a');

      await aof.kill();
      await waitReady([E, F], 503);
      const unavailable = { error: 'device queue unavailable' };
      for (const n of [E, F]) {
        const p = await new DeviceSim(n, 7040).poll();
        assert.equal(p.status, 503, p.text);
        assert.deepEqual(p.body, unavailable);
        const r = await new DeviceSim(n, 7040).result({ response: 1 });
        assert.equal(r.status, 503, r.text);
        assert.deepEqual(r.body, unavailable);
        const e = await enqueue(n, 7040, { endpoint: 'lost' });
        assert.equal(e.status, 503, e.text);
        assert.deepEqual(e.body, unavailable);
        assert.equal((await getCommand(n, 7040, a.body.id)).status, 503);
        assert.equal((await request(n, 'GET', '/api/devices', { key: PUB_KEY })).status, 503);
      }
      // the nodes themselves are fine
      assert.equal((await get(E, '/healthz')).status, 200);

      await aof.start();
      await waitReady([E, F], 200);
      let g = await getCommand(E, 7040, a.body.id);
      assert.equal(g.status, 200, g.text);
      assert.equal(g.body.status, 'sent');
      assert.equal(g.body.attempts, 1);
      assert.deepEqual(g.body.body, { n: 1 });
      const r = await new DeviceSim(E, 7040).result({ response: 'done a' });
      assert.equal(r.status, 200, r.text);
      assert.equal((await new DeviceSim(E, 7040).poll()).command.endpoint, 'b');
      assert.equal((await new DeviceSim(F, 7040).result({ response: 'done b' })).status, 200);
      const l = await listCommands(F, 7040);
      assert.equal(l.status, 200, l.text);
      assert.deepEqual(l.body.commands.map((c) => [c.id, c.endpoint, c.status, c.response]),
        [[a.body.id, 'a', 'done', 'done a'], [b.body.id, 'b', 'done', 'done b']]);
      const c = await enqueue(F, 7040, { endpoint: 'c' });
      assert.equal(c.status, 201, c.text);
      assert.ok(c.body.id > b.body.id, 'ids go on where they were');
    } finally {
      await Promise.all([E.stop(), F.stop()]);
      await aof.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }));
});

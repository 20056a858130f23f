// Fan-out across workers: 200 clients on a 4-worker node each get exactly one copy of a
// broadcast; a paused (slow) consumer is cut off and reported without hurting the others.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, connectClient, pushRequest, get, baseConfig, waitForConnections,
  delivered, pushFrame, sleep, ADMIN_KEY,
} from './lib/harness.mjs';

after(cleanup);

const N = 200;

describe('broadcast to 200 clients on 4 workers', () => {
  let node;
  const clients = [];

  before(async () => {
    node = await startNode({ workers: 4 });
    for (let i = 0; i < N; i += 25) {
      const batch = [];
      for (let j = i; j < Math.min(N, i + 25); j++) {
        batch.push(connectClient(node, { sessionId: j % 2 ? 's-mary' : 's-john', clientId: `c${j}` }));
      }
      clients.push(...(await Promise.all(batch)));
    }
    await waitForConnections(node, N, 5000);
  });

  test('GET /api/nodes and /api/connections see all 200 clients spread over the workers', withLogs(async () => {
    const nodes = await get(node, '/api/nodes', { key: ADMIN_KEY });
    assert.equal(nodes.status, 200, nodes.text);
    assert.equal(nodes.body.nodes.length, 1);
    const { connections, ...rest } = nodes.body.nodes[0];
    assert.deepEqual(rest, { applicationId: 'pushgate', nodeId: 'n1', workers: 4 });
    // the node counts its open TCP connections: the 200 WebSockets plus the few HTTP
    // keep-alive connections of this test process
    assert.ok(connections >= N && connections <= N + 5, `connections ${connections}, expected 200 WebSockets (+ a few HTTP)`);
    const conns = await get(node, '/api/connections', { key: ADMIN_KEY });
    assert.equal(conns.status, 200, conns.text);
    assert.equal(conns.body.connections.length, N);
    const ids = new Set(conns.body.connections.map((c) => c.clientId));
    assert.equal(ids.size, N);
    const workers = new Set(conns.body.connections.map((c) => c.worker));
    assert.ok(workers.size > 1, `200 connections all on one worker (${[...workers]}): SO_REUSEPORT listeners not used?`);
    const c7 = conns.body.connections.find((c) => c.clientId === 'c7');
    assert.equal(c7.sessionId, 's-mary');
    assert.equal(c7.user, 'mary');
    assert.equal(c7.transport, 'websocket');
    const filtered = await get(node, '/api/connections?clientIdPattern=c1%5Cd', { key: ADMIN_KEY });
    assert.equal(filtered.status, 200, filtered.text);
    assert.deepEqual(filtered.body.connections.map((c) => c.clientId).sort(), ['c10', 'c11', 'c12', 'c13', 'c14', 'c15', 'c16', 'c17', 'c18', 'c19']);
  }));

  test('one broadcast: every client gets exactly one copy, report has 200 distinct entries', withLogs(async () => {
    const payload = { _type: 'com.braintribe.model.notification.Notify', message: 'to everyone' };
    const r = await pushRequest(node, { serviceRequest: payload });
    assert.equal(r.status, 200, r.text);
    const { pushId } = r.body;
    const frames = await Promise.all(clients.map((c) => c.next(5000)));
    for (const f of frames) assert.deepEqual(f, pushFrame(pushId, payload));
    await sleep(300); // duplicates would have arrived by now
    const extra = clients.filter((c) => c.queue.length > 0).map((c) => c.info.clientId);
    assert.deepEqual(extra, [], 'clients that received a duplicate');
    assert.equal(r.body.responseMessages.length, N);
    const ids = new Set(r.body.responseMessages.map((m) => m.clientId));
    assert.equal(ids.size, N, 'distinct clientIds in the report');
    for (let j = 0; j < N; j++) assert.ok(ids.has(`c${j}`), `c${j} in the report`);
    for (const m of r.body.responseMessages) {
      const j = Number(m.clientId.slice(1));
      assert.deepEqual(m, delivered(`c${j}`, j % 2 ? 's-mary' : 's-john'));
    }
    assert.deepEqual(r.body.summary, { matched: N, delivered: N, failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] });
  }));

  test('a pattern selects across workers: c1\\d* reaches exactly 111 clients', withLogs(async () => {
    const r = await pushRequest(node, { serviceRequest: { sel: true }, clientIdPattern: 'c1\\d*' });
    assert.equal(r.status, 200, r.text);
    const want = clients.filter((c) => /^c1\d*$/.test(c.info.clientId));
    assert.equal(want.length, 111);
    assert.equal(r.body.summary.matched, 111);
    assert.deepEqual(r.body.responseMessages.map((m) => m.clientId).sort(), want.map((c) => c.info.clientId).sort());
    await Promise.all(want.map(async (c) => assert.deepEqual(await c.next(5000), pushFrame(r.body.pushId, { sel: true }))));
    await sleep(300);
    const extra = clients.filter((c) => c.queue.length > 0).map((c) => c.info.clientId);
    assert.deepEqual(extra, [], 'clients that received something they should not have');
  }));

  test('10 sequential broadcasts arrive at every client in order', withLogs(async () => {
    const ids = [];
    for (let k = 0; k < 10; k++) {
      const r = await pushRequest(node, { serviceRequest: { k }, options: { report: 'summary' } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.summary.delivered, N);
      ids.push(r.body.pushId);
    }
    assert.equal(new Set(ids).size, 10);
    await Promise.all(clients.map(async (c) => {
      for (let k = 0; k < 10; k++) {
        assert.deepEqual(await c.next(5000), pushFrame(ids[k], { k }), `${c.info.clientId} push ${k}`);
      }
    }));
    await sleep(200);
    assert.deepEqual(clients.filter((c) => c.queue.length > 0).map((c) => c.info.clientId), []);
  }));

  test('20 concurrent broadcasts: every client gets each exactly once', withLogs(async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, (_, k) =>
      pushRequest(node, { serviceRequest: { par: k }, options: { report: 'summary' } })));
    for (const r of replies) assert.equal(r.status, 200, r.text);
    const want = new Map(replies.map((r, k) => [r.body.pushId, k]));
    assert.equal(want.size, 20);
    await Promise.all(clients.map(async (c) => {
      const seen = new Set();
      for (let k = 0; k < 20; k++) {
        const f = await c.next(5000);
        assert.ok(want.has(f.id), `${c.info.clientId}: unknown push id ${f.id}`);
        assert.ok(!seen.has(f.id), `${c.info.clientId}: duplicate ${f.id}`);
        seen.add(f.id);
        assert.deepEqual(f, pushFrame(f.id, { par: want.get(f.id) }));
      }
    }));
    await sleep(200);
    assert.deepEqual(clients.filter((c) => c.queue.length > 0).map((c) => c.info.clientId), []);
    for (const c of clients) assert.deepEqual(c.errors, []);
  }));
});

describe('slow consumer', () => {
  let node;
  let slow;
  const fast = [];

  before(async () => {
    node = await startNode({ workers: 2, config: baseConfig({ limits: { maxOutputBytes: 65536 } }) });
    slow = await connectClient(node, { sessionId: 's-john', clientId: 'slow' });
    for (let i = 0; i < 3; i++) fast.push(await connectClient(node, { sessionId: 's-mary', clientId: `fast${i}` }));
    await waitForConnections(node, 4);
  });

  test('a paused client is cut off as "slow consumer"; the others get every push', withLogs(async () => {
    slow.ws._socket.pause();
    const blob = 'x'.repeat(16 * 1024);
    const ids = [];
    let cutAt = -1;
    // loopback socket buffers (client receive + server send) absorb ~4 MB before the
    // server has to hold output itself; 1000 x 16 KiB = 16 MB is well past that
    const MAX = 1000;
    for (let i = 0; i < MAX && cutAt < 0; i++) {
      const r = await pushRequest(node, { serviceRequest: { i, blob } });
      assert.equal(r.status, 200, r.text);
      ids.push(r.body.pushId);
      const byId = Object.fromEntries(r.body.responseMessages.map((m) => [m.clientId, m]));
      for (let k = 0; k < 3; k++) assert.deepEqual(byId[`fast${k}`], delivered(`fast${k}`, 's-mary'), `push ${i}`);
      const s = byId.slow;
      assert.ok(s, `push ${i}: the slow client is still connected and must be in the report`);
      if (s.successful === false) {
        // start reading again at once: the 1008 close frame can reach it now
        slow.ws._socket.resume();
        assert.deepEqual(s, delivered('slow', 's-john', 'slow consumer', false), `push ${i}`);
        assert.equal(r.body.summary.matched, 4);
        assert.equal(r.body.summary.failed, 1);
        cutAt = i;
      } else {
        assert.deepEqual(s, delivered('slow', 's-john'), `push ${i}`);
      }
      // keep the fast clients' queues short (they read; we just consume)
      await Promise.all(fast.map(async (c) => {
        const f = await c.next(5000);
        assert.deepEqual(f, pushFrame(r.body.pushId, { i, blob }), `${c.info.clientId} push ${i}`);
      }));
    }
    assert.ok(cutAt >= 0, `paused client never reported as slow consumer after ${MAX} pushes of 16 KiB`);
    // 64 KiB of output limit: it cannot have been cut off before 4 pushes
    assert.ok(cutAt >= 3, `cut off after only ${cutAt + 1} pushes`);

    // right after the cut the connection may still be closing: it may then be listed,
    // but only as "closed", never as delivered
    const r0 = await pushRequest(node, { serviceRequest: { after: -1 } });
    assert.equal(r0.status, 200, r0.text);
    for (const m of r0.body.responseMessages.filter((x) => x.clientId === 'slow')) {
      assert.deepEqual(m, delivered('slow', 's-john', 'closed', false), 'push right after the cut');
    }
    for (const c of fast) assert.deepEqual(await c.next(5000), pushFrame(r0.body.pushId, { after: -1 }));
    // once closed (give it 500 ms) later pushes no longer list the paused client
    await sleep(500);
    for (let j = 0; j < 3; j++) {
      const r = await pushRequest(node, { serviceRequest: { after: j } });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.responseMessages.map((m) => m.clientId).sort(), ['fast0', 'fast1', 'fast2'],
        `push ${j} after the cut (at push ${cutAt}): ${JSON.stringify(r.body.responseMessages.filter((m) => m.clientId === 'slow'))}`);
      assert.deepEqual(r.body.summary, { matched: 3, delivered: 3, failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] });
      for (const c of fast) assert.deepEqual(await c.next(5000), pushFrame(r.body.pushId, { after: j }));
    }
    for (const c of fast) {
      await c.expectNone(100);
      assert.equal(c.closeInfo, null);
      assert.deepEqual(c.errors, []);
    }
    // the node is alive and well
    assert.equal(node.isRunning(), true);
    const h = await get(node, '/healthz');
    assert.equal(h.status, 200, h.text);
    assert.deepEqual(h.body, { status: 'ok' });
  }));

  test('the slow client, reading again right after the cut, sees close 1008', withLogs(async () => {
    slow.ws._socket.resume();
    const info = await Promise.race([slow.closed, sleep(10000).then(() => null)]);
    assert.ok(info, 'slow client was not closed');
    assert.equal(info.code, 1008);
    // everything it got before the close frame must have been whole, valid push frames
    for (const m of slow.queue) assert.equal(m.type, 'push');
    assert.deepEqual(slow.errors, []);
  }));
});

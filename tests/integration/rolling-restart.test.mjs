// Rolling restart of a 3-node cluster under load (issue 13, docs/cluster.md "Rolling
// restarts"). A real Redis and three nodes r1, r2, r3; while a bounded load runs —
// a publisher of channel pushes, stream events and push requests, an operator
// enqueueing device commands, three devices polling, an SSE subscriber and a socket.io
// stream subscriber started on each node — the nodes are restarted one at a time, the
// way a load balancer does it: a node is taken out of rotation, stopped, started
// again with the same node id, and put back. r1 and r3 stop with SIGTERM (the rolling
// restart); r2 is killed with SIGKILL (a crash in the middle of it). A client whose
// node goes away reconnects to the node that has been up longest, resuming with
// Last-Event-ID (SSE) or socket.io's recovery offset.
//
// Checked: every acknowledged device command (201) reaches "done"; every push request
// is answered 200 with a report whose nodes + nodesMissing cover the members, and the
// ones published while r2 lay dead name it in nodesMissing; every acknowledged channel
// push reaches every SSE subscriber exactly once (or the subscriber was told with a
// `gap` event), every acknowledged stream event reaches every socket.io subscriber
// exactly once; no push is ever seen twice. And a node stopped while a push request
// waits for a dead member answers it at once rather than at the deadline.
//
// On the Redis bus; with PUSHGATE_ROLLING_BUS=nats (or both: "redis,nats") it runs on
// NATS carrying the messages with Redis keeping the state.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { baseConfig, cleanup, withLogs, api, pushRequest, sleep, PUB_KEY, SLOW } from './lib/harness.mjs';
import { sseOpen, closeAllSse } from './lib/sse.mjs';
import { startRedis, startNats, startClusterNode, waitMembers } from './lib/cluster.mjs';
import { DeviceSim, enqueue, getCommand } from './lib/device-sim.mjs';
import { io } from 'socket.io-client';

const BUSES = (process.env.PUSHGATE_ROLLING_BUS || 'redis').split(',');
const IDS = ['r1', 'r2', 'r3'];
const TENANT = 'troll';
const CHANNEL = 'roll';
const DEVICES = [9101, 9102, 9103];
const REDELIVERY_MS = 700 * SLOW;
const AWAY_MS = 1200 * SLOW; /* how long a node stays down */
const BETWEEN_MS = 1200 * SLOW; /* load with all three up, between restarts */

const config = baseConfig({
  applicationId: 'roll',
  device: { redeliveryMs: REDELIVERY_MS },
  streams: { [TENANT]: { alerts: { publicSubscribe: true, events: [{ namespace: 'svc', name: 'tick' }] } } },
});

/** Swallows a failed request (the node went away under it): resolves null. */
const tryReq = (p) => p.catch(() => null);

for (const bus of BUSES) {
  describe(`rolling restart of 3 nodes under load (${bus} bus)`, () => {
    let redis;
    let nats = null;
    /** The nodes in rotation: {id, node, since}. */
    let live = [];
    let rr = 0;
    const stopped = [];

    const pick = () => {
      const l = live;
      return l[rr++ % l.length].node;
    };
    /** The node that has been up longest (where a client resumes). */
    const oldest = () => [...live].sort((a, b) => a.since - b.since)[0].node;
    const start = (id) => startClusterNode(redis, id, { config, nats });

    before(async () => {
      redis = await startRedis();
      if (bus === 'nats') nats = await startNats();
      const nodes = await Promise.all(IDS.map(start));
      live = nodes.map((node, i) => ({ id: IDS[i], node, since: Date.now() }));
      await waitMembers(nodes, IDS);
    });

    after(async () => {
      closeAllSse();
      try {
        await cleanup();
      } finally {
        await redis?.stop();
        await nats?.stop();
      }
    });

    /** An SSE subscriber on the channel that resumes on the oldest node when its node goes. */
    function sseClient(node) {
      const c = { ids: [], gaps: 0, reconnects: 0, closed: false, conn: null };
      const open = async (n, lastId) => {
        const headers = lastId ? { 'last-event-id': lastId } : {};
        const conn = await sseOpen(n, `/sse?channel=${CHANNEL}`, { headers });
        assert.equal(conn.status, 200, conn.text);
        c.conn = conn;
        (async () => {
          for (;;) {
            let ev;
            try {
              ev = await conn.events.next(60000);
            } catch {
              break; /* the connection ended */
            }
            if (ev.type === 'gap') c.gaps++;
            else c.ids.push(ev.id);
          }
          if (c.closed) return;
          for (let i = 0; i < 100 && !c.closed; i++) {
            try {
              c.reconnects++;
              await open(oldest(), c.ids[c.ids.length - 1]);
              return;
            } catch {
              await sleep(50);
            }
          }
        })();
      };
      c.ready = open(node, null);
      c.close = () => { c.closed = true; c.conn?.close(); };
      return c;
    }

    /** A socket.io subscriber of the tenant's stream that recovers on the oldest node. */
    function sioClient(node) {
      const c = { seqs: [], offsets: [], reconnects: 0, closed: false, socket: null };
      const open = (n, offset) => new Promise((resolve, reject) => {
        const auth = offset ? { stream: 'alerts', pid: 'resume', offset } : { stream: 'alerts' };
        const s = io(`${n.url}/${TENANT}`, { transports: ['websocket'], reconnection: false, forceNew: true, auth });
        c.socket = s;
        s.on('svc:tick', (ev, off) => { c.seqs.push(ev.payload.seq); c.offsets.push(off); });
        s.on('connect', () => resolve());
        s.on('connect_error', (e) => { s.close(); reject(e); });
        s.on('disconnect', async () => {
          if (c.closed) return;
          for (let i = 0; i < 100 && !c.closed; i++) {
            try {
              c.reconnects++;
              await open(oldest(), c.offsets[c.offsets.length - 1]);
              return;
            } catch {
              await sleep(50);
            }
          }
        });
      });
      c.ready = open(node, null);
      c.close = () => { c.closed = true; c.socket?.close(); };
      return c;
    }

    test('no acknowledged command lost, every push request reported, clients resume without gaps', withLogs(async () => {
      const sse = live.map((l) => sseClient(l.node));
      const sio = live.map((l) => sioClient(l.node));
      await Promise.all([...sse, ...sio].map((c) => c.ready));

      const acked = { pushes: [], events: [], commands: [] };
      const reports = [];
      const inflight = new Set();
      let running = true;
      let seq = 0;
      const away = []; /* {id, from, to}: out of rotation from..to */
      const track = (p) => { inflight.add(p); p.finally(() => inflight.delete(p)); return p; };

      const publisher = (async () => {
        while (running) {
          const n = pick();
          const r = await track(tryReq(api(n, 'POST', '/api/push', { key: PUB_KEY, body: { channel: CHANNEL, event: 'e', data: { at: Date.now() } } })));
          if (r?.status === 200) acked.pushes.push(r.headers.get('x-push-id'));
          const k = ++seq;
          const e = await track(tryReq(api(pick(), 'POST', `/event/v1/events?tenantId=${TENANT}`, { key: PUB_KEY, body: { namespace: 'svc', name: 'tick', timestamp: '2026-12-06T00:00:00Z', payload: { seq: k } } })));
          if (e?.status === 200) acked.events.push(k);
          await sleep(40);
        }
      })();
      const requester = (async () => {
        while (running) {
          const l = live[rr++ % live.length];
          const t0 = Date.now();
          const p = track(pushRequest(l.node, { serviceRequest: { roll: 1 }, clientIdPattern: 'roll-.*' }).catch((e) => e))
            .then((r) => reports.push({ r: r instanceof Error ? null : r, to: l.id, t0, t1: Date.now(), error: r instanceof Error ? `${r.message} ${r.cause?.code}` : null }));
          reports.pending = (reports.pending || []).concat(p);
          await sleep(120);
        }
      })();
      const operator = (async () => {
        let i = 0;
        while (running) {
          const dev = DEVICES[i++ % DEVICES.length];
          const r = await track(tryReq(enqueue(pick(), dev, { endpoint: `cmd-${i}` })));
          if (r?.status === 201) acked.commands.push({ dev, id: r.body.id });
          await sleep(80);
        }
      })();
      let devicesRunning = true;
      const devices = DEVICES.map(async (dev) => {
        while (devicesRunning) {
          const p = await tryReq(new DeviceSim(pick(), dev).poll());
          if (p?.command) await tryReq(new DeviceSim(pick(), dev).result({ response: { ran: p.command.endpoint } }));
          else await sleep(60);
        }
      });

      const restart = async (id, signal) => {
        const i = live.findIndex((l) => l.id === id);
        const [gone] = live.splice(i, 1);
        const w = { id, from: Date.now(), to: Infinity, signal };
        away.push(w);
        await sleep(150); /* out of rotation: what it was answering is answered */
        if (signal === 'SIGKILL') await gone.node.kill();
        else {
          const info = await gone.node.stop('SIGTERM');
          assert.deepEqual(info, { code: 0, signal: null }, `${id} exits 0 on SIGTERM`);
        }
        stopped.push(gone.node);
        await sleep(AWAY_MS);
        const node = await start(id);
        live.push({ id, node, since: Date.now() });
        w.to = Date.now();
        await waitMembers(live.map((l) => l.node), IDS);
      };

      await sleep(BETWEEN_MS);
      await restart('r1', 'SIGTERM');
      await sleep(BETWEEN_MS);
      await restart('r2', 'SIGKILL');
      await sleep(BETWEEN_MS);
      await restart('r3', 'SIGTERM');
      await sleep(BETWEEN_MS);
      running = false;
      await Promise.all([publisher, requester, operator]);
      await Promise.all(reports.pending);

      // every acknowledged command reaches done (redelivered if a node died with it)
      const deadline = Date.now() + 10000 * SLOW;
      let open = acked.commands;
      while (open.length && Date.now() < deadline) {
        const still = [];
        for (const c of open) {
          const g = await tryReq(getCommand(oldest(), c.dev, c.id));
          if (g?.body?.status !== 'done') still.push(c);
        }
        open = still;
        if (open.length) await sleep(100);
      }
      devicesRunning = false;
      await Promise.all(devices);
      assert.ok(acked.commands.length >= 20, `enough commands: ${acked.commands.length}`);
      assert.deepEqual(open, [], 'every acknowledged command is done');

      // every push request answered with a report
      assert.ok(reports.length >= 40, `enough push requests: ${reports.length}`);
      // a node named missing was away (stopping, dead or starting) while the request waited
      const wasAway = (id, t0, t1) => away.some((w) => w.id === id && w.from <= t1 && w.to + 1000 >= t0);
      let missingR2 = 0;
      for (const { r, to, t0, t1, error } of reports) {
        if (r === null) {
          // only the crash may cut a request off: the dead node's own, in flight when it died
          const killed = away.find((w) => w.signal === 'SIGKILL');
          assert.ok(to === killed.id && t0 <= killed.from + 200 && t1 >= killed.from, `push request to ${to} failed: ${error}`);
          continue;
        }
        assert.equal(r.status, 200, r.text);
        const s = r.body.summary;
        assert.equal(s.bus, undefined, 'the bus stayed up');
        assert.ok(s.nodes >= 1 && s.nodes + s.nodesMissing.length >= 2 && s.nodes + s.nodesMissing.length <= 3, JSON.stringify(s));
        for (const m of s.nodesMissing) assert.ok(wasAway(m, t0, t1), `${m} named missing at ${t0}..${t1}: ${JSON.stringify(away)}`);
        if (s.nodesMissing.includes('r2')) missingR2++;
      }
      assert.ok(missingR2 >= 1, 'the dead r2 is named in nodesMissing');

      // clients: every acknowledged push once (SSE: or a gap signalled), nothing twice
      const until = Date.now() + 5000 * SLOW;
      const complete = () => sse.every((c) => c.gaps || acked.pushes.every((id) => c.ids.includes(id))) &&
        sio.every((c) => acked.events.every((k) => c.seqs.includes(k)));
      while (!complete() && Date.now() < until) await sleep(50);
      for (const c of [...sse, ...sio]) c.close();
      assert.ok(acked.pushes.length >= 20 && acked.events.length >= 20, `load: ${acked.pushes.length} pushes, ${acked.events.length} events`);
      for (const [i, c] of sse.entries()) {
        assert.equal(new Set(c.ids).size, c.ids.length, `SSE client ${i}: a push seen twice`);
        if (!c.gaps) assert.deepEqual(acked.pushes.filter((id) => !c.ids.includes(id)), [], `SSE client ${i} missed pushes without a gap`);
      }
      for (const [i, c] of sio.entries()) {
        assert.equal(new Set(c.seqs).size, c.seqs.length, `socket.io client ${i}: an event seen twice`);
        assert.deepEqual(acked.events.filter((k) => !c.seqs.includes(k)), [], `socket.io client ${i} missed events`);
      }
      // the clients that started on a restarted node did move (all of them did)
      assert.ok(sse.every((c) => c.reconnects >= 1) && sio.every((c) => c.reconnects >= 1), 'clients resumed elsewhere');
      assert.ok(sse.every((c) => c.gaps === 0), `no gap: ${sse.map((c) => c.gaps)}`);
    }));

    test('SIGTERM while a push request waits for a dead member: answered at once, naming it missing', withLogs(async () => {
      const cfg = baseConfig({ applicationId: 'stopx' });
      const [x1, x2] = await Promise.all(['x1', 'x2'].map((id) => startClusterNode(redis, id, { config: cfg, nats })));
      await waitMembers([x1, x2], ['x1', 'x2']);
      await x2.kill(); /* still a member for its TTL: x1 waits for its report */
      const t0 = Date.now();
      const reply = pushRequest(x1, { serviceRequest: { last: 1 } });
      await sleep(300);
      const t1 = Date.now();
      const exit = x1.stop('SIGTERM');
      const r = await reply;
      const answeredAfter = Date.now() - t1;
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.summary.nodesMissing, ['x2']);
      assert.equal(r.body.summary.nodes, 1);
      assert.ok(answeredAfter < 1500 * SLOW, `answered ${answeredAfter} ms after SIGTERM (${Date.now() - t0} ms in all), not at the 5 s deadline`);
      assert.deepEqual(await exit, { code: 0, signal: null });
    }));
  });
}

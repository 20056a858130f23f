// socket.io v4 (issue 5, seed 002) with the stock npm `socket.io-client`: polling only,
// WebSocket only, polling upgraded to WebSocket; stream events in tenant namespaces
// (seed 002's client code verbatim, projections, credentials from extraHeaders /
// auth.token / ?token=), connect_error refusals (credentials, roles, unknown or missing
// stream, cross-tenant), the main namespace (channel subscribe / unsubscribe with acks,
// channel pushes, binary events), push requests (clientId / role targeting, acks as
// push responses, timeouts), reconnection with recovery of missed events (client-side
// close, a network cut, publishing while reconnecting), 100 mixed clients on 4
// workers, heartbeats (dead polling and WebSocket clients), slow consumers (polling
// clients that stop polling; a recovery backlog over limits.maxOutputBytes), and by
// hand over fetch / raw WebSocket: the Engine.IO HTTP errors, a polling exchange, the
// upgrade (2probe/3probe, polls answered with a noop, 5), malformed packets, polling
// across workers, and SIGTERM with polling sessions open.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { io, Manager } from 'socket.io-client';
import {
  startNode, cleanup, withLogs, api, get, baseConfig, makeJwt, sleep, connectClient,
  pushRequest, byClientId, delivered, pushFrame, RawWs, OP, closedWithin, jwtSessionId,
  PUB_KEY, ADMIN_KEY, SLOW,
} from './lib/harness.mjs';
import { startProxy, closeAllSse, until } from './lib/sse.mjs';

// ---------------------------------------------------------------------------------
// socket.io client bookkeeping

const sockets = new Set();

/** A socket.io-client socket on its own Manager (no multiplexing across tests). */
function sio(node, path, opts = {}) {
  const base = typeof node === 'string' ? node : node.url;
  const s = io(base + path, { forceNew: true, reconnection: false, timeout: 5000 * SLOW, ...opts });
  sockets.add(s);
  return s;
}

after(async () => {
  for (const s of sockets) {
    try { s.io.opts.reconnection = false; s.io.reconnection(false); s.disconnect(); s.io.engine?.close(); } catch { /* ignore */ }
  }
  sockets.clear();
  // the disconnect / close packets of polling clients travel as POSTs: let them land, so
  // the sessions are closed before the nodes get SIGTERM
  await sleep(300 * SLOW);
  closeAllSse();
  await cleanup();
});

/** Resolves the socket once connected; rejects with the connect_error message (with
 * retrying: true, a connect_error of an attempt still in flight is waited past). */
function connected(s, ms = 5000 * SLOW, { retrying = false } = {}) {
  return new Promise((res, rej) => {
    if (s.connected) { res(s); return; }
    const t = setTimeout(() => { cleanupL(); rej(new Error(`no connect within ${ms} ms`)); }, ms);
    const onC = () => { cleanupL(); res(s); };
    const onE = (e) => { if (retrying) return; cleanupL(); rej(new Error(`connect_error: ${e.message}`)); };
    const cleanupL = () => { clearTimeout(t); s.off('connect', onC); s.off('connect_error', onE); };
    s.on('connect', onC);
    s.on('connect_error', onE);
  });
}

/** Resolves the connect_error (the Error, message = the server's message); rejects on connect. */
function refused(s, ms = 5000 * SLOW) {
  return new Promise((res, rej) => {
    const t = setTimeout(() => { cleanupL(); rej(new Error(`neither connect nor connect_error within ${ms} ms`)); }, ms);
    const onC = () => { cleanupL(); rej(new Error('connected, but should have been refused')); };
    const onE = (e) => { cleanupL(); res(e); };
    const cleanupL = () => { clearTimeout(t); s.off('connect', onC); s.off('connect_error', onE); };
    s.on('connect', onC);
    s.on('connect_error', onE);
  });
}

/** Collects every emission of `event` (its argument arrays) on s. */
function collect(s, event) {
  const got = [];
  s.on(event, (...args) => got.push(args));
  return got;
}

/** Wait until arr has at least n entries (fails with what it has). */
async function waitLen(arr, n, what = 'events', ms = 5000 * SLOW) {
  await until(() => arr.length >= n, ms, 10);
  assert.ok(arr.length >= n, `${what}: ${arr.length} of ${n} within ${ms} ms: ${JSON.stringify(arr).slice(0, 600)}`);
}

function once(emitter, ev, ms = 5000 * SLOW) {
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`no '${ev}' within ${ms} ms`)), ms);
    emitter.once(ev, (...a) => { clearTimeout(t); res(a); });
  });
}

/** emit with an ack, resolving the ack's arguments (first one). */
function emitAck(s, ...args) {
  return s.timeout(3000 * SLOW).emitWithAck(...args);
}

// ---------------------------------------------------------------------------------
// configuration

const ID_RE = /^[0-9a-f]{13}-[0-9a-f]{8}-[0-9a-f]{8}$/;
const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/;
const T1_PUB = 't1-pub';
const T2_PUB = 't2-pub';
const HEALTH = { namespace: 'status-service', name: 'health-check-started' };
const EV = `${HEALTH.namespace}:${HEALTH.name}`;
const OPS_MAP = { app: 'payload.application.name', status: 'payload.status', site: 'context.site' };
const RULES = { subscribe: [{ channelPattern: 'public\\..*' }, { channelPattern: 'ops\\..*', rolePattern: 'tf-locksmith' }] };

function sioConfig(extra = {}) {
  const cfg = baseConfig({
    streams: {
      t1: {
        'app-health': { name: 'Application Health', publicSubscribe: true, subscriberRoles: [], events: [{ ...HEALTH }] },
        ops: { subscriberRoles: ['ops-reader'], events: [{ ...HEALTH, map: OPS_MAP }] },
        private: { events: [{ ...HEALTH }] },
      },
      t2: {
        't2-only': { publicSubscribe: true, events: [{ ...HEALTH }] },
        private: { events: [{ ...HEALTH }] },
      },
    },
    channels: RULES,
    ...extra,
  });
  cfg.apiKeys.push(
    { key: T1_PUB, scopes: ['publish'], tenant: 't1' },
    { key: T2_PUB, scopes: ['publish'], tenant: 't2' },
  );
  cfg.sessions.push(
    { sessionId: 's-t1-ops', user: 'ann', roles: ['ops-reader'], tenant: 't1' },
    { sessionId: 's-t1-viewer', user: 'vic', roles: ['viewer'], tenant: 't1' },
    { sessionId: 's-t1-listener', user: 'lis', roles: ['stream-listener'], tenant: 't1' },
    { sessionId: 's-t2-listener', user: 'tom', roles: ['stream-listener'], tenant: 't2' },
  );
  return cfg;
}

const jwt = (claims) => makeJwt({ exp: Math.floor(Date.now() / 1000) + 600, ...claims });

let seq = 0;
function healthEvent(extra = {}) {
  seq++;
  return {
    ...HEALTH,
    timestamp: '2026-11-23T10:00:00Z',
    correlationId: `c-${seq}`,
    context: { site: 'a' },
    payload: { application: { name: 'a1' }, status: 'ok', seq },
    ...extra,
  };
}

async function postEvent(node, ev, key = T1_PUB) {
  const r = await api(node, 'POST', '/event/v1/events', { key, body: ev });
  assert.equal(r.status, 200, `POST event → ${r.status} ${r.text}`);
  return r.body.streams;
}

/** POST /api/push, answered after delivery with X-Push-Subscribers. */
function channelPush(node, body) {
  return api(node, 'POST', '/api/push', { key: PUB_KEY, body, headers: { 'x-push-wait': 'delivered' } });
}

/** Checks one stream emission: [event, pushId] with event deep-equal to want. */
function assertStreamArgs(args, want, what = 'stream event') {
  assert.equal(args.length, 2, `${what}: args ${JSON.stringify(args)}`);
  assert.deepEqual(args[0], want, what);
  assert.match(args[1], ID_RE, `${what}: the trailing pushId`);
}

// ---------------------------------------------------------------------------------
// raw Engine.IO over fetch

const eioBase = (node, q = 'EIO=4&transport=polling') => `${node.url}/socket.io/?${q}`;

async function eioFetch(url, init = {}) {
  const r = await fetch(url, { signal: AbortSignal.timeout(10000 * SLOW), ...init });
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = undefined; }
  return { status: r.status, headers: r.headers, text, body };
}

/** Polling handshake: returns the open packet's JSON. */
async function eioOpen(node) {
  const r = await eioFetch(eioBase(node));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text[0], '0', r.text);
  return JSON.parse(r.text.slice(1));
}

const eioPost = (node, sid, body) => eioFetch(`${eioBase(node)}&sid=${sid}`, { method: 'POST', body });
const eioPoll = (node, sid) => eioFetch(`${eioBase(node)}&sid=${sid}`);
const packets = (text) => text.split('\x1e');

// =================================================================================

describe('transports and stream events', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: sioConfig() }); });

  for (const [label, transports, finalTransport] of [
    ['polling only', ['polling'], 'polling'],
    ['websocket only', ['websocket'], 'websocket'],
  ]) {
    test(`${label}: connects to /t1?stream=app-health and receives stream events in order`, withLogs(async () => {
      const s = sio(node, '/t1?stream=app-health', { transports, upgrade: false });
      await connected(s);
      assert.equal(s.io.engine.transport.name, finalTransport);
      assert.match(s.id, /^[0-9a-f]{20}$/);
      const got = collect(s, EV);
      const evs = [healthEvent(), healthEvent(), healthEvent()];
      for (const ev of evs) assert.deepEqual((await postEvent(node, ev)).sort(), ['app-health', 'ops', 'private']);
      await waitLen(got, 3);
      await sleep(150);
      assert.equal(got.length, 3, 'each event exactly once');
      got.forEach((args, i) => assertStreamArgs(args, evs[i], `event ${i}`));
      assert.equal(new Set(got.map((a) => a[1])).size, 3, 'distinct push ids');
      assert.ok(got[0][1] < got[1][1] && got[1][1] < got[2][1], 'push ids ascend');
      assert.equal(s.io.engine.transport.name, finalTransport);
      s.disconnect();
    }));
  }

  test('polling upgraded to websocket: the upgrade event, transport becomes "websocket", events before and after', withLogs(async () => {
    const s = sio(node, '/t1?stream=app-health', { transports: ['polling', 'websocket'] });
    const upgraded = new Promise((res) => s.io.on('open', () => s.io.engine.once('upgrade', (t) => res(t.name))));
    await connected(s);
    const got = collect(s, EV);
    const e1 = healthEvent();
    await postEvent(node, e1);
    assert.equal(await Promise.race([upgraded, sleep(5000 * SLOW).then(() => 'no upgrade')]), 'websocket');
    assert.equal(s.io.engine.transport.name, 'websocket');
    const e2 = healthEvent();
    await postEvent(node, e2);
    await waitLen(got, 2);
    await sleep(150);
    assert.equal(got.length, 2, JSON.stringify(got));
    assertStreamArgs(got[0], e1);
    assertStreamArgs(got[1], e2);
    s.disconnect();
  }));

  test('default transports: emits right after connecting are acknowledged promptly while the upgrade runs', withLogs(async () => {
    // the client holds its emits while it upgrades, until its poll in flight completes:
    // a poll the server holds during the upgrade stalls them (see the raw upgrade test)
    const slow = [];
    for (let i = 0; i < 20; i++) {
      const s = sio(node, i % 2 ? '/' : '/t1?stream=app-health');
      await connected(s);
      const t0 = Date.now();
      const r = await s.timeout(2000 * SLOW).emitWithAck('hello').catch((e) => ({ timeout: e.message }));
      if (r.timeout) slow.push(`#${i}: no ack within ${2000 * SLOW} ms (transport ${s.io.engine.transport.name})`);
      else assert.deepEqual(r, { error: 'unknown event' });
      if (Date.now() - t0 > 1000 * SLOW) slow.push(`#${i}: ack after ${Date.now() - t0} ms`);
      s.disconnect();
      if (slow.length) break;
    }
    assert.deepEqual(slow, []);
  }));

  test('seed 002 client code verbatim (Bearer in extraHeaders, default transports), projection applied', withLogs(async () => {
    const tenantId = 't1';
    const streamId = 'ops';
    const accessToken = 's-t1-ops';
    // seed 002 (with the host of this test node)
    const socket = io(`${node.url}/${tenantId}?stream=${streamId}`, {
      withCredentials: true,
      extraHeaders: { Authorization: `Bearer ${accessToken}` },
      forceNew: true,
      reconnection: false,
    });
    sockets.add(socket);
    const eventNamespace = HEALTH.namespace;
    const eventName = HEALTH.name;
    const got = [];
    socket.on(`${eventNamespace}:${eventName}`, (event, offset) => got.push([event, offset]));
    await connected(socket);
    const ev = healthEvent({ context: { site: 'b' } });
    await postEvent(node, ev);
    await waitLen(got, 1);
    assertStreamArgs(got[0], { app: 'a1', status: 'ok', site: 'b' }, 'projected by the stream map');
    socket.disconnect();
  }));

  test('credentials: Bearer on websocket only, auth.token, ?token=, a JWT; auth.stream instead of ?stream=', withLogs(async () => {
    const tok = jwt({ sub: 'jj', roles: ['ops-reader'], tenant: 't1' });
    const cases = [
      ['Bearer header over websocket', '/t1?stream=ops', { transports: ['websocket'], extraHeaders: { Authorization: 'Bearer s-t1-ops' } }],
      ['auth.token', '/t1?stream=ops', { auth: { token: 's-t1-ops' } }],
      ['?token=', '/t1?stream=ops&token=s-t1-ops', {}],
      ['JWT in auth.token, stream in auth.stream', '/t1', { auth: { token: tok, stream: 'ops' } }],
      ['stream-listener role on a private stream', '/t1?stream=private', { auth: { token: 's-t1-listener' } }],
    ];
    const subs = [];
    for (const [what, path, opts] of cases) {
      const s = sio(node, path, opts);
      try { await connected(s); } catch (e) { assert.fail(`${what}: ${e.message}`); }
      subs.push([what, s, collect(s, EV), path.includes('private')]);
    }
    const ev = healthEvent();
    assert.deepEqual((await postEvent(node, ev)).sort(), ['app-health', 'ops', 'private']);
    for (const [what, s, got, priv] of subs) {
      await waitLen(got, 1, what);
      assertStreamArgs(got[0], priv ? ev : { app: 'a1', status: 'ok', site: 'a' }, what);
      s.disconnect();
    }
  }));

  test('a public stream anonymously; another tenant\'s public stream through its own namespace', withLogs(async () => {
    const a = sio(node, '/t1?stream=app-health', { transports: ['websocket'] });
    const b = sio(node, '/t2?stream=t2-only', { transports: ['polling'] });
    await Promise.all([connected(a), connected(b)]);
    const ga = collect(a, EV);
    const gb = collect(b, EV);
    const e1 = healthEvent();
    const e2 = healthEvent();
    await postEvent(node, e1, T1_PUB);
    await postEvent(node, e2, T2_PUB);
    await waitLen(ga, 1);
    await waitLen(gb, 1);
    await sleep(150);
    assert.equal(ga.length, 1, 'no cross-tenant delivery');
    assert.equal(gb.length, 1, 'no cross-tenant delivery');
    assertStreamArgs(ga[0], e1);
    assertStreamArgs(gb[0], e2);
    a.disconnect();
    b.disconnect();
  }));

  test('several namespaces over one Engine.IO connection (Manager), events in each', withLogs(async () => {
    const m = new Manager(node.url, { forceNew: true, reconnection: false, transports: ['websocket'] });
    const main = m.socket('/');
    const t1 = m.socket('/t1', { auth: { stream: 'app-health' } });
    sockets.add(main);
    sockets.add(t1);
    await Promise.all([connected(main), connected(t1)]);
    assert.deepEqual(await emitAck(main, 'subscribe', ['public.multi']), { channels: ['public.multi'] });
    const gm = collect(main, 'multi-ev');
    const gt = collect(t1, EV);
    const ev = healthEvent();
    await postEvent(node, ev);
    const p = await channelPush(node, { channel: 'public.multi', data: { n: 1 }, event: 'multi-ev' });
    assert.equal(p.status, 200, p.text);
    await waitLen(gm, 1);
    await waitLen(gt, 1);
    assert.deepEqual(gm[0], [{ n: 1 }, p.headers.get('x-push-id')]);
    assertStreamArgs(gt[0], ev);
    main.disconnect();
    t1.disconnect();
  }));
});

// =================================================================================

describe('connect_error refusals', () => {
  let node;
  before(async () => { node = await startNode({ config: sioConfig() }); });

  const CASES = [
    ['no credentials on a non-public stream', '/t1?stream=ops', {}, 'credentials are required for stream ops'],
    ['a role not in subscriberRoles', '/t1?stream=ops', { auth: { token: 's-t1-viewer' } }, 'not allowed to subscribe to stream ops'],
    ['no role at all on a private stream', '/t1?stream=private', { extraHeaders: { Authorization: 'Bearer s-t1-viewer' } }, 'not allowed to subscribe to stream private'],
    ['an unknown stream', '/t1?stream=nope', {}, 'unknown stream nope'],
    ['a missing stream', '/t1', {}, 'stream is required (?stream= or auth.stream)'],
    ['unknown credentials', '/t1?stream=app-health', { auth: { token: 'no-such-session' } }, 'unknown or expired credentials'],
    ['unknown credentials in the main namespace', '/', { auth: { token: 'no-such-session' } }, 'unknown or expired credentials'],
    ['an expired JWT', '/t1?stream=ops', { auth: { token: makeJwt({ sub: 'x', roles: ['ops-reader'], exp: 1000 }) } }, 'unknown or expired credentials'],
    ['cross-tenant: a t2 stream-listener to /t1 (private)', '/t1?stream=private', { auth: { token: 's-t2-listener' } }, 'unknown stream private'],
    ['cross-tenant: a t2 stream-listener to /t1 (ops)', '/t1?stream=ops', { extraHeaders: { Authorization: 'Bearer s-t2-listener' } }, 'unknown stream ops'],
    ['cross-tenant: a t2 stream-listener to /t1 (public)', '/t1?stream=app-health', { auth: { token: 's-t2-listener' } }, 'unknown stream app-health'],
    ['cross-tenant: a t2 JWT with stream-listener to /t1', '/t1?stream=private', { auth: { token: jwt({ sub: 'z', roles: ['stream-listener'], tenant: 't2' }) } }, 'unknown stream private'],
    ['a namespace of a tenant without streams', '/t9?stream=app-health', {}, 'unknown stream app-health'],
  ];

  for (const transports of [['polling'], ['websocket']]) {
    test(`every refusal is connect_error with the server's message (${transports[0]})`, withLogs(async () => {
      for (const [what, path, opts, message] of CASES) {
        const s = sio(node, path, { transports, ...opts });
        const err = await refused(s).catch((e) => assert.fail(`${what}: ${e.message}`));
        assert.equal(err.message, message, what);
        assert.equal(s.connected, false, what);
        s.disconnect();
      }
    }));
  }

  test('a refused namespace does not disturb another one on the same connection', withLogs(async () => {
    const m = new Manager(node.url, { forceNew: true, reconnection: false });
    const bad = m.socket('/t1', { auth: { stream: 'ops' } });
    const good = m.socket('/t1x', { auth: {} }); // refused too: no stream
    const main = m.socket('/');
    for (const s of [bad, good, main]) sockets.add(s);
    assert.equal((await refused(bad)).message, 'credentials are required for stream ops');
    assert.equal((await refused(good)).message, 'stream is required (?stream= or auth.stream)');
    await connected(main);
    assert.deepEqual(await emitAck(main, 'subscribe', ['public.x']), { channels: ['public.x'] });
    main.disconnect();
  }));

  test('the t2 stream-listener is admitted in its own tenant', withLogs(async () => {
    const s = sio(node, '/t2?stream=private', { auth: { token: 's-t2-listener' } });
    await connected(s);
    const got = collect(s, EV);
    const ev = healthEvent();
    await postEvent(node, ev, T2_PUB);
    await waitLen(got, 1);
    assertStreamArgs(got[0], ev);
    s.disconnect();
  }));
});

// =================================================================================

describe('main namespace: channels, acks, binary', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: sioConfig() }); });

  for (const transports of [['polling'], ['websocket']]) {
    test(`subscribe / channel push / unsubscribe with acks (${transports[0]})`, withLogs(async () => {
      const s = sio(node, '/', { transports });
      await connected(s);
      assert.deepEqual(await emitAck(s, 'subscribe', ['public.a', 'public.b']), { channels: ['public.a', 'public.b'] });
      const a = collect(s, 'woohoo');
      let p = await channelPush(node, { channel: ['public.a', 'public.b'], data: { x: [1, 'two'] }, event: 'woohoo' });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.headers.get('x-push-subscribers'), '1', 'the socket.io subscriber is counted once');
      await waitLen(a, 1);
      await sleep(100);
      assert.equal(a.length, 1, 'once even though in both channels');
      assert.deepEqual(a[0], [{ x: [1, 'two'] }, p.headers.get('x-push-id')]);

      // a string is one channel
      assert.deepEqual(await emitAck(s, 'unsubscribe', 'public.a'), { channels: ['public.a'] });
      p = await channelPush(node, { channel: 'public.a', data: 'gone', event: 'woohoo' });
      assert.equal(p.headers.get('x-push-subscribers'), '0');
      p = await channelPush(node, { channel: 'public.b', data: 'still', event: 'woohoo' });
      assert.equal(p.headers.get('x-push-subscribers'), '1');
      await waitLen(a, 2);
      await sleep(100);
      assert.equal(a.length, 2);
      assert.deepEqual(a[1], ['still', p.headers.get('x-push-id')]);
      assert.deepEqual(await emitAck(s, 'unsubscribe', ['public.b']), { channels: ['public.b'] });
      p = await channelPush(node, { channel: 'public.b', data: 'gone', event: 'woohoo' });
      assert.equal(p.headers.get('x-push-subscribers'), '0');
      s.disconnect();
    }));
  }

  test('invalid and forbidden channels get an error ack; nothing is subscribed', withLogs(async () => {
    const s = sio(node, '/', { transports: ['websocket'] });
    await connected(s);
    const bad = [
      [['bad channel!'], /channels\[0\] is not a valid channel name/],
      [['public.ok', ''], /channels\[1\] is not a valid channel name/],
      [['public.ok', 7], /channels\[1\] is not a valid channel name/],
      [['x'.repeat(129)], /channels\[0\] is not a valid channel name/],
      [[], /channels must be an array of 1 to 100 names/],
      [Array.from({ length: 101 }, (_, i) => `public.${i}`), /channels must be an array of 1 to 100 names/],
      [{ not: 'an array' }, /channels must be an array/],
      [null, /channels must be an array/],
      [['ops.secret'], /^not allowed to subscribe to ops\.secret$/],
      [['private.thing'], /^not allowed to subscribe to private\.thing$/],
    ];
    for (const [chans, re] of bad) {
      const r = await emitAck(s, 'subscribe', chans);
      assert.deepEqual(Object.keys(r), ['error'], JSON.stringify(chans));
      assert.match(r.error, re, JSON.stringify(chans).slice(0, 80));
    }
    const p = await channelPush(node, { channel: ['public.ok'], data: 1, event: 'e' });
    assert.equal(p.headers.get('x-push-subscribers'), '0', 'a refused request subscribes to nothing');
    // no channel argument at all
    const r = await emitAck(s, 'subscribe');
    assert.match(r.error, /channels must be an array/);
    assert.ok(s.connected, 'errors do not disconnect');
    s.disconnect();
  }));

  test('channel rules: the token\'s role admits ops.*; the rule is per subscriber', withLogs(async () => {
    const john = sio(node, '/', { auth: { token: 's-john' }, transports: ['polling'] });
    const tokJ = jwt({ sub: 'jj', roles: ['tf-locksmith'] });
    const jj = sio(node, '/', { extraHeaders: { Authorization: `Bearer ${tokJ}` }, transports: ['websocket'] });
    const mary = sio(node, `/?token=s-mary`, { transports: ['websocket'] });
    await Promise.all([connected(john), connected(jj), connected(mary)]);
    assert.deepEqual(await emitAck(john, 'subscribe', ['ops.door']), { channels: ['ops.door'] });
    assert.deepEqual(await emitAck(jj, 'subscribe', ['ops.door']), { channels: ['ops.door'] });
    assert.deepEqual(await emitAck(mary, 'subscribe', ['ops.door']), { error: 'not allowed to subscribe to ops.door' });
    const gj = collect(john, 'open');
    const gjj = collect(jj, 'open');
    const gm = collect(mary, 'open');
    const p = await channelPush(node, { channel: 'ops.door', data: 'x', event: 'open' });
    assert.equal(p.headers.get('x-push-subscribers'), '2');
    await waitLen(gj, 1);
    await waitLen(gjj, 1);
    await sleep(100);
    assert.equal(gm.length, 0);
    for (const s of [john, jj, mary]) s.disconnect();
  }));

  test('unknown events: error ack when one was asked, nothing otherwise; tenant namespaces take no subscribe', withLogs(async () => {
    const s = sio(node, '/', { transports: ['polling'] });
    const t = sio(node, '/t1?stream=app-health', { transports: ['websocket'] });
    await Promise.all([connected(s), connected(t)]);
    assert.deepEqual(await emitAck(s, 'hello', 1, 2), { error: 'unknown event' });
    s.emit('hello', 'no ack wanted');
    s.emit('subscribe', ['public.noack']); // no ack: still subscribes
    await sleep(150);
    const p = await channelPush(node, { channel: 'public.noack', data: 1, event: 'e' });
    assert.equal(p.headers.get('x-push-subscribers'), '1');
    assert.deepEqual(await emitAck(t, 'subscribe', ['public.a']), { error: 'unknown event' });
    assert.ok(s.connected && t.connected);
    s.disconnect();
    t.disconnect();
  }));

  for (const transports of [['polling'], ['websocket']]) {
    test(`binary events (Buffer arguments) get acks and do not hurt the server (${transports[0]})`, withLogs(async () => {
      const s = sio(node, '/', { transports });
      await connected(s);
      assert.deepEqual(await emitAck(s, 'upload', Buffer.from([0, 1, 2, 0xff, 0x1e, 0x62])), { error: 'unknown event' });
      assert.deepEqual(await emitAck(s, 'upload', { a: Buffer.alloc(3000, 7), b: [Buffer.alloc(0), Buffer.from('x')] }), { error: 'unknown event' });
      const r = await emitAck(s, 'subscribe', [Buffer.from('public.bin')]);
      assert.match(r.error, /channels\[0\] is not a valid channel name/);
      s.emit('upload', Buffer.from('no ack'));
      // still usable afterwards
      assert.deepEqual(await emitAck(s, 'subscribe', ['public.after-binary']), { channels: ['public.after-binary'] });
      const got = collect(s, 'e');
      const p = await channelPush(node, { channel: 'public.after-binary', data: 'ok', event: 'e' });
      await waitLen(got, 1);
      assert.deepEqual(got[0], ['ok', p.headers.get('x-push-id')]);
      assert.ok(s.connected);
      s.disconnect();
      assert.equal((await get(node, '/healthz')).status, 200);
    }));
  }
});

// =================================================================================

describe('push requests to socket.io clients', () => {
  let node;
  let ws;
  const S = {};
  const ROLE_JWT = jwt({ sub: 'sally', roles: ['sio-role'] });
  // name -> [clientId, sessionId, path, opts]
  const SIO = {
    alpha: ['sio.alpha', 's-john', '/', { auth: { clientId: 'sio.alpha', token: 's-john' }, transports: ['websocket'] }],
    beta: ['sio.beta', 's-mary', '/?clientId=sio.beta&token=s-mary', { transports: ['polling'] }],
    gamma: ['sio.gamma', jwtSessionId(ROLE_JWT), '/', { auth: { clientId: 'sio.gamma' }, extraHeaders: { Authorization: `Bearer ${ROLE_JWT}` } }],
    anon: ['socket.io', '', '/', {}],
  };
  const ALL = Object.keys(SIO);
  const got = {};

  before(async () => {
    node = await startNode({ workers: 2, config: sioConfig() });
    ws = await connectClient(node, { sessionId: 's-john', clientId: 'ws.client' });
    for (const [n, [, , path, opts]] of Object.entries(SIO)) {
      S[n] = sio(node, path, opts);
      got[n] = [];
      S[n].on('push', (...args) => got[n].push(args));
    }
    await Promise.all(ALL.map((n) => connected(S[n])));
  });

  const NOTIFY = { _type: 'com.braintribe.model.notification.Notify', message: 'hi sio' };
  const entry = (n, msg, ok) => delivered(SIO[n][0], SIO[n][1], msg, ok);
  const reset = () => { for (const n of ALL) got[n].length = 0; ws.drain(); };

  async function pushAndCheck(selector, expected, { withWs = false } = {}) {
    reset();
    const r = await pushRequest(node, { serviceRequest: NOTIFY, ...selector });
    assert.equal(r.status, 200, r.text);
    const want = expected.map((n) => entry(n));
    if (withWs) want.push(delivered('ws.client', 's-john'));
    assert.deepEqual(byClientId(r.body.responseMessages), byClientId(want), JSON.stringify(selector));
    for (const n of expected) {
      await waitLen(got[n], 1, n);
      assert.deepEqual(got[n][0], [NOTIFY, r.body.pushId], `${n}: push (serviceRequest, pushId)`);
    }
    if (withWs) assert.deepEqual(await ws.next(), pushFrame(r.body.pushId, NOTIFY));
    await sleep(120);
    for (const n of ALL) assert.equal(got[n].length, expected.includes(n) ? 1 : 0, `${n} for ${JSON.stringify(selector)}`);
    if (!withWs) await ws.expectNone(10);
    return r.body;
  }

  test('the empty selector reaches every socket.io client and the WebSocket client', withLogs(async () => {
    const body = await pushAndCheck({}, ALL, { withWs: true });
    assert.deepEqual(body.summary, { matched: 5, delivered: 5, failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] });
  }));

  test('clientIdPattern matches auth.clientId and ?clientId= (default "socket.io")', withLogs(async () => {
    await pushAndCheck({ clientIdPattern: 'sio\\.alpha' }, ['alpha']);
    await pushAndCheck({ clientIdPattern: 'sio\\.beta' }, ['beta']);
    await pushAndCheck({ clientIdPattern: 'sio\\..*' }, ['alpha', 'beta', 'gamma']);
    await pushAndCheck({ clientIdPattern: 'socket\\.io' }, ['anon']);
    await pushAndCheck({ clientIdPattern: 'sio' }, []);
  }));

  test('rolePattern and sessionIdPattern use the socket\'s credentials', withLogs(async () => {
    await pushAndCheck({ rolePattern: 'sio-role' }, ['gamma']);
    await pushAndCheck({ rolePattern: 'tf-locksmith' }, ['alpha'], { withWs: true });
    await pushAndCheck({ rolePattern: 'viewer' }, ['beta']);
    await pushAndCheck({ rolePattern: '\\$user-sally' }, ['gamma']);
    await pushAndCheck({ sessionIdPattern: 's-mary' }, ['beta']);
    await pushAndCheck({ sessionIdPattern: 's-john', clientIdPattern: 'sio\\..*' }, ['alpha']);
  }));

  test('awaitAcks: each client\'s ack is its push response; no answer → timeout', withLogs(async () => {
    reset();
    const handlers = {
      alpha: (p, id, ack) => ack({ successful: true, message: 'ok from alpha' }),
      beta: (p, id, ack) => setTimeout(() => ack({ successful: false, message: 'beta refuses' }), 50),
      gamma: (p, id, ack) => ack(), // no argument: successful, "acknowledged"
      anon: () => { /* never answers */ },
    };
    const types = {};
    for (const n of ALL) {
      S[n].on('push', (payload, id, ack) => { types[n] = typeof ack; if (typeof ack === 'function') handlers[n](payload, id, ack); });
    }
    try {
      const t0 = Date.now();
      const pending = pushRequest(node, { serviceRequest: NOTIFY, options: { awaitAcks: true, timeoutMs: 1500 * SLOW } });
      const f = await ws.next();
      ws.send({ type: 'response', id: f.id, successful: true, message: 'ok from ws' });
      const r = await pending;
      assert.equal(r.status, 200, r.text);
      assert.ok(Date.now() - t0 >= 1400 * SLOW, 'the report waits for the timeout of the silent client');
      for (const n of ALL) assert.equal(types[n], 'function', `${n}: the push event carries an ack callback`);
      for (const n of ALL) assert.equal(got[n][0].length, 3, `${n}: (payload, pushId, ack)`);
      assert.deepEqual(byClientId(r.body.responseMessages), byClientId([
        entry('alpha', 'ok from alpha', true),
        entry('beta', 'beta refuses', false),
        entry('gamma', 'acknowledged', true),
        entry('anon', 'timeout', false),
        delivered('ws.client', 's-john', 'ok from ws'),
      ]));
      assert.equal(r.body.summary.matched, 5);
      assert.equal(r.body.summary.acknowledged, 4, JSON.stringify(r.body.summary));
    } finally {
      for (const n of ALL) S[n].removeAllListeners('push');
      for (const n of ALL) S[n].on('push', (...args) => got[n].push(args));
    }
  }));

  test('awaitAcks: the report comes as soon as every targeted client acknowledged', withLogs(async () => {
    reset();
    S.alpha.once('push', (p, id, ack) => ack({ successful: true, message: 'fast' }));
    const t0 = Date.now();
    const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'sio\\.alpha', options: { awaitAcks: true, timeoutMs: 10000 } });
    assert.equal(r.status, 200, r.text);
    assert.ok(Date.now() - t0 < 5000, 'not at the timeout');
    assert.deepEqual(r.body.responseMessages, [entry('alpha', 'fast', true)]);
  }));

  test('the connections list shows socket.io subscribers', withLogs(async () => {
    const r = await get(node, '/api/connections', { key: ADMIN_KEY });
    assert.equal(r.status, 200, r.text);
    const mine = r.body.connections.filter((c) => c.transport === 'socket.io').map((c) => c.clientId).sort();
    assert.deepEqual(mine, ['sio.alpha', 'sio.beta', 'sio.gamma', 'socket.io']);
  }));
});

// =================================================================================

describe('reconnection with recovery', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: sioConfig() }); });

  const RECONNECT = { reconnection: true, reconnectionDelay: 400, reconnectionDelayMax: 400, randomizationFactor: 0 };

  for (const transports of [['websocket'], ['polling']]) {
    test(`client-side engine close: events published while disconnected arrive after the reconnect (${transports[0]})`, withLogs(async () => {
      const s = sio(node, '/t1?stream=app-health', { transports, ...RECONNECT });
      await connected(s);
      const got = collect(s, EV);
      const e1 = healthEvent();
      await postEvent(node, e1);
      await waitLen(got, 1);
      const disc = once(s, 'disconnect');
      const reconnected = once(s.io, 'reconnect');
      s.io.engine.close();
      await disc;
      assert.equal(s.connected, false);
      const missed = [healthEvent(), healthEvent(), healthEvent()];
      for (const ev of missed) await postEvent(node, ev);
      await reconnected;
      await connected(s);
      await waitLen(got, 4);
      const e5 = healthEvent();
      await postEvent(node, e5);
      await waitLen(got, 5);
      await sleep(150);
      assert.equal(got.length, 5, `each event exactly once: ${JSON.stringify(got.map((a) => a[0].payload.seq))}`);
      [e1, ...missed, e5].forEach((ev, i) => assertStreamArgs(got[i], ev, `event ${i}`));
      assert.equal(new Set(got.map((a) => a[1])).size, 5);
      // pushgate does not restore the socket id: only the missed events come back
      assert.equal(s.recovered, false);
      s.disconnect();
    }));
  }

  test('a network cut (the server sees the TCP close): missed events arrive after the reconnect', withLogs(async () => {
    const proxy = await startProxy(node);
    const s = sio(`http://127.0.0.1:${proxy.port}`, '/t1?stream=app-health', { transports: ['websocket'], ...RECONNECT, reconnectionDelay: 100, reconnectionDelayMax: 100 });
    await connected(s);
    const got = collect(s, EV);
    const e1 = healthEvent();
    await postEvent(node, e1);
    await waitLen(got, 1);
    proxy.refuse = true;
    const disc = once(s, 'disconnect');
    proxy.drop();
    await disc;
    await sleep(200); // the server has seen the close; the client retries and is refused
    const missed = [healthEvent(), healthEvent()];
    for (const ev of missed) await postEvent(node, ev);
    proxy.refuse = false;
    // an attempt refused just before this may still report its connect_error
    await connected(s, 10000 * SLOW, { retrying: true });
    await waitLen(got, 3);
    await sleep(150);
    assert.equal(got.length, 3, JSON.stringify(got.map((a) => a[0].payload.seq)));
    [e1, ...missed].forEach((ev, i) => assertStreamArgs(got[i], ev, `event ${i}`));
    s.disconnect();
    proxy.close();
  }));

  test('a first connect with auth {pid, offset} replays the history after offset (any client)', withLogs(async () => {
    const a = sio(node, '/t1?stream=app-health', { transports: ['websocket'] });
    await connected(a);
    const ga = collect(a, EV);
    const evs = [healthEvent(), healthEvent(), healthEvent()];
    for (const ev of evs) await postEvent(node, ev);
    await waitLen(ga, 3);
    a.disconnect();
    const b = sio(node, '/t1', { auth: { stream: 'app-health', pid: 'whatever', offset: ga[0][1] } });
    const gb = collect(b, EV);
    await connected(b);
    await waitLen(gb, 2);
    await sleep(150);
    assert.equal(gb.length, 2, JSON.stringify(gb));
    assert.deepEqual(gb.map((x) => x[1]), [ga[1][1], ga[2][1]]);
    // no pid: no replay
    const c = sio(node, '/t1', { auth: { stream: 'app-health', offset: ga[0][1] } });
    const gc = collect(c, EV);
    await connected(c);
    await sleep(200);
    assert.equal(gc.length, 0, 'without pid nothing is replayed');
    b.disconnect();
    c.disconnect();
  }));

  test('publishing continuously while the client reconnects repeatedly: every event exactly once, in order', withLogs(async () => {
    const s = sio(node, '/t1?stream=app-health', { transports: ['websocket'], reconnection: true, reconnectionDelay: 20, reconnectionDelayMax: 50 });
    await connected(s);
    const got = collect(s, EV);
    const N = 120;
    const sent = [];
    let closes = 0;
    const publisher = (async () => {
      for (let i = 0; i < N; i++) {
        const ev = healthEvent();
        sent.push(ev.payload.seq);
        await postEvent(node, ev);
        if (i % 15 === 7) await sleep(5);
      }
    })();
    while (sent.length < N) {
      await sleep(40);
      if (s.connected) { closes++; s.io.engine.close(); }
    }
    await publisher;
    await until(() => s.connected, 5000 * SLOW);
    await waitLen(got, N, 'events', 10000 * SLOW);
    await sleep(300);
    const seqs = got.map((a) => a[0].payload.seq);
    const dups = seqs.filter((x, i) => seqs.indexOf(x) !== i);
    assert.deepEqual(dups, [], `duplicates after ${closes} reconnects`);
    assert.deepEqual(seqs, sent, `all ${N} events in order after ${closes} reconnects`);
    assert.ok(closes >= 3, `only ${closes} reconnects`);
    s.disconnect();
  }));
});

// =================================================================================

describe('many clients across 4 workers', () => {
  let node;
  before(async () => { node = await startNode({ workers: 4, config: sioConfig() }); });

  test('100 clients (polling, websocket, upgraded) each get each stream event exactly once', withLogs(async () => {
    const N = 100;
    const kinds = [['polling'], ['websocket'], ['polling', 'websocket']];
    const clients = [];
    for (let i = 0; i < N; i += 25) {
      const batch = [];
      for (let j = i; j < Math.min(N, i + 25); j++) {
        const transports = kinds[j % 3];
        const s = sio(node, '/t1?stream=app-health', { transports });
        const c = { s, transports, got: collect(s, EV) };
        clients.push(c);
        batch.push(connected(s));
      }
      await Promise.all(batch);
    }
    // give the upgrades a moment, then publish
    await sleep(200);
    const evs = Array.from({ length: 5 }, () => healthEvent());
    for (const ev of evs) await postEvent(node, ev);
    for (const c of clients) await waitLen(c.got, evs.length, `client ${c.transports.join('+')}`, 10000 * SLOW);
    await sleep(300);
    const ids = clients[0].got.map((a) => a[1]);
    for (const [i, c] of clients.entries()) {
      assert.equal(c.got.length, evs.length, `client ${i} (${c.transports.join('+')}): ${c.got.length} events`);
      c.got.forEach((args, k) => assertStreamArgs(args, evs[k], `client ${i} event ${k}`));
      assert.deepEqual(c.got.map((a) => a[1]), ids, `client ${i}: same push ids`);
    }
    const upgraded = clients.filter((c) => c.transports.length === 2 && c.s.io.engine.transport.name === 'websocket').length;
    assert.ok(upgraded > 0, 'some polling clients upgraded');
    const conns = await get(node, '/api/connections', { key: ADMIN_KEY });
    const workers = new Set(conns.body.connections.filter((c) => c.transport === 'socket.io').map((c) => c.worker));
    assert.ok(workers.size >= 2, `spread over workers: ${[...workers]}`);
    for (const c of clients) c.s.disconnect();
  }));
});

// =================================================================================

describe('heartbeats and timeouts (small pingInterval / pingTimeout)', () => {
  let node;
  const PING = 250;
  before(async () => {
    node = await startNode({
      config: sioConfig({
        socketio: { pingIntervalMs: PING, pingTimeoutMs: PING, connectTimeoutMs: 150, maxPayload: 2048 },
      }),
    });
  });

  test('the open packet announces the configured values', withLogs(async () => {
    const open = await eioOpen(node);
    assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.equal(open.pingInterval, PING);
    assert.equal(open.pingTimeout, PING);
    assert.equal(open.maxPayload, 2048);
    assert.deepEqual(open.upgrades, ['websocket']);
    assert.match(open.sid, /^[0-9a-f]{20}$/);
  }));

  test('live clients (polling and websocket) answer pings and stay connected over many intervals', withLogs(async () => {
    const a = sio(node, '/t1?stream=app-health', { transports: ['polling'] });
    const b = sio(node, '/t1?stream=app-health', { transports: ['websocket'] });
    await Promise.all([connected(a), connected(b)]);
    const pings = [0, 0];
    a.io.engine.on('ping', () => pings[0]++);
    b.io.engine.on('ping', () => pings[1]++);
    let disconnects = 0;
    a.on('disconnect', () => disconnects++);
    b.on('disconnect', () => disconnects++);
    await sleep(PING * 6);
    assert.ok(pings[0] >= 3 && pings[1] >= 3, `pings ${pings}`);
    assert.equal(disconnects, 0);
    const ga = collect(a, EV);
    const gb = collect(b, EV);
    await postEvent(node, healthEvent());
    await waitLen(ga, 1);
    await waitLen(gb, 1);
    a.disconnect();
    b.disconnect();
  }));

  test('a polling client that stops polling is closed by the heartbeat; the server stays healthy', withLogs(async () => {
    const { sid } = await eioOpen(node);
    assert.equal((await eioPost(node, sid, '40/t1,{"stream":"app-health"}')).text, 'ok');
    const r = await eioPoll(node, sid);
    assert.match(r.text, /^40\/t1,\{"sid":"[0-9a-f]{20}","pid":"[0-9a-f]{20}"\}$/);
    // ... and never polls again: a ping is queued, no pong comes, closed after interval + timeout
    await sleep(PING * 2 + 400 * SLOW);
    const gone = await eioPoll(node, sid);
    assert.equal(gone.status, 400, gone.text);
    assert.deepEqual(gone.body, { code: 1, message: 'Session ID unknown' });
    assert.equal((await get(node, '/healthz')).status, 200);
  }));

  test('a WebSocket client that does not answer pings is closed', withLogs(async () => {
    const raw = await RawWs.connect(node, '/socket.io/?EIO=4&transport=websocket');
    assert.equal(raw.handshake.status, 101);
    const open = await raw.nextFrame();
    assert.equal(open.opcode, OP.TEXT);
    const o = JSON.parse(open.payload.toString().slice(1));
    assert.deepEqual(o.upgrades, [], 'no upgrade from websocket');
    raw.sendText('40/t1,{"stream":"app-health"}');
    const conn = await raw.nextFrame();
    assert.match(conn.payload.toString(), /^40\/t1,\{"sid":/);
    const ping = await raw.nextFrame(3000 * SLOW);
    assert.equal(ping.payload.toString(), '2');
    // no pong
    assert.ok(await closedWithin(raw.ended, PING * 2 + 2000 * SLOW), 'closed after the ping timeout');
    raw.destroy();
  }));

  test('a session that joins no namespace within connectTimeoutMs is closed', withLogs(async () => {
    const { sid } = await eioOpen(node);
    await sleep(150 + 150 * SLOW);
    const r = await eioPoll(node, sid);
    // closed either way: the close packet on a poll in flight, or the sid is gone
    assert.ok(r.status === 400 ? r.body.code === 1 : r.text === '1', `${r.status} ${r.text}`);
  }));

  test('a POST over maxPayload is 413 and closes the session', withLogs(async () => {
    const { sid } = await eioOpen(node);
    await eioPost(node, sid, '40');
    const r = await eioPost(node, sid, '42' + JSON.stringify(['x', 'y'.repeat(3000)]));
    assert.equal(r.status, 413, r.text);
    const gone = await eioPoll(node, sid);
    assert.equal(gone.status, 400, gone.text);
    assert.equal(gone.body.code, 1);
  }));
});

// =================================================================================

describe('slow consumers (limits.maxOutputBytes 4096), a node each', () => {
  const slowConfig = () => sioConfig({ socketio: { pingIntervalMs: 5000, pingTimeoutMs: 5000 }, limits: { maxOutputBytes: 4096 } });

  test('a polling client that does not poll while events pile up is cut off as a slow consumer', withLogs(async () => {
    const node = await startNode({ config: slowConfig() });
    const { sid } = await eioOpen(node);
    await eioPost(node, sid, '40/t1,{"stream":"app-health"}');
    assert.match((await eioPoll(node, sid)).text, /^40\/t1,/);
    const before0 = await get(node, '/metrics');
    const m0 = Number((before0.text.match(/^pushgate_slow_consumer_closes_total (\d+)/m) || [])[1] || 0);
    // 10 events of ~1 KiB each against limits.maxOutputBytes 4096, faster than the heartbeat
    for (let i = 0; i < 10; i++) await postEvent(node, healthEvent({ payload: { pad: 'p'.repeat(1000), i } }));
    assert.ok(node.isRunning(), `pushgate died: ${node.logs().slice(-3000)}`);
    assert.doesNotMatch(node.logs(), SANITIZER_RE);
    const gone = await eioPoll(node, sid);
    assert.equal(gone.status, 400, gone.text.slice(0, 200));
    const m = await get(node, '/metrics');
    assert.equal(m.status, 200);
    const m1 = Number((m.text.match(/^pushgate_slow_consumer_closes_total (\d+)/m) || [])[1] || 0);
    assert.equal(m1, m0 + 1, 'counted as a slow consumer');
  }));

  test('recovery of a backlog larger than maxOutputBytes cuts the client off without harm', withLogs(async () => {
    const node = await startNode({ config: slowConfig() });
    const a = sio(node, '/t1?stream=app-health', { transports: ['websocket'] });
    await connected(a);
    const ga = collect(a, EV);
    await postEvent(node, healthEvent());
    await waitLen(ga, 1);
    a.disconnect();
    for (let i = 0; i < 8; i++) await postEvent(node, healthEvent({ payload: { pad: 'q'.repeat(1000), i } }));
    // a polling reconnect: the replay is queued for the next poll, past maxOutputBytes
    const { sid } = await eioOpen(node);
    await eioPost(node, sid, `40/t1,${JSON.stringify({ stream: 'app-health', pid: 'p', offset: ga[0][1] })}`);
    await sleep(100);
    assert.ok(node.isRunning(), `pushgate died: ${node.logs().slice(-3000)}`);
    assert.doesNotMatch(node.logs(), SANITIZER_RE);
    const r = await eioPoll(node, sid);
    assert.ok(r.status === 400 || r.text.startsWith('40/t1,'), `${r.status} ${r.text.slice(0, 100)}`);
    assert.equal((await get(node, '/healthz')).status, 200);
  }));
});

// =================================================================================

describe('Engine.IO over raw HTTP', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: sioConfig() }); });

  test('errors: bad EIO version 5, unknown transport 0, unknown sid 1, POST handshake 2', withLogs(async () => {
    const cases = [
      ['EIO=3&transport=polling', 'GET', 5, 'Unsupported protocol version'],
      ['transport=polling', 'GET', 5, 'Unsupported protocol version'],
      ['EIO=5&transport=websocket', 'GET', 5, 'Unsupported protocol version'],
      ['EIO=4&transport=carrier-pigeon', 'GET', 0, 'Transport unknown'],
      ['EIO=4', 'GET', 0, 'Transport unknown'],
      ['EIO=4&transport=polling&sid=nope', 'GET', 1, 'Session ID unknown'],
      ['EIO=4&transport=polling&sid=00000000000000000000', 'POST', 1, 'Session ID unknown'],
      ['EIO=4&transport=websocket&sid=nope', 'GET', 1, 'Session ID unknown'],
      ['EIO=4&transport=polling', 'POST', 2, 'Bad handshake method'],
      ['EIO=4&transport=polling', 'PUT', 2, 'Bad handshake method'],
    ];
    for (const [q, method, code, message] of cases) {
      const r = await eioFetch(eioBase(node, q), { method, body: method === 'GET' ? undefined : '40' });
      assert.equal(r.status, 400, `${method} ?${q}: ${r.status} ${r.text}`);
      assert.match(r.headers.get('content-type'), /^application\/json/);
      assert.deepEqual(r.body, { code, message }, `${method} ?${q}`);
    }
  }));

  test('a full polling exchange by hand: CONNECT, EVENT with ack, several packets per payload, close', withLogs(async () => {
    const { sid } = await eioOpen(node);
    // two packets in one POST, joined by the record separator
    assert.equal((await eioPost(node, sid, '40\x1e40/t1,{"stream":"app-health"}')).text, 'ok');
    const r1 = await eioPoll(node, sid);
    const p1 = packets(r1.text);
    assert.equal(p1.length, 2, r1.text);
    assert.match(p1.find((p) => p.startsWith('40{')), /^40\{"sid":"[0-9a-f]{20}","pid":"[0-9a-f]{20}"\}$/);
    assert.match(p1.find((p) => p.startsWith('40/t1,')), /^40\/t1,\{"sid":/);
    // an event with ack id 7, and a binary-event with its attachment as b<base64>
    const att = Buffer.from([1, 2, 3]).toString('base64');
    assert.equal((await eioPost(node, sid, `427["subscribe",["public.raw"]]\x1e451-8["nope",{"_placeholder":true,"num":0}]\x1eb${att}`)).text, 'ok');
    const r2 = await eioPoll(node, sid);
    assert.deepEqual(packets(r2.text).sort(), ['437[{"channels":["public.raw"]}]', '438[{"error":"unknown event"}]']);
    const pending = eioPoll(node, sid);
    await sleep(50);
    const p = await channelPush(node, { channel: 'public.raw', data: { d: 1 }, event: 'ev' });
    const r3 = await pending;
    assert.equal(r3.text, `42["ev",{"d":1},"${p.headers.get('x-push-id')}"]`);
    // a stream event in the tenant namespace
    const pending2 = eioPoll(node, sid);
    await sleep(50);
    const ev = healthEvent();
    await postEvent(node, ev);
    const r4 = await pending2;
    const m = /^42\/t1,(.*)$/.exec(r4.text);
    assert.ok(m, r4.text);
    const args = JSON.parse(m[1]);
    assert.equal(args[0], EV);
    assert.deepEqual(args[1], ev);
    // client close packet
    assert.equal((await eioPost(node, sid, '1')).text, 'ok');
    assert.equal((await eioPoll(node, sid)).body.code, 1);
  }));

  test('upgrade: 2probe/3probe, polls during the upgrade get a noop at once, 5 switches, queued packets follow over the WebSocket', withLogs(async () => {
    const { sid } = await eioOpen(node);
    await eioPost(node, sid, '40');
    assert.match((await eioPoll(node, sid)).text, /^40\{/);
    // a poll in flight when the probe comes is answered with a noop
    const inFlight = eioPoll(node, sid);
    await sleep(50);
    const raw = await RawWs.connect(node, `/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
    try {
      assert.equal(raw.handshake.status, 101);
      raw.sendText('2probe');
      assert.equal((await raw.nextFrame()).payload.toString(), '3probe');
      assert.equal((await inFlight).text, '6');
      // the client's next poll arrives after the probe (engine.io-client polls again right
      // away): the reference server answers it with a noop within 100 ms, so the client can
      // pause polling and send 5. It must not be held until the next ping.
      const t0 = Date.now();
      const late = await eioFetch(`${eioBase(node)}&sid=${sid}`, { signal: AbortSignal.timeout(2000 * SLOW) })
        .catch((e) => ({ status: 0, text: `no answer (${e.name}) after ${Date.now() - t0} ms` }));
      assert.equal(late.text, '6', 'a poll during the upgrade is answered with a noop');
      // something for the client while it finishes: it comes over the WebSocket after 5
      assert.equal((await eioPost(node, sid, '421["subscribe",["public.up"]]')).text, 'ok');
      raw.sendText('5');
      assert.equal((await raw.nextFrame()).payload.toString(), '431[{"channels":["public.up"]}]', 'queued before 5, sent after it');
      raw.sendText('422["subscribe",["public.up2"]]');
      assert.equal((await raw.nextFrame()).payload.toString(), '432[{"channels":["public.up2"]}]');
      // polling is over for this session
      assert.equal((await eioPoll(node, sid)).status, 400);
    } finally {
      // close the session whatever happened (a polling session left open leaks at shutdown)
      await eioPost(node, sid, '1').catch(() => {});
      raw.sendText('1');
      await sleep(50);
      raw.destroy();
    }
  }));

  test('two polls at once break the session (400 code 3; the first gets the close packet)', withLogs(async () => {
    const { sid } = await eioOpen(node);
    await eioPost(node, sid, '40');
    await eioPoll(node, sid); // the CONNECT answer
    const first = eioPoll(node, sid);
    await sleep(100);
    const second = await eioPoll(node, sid);
    assert.equal(second.status, 400, second.text);
    assert.deepEqual(second.body, { code: 3, message: 'Bad request' });
    assert.equal((await first).text, '1');
  }));

  test('malformed packets close the session; the server stays up', withLogs(async () => {
    for (const bad of ['', '9', 'x', '4', '49', '45-["a"]', '45999-["a"]', '4565-["a"]', '451["a"]', '4512345678901234567["a"]', `4/${'n'.repeat(200)},`, '42["a"', '42{"not":"array"}', '42[1]', '40[]', 'b!!!', 'b!!!!', 'bAAA']) {
      const { sid } = await eioOpen(node);
      if (!bad.startsWith('40')) await eioPost(node, sid, '40');
      const r = await eioPost(node, sid, bad);
      assert.ok(r.status === 200 || r.status === 400, `${JSON.stringify(bad)}: ${r.status}`);
      const after = await eioPoll(node, sid);
      // gone (400 code 1), or answered with the close packet
      assert.ok(after.status === 400 || /(^|\x1e)1$/.test(after.text) || after.text.startsWith('40'), `${JSON.stringify(bad)} → ${after.status} ${after.text}`);
      if (after.status === 200) await eioPost(node, sid, '1'); // still open (the empty POST): close it
    }
    assert.equal((await get(node, '/healthz')).status, 200);
  }));

  test('polling sessions are served whichever worker a request lands on', withLogs(async () => {
    // fresh connections for every request: the kernel spreads them over the workers
    const { Agent } = await import('node:http');
    const plain = (url, init = {}) => new Promise((res, rej) => {
      const agent = new Agent({ keepAlive: false });
      import('node:http').then(({ request }) => {
        const u = new URL(url);
        const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: init.method || 'GET', agent }, (resp) => {
          let text = '';
          resp.setEncoding('utf8');
          resp.on('data', (d) => { text += d; });
          resp.on('end', () => res({ status: resp.statusCode, text }));
        });
        req.on('error', rej);
        if (init.body) req.write(init.body);
        req.end();
      });
    });
    const open = await plain(eioBase(node));
    const { sid } = JSON.parse(open.text.slice(1));
    assert.equal((await plain(`${eioBase(node)}&sid=${sid}`, { method: 'POST', body: '40' })).text, 'ok');
    assert.match((await plain(`${eioBase(node)}&sid=${sid}`)).text, /^40\{/);
    for (let i = 0; i < 12; i++) {
      assert.equal((await plain(`${eioBase(node)}&sid=${sid}`, { method: 'POST', body: `42${i}["subscribe",["public.w${i}"]]` })).text, 'ok', `POST ${i}`);
      assert.equal((await plain(`${eioBase(node)}&sid=${sid}`)).text, `43${i}[{"channels":["public.w${i}"]}]`, `GET ${i}`);
    }
    assert.equal((await plain(`${eioBase(node)}&sid=${sid}`, { method: 'POST', body: '1' })).text, 'ok');
  }));

  test('metrics are still served', withLogs(async () => {
    const r = await get(node, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.text, /^pushgate_/m);
    assert.equal((await get(node, '/readyz')).status, 200);
  }));
});

// =================================================================================

describe('shutdown', () => {
  test('SIGTERM with polling sessions open (between polls, and with a poll in flight): prompt exit 0, nothing leaked', withLogs(async () => {
    const node = await startNode({ workers: 2, config: sioConfig({ limits: { shutdownTimeoutMs: 3000 } }) });
    const idle = sio(node, '/t1?stream=app-health', { transports: ['polling'] });
    const { sid } = await eioOpen(node);
    await eioPost(node, sid, '40');
    await eioPoll(node, sid);
    await connected(idle);
    const inFlight = eioPoll(node, sid).catch((e) => ({ text: `error ${e.message}` }));
    await sleep(100);
    const t0 = Date.now();
    const info = await node.stop('SIGTERM');
    const took = Date.now() - t0;
    const held = await inFlight;
    idle.disconnect();
    assert.deepEqual(info, { code: 0, signal: null }, `exit: ${node.logs().slice(-3000)}`);
    assert.doesNotMatch(node.logs(), SANITIZER_RE, 'a sanitizer report at shutdown');
    // the held poll is a request being answered: answered at once (close packet or noop),
    // not left to limits.shutdownTimeoutMs
    assert.ok(took < 2000 * SLOW, `exit took ${took} ms (the held poll got ${JSON.stringify(held.text)})`);
  }));
});

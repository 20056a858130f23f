// Streams (seed 002): the per-tenant stream configuration API (GET / PATCH UPDATE,
// REPLACE, DELETE; 422 naming the path; persistence across a restart replacing the
// config file's streams), event ingestion (routing by namespace/name, criteria,
// projections, validation, the acting tenant), SSE subscriptions (public,
// subscriberRoles, stream-listener, 401/403/404, cross-tenant, Bearer / ?token= / JWT),
// delivery through the eventsource package, and Last-Event-ID replay.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, api, baseConfig, makeJwt, sleep, createSession, PUB_KEY, ADMIN_KEY,
} from './lib/harness.mjs';
import { sseOpen, sseSubscribe, jsonData, openEventSource, closeAllSse } from './lib/sse.mjs';

after(async () => {
  closeAllSse();
  await cleanup();
});

const CONFIG_PATH = '/configuration/v2/configuration/platform/push-service';
const ID_RE = /^[0-9a-f]{13}-[0-9a-f]{8}-[0-9a-f]{8}$/;

const T1_PUB = 't1-pub';
const T2_PUB = 't2-pub';
const T1_ADMIN = 't1-admin';

const HEALTH = { namespace: 'status-service', name: 'health-check-started' };

const OPS_MAP = {
  app: 'payload.application.name',
  status: 'payload.status',
  firstItem: 'payload.items.0.id',
  secondTag: 'payload.items.1.tags.1',
  allItems: 'payload.items',
  site: 'context.site',
  ctx: 'context',
  when: 'timestamp',
  cid: 'correlationId',
  gone: 'payload.nope.deeper',
  badIndex: 'payload.items.9.id',
  notAnIndex: 'payload.items.first.id',
  intoString: 'payload.status.x',
  intoNumber: 'payload.count.0',
};

function streamsConfig() {
  return {
    t1: {
      'app-health': { name: 'Application Health', publicSubscribe: true, subscriberRoles: [], events: [{ ...HEALTH }] },
      ops: { name: 'Ops', subscriberRoles: ['ops-reader'], events: [{ ...HEALTH, map: OPS_MAP }] },
      private: { events: [{ ...HEALTH }] },
      'by-cid': { publicSubscribe: true, events: [{ namespace: 'orders', name: 'placed', criteria: { correlationId: 'c-1' } }] },
      'by-ctx': { publicSubscribe: true, events: [{ namespace: 'orders', name: 'placed', criteria: { context: { site: 'a', level: 2, tags: ['x'] } } }] },
      'first-entry': {
        publicSubscribe: true,
        events: [
          { namespace: 'orders', name: 'placed', criteria: { correlationId: 'vip' }, map: { who: 'payload.customer' } },
          { namespace: 'orders', name: 'placed', map: { amount: 'payload.amount' } },
          { namespace: 'orders', name: 'shipped' },
        ],
      },
    },
    t2: {
      ops: { subscriberRoles: ['ops-reader'], events: [{ ...HEALTH }] },
      't2-only': { publicSubscribe: true, events: [{ ...HEALTH }] },
    },
  };
}

function streamsNodeConfig(extra = {}) {
  const cfg = baseConfig({ streams: streamsConfig(), ...extra });
  cfg.apiKeys.push(
    { key: T1_PUB, scopes: ['publish'], tenant: 't1' },
    { key: T2_PUB, scopes: ['publish'], tenant: 't2' },
    { key: T1_ADMIN, scopes: ['admin'], tenant: 't1' },
  );
  cfg.sessions.push(
    { sessionId: 's-t1-ops', user: 'ann', roles: ['ops-reader'], tenant: 't1' },
    { sessionId: 's-t1-viewer', user: 'vic', roles: ['viewer'], tenant: 't1' },
    { sessionId: 's-t1-listener', user: 'lis', roles: ['stream-listener'], tenant: 't1' },
    { sessionId: 's-t2-listener', user: 'tom', roles: ['stream-listener'], tenant: 't2' },
    { sessionId: 's-t2-ops', user: 'tia', roles: ['ops-reader'], tenant: 't2' },
  );
  return cfg;
}

const jwt = (claims) => makeJwt({ exp: Math.floor(Date.now() / 1000) + 600, ...claims });

function postEvent(node, ev, { key = T1_PUB, query = '' } = {}) {
  return api(node, 'POST', `/event/v1/events${query}`, { key, body: ev });
}

async function postEvent200(node, ev, opts) {
  const r = await postEvent(node, ev, opts);
  assert.equal(r.status, 200, `${JSON.stringify(ev).slice(0, 200)} → ${r.status} ${r.text}`);
  assert.ok(Array.isArray(r.body?.streams), r.text);
  return [...r.body.streams].sort();
}

function healthEvent(extra = {}) {
  return {
    ...HEALTH,
    timestamp: '2026-11-23T10:00:00Z',
    correlationId: 'c-9',
    context: { site: 'a' },
    payload: {
      application: { name: 'a1' },
      status: 'ok',
      count: 3,
      items: [{ id: 'i0', tags: ['x', 'y'] }, { id: 'i1', tags: ['p', 'q'] }],
    },
    ...extra,
  };
}

function getConfig(node, { key = ADMIN_KEY, tenant } = {}) {
  return api(node, 'GET', CONFIG_PATH + (tenant !== undefined ? `?tenantId=${tenant}` : ''), { key });
}

function patchConfig(node, body, { key = ADMIN_KEY, tenant } = {}) {
  return api(node, 'PATCH', CONFIG_PATH + (tenant !== undefined ? `?tenantId=${tenant}` : ''), { key, body });
}

// seed 002's request, verbatim
const SEED_REQUEST = {
  operation: 'UPDATE',
  update: {
    'application-health': {
      id: 'application-health',
      name: 'Application Health',
      description: 'Includes events indicating application health.',
      publicSubscribe: true,
      subscriberRoles: [],
      events: [
        {
          namespace: 'status-service',
          name: 'health-check-started',
          map: {},
          criteria: {},
        },
      ],
    },
  },
};

const simpleStream = (extra = {}) => ({ publicSubscribe: true, events: [{ ...HEALTH }], ...extra });

// ---------------------------------------------------------------------------------

describe('stream configuration API', () => {
  let node;
  before(async () => {
    node = await startNode({ workers: 2, config: streamsNodeConfig() });
  });

  test('GET of a tenant without streams is {}; the config file\'s streams are there', withLogs(async () => {
    const r = await getConfig(node, { tenant: 'tc' });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.deepEqual(r.body, {});
    const t1 = await getConfig(node, { tenant: 't1' });
    assert.equal(t1.status, 200, t1.text);
    assert.deepEqual(Object.keys(t1.body).sort(), ['app-health', 'by-cid', 'by-ctx', 'first-entry', 'ops', 'private']);
    assert.equal(t1.body.ops.id, 'ops', 'each stream carries its id');
    assert.deepEqual(t1.body.ops.events[0].map, OPS_MAP);
  }));

  test('PATCH UPDATE (seed 002 verbatim) / GET / UPDATE / REPLACE / DELETE round trip', withLogs(async () => {
    const T = 'tc';
    let r = await patchConfig(node, SEED_REQUEST, { tenant: T });
    assert.equal(r.status, 200, r.text);
    const seedStream = SEED_REQUEST.update['application-health'];
    assert.deepEqual(r.body, { tenantId: T, latest: { 'application-health': seedStream } });
    r = await getConfig(node, { tenant: T });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { 'application-health': seedStream });

    // the stream works at once: routed, and a subscriber of tenant tc (no roles: the
    // stream is public) gets the whole event ({} map)
    const sess = await createSession(node, { user: 'tc-user', roles: [], tenant: T });
    assert.equal(sess.status, 201, JSON.stringify(sess.body));
    const sub = await sseSubscribe(node, '/stream/v1/streams/application-health', { headers: { authorization: `Bearer ${sess.body.sessionId}` } });
    const ev = healthEvent();
    assert.deepEqual(await postEvent200(node, ev, { key: PUB_KEY, query: `?tenantId=${T}` }), ['application-health']);
    assert.deepEqual(jsonData(await sub.next()), ev);

    // UPDATE adds a stream (an id is filled in) and keeps the others
    r = await patchConfig(node, { operation: 'UPDATE', update: { second: simpleStream() } }, { tenant: T });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.latest, { 'application-health': seedStream, second: { id: 'second', ...simpleStream() } });

    // UPDATE of an existing stream replaces that stream whole (no merge of fields)
    const changed = { name: 'Changed', events: [{ namespace: 'other', name: 'thing' }] };
    r = await patchConfig(node, { operation: 'UPDATE', update: { 'application-health': changed } }, { tenant: T });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.latest['application-health'], { id: 'application-health', ...changed });
    assert.deepEqual(await postEvent200(node, ev, { key: PUB_KEY, query: `?tenantId=${T}` }), ['second']);

    // REPLACE swaps the whole set
    r = await patchConfig(node, { operation: 'REPLACE', configuration: { third: simpleStream({ description: 'd' }) } }, { tenant: T });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { tenantId: T, latest: { third: { id: 'third', ...simpleStream({ description: 'd' }) } } });
    r = await getConfig(node, { tenant: T });
    assert.deepEqual(Object.keys(r.body), ['third']);
    assert.deepEqual(await postEvent200(node, ev, { key: PUB_KEY, query: `?tenantId=${T}` }), ['third']);
    await sub.expectNone(200);
    sub.close();

    // DELETE one; again → 404; unknown → 404
    r = await patchConfig(node, { operation: 'DELETE', property: 'third' }, { tenant: T });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { tenantId: T, latest: {} });
    r = await patchConfig(node, { operation: 'DELETE', property: 'third' }, { tenant: T });
    assert.equal(r.status, 404, r.text);
    assert.equal(typeof r.body?.error, 'string');
    r = await patchConfig(node, { operation: 'DELETE', property: 'never-was' }, { tenant: 'tc-empty' });
    assert.equal(r.status, 404, r.text);
    r = await getConfig(node, { tenant: T });
    assert.deepEqual(r.body, {});
    assert.deepEqual(await postEvent200(node, ev, { key: PUB_KEY, query: `?tenantId=${T}` }), []);
    // a deleted stream is unknown to new subscribers
    const gone = await sseOpen(node, `/stream/v1/streams/third?tenantId=${T}`);
    assert.equal(gone.status, 404, gone.text);
  }));

  test('credentials: admin key only (403 for publish keys, none, wrong); tenant-bound admin keys', withLogs(async () => {
    for (const key of [PUB_KEY, T1_PUB, null, 'wrong']) {
      let r = await getConfig(node, { key, tenant: 't1' });
      assert.equal(r.status, 403, `GET with ${key}: ${r.status} ${r.text}`);
      assert.deepEqual(r.body, { error: 'Access Forbidden' });
      r = await patchConfig(node, { operation: 'UPDATE', update: { x: simpleStream() } }, { key, tenant: 't1' });
      assert.equal(r.status, 403, `PATCH with ${key}: ${r.status} ${r.text}`);
    }
    // a key bound to t1 acts on t1 without tenantId, and on nothing else
    let r = await getConfig(node, { key: T1_ADMIN });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.ops && r.body['app-health'], `t1's streams: ${r.text.slice(0, 200)}`);
    r = await getConfig(node, { key: T1_ADMIN, tenant: 't1' });
    assert.equal(r.status, 200, r.text);
    r = await getConfig(node, { key: T1_ADMIN, tenant: 't2' });
    assert.equal(r.status, 403, r.text);
    r = await patchConfig(node, { operation: 'DELETE', property: 'nope' }, { key: T1_ADMIN, tenant: 't2' });
    assert.equal(r.status, 403, r.text);
    r = await patchConfig(node, { operation: 'DELETE', property: 'nope' }, { key: T1_ADMIN });
    assert.equal(r.status, 404, r.text);
    // an unbound admin key must name the tenant
    r = await getConfig(node);
    assert.ok([400, 422].includes(r.status), `GET without tenantId: ${r.status} ${r.text}`);
    assert.match(r.body?.error ?? '', /tenantId/);
    r = await patchConfig(node, { operation: 'UPDATE', update: { x: simpleStream() } });
    assert.ok([400, 422].includes(r.status), `PATCH without tenantId: ${r.status} ${r.text}`);
  }));

  const p = 'update.s';
  const INVALID = [
    ['seed shape without namespace', { operation: 'UPDATE', update: { 'application-health': { ...SEED_REQUEST.update['application-health'], events: [{ name: 'health-check-started' }] } } }, 'update.application-health.events[0].namespace'],
    ['empty namespace', { operation: 'UPDATE', update: { s: { events: [{ namespace: '', name: 'n' }] } } }, `${p}.events[0].namespace`],
    ['name not a string in the 2nd entry', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH }, { namespace: 'n', name: 5 }] } } }, `${p}.events[1].name`],
    ['unknown stream field', { operation: 'UPDATE', update: { s: { ...simpleStream(), colour: 'red' } } }, `${p}.colour`],
    ['unknown event entry field', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, filter: 'x' }] } } }, `${p}.events[0].filter`],
    ['id mismatch', { operation: 'UPDATE', update: { s: { ...simpleStream(), id: 'other' } } }, `${p}.id`],
    ['id not a string', { operation: 'UPDATE', update: { s: { ...simpleStream(), id: 5 } } }, `${p}.id`],
    ['events missing', { operation: 'UPDATE', update: { s: { name: 'x' } } }, `${p}.events`],
    ['events not an array', { operation: 'UPDATE', update: { s: { events: { ...HEALTH } } } }, `${p}.events`],
    ['event entry not an object', { operation: 'UPDATE', update: { s: { events: ['status-service'] } } }, `${p}.events[0]`],
    ['name not a string', { operation: 'UPDATE', update: { s: simpleStream({ name: 1 }) } }, `${p}.name`],
    ['description not a string', { operation: 'UPDATE', update: { s: simpleStream({ description: {} }) } }, `${p}.description`],
    ['publicSubscribe not a boolean', { operation: 'UPDATE', update: { s: simpleStream({ publicSubscribe: 'yes' }) } }, `${p}.publicSubscribe`],
    ['subscriberRoles not an array', { operation: 'UPDATE', update: { s: simpleStream({ subscriberRoles: 'admin' }) } }, `${p}.subscriberRoles`],
    ['subscriberRoles with a number', { operation: 'UPDATE', update: { s: simpleStream({ subscriberRoles: ['a', 1] }) } }, `${p}.subscriberRoles[1]`],
    ['map not an object', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, map: 'payload' }] } } }, `${p}.events[0].map`],
    ['map value not a string', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, map: { a: 'payload.a', b: 3 } }] } } }, `${p}.events[0].map.b`],
    ['map value empty', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, map: { a: '' } }] } } }, `${p}.events[0].map.a`],
    ['criteria not an object', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, criteria: 'c-1' }] } } }, `${p}.events[0].criteria`],
    ['criteria unknown key', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, criteria: { tenant: 'x' } }] } } }, `${p}.events[0].criteria.tenant`],
    ['criteria.correlationId not a string', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, criteria: { correlationId: 1 } }] } } }, `${p}.events[0].criteria.correlationId`],
    ['criteria.context not an object', { operation: 'UPDATE', update: { s: { events: [{ ...HEALTH, criteria: { context: ['a'] } }] } } }, `${p}.events[0].criteria.context`],
    ['a stream that is not an object', { operation: 'UPDATE', update: { s: [] } }, p],
    ['a stream id with a space', { operation: 'UPDATE', update: { 'a b': simpleStream() } }, 'update.a b'],
    ['a stream id with a slash', { operation: 'UPDATE', update: { 'a/b': simpleStream() } }, 'update.a/b'],
    ['update not an object', { operation: 'UPDATE', update: [] }, 'update'],
    ['update missing', { operation: 'UPDATE' }, 'update'],
    ['REPLACE without configuration', { operation: 'REPLACE', update: { s: simpleStream() } }, 'configuration'],
    ['REPLACE with an invalid stream', { operation: 'REPLACE', configuration: { x: { events: 3 } } }, 'configuration.x.events'],
    ['DELETE without property', { operation: 'DELETE' }, 'property'],
    ['DELETE with a non-string property', { operation: 'DELETE', property: 5 }, 'property'],
    ['operation missing', { update: { s: simpleStream() } }, 'operation'],
    ['operation unknown', { operation: 'MERGE', update: { s: simpleStream() } }, 'operation'],
    ['operation in lower case', { operation: 'update', update: { s: simpleStream() } }, 'operation'],
    ['a body that is not an object', [1, 2], 'object'],
  ];
  for (const [name, body, path] of INVALID) {
    test(`422 naming the path: ${name}`, withLogs(async () => {
      const r = await patchConfig(node, body, { tenant: 'tv' });
      assert.equal(r.status, 422, `${name}: ${r.status} ${r.text}`);
      assert.equal(typeof r.body?.error, 'string', r.text);
      assert.ok(r.body.error.includes(path), `error ${JSON.stringify(r.body.error)} should name ${path}`);
      const g = await getConfig(node, { tenant: 'tv' });
      assert.deepEqual(g.body, {}, 'nothing was applied');
    }));
  }

  test('422: malformed JSON; an invalid document is refused whole', withLogs(async () => {
    let r = await patchConfig(node, '{"operation": "UPDATE", "update": {', { tenant: 'tw' });
    assert.equal(r.status, 422, r.text);
    assert.match(r.body.error, /JSON/);
    r = await patchConfig(node, { operation: 'UPDATE', update: { good: simpleStream() } }, { tenant: 'tw' });
    assert.equal(r.status, 200, r.text);
    r = await patchConfig(node, {
      operation: 'UPDATE',
      update: { another: simpleStream(), bad: { events: [{ namespace: 'x' }] }, third: simpleStream() },
    }, { tenant: 'tw' });
    assert.equal(r.status, 422, r.text);
    assert.ok(r.body.error.includes('update.bad.events[0].name'), r.body.error);
    r = await getConfig(node, { tenant: 'tw' });
    assert.deepEqual(Object.keys(r.body), ['good'], 'neither `another` nor `third` was applied');
    r = await patchConfig(node, { operation: 'REPLACE', configuration: { ok: simpleStream(), bad: { events: [{}] } } }, { tenant: 'tw' });
    assert.equal(r.status, 422, r.text);
    r = await getConfig(node, { tenant: 'tw' });
    assert.deepEqual(Object.keys(r.body), ['good'], 'the REPLACE was not applied');
  }));

  test('concurrent UPDATEs of one tenant: none is lost', withLogs(async () => {
    // 2 workers take the requests; each UPDATE adds its own stream, so all must remain
    const N = 24;
    for (let round = 0; round < 3; round++) {
      const T = `tconc${round}`;
      const rs = await Promise.all(Array.from({ length: N }, (_, i) => patchConfig(node, { operation: 'UPDATE', update: { [`c${i}`]: simpleStream() } }, { tenant: T })));
      for (const r of rs) assert.equal(r.status, 200, r.text);
      const g = await getConfig(node, { tenant: T });
      const want = Array.from({ length: N }, (_, i) => `c${i}`);
      const missing = want.filter((k) => !(k in g.body));
      assert.deepEqual(missing, [], `round ${round}: streams lost by concurrent UPDATEs (${Object.keys(g.body).length} of ${N} kept)`);
    }
  }));
});

// ---------------------------------------------------------------------------------

describe('persistence across a restart', () => {
  test('run-time configuration survives SIGTERM and replaces the config file\'s streams', withLogs(async () => {
    const fileStreams = {
      tp: { 'from-file': simpleStream() },
      tq: { 'q-file': simpleStream() },
      tz: { 'z-file': simpleStream() },
    };
    const p1 = await startNode({ config: baseConfig({ streams: fileStreams }) });
    let r = await patchConfig(p1, { operation: 'UPDATE', update: { runtime: simpleStream({ name: 'Run time' }) } }, { tenant: 'tp' });
    assert.equal(r.status, 200, r.text);
    r = await patchConfig(p1, { operation: 'DELETE', property: 'from-file' }, { tenant: 'tp' });
    assert.equal(r.status, 200, r.text);
    r = await patchConfig(p1, { operation: 'UPDATE', update: { r1: simpleStream() } }, { tenant: 'tr' });
    assert.equal(r.status, 200, r.text);
    r = await patchConfig(p1, { operation: 'REPLACE', configuration: {} }, { tenant: 'tz' });
    assert.equal(r.status, 200, r.text);
    const before = {};
    for (const t of ['tp', 'tq', 'tr', 'tz']) before[t] = (await getConfig(p1, { tenant: t })).body;
    assert.deepEqual(Object.keys(before.tp), ['runtime']);
    const info = await p1.stop('SIGTERM');
    assert.deepEqual(info, { code: 0, signal: null }, 'SIGTERM exits 0');

    // same data dir, and a config file that now has more streams for tp
    const file2 = {
      tp: { 'from-file': simpleStream(), 'file-new': simpleStream() },
      tq: { 'q-file': simpleStream() },
      tz: { 'z-file': simpleStream() },
    };
    const p2 = await startNode({ config: baseConfig({ streams: file2 }), extraArgs: ['--data-dir', `${p1.dir}/data`] });
    for (const t of ['tp', 'tr', 'tz']) {
      const g = await getConfig(p2, { tenant: t });
      assert.equal(g.status, 200, g.text);
      assert.deepEqual(g.body, before[t], `tenant ${t} after the restart`);
    }
    assert.deepEqual((await getConfig(p2, { tenant: 'tz' })).body, {}, 'a REPLACE with {} stays empty: the file does not come back');
    const tq = await getConfig(p2, { tenant: 'tq' });
    assert.deepEqual(Object.keys(tq.body), ['q-file'], 'a tenant never changed at run time keeps the file\'s streams');
    // and the restored streams route events
    const sess = await createSession(p2, { user: 'tp-user', roles: [], tenant: 'tp' });
    assert.equal(sess.status, 201, JSON.stringify(sess.body));
    const sub = await sseSubscribe(p2, '/stream/v1/streams/runtime', { headers: { authorization: `Bearer ${sess.body.sessionId}` } });
    const ev = healthEvent();
    assert.deepEqual(await postEvent200(p2, ev, { key: PUB_KEY, query: '?tenantId=tp' }), ['runtime']);
    assert.deepEqual(jsonData(await sub.next()), ev);
    sub.close();
  }));
});

// ---------------------------------------------------------------------------------

describe('events and stream subscriptions', () => {
  let node;
  before(async () => {
    node = await startNode({ workers: 2, config: streamsNodeConfig() });
  });

  const stream = (id, q = '') => `/stream/v1/streams/${id}${q}`;
  const bearer = (t) => ({ authorization: `Bearer ${t}` });

  test('routing by tenant, namespace and name; whole event without map, projection with it', withLogs(async () => {
    const health = await sseSubscribe(node, stream('app-health'), { headers: bearer('s-t1-viewer') });
    const ops = await sseSubscribe(node, stream('ops'), { headers: bearer('s-t1-ops') });
    const priv = await sseSubscribe(node, stream('private'), { headers: bearer('s-t1-listener') });
    const t2ops = await sseSubscribe(node, stream('ops'), { headers: bearer('s-t2-ops') });
    const t2only = await sseSubscribe(node, stream('t2-only', '?token=s-t2-listener'));
    const all = [health, ops, priv, t2ops, t2only];

    const ev = healthEvent();
    assert.deepEqual(await postEvent200(node, ev, { key: T1_PUB }), ['app-health', 'ops', 'private']);
    const h = await health.next();
    assert.equal(h.type, 'message');
    assert.match(h.id, ID_RE);
    assert.deepEqual(h.fields, ['id', 'data']);
    assert.deepEqual(jsonData(h), ev, 'no map: the whole event');
    assert.deepEqual(jsonData(await priv.next()), ev);
    assert.deepEqual(jsonData(await ops.next()), {
      app: 'a1',
      status: 'ok',
      firstItem: 'i0',
      secondTag: 'q',
      allItems: ev.payload.items,
      site: 'a',
      ctx: { site: 'a' },
      when: '2026-11-23T10:00:00Z',
      cid: 'c-9',
    }, 'projection: paths that lead nowhere are left out');
    await Promise.all(all.map((s) => s.expectNone(200)));

    // the same event for t2 reaches only t2's streams (its own `ops`, without a map)
    assert.deepEqual(await postEvent200(node, ev, { key: T2_PUB }), ['ops', 't2-only']);
    assert.deepEqual(jsonData(await t2ops.next()), ev);
    assert.deepEqual(jsonData(await t2only.next()), ev);
    await Promise.all(all.map((s) => s.expectNone(200)));

    // other names / namespaces go nowhere
    assert.deepEqual(await postEvent200(node, { ...ev, name: 'health-check-finished' }), []);
    assert.deepEqual(await postEvent200(node, { ...ev, namespace: 'status' }), []);
    assert.deepEqual(await postEvent200(node, { ...ev, namespace: 'Status-Service' }), [], 'case-sensitive');
    await Promise.all(all.map((s) => s.expectNone(200)));

    // optional fields: an event without correlationId and context is sent as it came
    const bare = { ...HEALTH, timestamp: 't', payload: { status: 'down', items: [] } };
    assert.deepEqual(await postEvent200(node, bare), ['app-health', 'ops', 'private']);
    assert.deepEqual(jsonData(await health.next()), bare);
    assert.deepEqual(jsonData(await ops.next()), { status: 'down', allItems: [], when: 't' });
    assert.deepEqual(jsonData(await priv.next()), bare);
    // a payload that is not an object is still an event; the map finds nothing in it
    const scalar = { ...HEALTH, timestamp: 't2', payload: 'just text' };
    await postEvent200(node, scalar);
    assert.deepEqual(jsonData(await health.next()), scalar);
    assert.deepEqual(jsonData(await ops.next()), { when: 't2' });
    await priv.next();
    for (const s of all) s.close();
  }));

  test('criteria: correlationId equal; context a JSON-equal subset; first matching entry wins', withLogs(async () => {
    const byCid = await sseSubscribe(node, stream('by-cid'), { headers: bearer('s-t1-viewer') });
    const byCtx = await sseSubscribe(node, stream('by-ctx'), { headers: bearer('s-t1-viewer') });
    const first = await sseSubscribe(node, stream('first-entry'), { headers: bearer('s-t1-viewer') });
    const base = { namespace: 'orders', name: 'placed', timestamp: 'now', payload: { customer: 'cu', amount: 5 } };
    const cases = [
      [{ correlationId: 'c-1' }, ['by-cid', 'first-entry']],
      [{ correlationId: 'c-2' }, ['first-entry']],
      [{ correlationId: 'c-10' }, ['first-entry']],
      [{}, ['first-entry']],
      [{ correlationId: 'c-1', context: { site: 'a', level: 2, tags: ['x'], extra: true } }, ['by-cid', 'by-ctx', 'first-entry']],
      [{ context: { site: 'a', level: 2, tags: ['x'] } }, ['by-ctx', 'first-entry']],
      [{ context: { site: 'a', level: 2 } }, ['first-entry']],
      [{ context: { site: 'a', level: '2', tags: ['x'] } }, ['first-entry']],
      [{ context: { site: 'b', level: 2, tags: ['x'] } }, ['first-entry']],
      [{ context: { site: 'a', level: 2, tags: ['x', 'y'] } }, ['first-entry']],
      [{ context: { site: 'a', level: 2.0, tags: ['x'] } }, ['by-ctx', 'first-entry']],
      [{ context: null }, ['first-entry']],
    ];
    for (const [extra, want] of cases) {
      const ev = { ...base, ...extra };
      assert.deepEqual(await postEvent200(node, ev), want, `routing of ${JSON.stringify(extra)}`);
      if (want.includes('by-cid')) assert.deepEqual(jsonData(await byCid.next()), ev);
      if (want.includes('by-ctx')) assert.deepEqual(jsonData(await byCtx.next()), ev);
      assert.deepEqual(jsonData(await first.next()), { amount: 5 }, `first-entry for ${JSON.stringify(extra)}`);
    }
    // the vip entry comes first: its map, and only one delivery
    assert.deepEqual(await postEvent200(node, { ...base, correlationId: 'vip' }), ['first-entry']);
    assert.deepEqual(jsonData(await first.next()), { who: 'cu' });
    const shipped = { namespace: 'orders', name: 'shipped', timestamp: 'later', payload: { n: 1 } };
    assert.deepEqual(await postEvent200(node, shipped), ['first-entry']);
    assert.deepEqual(jsonData(await first.next()), shipped);
    await Promise.all([byCid, byCtx, first].map((s) => s.expectNone(250)));
    for (const s of [byCid, byCtx, first]) s.close();
  }));

  const EV = () => healthEvent();
  const without = (k) => { const e = EV(); delete e[k]; return e; };
  const BAD_EVENTS = [
    ['missing namespace', without('namespace'), /namespace/],
    ['empty namespace', { ...EV(), namespace: '' }, /namespace/],
    ['numeric namespace', { ...EV(), namespace: 1 }, /namespace/],
    ['missing name', without('name'), /name/],
    ['empty name', { ...EV(), name: '' }, /name/],
    ['missing timestamp', without('timestamp'), /timestamp/],
    ['numeric timestamp', { ...EV(), timestamp: 1700000000 }, /timestamp/],
    ['numeric correlationId', { ...EV(), correlationId: 5 }, /correlationId/],
    ['array context', { ...EV(), context: ['a'] }, /context/],
    ['string context', { ...EV(), context: 'a' }, /context/],
    ['missing payload', without('payload'), /payload/],
    ['unknown field', { ...EV(), severity: 'high' }, /severity/],
    ['an array body', [EV()], /object|JSON/],
    ['malformed JSON', '{"namespace": "status-service", ', /JSON/],
  ];
  for (const [name, body, re] of BAD_EVENTS) {
    test(`events 422: ${name}`, withLogs(async () => {
      const r = await postEvent(node, body);
      assert.equal(r.status, 422, `${name}: ${r.status} ${r.text}`);
      assert.match(r.body?.error ?? '', re);
    }));
  }

  test('events: publish key required; the key\'s tenant or ?tenantId= for unbound keys; mismatch 403', withLogs(async () => {
    const ev = healthEvent();
    for (const key of [null, 'wrong', '']) {
      const r = await postEvent(node, ev, { key });
      assert.equal(r.status, 403, `key ${key}: ${r.status} ${r.text}`);
      assert.deepEqual(r.body, { error: 'Access Forbidden' });
    }
    const health = await sseSubscribe(node, stream('app-health'), { headers: bearer('s-t1-viewer') });
    const t2only = await sseSubscribe(node, stream('t2-only'), { headers: bearer('s-t2-ops') });
    // unbound keys name the tenant
    assert.deepEqual(await postEvent200(node, ev, { key: PUB_KEY, query: '?tenantId=t1' }), ['app-health', 'ops', 'private']);
    assert.deepEqual(jsonData(await health.next()), ev);
    assert.deepEqual(await postEvent200(node, ev, { key: ADMIN_KEY, query: '?tenantId=t2' }), ['ops', 't2-only']);
    assert.deepEqual(jsonData(await t2only.next()), ev);
    let r = await postEvent(node, ev, { key: PUB_KEY });
    assert.ok([400, 422].includes(r.status), `unbound key without tenantId: ${r.status} ${r.text}`);
    assert.match(r.body?.error ?? '', /tenantId/);
    // a bound key: its own tenant; naming it is fine, naming another is 403
    assert.deepEqual(await postEvent200(node, ev, { key: T1_PUB, query: '?tenantId=t1' }), ['app-health', 'ops', 'private']);
    assert.deepEqual(jsonData(await health.next()), ev);
    r = await postEvent(node, ev, { key: T1_PUB, query: '?tenantId=t2' });
    assert.equal(r.status, 403, r.text);
    r = await postEvent(node, ev, { key: T2_PUB, query: '?tenantId=t1' });
    assert.equal(r.status, 403, r.text);
    // a tenant with no streams: fine, routed nowhere
    assert.deepEqual(await postEvent200(node, ev, { key: PUB_KEY, query: '?tenantId=t-none' }), []);
    await Promise.all([health.expectNone(250), t2only.expectNone(50)]);
    health.close(); t2only.close();
  }));

  test('subscribe: public, subscriberRoles, stream-listener; 401 / 403 / 404; cross-tenant', withLogs(async () => {
    const T1_OPS_JWT = jwt({ sub: 'jo', roles: ['ops-reader'], tenant: 't1' });
    const T1_LISTENER_JWT = jwt({ sub: 'jl', roles: ['stream-listener'], tenant: 't1' });
    const T2_LISTENER_JWT = jwt({ sub: 'jt', roles: ['stream-listener'], tenant: 't2' });
    const T1_VIEWER_JWT = jwt({ sub: 'jv', roles: ['viewer'], tenant: 't1' });
    const cases = [
      // public
      [stream('app-health', '?tenantId=t1'), {}, 200],
      [stream('app-health'), bearer('s-t1-viewer'), 200],
      [stream('t2-only', '?tenantId=t2'), {}, 200],
      // subscriberRoles
      [stream('ops'), bearer('s-t1-ops'), 200],
      [stream('ops', '?token=s-t1-ops'), {}, 200],
      [stream('ops'), bearer(T1_OPS_JWT), 200],
      [stream('ops', `?token=${T1_OPS_JWT}`), {}, 200],
      // stream-listener: any stream of its tenant
      [stream('ops'), bearer('s-t1-listener'), 200],
      [stream('private'), bearer('s-t1-listener'), 200],
      [stream('private', `?token=${T1_LISTENER_JWT}`), {}, 200],
      // not allowed
      [stream('ops'), bearer('s-t1-viewer'), 403],
      [stream('ops'), bearer(T1_VIEWER_JWT), 403],
      [stream('private'), bearer('s-t1-ops'), 403],
      [stream('private', '?token=s-t1-viewer'), {}, 403],
      // no credentials on a non-public stream
      [stream('ops', '?tenantId=t1'), {}, 401],
      [stream('private', '?tenantId=t1'), {}, 401],
      // bad credentials
      [stream('ops'), bearer('no-such-session'), 401],
      [stream('app-health', '?tenantId=t1&token=no-such-session'), {}, 401],
      [stream('ops'), bearer(makeJwt({ sub: 'x', roles: ['ops-reader'], tenant: 't1' }, 'wrong-secret')), 401],
      [stream('ops'), bearer(makeJwt({ sub: 'x', roles: ['ops-reader'], tenant: 't1', exp: 1000 })), 401],
      // unknown stream
      [stream('nope'), bearer('s-t1-ops'), 404],
      [stream('nope', '?tenantId=t1'), {}, 404],
      [stream('nope'), bearer('s-t1-listener'), 404],
      // cross-tenant: a t2 identity never sees t1's streams, whatever tenantId says
      [stream('app-health'), bearer('s-t2-listener'), 404],
      [stream('app-health', '?tenantId=t1'), bearer('s-t2-listener'), 404],
      [stream('private', '?tenantId=t1'), bearer('s-t2-listener'), 404],
      [stream('private', '?tenantId=t1'), bearer(T2_LISTENER_JWT), 404],
      [stream('by-cid', `?tenantId=t1&token=${T2_LISTENER_JWT}`), {}, 404],
      [stream('t2-only', '?tenantId=t2'), bearer('s-t1-listener'), 404],
    ];
    for (const [path, headers, want] of cases) {
      const s = await sseOpen(node, path, { headers });
      assert.equal(s.status, want, `${path.slice(0, 120)} ${JSON.stringify(headers).slice(0, 60)}: ${s.status} ${s.text ?? ''}`);
      if (want === 200) {
        assert.match(s.headers['content-type'], /^text\/event-stream/);
        assert.equal(s.headers['cache-control'], 'no-cache');
      } else {
        assert.equal(typeof s.body?.error, 'string', `${path}: JSON error body (${s.text})`);
      }
      s.close();
    }
    // anonymous without a tenant cannot name a stream at all
    const anon = await sseOpen(node, stream('app-health'));
    assert.ok(anon.status >= 400 && anon.status < 500, `anonymous without tenantId: ${anon.status}`);
    anon.close();
  }));

  test('anonymous subscribers of a public stream (?tenantId=) receive its events', withLogs(async () => {
    // seed 002's public stream, subscribed without credentials: the tenant comes from tenantId
    const raw = await sseSubscribe(node, stream('app-health', '?tenantId=t1'));
    const es = openEventSource(`${node.url}${stream('app-health', '?tenantId=t1')}`);
    const t2 = await sseSubscribe(node, stream('t2-only', '?tenantId=t2'));
    await es.opened;
    const ev = healthEvent({ correlationId: 'anon' });
    assert.deepEqual(await postEvent200(node, ev, { key: T1_PUB }), ['app-health', 'ops', 'private']);
    assert.deepEqual(jsonData(await raw.next()), ev, 'raw anonymous subscriber');
    assert.deepEqual(JSON.parse((await es.next()).data), ev, 'eventsource anonymous subscriber');
    await t2.expectNone(200);
    const ev2 = healthEvent({ correlationId: 'anon-t2' });
    await postEvent200(node, ev2, { key: T2_PUB });
    assert.deepEqual(jsonData(await t2.next()), ev2);
    await Promise.all([raw.expectNone(200), es.expectNone(50)]);
    raw.close(); es.close(); t2.close();
  }));

  test('a t2 subscriber to its own `ops` never gets t1\'s events (and the reverse)', withLogs(async () => {
    const t1 = await sseSubscribe(node, stream('ops'), { headers: bearer('s-t1-listener') });
    const t2 = await sseSubscribe(node, stream('ops'), { headers: bearer('s-t2-listener') });
    const e1 = healthEvent({ correlationId: 'for-t1' });
    const e2 = healthEvent({ correlationId: 'for-t2' });
    await postEvent200(node, e1, { key: T1_PUB });
    await postEvent200(node, e2, { key: T2_PUB });
    assert.equal(jsonData(await t1.next()).cid, 'for-t1');
    assert.equal(jsonData(await t2.next()).correlationId, 'for-t2');
    await Promise.all([t1.expectNone(250), t2.expectNone(50)]);
    t1.close(); t2.close();
  }));

  test('eventsource package: Authorization header through its fetch option, and ?token=', withLogs(async () => {
    const viaHeader = openEventSource(`${node.url}${stream('ops')}`, { headers: { Authorization: 'Bearer s-t1-ops' } });
    const viaToken = openEventSource(`${node.url}${stream('ops', `?token=${jwt({ sub: 'jo', roles: ['ops-reader'], tenant: 't1' })}`)}`);
    const anon = openEventSource(`${node.url}${stream('app-health', '?token=s-t1-viewer')}`);
    await Promise.all([viaHeader.opened, viaToken.opened, anon.opened]);
    const ev = healthEvent();
    await postEvent200(node, ev);
    const projected = { app: 'a1', status: 'ok', firstItem: 'i0', secondTag: 'q', allItems: ev.payload.items, site: 'a', ctx: { site: 'a' }, when: ev.timestamp, cid: 'c-9' };
    for (const es of [viaHeader, viaToken]) {
      const m = await es.next();
      assert.equal(m.type, 'message');
      assert.match(m.lastEventId, ID_RE);
      assert.deepEqual(JSON.parse(m.data), projected);
    }
    const m = await anon.next();
    assert.deepEqual(JSON.parse(m.data), ev);
    // without the header the same URL is refused, and the client gives up (4xx)
    const refused = openEventSource(`${node.url}${stream('ops')}`);
    await assert.rejects(refused.opened);
    for (const es of [viaHeader, viaToken, anon, refused]) es.close();
  }));

  test('Last-Event-ID replay on a stream: exactly the missed events in order, then live', withLogs(async () => {
    const s1 = await sseSubscribe(node, stream('by-cid'), { headers: bearer('s-t1-viewer') });
    const ev = (n) => ({ namespace: 'orders', name: 'placed', timestamp: `t${n}`, correlationId: 'c-1', payload: { n } });
    await postEvent200(node, ev(0));
    const first = await s1.next();
    assert.deepEqual(jsonData(first), ev(0));
    s1.close();
    await sleep(50);
    for (let n = 1; n <= 4; n++) await postEvent200(node, ev(n));
    const s2 = await sseSubscribe(node, stream('by-cid'), { headers: { 'Last-Event-ID': first.id, ...bearer('s-t1-viewer') } });
    const got = await s2.nextN(4);
    assert.deepEqual(got.map((e) => jsonData(e).payload.n), [1, 2, 3, 4]);
    assert.ok(got.every((e) => e.type === 'message' && ID_RE.test(e.id)));
    const ids = got.map((e) => e.id);
    assert.deepEqual([...ids].sort(), ids, 'ids increase');
    await postEvent200(node, ev(5));
    assert.equal(jsonData(await s2.next()).payload.n, 5);
    await s2.expectNone(250);
    s2.close();

    // ?lastEventId= and the eventsource package's lastEventId
    const s3 = await sseSubscribe(node, stream('by-cid', `?token=s-t1-viewer&lastEventId=${ids[2]}`));
    assert.deepEqual((await s3.nextN(2)).map((e) => jsonData(e).payload.n), [4, 5]);
    await s3.expectNone(200);
    s3.close();

    // a private stream replays to an authorized subscriber too
    const p1 = await sseSubscribe(node, stream('private'), { headers: bearer('s-t1-listener') });
    await postEvent200(node, healthEvent({ correlationId: 'p0' }));
    const p0 = await p1.next();
    p1.close();
    await sleep(50);
    await postEvent200(node, healthEvent({ correlationId: 'p1' }));
    await postEvent200(node, healthEvent({ correlationId: 'p2' }));
    const p2 = await sseSubscribe(node, stream('private', '?token=s-t1-listener'), { headers: { 'last-event-id': p0.id } });
    assert.deepEqual((await p2.nextN(2)).map((e) => jsonData(e).correlationId), ['p1', 'p2']);
    await p2.expectNone(200);
    p2.close();
  }));

  test('gap on a stream: an id the node does not hold', withLogs(async () => {
    const s = await sseSubscribe(node, stream('t2-only', '?tenantId=t2'), { headers: { 'Last-Event-ID': '0000000000001-00000000-00000001' } });
    const g = await s.next();
    assert.equal(g.type, 'gap');
    assert.deepEqual(jsonData(g), { lastEventId: '0000000000001-00000000-00000001' });
    s.close();
  }));
});



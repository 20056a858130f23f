// Channels (seed 003): POST /api/push (the seed's curl example byte for byte, 422/413/403),
// WebSocket and SSE channel subscribers (frames, once per push, X-Push-Subscribers),
// what EventSource clients need (text/event-stream, retry, no-cache, 204, heartbeats,
// CR/LF-safe fields), channel subscribe rules, resume with Last-Event-ID (header,
// ?lastEventId=, the eventsource package's own reconnect), gaps, and a 4-worker node.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, connectClient, api, get, baseConfig, makeJwt, sleep,
  waitForConnections, PUB_KEY, ADMIN_KEY, SLOW,
} from './lib/harness.mjs';
import {
  sseOpen, sseSubscribe, jsonData, openEventSource, startProxy, closeAllSse,
  until, EventSource,
} from './lib/sse.mjs';

after(async () => {
  closeAllSse();
  await cleanup();
});

const ID_RE = /^[0-9a-f]{13}-[0-9a-f]{8}-[0-9a-f]{8}$/;

/** POST /api/push; body an object (sent as JSON) or a string (sent as is). */
function push(node, body, key = PUB_KEY, opts = {}) {
  return api(node, 'POST', '/api/push', { key, body, ...opts });
}

/** POST /api/push waiting for delivery (X-Push-Wait), asserting 200; returns
 *  {id, subscribers, body}. */
async function push200(node, body, key = PUB_KEY) {
  const r = await push(node, body, key, { headers: { 'x-push-wait': 'delivered' } });
  assert.equal(r.status, 200, `${JSON.stringify(body).slice(0, 200)} → ${r.status} ${r.text}`);
  const id = r.headers.get('x-push-id');
  assert.match(id, ID_RE);
  return { id, subscribers: Number(r.headers.get('x-push-subscribers')), body: r.body };
}

/** The data of a channel push as an SSE subscriber sees it. */
const sseChannelData = (id, channel, event, data) => ({ id, channel, event, data });

// ---------------------------------------------------------------------------------

describe('POST /api/push', () => {
  let node;
  let small;
  before(async () => {
    node = await startNode({ workers: 2 });
    small = await startNode({ config: baseConfig({ limits: { maxBodyBytes: 256 } }) });
  });

  test('the seed 003 curl example gives the seed body byte for byte', withLogs(async () => {
    // exactly what `curl -d '{ … }'` sends in the seed, newlines and indentation included
    const seedBody = `{
    "channel": ["test", "test2", "test"],
    "data": "data",
    "event": "woohoo"
  }`;
    const r = await push(node, seedBody, PUB_KEY, { headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '{"channel":["test","test2"],"data":"data","event":"woohoo"}');
    assert.equal(r.headers.get('content-length'), '59');
    assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.match(r.headers.get('x-push-id'), ID_RE);
    // answered before delivery: no count unless the publisher waits for it
    assert.equal(r.headers.get('x-push-subscribers'), null);
  }));

  test('X-Push-Wait: delivered answers after delivery with the count; anything else is 400', withLogs(async () => {
    const c = await connectClient(node, { clientId: 'wait-ws' });
    c.send({ type: 'subscribe', channels: ['wait.a'] });
    assert.equal((await c.next()).type, 'subscribed');
    const r = await push(node, { channel: ['wait.a', 'wait.b'], data: 1, event: 'e' }, PUB_KEY, { headers: { 'x-push-wait': 'Delivered' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-push-subscribers'), '1');
    assert.equal((await c.next()).id, r.headers.get('x-push-id'));
    const early = await push(node, { channel: 'wait.a', data: 2, event: 'e' });
    assert.equal(early.status, 200, early.text);
    assert.equal(early.headers.get('x-push-subscribers'), null);
    assert.equal((await c.next()).id, early.headers.get('x-push-id'));
    const bad = await push(node, { channel: 'wait.a', data: 3, event: 'e' }, PUB_KEY, { headers: { 'x-push-wait': 'queued' } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.body.error, 'X-Push-Wait must be delivered');
    await c.expectNone(200);
    c.close();
  }));

  test('limits.pushBacklog 0: every push waits for delivery and counts', withLogs(async () => {
    const n0 = await startNode({ config: baseConfig({ limits: { pushBacklog: 0 } }) });
    const c = await connectClient(n0, { clientId: 'backlog-ws' });
    c.send({ type: 'subscribe', channels: ['bl'] });
    assert.equal((await c.next()).type, 'subscribed');
    const r = await push(n0, { channel: 'bl', data: 1, event: 'e' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-push-subscribers'), '1');
    assert.equal((await c.next()).id, r.headers.get('x-push-id'));
    c.close();
  }));

  test('limits.pushCoalesceMs: a push back to back with the last one waits for the batch; other output takes it along', withLogs(async () => {
    const hold = 1000;
    const nc = await startNode({ config: baseConfig({ limits: { pushCoalesceMs: hold } }) });
    const c = await connectClient(nc, { clientId: 'coalesce-ws' });
    c.send({ type: 'subscribe', channels: ['co'] });
    assert.equal((await c.next()).type, 'subscribed');
    // after a quiet spell a push goes out at once; the next one waits for the batch
    const a = await push(nc, { channel: 'co', data: 1, event: 'e' });
    assert.equal((await c.next(hold / 2)).id, a.headers.get('x-push-id'));
    const tA = Date.now();
    const b = await push(nc, { channel: 'co', data: 2, event: 'e' });
    assert.equal((await c.next(hold * 5 * SLOW)).id, b.headers.get('x-push-id'));
    const held = Date.now() - tA;
    assert.ok(held >= hold / 2, `the second push came ${held} ms after the first: not held`);
    // held again (the batch just went out); a pong, which is not fan-out output, flushes it
    const d = await push(nc, { channel: 'co', data: 3, event: 'e' });
    const tPing = Date.now();
    c.ws.ping();
    assert.equal((await c.next(hold * 5 * SLOW)).id, d.headers.get('x-push-id'));
    const took = Date.now() - tPing;
    assert.ok(took < hold / 2, `the held push came ${took} ms after a ping, not with its pong`);
    c.close();
  }));

  test('the one-line form and a single channel string', withLogs(async () => {
    let r = await push(node, '{"channel":["test","test2","test"],"data":"data","event":"woohoo"}');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '{"channel":["test","test2"],"data":"data","event":"woohoo"}');
    r = await push(node, { event: 'e', data: { a: [1, null, 'x'] }, channel: 'solo' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '{"channel":["solo"],"data":{"a":[1,null,"x"]},"event":"e"}', 'key order channel, data, event');
    // first-seen order, not sorted
    r = await push(node, { channel: ['z', 'a', 'z', 'm', 'a'], data: 1, event: 'e' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.channel, ['z', 'a', 'm']);
    // null is a value; so are false, 0 and ""
    for (const data of [null, false, 0, '', [], {}]) {
      r = await push(node, { channel: 'c', data, event: 'e' });
      assert.equal(r.status, 200, `data ${JSON.stringify(data)}: ${r.status} ${r.text}`);
      assert.deepEqual(r.body, { channel: ['c'], data, event: 'e' });
    }
    // curl's default form content type: still parsed as JSON (docs/api.md)
    r = await push(node, '{"channel":"c","data":1,"event":"e"}', PUB_KEY, { headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(r.status, 200, r.text);
  }));

  test('channel names: 128 characters and the whole charset are fine', withLogs(async () => {
    const names = ['a'.repeat(128), 'AZaz09_.:@/=+-', 'x'];
    const r = await push(node, { channel: names, data: 1, event: 'e' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.channel, names);
    // 100 distinct channels is the limit; duplicates beyond it do not count
    const hundred = Array.from({ length: 100 }, (_, i) => `c${i}`);
    const r2 = await push(node, { channel: [...hundred, ...hundred], data: 1, event: 'e' });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.body.channel.length, 100);
  }));

  const CASES_422 = [
    ['missing channel', { data: 1, event: 'e' }, /channel/],
    ['channel null', { channel: null, data: 1, event: 'e' }, /channel/],
    ['empty channel array', { channel: [], data: 1, event: 'e' }, /channel/],
    ['empty channel string', { channel: '', data: 1, event: 'e' }, /channel/],
    ['numeric channel', { channel: 5, data: 1, event: 'e' }, /channel/],
    ['object channel', { channel: { a: 1 }, data: 1, event: 'e' }, /channel/],
    ['non-string channel element', { channel: ['ok', 2], data: 1, event: 'e' }, /channel\[1\]/],
    ['null channel element', { channel: [null], data: 1, event: 'e' }, /channel\[0\]/],
    ['channel with a space', { channel: ['ok', 'bad name'], data: 1, event: 'e' }, /channel\[1\]/],
    ['channel of 129 characters', { channel: 'a'.repeat(129), data: 1, event: 'e' }, /channel\[0\]/],
    ['channel with a non-ASCII letter', { channel: 'caf\u00e9', data: 1, event: 'e' }, /channel\[0\]/],
    ['channel with a newline', { channel: 'a\nb', data: 1, event: 'e' }, /channel\[0\]/],
    ['channel with a NUL', { channel: 'a\u0000b', data: 1, event: 'e' }, /channel|JSON/],
    ['101 channels', { channel: Array.from({ length: 101 }, (_, i) => `c${i}`), data: 1, event: 'e' }, /channel/],
    ['missing event', { channel: 'c', data: 1 }, /event/],
    ['numeric event', { channel: 'c', data: 1, event: 5 }, /event/],
    ['empty event', { channel: 'c', data: 1, event: '' }, /event/],
    ['null event', { channel: 'c', data: 1, event: null }, /event/],
    ['array event', { channel: 'c', data: 1, event: ['e'] }, /event/],
    ['missing data', { channel: 'c', event: 'e' }, /data/],
    ['malformed JSON', '{"channel": ["test",', /JSON/i],
    ['not JSON at all', 'channel=test&data=x', /JSON/i],
    ['empty body', '', /JSON|body/i],
    ['an array body', '[{"channel":"c","data":1,"event":"e"}]', /object|channel|JSON/i],
    ['a string body', '"channel"', /object|channel|JSON/i],
    ['a number body', '42', /object|channel|JSON/i],
    ['null body', 'null', /object|channel|JSON/i],
  ];
  for (const [name, body, re] of CASES_422) {
    test(`422: ${name}`, withLogs(async () => {
      const r = await push(node, body);
      assert.equal(r.status, 422, `${name}: ${r.status} ${r.text}`);
      assert.equal(typeof r.body?.error, 'string', `error body: ${r.text}`);
      assert.match(r.body.error, re);
      assert.equal(r.headers.get('x-push-id'), null, 'no push id for a refused push');
    }));
  }

  test('403 Access Forbidden without a publish key; admin implies publish', withLogs(async () => {
    const body = { channel: 'c', data: 1, event: 'e' };
    for (const key of [null, 'wrong-key', '']) {
      const r = await push(node, body, key);
      assert.equal(r.status, 403, `key ${key}: ${r.status} ${r.text}`);
      assert.deepEqual(r.body, { error: 'Access Forbidden' });
    }
    const basic = await push(node, body, null, { headers: { authorization: `Basic ${Buffer.from('a:' + PUB_KEY).toString('base64')}` } });
    assert.equal(basic.status, 403, basic.text);
    // a bad key wins over a bad body: 403, not 422
    const both = await push(node, '{nope', 'wrong-key');
    assert.equal(both.status, 403, both.text);
    const admin = await push(node, body, ADMIN_KEY);
    assert.equal(admin.status, 200, admin.text);
  }));

  test('413 over limits.maxBodyBytes', withLogs(async () => {
    const big = { channel: 'c', data: 'x'.repeat(1000), event: 'e' };
    const r = await push(small, big);
    assert.equal(r.status, 413, r.text);
    const ok = await push(small, { channel: 'c', data: 'x'.repeat(100), event: 'e' });
    assert.equal(ok.status, 200, ok.text);
  }));
});

// ---------------------------------------------------------------------------------

describe('channel subscribers (no subscribe rules: every channel public)', () => {
  let node;
  before(async () => {
    node = await startNode({ workers: 2, config: baseConfig({ sse: { heartbeatMs: 200, retryMs: 100 } }) });
  });

  test('WebSocket: subscribe, push frames, unsubscribe, errors', withLogs(async () => {
    const a = await connectClient(node, { sessionId: 's-john', clientId: 'ws-a' });
    const other = await connectClient(node, { sessionId: 's-mary', clientId: 'ws-other' });
    a.send({ type: 'subscribe', channels: ['news', 'sport'] });
    assert.deepEqual(await a.next(), { type: 'subscribed', channels: ['news', 'sport'] });

    let p = await push200(node, { channel: 'news', data: { headline: 'hi' }, event: 'woohoo' });
    assert.equal(p.subscribers, 1);
    assert.deepEqual(await a.next(), { type: 'push', id: p.id, event: 'woohoo', channel: 'news', payload: { headline: 'hi' } });

    // one push naming both channels (and one nobody is in): delivered once, counted once
    p = await push200(node, { channel: ['nobody', 'sport', 'news'], data: 'both', event: 'e2' });
    assert.equal(p.subscribers, 1, 'X-Push-Subscribers counts the subscriber once');
    const f = await a.next();
    assert.equal(f.type, 'push');
    assert.equal(f.id, p.id);
    assert.equal(f.event, 'e2');
    assert.equal(f.payload, 'both');
    assert.ok(['sport', 'news'].includes(f.channel), `channel ${f.channel}`);
    await a.expectNone(200);

    // a channel nobody subscribed to reaches nobody
    p = await push200(node, { channel: 'elsewhere', data: 1, event: 'e' });
    assert.equal(p.subscribers, 0);
    await other.expectNone(150);

    a.send({ type: 'unsubscribe', channels: ['news'] });
    assert.deepEqual(await a.next(), { type: 'unsubscribed', channels: ['news'] });
    p = await push200(node, { channel: 'news', data: 1, event: 'e' });
    assert.equal(p.subscribers, 0);
    p = await push200(node, { channel: 'sport', data: 2, event: 'e' });
    assert.equal(p.subscribers, 1);
    assert.deepEqual(await a.next(), { type: 'push', id: p.id, event: 'e', channel: 'sport', payload: 2 });
    await a.expectNone(150);

    // invalid requests: an error frame, the connection stays open, nothing subscribed
    const bad = [
      [{ type: 'subscribe', channels: ['bad name'] }, /channels\[0\]/],
      [{ type: 'subscribe', channels: ['ok1', 'x'.repeat(129)] }, /channels\[1\]/],
      [{ type: 'subscribe', channels: [] }, /channels/],
      [{ type: 'subscribe', channels: 'news' }, /channels/],
      [{ type: 'subscribe' }, /channels/],
      [{ type: 'subscribe', channels: [7] }, /channels\[0\]/],
    ];
    for (const [msg, re] of bad) {
      a.send(msg);
      const e = await a.next();
      assert.equal(e.type, 'error', `${JSON.stringify(msg)} → ${JSON.stringify(e)}`);
      assert.match(e.error, re);
    }
    // 'ok1' came with an invalid name: the whole request was refused
    p = await push200(node, { channel: 'ok1', data: 1, event: 'e' });
    assert.equal(p.subscribers, 0, 'a refused subscribe request subscribed nothing');
    await a.expectNone(150);
    // still usable
    a.send({ type: 'subscribe', channels: ['ok1'] });
    assert.deepEqual(await a.next(), { type: 'subscribed', channels: ['ok1'] });
    p = await push200(node, { channel: 'ok1', data: 3, event: 'e' });
    assert.deepEqual(await a.next(), { type: 'push', id: p.id, event: 'e', channel: 'ok1', payload: 3 });
    await other.expectNone(100);
    await a.close();
    await other.close();
  }));

  test('WebSocket and SSE subscribers together: each once, X-Push-Subscribers counts each once', withLogs(async () => {
    const w1 = await connectClient(node, { sessionId: 's-john', clientId: 'mix-1' });
    const w2 = await connectClient(node, { sessionId: 's-mary', clientId: 'mix-2' });
    w1.send({ type: 'subscribe', channels: ['m.a', 'm.b'] });
    w2.send({ type: 'subscribe', channels: ['m.b'] });
    assert.equal((await w1.next()).type, 'subscribed');
    assert.equal((await w2.next()).type, 'subscribed');
    const s1 = await sseSubscribe(node, '/sse?channel=m.a&channel=m.b');
    const s2 = await sseSubscribe(node, '/sse?channel=m.a');
    const p = await push200(node, { channel: ['m.a', 'm.b', 'm.a'], data: { n: 1 }, event: 'mix' });
    assert.equal(p.subscribers, 4);
    for (const w of [w1, w2]) {
      const f = await w.next();
      assert.equal(f.id, p.id);
      assert.deepEqual(f.payload, { n: 1 });
    }
    for (const s of [s1, s2]) {
      const ev = await s.next();
      assert.equal(ev.id, p.id);
      const d = jsonData(ev);
      assert.equal(d.id, p.id);
      assert.deepEqual(d.data, { n: 1 });
      assert.equal(d.event, 'mix');
    }
    await Promise.all([w1.expectNone(250), w2.expectNone(250), s1.expectNone(250), s2.expectNone(250)]);
    const p2 = await push200(node, { channel: 'm.b', data: 2, event: 'mix' });
    assert.equal(p2.subscribers, 3);
    s1.close(); s2.close();
    await w1.close(); await w2.close();
  }));

  test('eventsource package: onmessage with {id, channel, event, data}; lastEventId is X-Push-Id', withLogs(async () => {
    const es = openEventSource(`${node.url}/sse?channel=es.one&channel=es.two`);
    await es.opened;
    const p1 = await push200(node, { channel: 'es.one', data: { x: 1 }, event: 'woohoo' });
    const p2 = await push200(node, { channel: ['es.two', 'es.one'], data: 'two', event: 'other' });
    const [m1, m2] = await es.nextN(2);
    assert.equal(m1.type, 'message');
    assert.equal(m1.lastEventId, p1.id);
    assert.deepEqual(JSON.parse(m1.data), sseChannelData(p1.id, 'es.one', 'woohoo', { x: 1 }));
    assert.equal(m2.type, 'message');
    assert.equal(m2.lastEventId, p2.id);
    const d2 = JSON.parse(m2.data);
    assert.deepEqual(Object.keys(d2), ['id', 'channel', 'event', 'data']);
    assert.equal(d2.id, p2.id);
    assert.ok(['es.one', 'es.two'].includes(d2.channel));
    assert.equal(d2.data, 'two');
    assert.equal(p2.subscribers, 1);
    await es.expectNone(300);
    assert.equal(es.opens, 1, 'no reconnect happened');
    es.close();
  }));

  test('raw SSE response: 200, text/event-stream, no-cache, retry first, heartbeat comments', withLogs(async () => {
    const s = await sseOpen(node, '/sse?channel=raw.one');
    assert.equal(s.status, 200);
    assert.match(s.headers['content-type'], /^text\/event-stream\b/);
    assert.equal(s.headers['cache-control'], 'no-cache');
    assert.equal(s.headers['x-accel-buffering'], 'no');
    assert.equal(s.headers['content-length'], undefined, 'no Content-Length on an event stream');
    assert.ok(!/chunked/i.test(s.headers['transfer-encoding'] || ''), 'the body is not chunked');
    // the retry field arrives before any push and before the first heartbeat
    await until(() => s.raw().length > 0);
    assert.match(s.raw(), /^retry: 100\n\n/);
    assert.deepEqual(s.retries, [100]);
    // heartbeat every 200 ms
    const c = await s.waitComment(2000 * SLOW);
    assert.equal(c, 'heartbeat');
    await sleep(500 * SLOW);
    assert.ok(s.comments.length >= 2, `heartbeats within ~0.7 s: ${s.comments.length}`);
    // events still flow between heartbeats, unbuffered
    const t0 = Date.now();
    const p = await push200(node, { channel: 'raw.one', data: 'x', event: 'e' });
    const ev = await s.next();
    assert.ok(Date.now() - t0 < 1000 * SLOW, 'delivered at once');
    assert.equal(ev.id, p.id);
    assert.deepEqual(ev.fields, ['id', 'data']);
    s.close();
  }));

  test('fetch sees the same headers (what a browser EventSource checks)', withLogs(async () => {
    const ac = new AbortController();
    const r = await fetch(`${node.url}/sse?channel=f.one`, { headers: { accept: 'text/event-stream' }, signal: ac.signal });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type').split(';')[0].trim(), 'text/event-stream');
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const reader = r.body.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /^retry: \d+\n\n/);
    ac.abort();
  }));

  test('no channel: 204, and an EventSource stops reconnecting', withLogs(async () => {
    for (const path of ['/sse', '/sse?clientId=x', '/sse?lastEventId=abc']) {
      const r = await get(node, path);
      assert.equal(r.status, 204, `${path}: ${r.status} ${r.text}`);
      assert.equal(r.text, '');
    }
    const proxy = await startProxy(node);
    const es = openEventSource(`http://127.0.0.1:${proxy.port}/sse`);
    await assert.rejects(es.opened);
    await sleep(600 * SLOW); // retry is 100 ms: a reconnecting client would be back by now
    assert.equal(es.es.readyState, EventSource.CLOSED);
    assert.equal(proxy.requests.length, 1, 'one request, no reconnect after 204');
    es.close();
    proxy.close();
  }));

  test('invalid channel names on /sse: 422', withLogs(async () => {
    for (const q of ['channel=', 'channel=bad%20name', `channel=${'a'.repeat(129)}`, 'channel=ok&channel=caf%C3%A9', 'channel=a%0Ab']) {
      const r = await get(node, `/sse?${q}`);
      assert.equal(r.status, 422, `${q}: ${r.status} ${r.text}`);
      assert.match(r.body?.error ?? '', /channel/);
    }
  }));

  test('CR, LF, CRLF and "data:" inside data and event never forge a field or an event', withLogs(async () => {
    const s = await sseSubscribe(node, '/sse?channel=crlf');
    const nasty = [
      'a\r\nb',
      'a\rb',
      'a\nb',
      'data: x',
      '\n\nevent: evil\n\ndata: y\n\n',
      '\r\rid: forged\r\r',
      'retry: 1\r\n\r\n: comment\n',
      'trailing CR\r',
      'trailing LF\n',
      '\u2028\u2029 unicode line separators',
      '',
    ];
    const pushes = [];
    for (const d of nasty) {
      pushes.push({ ...(await push200(node, { channel: 'crlf', data: d, event: 'woo\r\nevent: evil' })), data: d });
    }
    // objects and arrays with the same strings inside
    pushes.push({ ...(await push200(node, { channel: 'crlf', data: { k: 'x\r\ny', 'a\nb': ['\r', '\n'] }, event: 'e\n' })), data: { k: 'x\r\ny', 'a\nb': ['\r', '\n'] } });
    const evs = await s.nextN(pushes.length, 5000 * SLOW);
    await s.expectNone(400);
    for (let i = 0; i < pushes.length; i++) {
      const ev = evs[i];
      assert.equal(ev.type, 'message', `event ${i} type`);
      assert.deepEqual(ev.fields, ['id', 'data'], `event ${i} fields`);
      assert.deepEqual(ev.unknown, []);
      assert.equal(ev.id, pushes[i].id);
      const d = jsonData(ev);
      assert.deepEqual(d.data, pushes[i].data, `event ${i} data`);
      assert.equal(d.id, pushes[i].id);
    }
    assert.equal(evs[0].id, pushes[0].id);
    assert.deepEqual(s.retries, [100], 'no forged retry field');
    assert.ok(s.comments.every((c) => c === 'heartbeat'), `only heartbeat comments: ${JSON.stringify(s.comments.filter((c) => c !== 'heartbeat'))}`);
    // the raw body: only known line shapes, and no bare CR anywhere
    const raw = s.raw();
    assert.ok(!raw.includes('\r'), 'no CR in the stream');
    for (const line of raw.split('\n')) {
      assert.match(line, /^(|retry: \d+|id: [0-9a-f-]+|data: \{[^\n]*\}|: heartbeat)$/, `line ${JSON.stringify(line)}`);
    }
    s.close();
  }));

  test('an SSE subscriber that leaves stops counting; its socket is gone', withLogs(async () => {
    const s = await sseSubscribe(node, '/sse?channel=leave');
    let p = await push200(node, { channel: 'leave', data: 1, event: 'e' });
    assert.equal(p.subscribers, 1);
    s.close();
    const n = await until(async () => (await push200(node, { channel: 'leave', data: 2, event: 'e' })).subscribers === 0);
    assert.ok(n, 'the closed subscriber is still counted');
    p = await push200(node, { channel: 'leave', data: 3, event: 'e' });
    assert.equal(p.subscribers, 0);
  }));
});

// ---------------------------------------------------------------------------------

describe('channel subscribe rules', () => {
  let node;
  const RULES = { subscribe: [{ channelPattern: 'public\\..*' }, { channelPattern: 'ops\\..*', rolePattern: 'tf-locksmith' }] };
  before(async () => {
    node = await startNode({ config: baseConfig({ channels: RULES }) });
  });

  const JOHN_JWT = () => makeJwt({ sub: 'jj', roles: ['tf-locksmith'], exp: Math.floor(Date.now() / 1000) + 600 });
  const VIEWER_JWT = () => makeJwt({ sub: 'vv', roles: ['viewer'], exp: Math.floor(Date.now() / 1000) + 600 });

  test('SSE: public anonymous; ops.* 401 / 403 / allowed; others 403', withLogs(async () => {
    const cases = [
      ['/sse?channel=public.news', {}, 200],
      ['/sse?channel=public.news&channel=public.sport', {}, 200],
      ['/sse?channel=public.news', { authorization: 'Bearer s-mary' }, 200],
      ['/sse?channel=ops.alerts', {}, 401],
      ['/sse?channel=public.news&channel=ops.alerts', {}, 401],
      ['/sse?channel=ops.alerts', { authorization: 'Bearer s-mary' }, 403],
      ['/sse?channel=ops.alerts&token=s-mary', {}, 403],
      ['/sse?channel=ops.alerts', { authorization: `Bearer ${VIEWER_JWT()}` }, 403],
      ['/sse?channel=ops.alerts', { authorization: 'Bearer s-john' }, 200],
      ['/sse?channel=ops.alerts&token=s-john', {}, 200],
      ['/sse?channel=ops.alerts', { authorization: `Bearer ${JOHN_JWT()}` }, 200],
      [`/sse?channel=ops.alerts&token=${JOHN_JWT()}`, {}, 200],
      ['/sse?channel=ops.alerts', { authorization: 'Bearer no-such-session' }, 401],
      ['/sse?channel=ops.alerts', { authorization: `Bearer ${makeJwt({ sub: 'x', roles: ['tf-locksmith'] }, 'wrong-secret')}` }, 401],
      ['/sse?channel=ops.alerts', { authorization: `Bearer ${makeJwt({ sub: 'x', roles: ['tf-locksmith'], exp: 1000 })}` }, 401],
      ['/sse?channel=other', {}, 403],
      ['/sse?channel=other', { authorization: 'Bearer s-john' }, 403],
      ['/sse?channel=public', {}, 403], // full match: `public\..*` needs the dot
      ['/sse?channel=xpublic.news', {}, 403],
      ['/sse?channel=public.news&channel=other', {}, 403],
      ['/sse?channel=ops.alerts&channel=other', { authorization: 'Bearer s-john' }, 403],
    ];
    for (const [path, headers, want] of cases) {
      const s = await sseOpen(node, path, { headers });
      assert.equal(s.status, want, `${path} ${JSON.stringify(headers).slice(0, 80)}: ${s.status} ${s.text ?? ''}`);
      if (want !== 200) assert.equal(typeof s.body?.error, 'string', `${path}: an error body (${s.text})`);
      else assert.match(s.headers['content-type'], /text\/event-stream/);
      s.close();
    }
  }));

  test('SSE: allowed subscribers receive, refused ones never do', withLogs(async () => {
    const john = await sseSubscribe(node, '/sse?channel=ops.alerts', { headers: { authorization: 'Bearer s-john' } });
    const anon = await sseSubscribe(node, '/sse?channel=public.news');
    const p = await push200(node, { channel: ['ops.alerts', 'public.news'], data: 'x', event: 'e' });
    assert.equal(p.subscribers, 2);
    assert.equal((await john.next()).id, p.id);
    assert.equal((await anon.next()).id, p.id);
    john.close(); anon.close();
  }));

  test('WebSocket: a forbidden channel is an error frame, never a silent no-op', withLogs(async () => {
    const mary = await connectClient(node, { sessionId: 's-mary', clientId: 'mary-ws' });
    const john = await connectClient(node, { sessionId: 's-john', clientId: 'john-ws' });
    for (const channels of [['ops.alerts'], ['public.news', 'ops.alerts'], ['other'], ['public']]) {
      mary.send({ type: 'subscribe', channels });
      const e = await mary.next();
      assert.equal(e.type, 'error', `mary ${JSON.stringify(channels)}: ${JSON.stringify(e)}`);
      assert.match(e.error, /not allowed/);
      assert.match(e.error, /ops\.alerts|other|public/);
    }
    john.send({ type: 'subscribe', channels: ['other'] });
    const je = await john.next();
    assert.equal(je.type, 'error');
    john.send({ type: 'subscribe', channels: ['ops.alerts', 'public.news'] });
    assert.deepEqual(await john.next(), { type: 'subscribed', channels: ['ops.alerts', 'public.news'] });
    mary.send({ type: 'subscribe', channels: ['public.sport'] });
    assert.deepEqual(await mary.next(), { type: 'subscribed', channels: ['public.sport'] });

    const p = await push200(node, { channel: ['ops.alerts', 'public.news', 'other'], data: 1, event: 'e' });
    assert.equal(p.subscribers, 1, 'only john: mary\'s refused requests subscribed nothing');
    const f = await john.next();
    assert.equal(f.id, p.id);
    await mary.expectNone(200);
    const p2 = await push200(node, { channel: 'public.sport', data: 2, event: 'e' });
    assert.equal(p2.subscribers, 1);
    assert.equal((await mary.next()).id, p2.id);
    await john.expectNone(100);
    // unsubscribing is never refused
    mary.send({ type: 'unsubscribe', channels: ['ops.alerts'] });
    assert.deepEqual(await mary.next(), { type: 'unsubscribed', channels: ['ops.alerts'] });
    await mary.close(); await john.close();
  }));
});

// ---------------------------------------------------------------------------------

describe('resume with Last-Event-ID', () => {
  let node;
  let gapNode;
  before(async () => {
    node = await startNode({ workers: 2, config: baseConfig({ sse: { retryMs: 100 } }) });
    gapNode = await startNode({ config: baseConfig({ history: { maxEvents: 3 } }) });
  });

  async function pushN(n, channel, tag, target = node) {
    const out = [];
    for (let i = 0; i < n; i++) out.push((await push200(target, { channel, data: `${tag}-${i}`, event: 'e' })).id);
    return out;
  }

  for (const how of ['header', 'query']) {
    test(`reconnect with Last-Event-ID (${how}): exactly the missed ones in order, then live, no duplicate`, withLogs(async () => {
      const ch = `resume.${how}`;
      const s1 = await sseSubscribe(node, `/sse?channel=${ch}`);
      const seen = await pushN(3, ch, 'before');
      const got = await s1.nextN(3);
      assert.deepEqual(got.map((e) => e.id), seen);
      const last = s1.lastEventId();
      assert.equal(last, seen[2]);
      s1.close();
      await sleep(50);
      const missed = await pushN(5, ch, 'missed');
      const path = how === 'query' ? `/sse?channel=${ch}&lastEventId=${encodeURIComponent(last)}` : `/sse?channel=${ch}`;
      const headers = how === 'header' ? { 'last-event-id': last } : {};
      const s2 = await sseSubscribe(node, path, { headers });
      const replayed = await s2.nextN(5);
      assert.deepEqual(replayed.map((e) => e.id), missed, 'the missed pushes, oldest first');
      assert.deepEqual(replayed.map((e) => jsonData(e).data), [0, 1, 2, 3, 4].map((i) => `missed-${i}`));
      assert.ok(replayed.every((e) => e.type === 'message'), 'no gap');
      const live = await pushN(2, ch, 'live');
      assert.deepEqual((await s2.nextN(2)).map((e) => e.id), live);
      await s2.expectNone(300);
      s2.close();
    }));
  }

  test('the Last-Event-ID header wins over ?lastEventId=; the newest id replays nothing', withLogs(async () => {
    const ch = 'resume.both';
    const ids = await pushN(4, ch, 'x');
    const s = await sseSubscribe(node, `/sse?channel=${ch}&lastEventId=${ids[0]}`, { headers: { 'Last-Event-ID': ids[2] } });
    assert.deepEqual((await s.nextN(1)).map((e) => e.id), [ids[3]]);
    await s.expectNone(250);
    s.close();
    const s2 = await sseSubscribe(node, `/sse?channel=${ch}&lastEventId=${ids[3]}`);
    await s2.expectNone(250);
    const live = await pushN(1, ch, 'y');
    assert.deepEqual((await s2.nextN(1)).map((e) => e.id), live);
    s2.close();
  }));

  test('several channels: the replay is merged in id order, a push in two channels once', withLogs(async () => {
    const s1 = await sseSubscribe(node, '/sse?channel=mr.a&channel=mr.b');
    const first = await push200(node, { channel: 'mr.a', data: 0, event: 'e' });
    assert.equal((await s1.next()).id, first.id);
    s1.close();
    await sleep(50);
    const want = [];
    want.push((await push200(node, { channel: 'mr.b', data: 1, event: 'e' })).id);
    want.push((await push200(node, { channel: ['mr.a', 'mr.b'], data: 2, event: 'e' })).id);
    want.push((await push200(node, { channel: 'mr.a', data: 3, event: 'e' })).id);
    await push200(node, { channel: 'mr.c', data: 'not mine', event: 'e' });
    want.push((await push200(node, { channel: ['mr.b', 'mr.a'], data: 4, event: 'e' })).id);
    const s2 = await sseSubscribe(node, '/sse?channel=mr.a&channel=mr.b', { headers: { 'last-event-id': first.id } });
    const got = await s2.nextN(4);
    // mr.b's history holds everything after first.id (it never dropped anything): no gap
    assert.deepEqual(got.map((e) => e.type), ['message', 'message', 'message', 'message'], `events ${JSON.stringify(got.map((e) => [e.type, e.data]))}`);
    assert.deepEqual(got.map((e) => e.id), want);
    assert.deepEqual(got.map((e) => jsonData(e).data), [1, 2, 3, 4]);
    await s2.expectNone(300);
    s2.close();
  }));

  test('gap: history.maxEvents 3, 5 missed → event: gap, then the 3 retained, then live', withLogs(async () => {
    const ch = 'gap.one';
    const s1 = await sseSubscribe(gapNode, `/sse?channel=${ch}`);
    const [seen] = await pushN(1, ch, 'seen', gapNode);
    assert.equal((await s1.next()).id, seen);
    s1.close();
    await sleep(50);
    const missed = await pushN(5, ch, 'missed', gapNode);
    const s2 = await sseSubscribe(gapNode, `/sse?channel=${ch}`, { headers: { 'Last-Event-ID': seen } });
    const [gap, ...rest] = await s2.nextN(4);
    assert.equal(gap.type, 'gap');
    assert.deepEqual(jsonData(gap), { lastEventId: seen });
    assert.ok(!gap.fields.includes('id'), 'the gap event carries no id (the last event id stays the one sent)');
    assert.deepEqual(rest.map((e) => e.id), missed.slice(2), 'the 3 retained');
    assert.ok(rest.every((e) => e.type === 'message'));
    const live = await pushN(1, ch, 'live', gapNode);
    assert.deepEqual((await s2.nextN(1)).map((e) => e.id), live);
    await s2.expectNone(250);
    s2.close();

    // exactly 3 missed: everything is still there, no gap
    const s3 = await sseSubscribe(gapNode, `/sse?channel=${ch}`);
    const [seen3] = await pushN(1, ch, 'seen3', gapNode);
    assert.equal((await s3.next()).id, seen3);
    s3.close();
    await sleep(50);
    const missed3 = await pushN(3, ch, 'm3', gapNode);
    const s4 = await sseSubscribe(gapNode, `/sse?channel=${ch}&lastEventId=${seen3}`);
    const got = await s4.nextN(3);
    assert.deepEqual(got.map((e) => [e.type, e.id]), missed3.map((id) => ['message', id]));
    await s4.expectNone(250);
    s4.close();
  }));

  test('gap: an id this node never had (fresh channel) is signalled', withLogs(async () => {
    const s = await sseSubscribe(node, '/sse?channel=gap.fresh', { headers: { 'Last-Event-ID': '0000000000001-00000000-00000001' } });
    const ev = await s.next();
    assert.equal(ev.type, 'gap');
    assert.deepEqual(jsonData(ev), { lastEventId: '0000000000001-00000000-00000001' });
    const [live] = await pushN(1, 'gap.fresh', 'live');
    assert.equal((await s.next()).id, live);
    s.close();
  }));

  test('gap: the data is valid JSON whatever the Last-Event-ID holds', withLogs(async () => {
    // a Last-Event-ID is an arbitrary client string: quotes and backslashes must be escaped
    for (const id of ['x"y', 'back\\slash', '"}{"evil":1,"lastEventId":"']) {
      const s = await sseSubscribe(node, `/sse?channel=gap.weird&lastEventId=${encodeURIComponent(id)}`);
      const ev = await s.next();
      assert.equal(ev.type, 'gap');
      let d;
      assert.doesNotThrow(() => { d = JSON.parse(ev.data); }, `gap data ${JSON.stringify(ev.data)} for Last-Event-ID ${JSON.stringify(id)} is not JSON`);
      assert.deepEqual(d, { lastEventId: id });
      s.close();
    }
  }));

  test('the eventsource package reconnects by itself with Last-Event-ID and misses nothing', withLogs(async () => {
    const proxy = await startProxy(node);
    const ch = 'es.resume';
    const es = openEventSource(`http://127.0.0.1:${proxy.port}/sse?channel=${ch}`);
    await es.opened;
    const before1 = await pushN(2, ch, 'before');
    assert.deepEqual((await es.nextN(2)).map((m) => m.lastEventId), before1);
    // cut the connection and keep the client out while pushes happen
    proxy.refuse = true;
    proxy.drop();
    await until(() => es.errors.length > 0);
    const missed = await pushN(3, ch, 'missed');
    proxy.refuse = false;
    const got = await es.nextN(3, 5000 * SLOW);
    assert.deepEqual(got.map((m) => m.lastEventId), missed);
    assert.deepEqual(got.map((m) => JSON.parse(m.data).data), ['missed-0', 'missed-1', 'missed-2']);
    const live = await pushN(2, ch, 'live');
    assert.deepEqual((await es.nextN(2)).map((m) => m.lastEventId), live);
    await es.expectNone(300);
    // the request that got through after the cut carried the last id it had seen
    const resumed = proxy.requests.filter((r) => /last-event-id:/i.test(r));
    assert.ok(resumed.length >= 1, `no request with Last-Event-ID among ${proxy.requests.length}`);
    assert.match(resumed[resumed.length - 1], new RegExp(`last-event-id: ${before1[1]}\\r\\n`, 'i'));
    es.close();
    proxy.close();
  }));
});

// ---------------------------------------------------------------------------------

describe('4 workers: SSE and WebSocket channel subscribers spread over the workers', () => {
  let node;
  const N_SSE = 24;
  const N_WS = 24;
  const CH = ['mw.0', 'mw.1', 'mw.2', 'mw.3'];
  const subs = []; // {kind, channels, conn}

  before(async () => {
    node = await startNode({ workers: 4 });
    for (let i = 0; i < N_SSE; i++) {
      const channels = i % 3 === 0 ? [CH[i % 4], CH[(i + 1) % 4]] : [CH[i % 4]];
      if (i % 5 === 0) channels.push('mw.all');
      const conn = await sseSubscribe(node, `/sse?clientId=sse-${i}&${channels.map((c) => `channel=${c}`).join('&')}`);
      subs.push({ kind: 'sse', name: `sse-${i}`, channels, conn });
    }
    for (let i = 0; i < N_WS; i++) {
      const channels = i % 4 === 1 ? [CH[i % 4], CH[(i + 2) % 4], 'mw.all'] : [CH[i % 4]];
      const conn = await connectClient(node, { sessionId: i % 2 ? 's-mary' : 's-john', clientId: `ws-${i}` });
      conn.send({ type: 'subscribe', channels });
      const ok = await conn.next();
      assert.equal(ok.type, 'subscribed');
      subs.push({ kind: 'ws', name: `ws-${i}`, channels, conn });
    }
  });

  const wants = (s, chans) => s.channels.some((c) => chans.includes(c));

  /**
   * Collect what each subscriber received: a list of push ids each. pushes: [{id, chans}].
   * On a timeout the error says, per subscriber, which push ids are missing.
   */
  async function collect(pushes) {
    const got = subs.map(() => []);
    try {
      await Promise.all(subs.map(async (s, i) => {
        const n = pushes.filter((p) => wants(s, p.chans)).length;
        for (let k = 0; k < n; k++) {
          const m = s.kind === 'sse' ? await s.conn.next(5000 * SLOW) : await s.conn.next(5000 * SLOW);
          got[i].push(m.id);
        }
      }));
    } catch (e) {
      const order = pushes.map((p) => p.id).sort();
      const lines = subs.map((s, i) => {
        const want = pushes.filter((p) => wants(s, p.chans)).map((p) => p.id);
        const missing = want.filter((id) => !got[i].includes(id));
        if (!missing.length) return null;
        return `${s.name} (${s.kind}, ${s.channels}): got ${got[i].length} of ${want.length}; missing ${missing.map((id) => `${id} (#${order.indexOf(id)} by id)`).join(', ')}; got order ${got[i].map((id) => order.indexOf(id)).join(',')}`;
      }).filter(Boolean);
      e.message += `\n${lines.join('\n')}`;
      throw e;
    }
    return got;
  }

  test('the subscribers are on more than one worker', withLogs(async () => {
    const conns = await waitForConnections(node, N_SSE + N_WS, 3000);
    if (conns) {
      const workers = new Set(conns.map((c) => c.worker));
      assert.ok(workers.size > 1, `all ${conns.length} connections on one worker`);
    }
  }));

  test('sequential pushes: every subscriber gets each of its pushes once, in order', withLogs(async () => {
    const pushes = [];
    for (let k = 0; k < 24; k++) {
      const chans = k % 6 === 5 ? ['mw.all', CH[k % 4]] : k % 2 ? [CH[k % 4], CH[(k + 1) % 4], CH[k % 4]] : [CH[k % 4]];
      const p = await push200(node, { channel: chans, data: { k }, event: 'seq' });
      const expected = subs.filter((s) => wants(s, chans)).length;
      assert.equal(p.subscribers, expected, `push ${k} ${chans}: X-Push-Subscribers`);
      pushes.push({ id: p.id, chans });
    }
    const got = await collect(pushes);
    await sleep(300);
    subs.forEach((s, i) => {
      const want = pushes.filter((p) => wants(s, p.chans)).map((p) => p.id);
      assert.deepEqual(got[i], want, `${s.name} (${s.channels})`);
      const extra = s.kind === 'sse' ? s.conn.events.drain() : s.conn.drain();
      assert.deepEqual(extra, [], `${s.name}: duplicates or strays`);
    });
  }));

  test('answered before delivery: one publisher\'s pushes still arrive in publish order', withLogs(async () => {
    const pushes = [];
    for (let k = 0; k < 60; k++) {
      const chans = k % 3 ? [CH[k % 4]] : ['mw.all', CH[(k + 1) % 4]];
      const r = await push(node, { channel: chans, data: { k }, event: 'early' });
      assert.equal(r.status, 200, r.text);
      // 60 pushes × 4 workers never reach the default backlog (64 per worker)
      assert.equal(r.headers.get('x-push-subscribers'), null, 'answered before delivery');
      pushes.push({ id: r.headers.get('x-push-id'), chans });
    }
    const got = await collect(pushes);
    await sleep(200);
    subs.forEach((s, i) => {
      assert.deepEqual(got[i], pushes.filter((p) => wants(s, p.chans)).map((p) => p.id), `${s.name} (${s.channels})`);
      const extra = s.kind === 'sse' ? s.conn.events.drain() : s.conn.drain();
      assert.deepEqual(extra, [], `${s.name}: duplicates or strays`);
    });
  }));

  test('concurrent publishers: every subscriber gets each of its pushes exactly once', withLogs(async () => {
    // five bursts of 40 requests in flight at once: fetch opens several connections,
    // accepted on several workers, so pushes reach a subscriber's worker out of id order
    for (let round = 0; round < 5; round++) {
      const specs = [];
      for (let k = 0; k < 40; k++) specs.push(k % 4 === 3 ? ['mw.all', CH[k % 4]] : [CH[k % 4], CH[(k + 3) % 4]]);
      const results = await Promise.all(specs.map((chans, k) => push200(node, { channel: chans, data: { round, k }, event: 'conc' })));
      const pushes = results.map((r, k) => ({ id: r.id, chans: specs[k], subscribers: r.subscribers }));
      for (const p of pushes) assert.equal(p.subscribers, subs.filter((s) => wants(s, p.chans)).length, `X-Push-Subscribers of ${p.chans}`);
      const got = await collect(pushes);
      await sleep(200);
      subs.forEach((s, i) => {
        const want = new Set(pushes.filter((p) => wants(s, p.chans)).map((p) => p.id));
        assert.equal(new Set(got[i]).size, got[i].length, `${s.name}: a duplicate`);
        assert.deepEqual(new Set(got[i]), want, `round ${round}: ${s.name}`);
        const extra = s.kind === 'sse' ? s.conn.events.drain() : s.conn.drain();
        assert.deepEqual(extra, [], `${s.name}: duplicates or strays`);
      });
    }
  }));
});

// permessage-deflate (RFC 7692) on /websocket: negotiation answers, pushes (push requests
// and channel pushes) that a compressing `ws` client receives byte-identical to a plain
// one, compressed client messages with and without context takeover, offers that are
// declined or refused, off by default, RSV1 misuse (1002) and a zip bomb (1009).

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import {
  startNode, cleanup, withLogs, api, pushRequest, baseConfig, RawWs, OP, wsPath, sleep,
  closedWithin, PUB_KEY,
} from './lib/harness.mjs';

after(cleanup);

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
let seq = 0;

/** A `ws` client that records every message as raw bytes. */
function open(node, clientId, perMessageDeflate) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(node.wsUrl + wsPath({ sessionId: 's-john', clientId }), { perMessageDeflate });
    const c = { ws, msgs: [], waiters: [], errors: [], closeInfo: null };
    ws.on('message', (d) => {
      c.msgs.push(Buffer.from(d));
      for (const w of c.waiters.splice(0)) w();
    });
    ws.on('error', (e) => c.errors.push(e));
    ws.on('close', (code) => {
      c.closeInfo = { code };
      for (const w of c.waiters.splice(0)) w();
    });
    ws.once('open', () => res(c));
    ws.once('unexpected-response', (req, resp) => rej(new Error(`upgrade refused: ${resp.statusCode}`)));
  });
}

/** The next message of c (raw bytes). */
async function next(c, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!c.msgs.length) {
    if (c.closeInfo) throw new Error(`closed ${c.closeInfo.code}`);
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no message within ${ms} ms`);
    await new Promise((r) => { const t = setTimeout(r, left); c.waiters.push(() => { clearTimeout(t); r(); }); });
  }
  return c.msgs.shift();
}

function sendChannelPush(node, body) {
  return api(node, 'POST', '/api/push', { key: PUB_KEY, body });
}

async function rawOffer(node, offer, clientId = `raw${++seq}`) {
  const extra = offer === null ? '' : `Sec-WebSocket-Extensions: ${offer}\r\n`;
  return RawWs.connect(node, wsPath({ sessionId: 's-john', clientId }), { extraHeaders: extra });
}

/** Inflates one server message (RFC 7692 §7.2.2: the tail is appended). */
const inflate = (payload, windowBits = 15) => zlib.inflateRawSync(Buffer.concat([payload, TAIL]),
  { windowBits, finishFlush: zlib.constants.Z_SYNC_FLUSH });
/** What a ws client accepted (ws.extensions lists names only). */
const pmdParams = (ws) => ws._extensions['permessage-deflate']?.params;

/** Deflates one message as a client without context takeover would. */
function deflateMsg(text) {
  const z = zlib.deflateRawSync(Buffer.isBuffer(text) ? text : Buffer.from(text), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual(z.subarray(-4), TAIL);
  return z.subarray(0, -4);
}

describe('compression on', () => {
  let node;
  before(async () => {
    node = await startNode({
      workers: 2,
      config: baseConfig({ websocket: { compression: true }, limits: { maxMessageBytes: 65536 } }),
    });
  });

  test('ws with perMessageDeflate gets pushes byte-identical to a plain client', withLogs(async () => {
    const plain = await open(node, 'plain', false);
    const z = await open(node, 'zipped', { threshold: 0 });
    assert.equal(plain.ws.extensions, '');
    assert.equal(z.ws.extensions, 'permessage-deflate');
    assert.equal(pmdParams(z.ws).server_no_context_takeover, true);
    // push requests: small, big and repetitive, and unicode
    const payloads = [{ a: 1 }, { blob: 'push '.repeat(4000), n: [1, 2, 3] }, { t: 'ünïcödé ✓ 𝄞'.repeat(50) }];
    for (const sr of payloads) {
      const p = await pushRequest(node, { serviceRequest: sr, clientIdPattern: '^(plain|zipped)$' });
      assert.equal(p.status, 200, p.text);
      const a = await next(plain);
      const b = await next(z);
      assert.equal(Buffer.compare(a, b), 0, 'same bytes for the compressed client');
      assert.deepEqual(JSON.parse(a.toString()).payload, sr);
    }
    // channel pushes
    for (const c of [plain, z]) {
      c.ws.send(JSON.stringify({ type: 'subscribe', channels: ['dz'] }));
      assert.deepEqual(JSON.parse(await next(c)), { type: 'subscribed', channels: ['dz'] });
    }
    for (const data of [{ x: 'y' }, { big: 'channel '.repeat(3000) }]) {
      const r = await sendChannelPush(node, { channel: 'dz', event: 'ev', data });
      assert.equal(r.status, 200, r.text);
      const a = await next(plain);
      const b = await next(z);
      assert.equal(Buffer.compare(a, b), 0, 'channel push: same bytes');
      assert.deepEqual(JSON.parse(a.toString()).payload, data);
    }
    assert.deepEqual(plain.errors, []);
    assert.deepEqual(z.errors, []);
    plain.ws.close();
    z.ws.close();
  }));

  test('the negotiation answer, and push frames compressed on the wire (RSV1), shared', withLogs(async () => {
    const r1 = await rawOffer(node, 'permessage-deflate; client_max_window_bits', 'wire1');
    const r2 = await rawOffer(node, 'x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12', 'wire2');
    assert.equal(r1.handshake.status, 101);
    assert.equal(r1.handshake.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
    assert.equal(r2.handshake.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
    const sr = { text: 'abcdefgh'.repeat(500) };
    const p = await pushRequest(node, { serviceRequest: sr, clientIdPattern: '^wire[12]$' });
    assert.equal(p.status, 200, p.text);
    const f1 = await r1.nextFrame();
    const f2 = await r2.nextFrame();
    assert.equal(f1.rsv, 4, 'RSV1 set on the push frame');
    assert.equal(f1.opcode, OP.TEXT);
    assert.ok(f1.payload.length < 400, `compressed: ${f1.payload.length} B for a 4 KB message`);
    assert.equal(Buffer.compare(f1.payload, f2.payload), 0, 'one compressed encoding for both');
    const msg = JSON.parse(inflate(f1.payload).toString());
    assert.deepEqual(msg.payload, sr);
    // messages are independent (server_no_context_takeover): a second push inflates alone
    const p2 = await pushRequest(node, { serviceRequest: sr, clientIdPattern: '^wire1$' });
    assert.equal(p2.status, 200, p2.text);
    const g = await r1.nextFrame();
    assert.deepEqual(JSON.parse(inflate(g.payload).toString()).payload, sr);
    r1.destroy();
    r2.destroy();
  }));

  test('compressed client messages, several in a row with context takeover (ws)', withLogs(async () => {
    const z = await open(node, 'ctx', { threshold: 0, clientNoContextTakeover: false });
    assert.equal(pmdParams(z.ws).client_no_context_takeover, undefined);
    assert.equal(pmdParams(z.ws).client_max_window_bits, 10);
    // the same long channel list again and again: later messages refer back to earlier ones
    const chans = Array.from({ length: 40 }, (_, i) => `context.takeover.channel.${i}`);
    for (let i = 0; i < 6; i++) {
      const type = i % 2 ? 'unsubscribe' : 'subscribe';
      z.ws.send(JSON.stringify({ type, channels: chans }));
      assert.deepEqual(JSON.parse(await next(z)), { type: `${type}d`, channels: chans }, `message ${i}`);
    }
    // a push response, compressed, folded into the report
    const pending = pushRequest(node, { serviceRequest: { q: 1 }, clientIdPattern: '^ctx$', options: { awaitAcks: true, timeoutMs: 5000 } });
    const push = JSON.parse(await next(z));
    z.ws.send(JSON.stringify({ type: 'response', id: push.id, successful: true, message: 'zipped ack '.repeat(20) }));
    const rep = await pending;
    assert.equal(rep.status, 200, rep.text);
    assert.equal(rep.body.responseMessages[0].message, 'zipped ack '.repeat(20));
    assert.deepEqual(z.errors, []);
    assert.equal(z.closeInfo, null);
    z.ws.close();
  }));

  test('compressed client messages with client_no_context_takeover (raw)', withLogs(async () => {
    const r = await rawOffer(node, 'permessage-deflate; client_no_context_takeover');
    assert.equal(r.handshake.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    for (let i = 0; i < 3; i++) {
      const text = JSON.stringify({ type: 'subscribe', channels: [`nctx${i}`, 'nctx.common'] });
      r.send({ opcode: OP.TEXT, rsv: 4, payload: deflateMsg(text) });
      const f = await r.nextFrame();
      const body = f.rsv ? inflate(f.payload) : f.payload;
      assert.deepEqual(JSON.parse(body.toString()), { type: 'subscribed', channels: [`nctx${i}`, 'nctx.common'] });
    }
    // fragmented: RSV1 on the first frame only
    const z = deflateMsg(JSON.stringify({ type: 'subscribe', channels: ['frag.one'] }));
    r.send({ opcode: OP.TEXT, rsv: 4, fin: false, payload: z.subarray(0, 5) });
    r.send({ opcode: OP.CONT, fin: true, payload: z.subarray(5) });
    const f = await r.nextFrame();
    assert.deepEqual(JSON.parse((f.rsv ? inflate(f.payload) : f.payload).toString()), { type: 'subscribed', channels: ['frag.one'] });
    r.destroy();
  }));

  test('offers with bad parameters are declined (RFC 7692 §7.1); a malformed header is 400', withLogs(async () => {
    const declined = [
      'permessage-deflate; server_max_window_bits=7',
      'permessage-deflate; server_max_window_bits=16',
      'permessage-deflate; server_max_window_bits=010',
      'permessage-deflate; server_max_window_bits',
      'permessage-deflate; client_max_window_bits=0',
      'permessage-deflate; server_no_context_takeover=1',
      'permessage-deflate; client_no_context_takeover; client_no_context_takeover',
      'permessage-deflate; unknown_param',
      'x-other-extension; server_max_window_bits=10',
    ];
    for (const offer of declined) {
      const r = await rawOffer(node, offer);
      assert.equal(r.handshake.status, 101, offer);
      assert.equal(r.handshake.headers['sec-websocket-extensions'], undefined, `declined: ${offer}`);
      r.destroy();
    }
    // the first acceptable offer wins; a quoted value is a value
    const r = await rawOffer(node, 'permessage-deflate; foo, permessage-deflate; server_max_window_bits="11"; client_no_context_takeover');
    assert.equal(r.handshake.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11');
    r.destroy();
    for (const offer of ['permessage-deflate; =x', 'permessage-deflate;;', 'permessage-deflate; a="unterminated', ', ;']) {
      const b = await rawOffer(node, offer);
      assert.equal(b.handshake.status, 400, `malformed: ${offer}`);
      b.destroy();
    }
    // ws asking for a server window: the same value comes back
    const c = await open(node, 'badparam', { serverMaxWindowBits: 15, threshold: 0 });
    assert.equal(pmdParams(c.ws).server_max_window_bits, 15);
    c.ws.close();
  }));

  test('server_max_window_bits=8: short messages compressed, longer ones plain', withLogs(async () => {
    const r = await rawOffer(node, 'permessage-deflate; server_max_window_bits=8', 'win8');
    assert.equal(r.handshake.headers['sec-websocket-extensions'],
      'permessage-deflate; server_no_context_takeover; server_max_window_bits=8');
    const small = { s: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' };
    const big = { s: 'abcdefghij'.repeat(100) };
    for (const sr of [small, big]) {
      const p = await pushRequest(node, { serviceRequest: sr, clientIdPattern: '^win8$' });
      assert.equal(p.status, 200, p.text);
    }
    const f1 = await r.nextFrame();
    const f2 = await r.nextFrame();
    assert.equal(f1.rsv, 4, 'a push under 256 B is compressed');
    assert.deepEqual(JSON.parse(inflate(f1.payload, 9)).payload, small);
    assert.equal(f2.rsv, 0, 'a push over 256 B goes plain');
    assert.deepEqual(JSON.parse(f2.payload.toString()).payload, big);
    r.destroy();
  }));

  test('RSV1 on a continuation or a control frame is a protocol error (1002)', withLogs(async () => {
    const r = await rawOffer(node, 'permessage-deflate');
    r.send({ opcode: OP.TEXT, fin: false, payload: Buffer.from('{"type":') });
    r.send({ opcode: OP.CONT, rsv: 4, fin: true, payload: Buffer.from('"x"}') });
    assert.equal((await r.expectClose()).code, 1002);
    assert.equal(await closedWithin(r.ended, 3000), true);
    const q = await rawOffer(node, 'permessage-deflate');
    q.send({ opcode: OP.PING, rsv: 4, payload: Buffer.from('p') });
    assert.equal((await q.expectClose()).code, 1002);
    const s = await rawOffer(node, 'permessage-deflate');
    s.send({ opcode: OP.TEXT, rsv: 2, payload: Buffer.from('{}') });
    assert.equal((await s.expectClose()).code, 1002, 'RSV2 is never valid');
  }));

  test('a zip bomb is closed with 1009; bad deflate data with 1007', withLogs(async () => {
    const r = await rawOffer(node, 'permessage-deflate; client_no_context_takeover');
    const bomb = zlib.deflateRawSync(Buffer.alloc(8 << 20, 0x20)); // 8 MiB of spaces, ~8 KB
    assert.ok(bomb.length < 65536);
    r.send({ opcode: OP.TEXT, rsv: 4, payload: bomb });
    assert.equal((await r.expectClose()).code, 1009);
    assert.equal(await closedWithin(r.ended, 3000), true);
    const b = await rawOffer(node, 'permessage-deflate');
    b.send({ opcode: OP.TEXT, rsv: 4, payload: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00]) });
    assert.equal((await b.expectClose()).code, 1007);
    // a compressed message that inflates to invalid UTF-8
    const u = await rawOffer(node, 'permessage-deflate');
    u.send({ opcode: OP.TEXT, rsv: 4, payload: deflateMsg(Buffer.from([0x7b, 0xc3, 0x28, 0x7d])) });
    assert.equal((await u.expectClose()).code, 1007);
  }));
});

describe('compression off (the default)', () => {
  let node;
  before(async () => {
    node = await startNode({ config: baseConfig() });
  });

  test('no extension in the answer; ws with perMessageDeflate still gets pushes', withLogs(async () => {
    const r = await rawOffer(node, 'permessage-deflate; client_max_window_bits');
    assert.equal(r.handshake.status, 101);
    assert.equal(r.handshake.headers['sec-websocket-extensions'], undefined);
    r.destroy();
    const c = await open(node, 'off', true);
    assert.equal(c.ws.extensions, '');
    const p = await pushRequest(node, { serviceRequest: { off: true }, clientIdPattern: '^off$' });
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(JSON.parse(await next(c)).payload, { off: true });
    c.ws.close();
  }));

  test('RSV1 without negotiation is a protocol error (1002)', withLogs(async () => {
    const r = await rawOffer(node, null);
    r.send({ opcode: OP.TEXT, rsv: 4, payload: deflateMsg('{"type":"subscribe","channels":["a"]}') });
    assert.equal((await r.expectClose()).code, 1002);
    assert.equal(await closedWithin(r.ended, 3000), true);
    await sleep(10);
  }));
});

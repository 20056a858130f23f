// RFC 6455 conformance of /websocket over raw sockets: fragmentation, masking, UTF-8,
// message size, control frames, close codes; server frames checked bit by bit; the
// strict `ws` client must never report an error. Also the --diagnostics /echo endpoint.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, connectClient, pushRequest, baseConfig, RawWs, OP, wsPath,
  pushFrame, delivered, tryConnect, sleep, closedWithin, encodeFrame,
} from './lib/harness.mjs';

let node;
let seq = 0;

before(async () => {
  node = await startNode({
    workers: 2,
    config: baseConfig({ limits: { maxMessageBytes: 65536 } }),
    extraArgs: ['--diagnostics'],
  });
});

after(cleanup);

async function raw(clientId = `raw${++seq}`) {
  const r = await RawWs.connect(node, wsPath({ sessionId: 's-john', clientId }));
  assert.equal(r.handshake.status, 101, r.handshake.statusLine);
  assert.equal(r.handshake.headers['sec-websocket-accept'], r.expectedAccept());
  r.clientId = clientId;
  return r;
}

/** Expect the server to fail the connection with `code`, then close TCP. */
async function expectFailed(r, code, what) {
  const c = await r.expectClose(3000);
  assert.equal(c.code, code, `${what}: close code`);
  assert.equal(await closedWithin(r.ended, 3000), true, `${what}: TCP not closed after the close frame`);
  assert.deepEqual(r.violations, [], `${what}: server frames`);
}

function checkServerFrame(f) {
  assert.equal(f.masked, false, 'server frames are never masked');
  assert.equal(f.rsv, 0, 'RSV bits clear');
}

test('server push frames are single, unmasked text frames with RSV clear', withLogs(async () => {
  const r = await raw('raw-frames');
  for (const size of [10, 300, 70000]) {
    const payload = { blob: 'y'.repeat(size) };
    const p = await pushRequest(node, { serviceRequest: payload, clientIdPattern: 'raw-frames' });
    assert.equal(p.status, 200, p.text);
    const f = await r.nextFrame();
    checkServerFrame(f);
    assert.equal(f.opcode, OP.TEXT);
    assert.equal(f.fin, true);
    assert.deepEqual(JSON.parse(f.payload.toString('utf8')), pushFrame(p.body.pushId, payload));
  }
  await r.expectNoFrame(200);
  r.sendClose(1000);
  const c = await r.expectClose();
  assert.equal(c.code, 1000, 'server answers a close 1000 with 1000');
  assert.equal(await closedWithin(r.ended, 3000), true);
  assert.deepEqual(r.violations, []);
}));

test('a fragmented response frame is reassembled and folded into the report', withLogs(async () => {
  const r = await raw('raw-frag');
  const pending = pushRequest(node, { serviceRequest: { q: 1 }, clientIdPattern: 'raw-frag', options: { awaitAcks: true, timeoutMs: 5000 } });
  const push = await r.nextJson();
  assert.equal(push.type, 'push');
  const text = Buffer.from(JSON.stringify({ type: 'response', id: push.id, successful: true, message: 'fragmented ok' }));
  const a = text.subarray(0, 10);
  const b = text.subarray(10, 25);
  const c = text.subarray(25);
  r.send({ opcode: OP.TEXT, fin: false, payload: a });
  r.send({ opcode: OP.PING, payload: Buffer.from('mid') }); // control frames may interleave
  r.send({ opcode: OP.CONT, fin: false, payload: b });
  r.send({ opcode: OP.CONT, fin: true, payload: c });
  const pong = await r.nextFrame();
  checkServerFrame(pong);
  assert.equal(pong.opcode, OP.PONG);
  assert.equal(pong.payload.toString(), 'mid');
  const rep = await pending;
  assert.equal(rep.status, 200, rep.text);
  assert.deepEqual(rep.body.responseMessages, [delivered('raw-frag', 's-john', 'fragmented ok')]);
  assert.equal(rep.body.summary.acknowledged, 1);
  await r.expectNoFrame(300); // no error frame
  r.destroy();
}));

test('a fragmented unknown frame gets an error frame (fragments are really read)', withLogs(async () => {
  const r = await raw();
  const text = Buffer.from(JSON.stringify({ type: 'bogus-fragmented' }));
  r.send({ opcode: OP.TEXT, fin: false, payload: text.subarray(0, 5) });
  r.send({ opcode: OP.CONT, fin: true, payload: text.subarray(5) });
  const m = await r.nextJson();
  assert.equal(m.type, 'error');
  assert.equal(typeof m.error, 'string');
  // the connection is still usable
  r.send({ opcode: OP.PING, payload: Buffer.from('still') });
  const pong = await r.nextFrame();
  assert.equal(pong.opcode, OP.PONG);
  assert.equal(pong.payload.toString(), 'still');
  r.destroy();
}));

test('a ping from the client gets a pong with the same payload', withLogs(async () => {
  const r = await raw();
  r.send({ opcode: OP.PING, payload: Buffer.from('hello-ping') });
  const f = await r.nextFrame();
  checkServerFrame(f);
  assert.equal(f.opcode, OP.PONG);
  assert.equal(f.fin, true);
  assert.equal(f.payload.toString(), 'hello-ping');
  r.send({ opcode: OP.PING });
  const g = await r.nextFrame();
  assert.equal(g.opcode, OP.PONG);
  assert.equal(g.payload.length, 0);
  // an unsolicited pong is ignored
  r.send({ opcode: OP.PONG, payload: Buffer.from('x') });
  await r.expectNoFrame(200);
  r.destroy();
}));

test('ws client ping gets a pong', withLogs(async () => {
  const c = await connectClient(node, { sessionId: 's-john', clientId: 'ws-ping' });
  const got = new Promise((res) => c.ws.once('pong', (d) => res(d.toString())));
  c.ws.ping('are you there');
  assert.equal(await Promise.race([got, sleep(3000).then(() => 'timeout')]), 'are you there');
  await c.close();
  assert.deepEqual(c.errors, []);
}));

test('an unmasked client frame is closed with 1002', withLogs(async () => {
  const r = await raw();
  r.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"response","id":"x","successful":true}'), mask: false });
  await expectFailed(r, 1002, 'unmasked frame');
}));

test('invalid UTF-8 in a text frame is closed with 1007', withLogs(async () => {
  const r = await raw();
  r.send({ opcode: OP.TEXT, payload: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) });
  await expectFailed(r, 1007, 'invalid UTF-8');
}));

test('invalid UTF-8 split across fragments is closed with 1007', withLogs(async () => {
  const r = await raw();
  // U+20AC is e2 82 ac; send e2 82 then an ASCII byte: invalid
  r.send({ opcode: OP.TEXT, fin: false, payload: Buffer.from([0x22, 0xe2, 0x82]) });
  r.send({ opcode: OP.CONT, fin: true, payload: Buffer.from([0x41, 0x22]) });
  await expectFailed(r, 1007, 'invalid UTF-8 across fragments');
}));

test('valid UTF-8 split across fragments is fine', withLogs(async () => {
  const r = await raw();
  const text = Buffer.from(JSON.stringify({ type: 'bogus', note: '€ split' }));
  const i = text.indexOf(0xe2) + 1; // split inside the multi-byte sequence
  r.send({ opcode: OP.TEXT, fin: false, payload: text.subarray(0, i) });
  r.send({ opcode: OP.CONT, fin: true, payload: text.subarray(i) });
  const m = await r.nextJson();
  assert.equal(m.type, 'error');
  r.destroy();
}));

test('a message over limits.maxMessageBytes is closed with 1009', withLogs(async () => {
  const r = await raw();
  r.send({ opcode: OP.TEXT, payload: Buffer.alloc(65536 + 1000, 0x61) });
  await expectFailed(r, 1009, 'single frame over the limit');
}));

test('a fragmented message over limits.maxMessageBytes is closed with 1009', withLogs(async () => {
  const r = await raw();
  r.send({ opcode: OP.TEXT, fin: false, payload: Buffer.alloc(40000, 0x61) });
  r.send({ opcode: OP.CONT, fin: false, payload: Buffer.alloc(40000, 0x61) });
  r.send({ opcode: OP.CONT, fin: true, payload: Buffer.alloc(10, 0x61) });
  await expectFailed(r, 1009, 'fragments over the limit');
}));

test('a frame header announcing a huge length is closed with 1009 at once', withLogs(async () => {
  const r = await raw();
  // header only: 127 + 2^40 bytes, masked; the server must not wait for (or allocate) it
  const hdr = Buffer.alloc(14);
  hdr[0] = 0x81;
  hdr[1] = 0x80 | 127;
  hdr.writeBigUInt64BE(2n ** 40n, 2);
  r.sendRaw(hdr);
  await expectFailed(r, 1009, 'huge announced length');
}));

test('a message just under limits.maxMessageBytes is accepted', withLogs(async () => {
  const r = await raw();
  const body = JSON.stringify({ type: 'bogus', pad: '' });
  const pad = 'p'.repeat(65536 - body.length - 100);
  r.sendText(JSON.stringify({ type: 'bogus', pad }));
  const m = await r.nextJson();
  assert.equal(m.type, 'error');
  r.destroy();
}));

const PROTOCOL_ERRORS = [
  ['reserved opcode 0x3', (r) => r.send({ opcode: 0x3, payload: Buffer.from('x') })],
  ['reserved control opcode 0xB', (r) => r.send({ opcode: 0xb })],
  ['RSV1 set without an extension', (r) => r.send({ opcode: OP.TEXT, rsv: 4, payload: Buffer.from('{}') })],
  ['RSV3 set', (r) => r.send({ opcode: OP.TEXT, rsv: 1, payload: Buffer.from('{}') })],
  ['fragmented ping', (r) => r.send({ opcode: OP.PING, fin: false, payload: Buffer.from('a') })],
  ['ping with 126-byte payload', (r) => r.send({ opcode: OP.PING, payload: Buffer.alloc(126, 0x61) })],
  ['continuation without a start', (r) => r.send({ opcode: OP.CONT, fin: true, payload: Buffer.from('{}') })],
  ['new text frame inside a fragmented message', (r) => {
    r.send({ opcode: OP.TEXT, fin: false, payload: Buffer.from('{"ty') });
    r.send({ opcode: OP.TEXT, fin: true, payload: Buffer.from('{}') });
  }],
  ['close with 1-byte payload', (r) => r.send({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) })],
  ['close with invalid code 999', (r) => { const p = Buffer.alloc(2); p.writeUInt16BE(999); r.send({ opcode: OP.CLOSE, payload: p }); }],
  ['close with reserved code 1005', (r) => { const p = Buffer.alloc(2); p.writeUInt16BE(1005); r.send({ opcode: OP.CLOSE, payload: p }); }],
];

for (const [what, act] of PROTOCOL_ERRORS) {
  test(`protocol error: ${what} → close 1002`, withLogs(async () => {
    const r = await raw();
    act(r);
    await expectFailed(r, 1002, what);
  }));
}

test('close with a reason in invalid UTF-8 → 1007', withLogs(async () => {
  const r = await raw();
  const p = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from([0xff, 0xfe])]);
  r.send({ opcode: OP.CLOSE, payload: p });
  const c = await r.expectClose();
  assert.ok([1002, 1007].includes(c.code), `close code ${c.code}`);
  assert.equal(await closedWithin(r.ended, 3000), true);
}));

test('close 1000 with a reason is echoed with 1000', withLogs(async () => {
  const r = await raw();
  r.sendClose(1000, 'done here');
  const c = await r.expectClose();
  assert.equal(c.code, 1000);
  assert.equal(await closedWithin(r.ended, 3000), true);
}));

test('close frame with no payload is answered and the TCP connection closed', withLogs(async () => {
  const r = await raw();
  r.send({ opcode: OP.CLOSE });
  const c = await r.expectClose();
  assert.ok(c.code === null || c.code === 1000, `close code ${c.code}`);
  assert.equal(await closedWithin(r.ended, 3000), true);
}));

test('a frame byte by byte is still one message', withLogs(async () => {
  const r = await raw();
  const bytes = encodeFrame({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify({ type: 'bytewise' })) });
  for (const b of bytes) {
    r.sendRaw(Buffer.from([b]));
    await sleep(2);
  }
  const m = await r.nextJson();
  assert.equal(m.type, 'error');
  r.destroy();
}));

test('many frames in one TCP write are all processed', withLogs(async () => {
  const r = await raw();
  const frames = [];
  for (let i = 0; i < 20; i++) frames.push(encodeFrame({ opcode: OP.TEXT, payload: Buffer.from(JSON.stringify({ type: `t${i}` })) }));
  frames.push(encodeFrame({ opcode: OP.PING, payload: Buffer.from('end') }));
  r.sendRaw(Buffer.concat(frames));
  for (let i = 0; i < 20; i++) {
    const m = await r.nextJson();
    assert.equal(m.type, 'error', `frame ${i}`);
  }
  const pong = await r.nextFrame();
  assert.equal(pong.opcode, OP.PONG);
  assert.equal(pong.payload.toString(), 'end');
  r.destroy();
}));

test('the node survives all of this and still delivers', withLogs(async () => {
  const c = await connectClient(node, { sessionId: 's-john', clientId: 'survivor' });
  await sleep(100);
  const p = await pushRequest(node, { serviceRequest: { alive: true }, clientIdPattern: 'survivor' });
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(p.body.responseMessages, [delivered('survivor', 's-john')]);
  assert.deepEqual(await c.next(), pushFrame(p.body.pushId, { alive: true }));
  await c.close();
  assert.equal(node.isRunning(), true);
}));

test('the strict ws client sees no error over many pushes of all sizes', withLogs(async () => {
  const clients = [];
  for (let i = 0; i < 4; i++) clients.push(await connectClient(node, { sessionId: 's-mary', clientId: `strict${i}` }));
  await sleep(50);
  const sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537, 200000];
  const ids = [];
  for (const s of sizes) {
    const p = await pushRequest(node, { serviceRequest: { s, d: 'z'.repeat(s) }, clientIdPattern: 'strict\\d' });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.body.summary.delivered, 4);
    ids.push(p.body.pushId);
  }
  for (const c of clients) {
    for (const [k, s] of sizes.entries()) {
      assert.deepEqual(await c.next(5000), pushFrame(ids[k], { s, d: 'z'.repeat(s) }));
    }
    const closeInfo = await c.close(1000);
    assert.equal(closeInfo.code, 1000);
    assert.deepEqual(c.errors, [], `${c.info.clientId}: ws reported an error`);
  }
}));

test('/echo (with --diagnostics) echoes text and binary messages unchanged', withLogs(async () => {
  const r = await tryConnect(node, null, { path: '/echo' });
  assert.equal(r.open, true, `echo refused: ${r.status} ${r.text}`);
  const ws = r.ws;
  const errors = [];
  ws.on('error', (e) => errors.push(e));
  const got = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => { got.push({ data: Buffer.from(data), isBinary }); for (const w of waiters.splice(0)) w(); });
  const nextMsg = async () => {
    const deadline = Date.now() + 3000;
    while (!got.length) {
      if (Date.now() > deadline) throw new Error('no echo');
      await new Promise((res) => { waiters.push(res); setTimeout(res, 100); });
    }
    return got.shift();
  };
  const cases = [
    ['héllo €', false],
    [Buffer.from([0, 1, 2, 255, 254]), true],
    ['', false],
    ['x'.repeat(60000), false],
    [Buffer.alloc(30000, 7), true],
  ];
  for (const [data, binary] of cases) {
    ws.send(data, { binary });
    const m = await nextMsg();
    assert.equal(m.isBinary, binary);
    assert.ok(m.data.equals(Buffer.from(data)), `echo of ${binary ? 'binary' : 'text'} ${String(data).length}`);
  }
  ws.close(1000);
  const code = await new Promise((res) => ws.once('close', res));
  assert.equal(code, 1000);
  assert.deepEqual(errors, []);
}));

test('/echo is not found without --diagnostics', withLogs(async () => {
  const plain = await startNode({ workers: 1 });
  const r = await tryConnect(plain, null, { path: '/echo' });
  if (r.open) r.ws.terminate();
  assert.equal(r.open, false);
  assert.equal(r.status, 404);
  await plain.stop();
}));


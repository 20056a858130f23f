// Graceful drain (issue 10, item 5): on SIGTERM a node stops accepting, keeps its
// clients while push requests wait for their reports (up to shutdownGraceMs), then says
// goodbye the way each protocol says it (WebSocket 1001, a last SSE `retry:`, an
// Engine.IO close packet so socket.io clients reconnect), and leaves queued device
// commands in the store for the next start.

import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import {
  startNode, cleanup, withLogs, baseConfig, sleep, SLOW, PUB_KEY, api, pushRequest,
  connectClient, waitForConnections, rawHttp,
} from './lib/harness.mjs';
import { sseSubscribe, closeAllSse } from './lib/sse.mjs';

const sockets = new Set();
after(async () => {
  for (const s of sockets) { try { s.io.reconnection(false); s.disconnect(); s.io.engine?.close(); } catch { /* ignore */ } }
  closeAllSse();
  await cleanup();
});

function sioConnect(node, opts) {
  const s = io(node.url + '/', { forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 200, timeout: 2000, ...opts });
  sockets.add(s);
  return new Promise((res, rej) => {
    s.once('connect', () => res(s));
    s.once('connect_error', rej);
  });
}

/** An Engine.IO WebSocket opened by hand: the packets and the close code are visible. */
function rawEio(node) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(`${node.wsUrl}/socket.io/?EIO=4&transport=websocket`);
    const got = [];
    let close = null;
    const closed = new Promise((r) => ws.on('close', (code) => { close = code; r(code); }));
    ws.on('message', (d) => {
      const t = d.toString();
      got.push(t);
      if (t.startsWith('0{')) ws.send('40');
      if (t.startsWith('40{')) res({ ws, got, closed, close: () => close });
    });
    ws.on('error', rej);
  });
}

describe('goodbyes', () => {
  test('SIGTERM: WebSocket 1001, SSE a last retry, socket.io "transport close" then reconnect attempts, Engine.IO close packet with 1001', withLogs(async () => {
    const node = await startNode({ workers: 2, config: baseConfig({ sse: { retryMs: 1000 }, channels: { subscribe: [{ channelPattern: '.*' }] } }) });
    const ws = await connectClient(node, { clientId: 'w1' });
    const sse = await sseSubscribe(node, '/sse?channel=news');
    assert.deepEqual(sse.retries, [1000]);
    const sioWs = await sioConnect(node, { transports: ['websocket'] });
    const sioPoll = await sioConnect(node, { transports: ['polling'] });
    const eio = await rawEio(node);
    await waitForConnections(node, 4);

    const reasons = {};
    const attempts = { ws: 0, poll: 0 };
    sioWs.on('disconnect', (r) => { reasons.ws = r; });
    sioPoll.on('disconnect', (r) => { reasons.poll = r; });
    sioWs.io.on('reconnect_attempt', () => { attempts.ws++; });
    sioPoll.io.on('reconnect_attempt', () => { attempts.poll++; });

    const t0 = Date.now();
    const exit = node.stop('SIGTERM', 15000);
    const wsClose = await Promise.race([ws.closed, sleep(5000).then(() => null)]);
    assert.equal(wsClose?.code, 1001);
    assert.equal(wsClose.reason, 'going away');

    await Promise.race([sse.ended, sleep(5000)]);
    assert.equal(sse.isEnded(), true, 'SSE stream not ended');
    assert.equal(sse.retries.length, 2, `retries: ${JSON.stringify(sse.retries)}`);
    assert.ok(sse.retries[1] >= 1000 && sse.retries[1] <= 2000, `final retry ${sse.retries[1]}`);

    assert.equal(await Promise.race([eio.closed, sleep(5000).then(() => null)]), 1001);
    assert.equal(eio.got.at(-1), '1', `last Engine.IO packet: ${eio.got.at(-1)}`);

    const info = await exit;
    assert.deepEqual({ code: info.code, signal: info.signal }, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 5000);
    for (let i = 0; i < 50 && !(attempts.ws && attempts.poll); i++) await sleep(100);
    assert.equal(reasons.ws, 'transport close');
    assert.equal(reasons.poll, 'transport close');
    assert.ok(attempts.ws >= 1 && attempts.poll >= 1, `socket.io clients try to reconnect: ${JSON.stringify(attempts)}`);
    for (const s of [sioWs, sioPoll]) { s.io.reconnection(false); s.disconnect(); }
  }));
});

describe('pending work', () => {
  test('a push request with awaitAcks in flight at SIGTERM gets its report, with the ack sent after the signal', withLogs(async () => {
    // one worker: every connection is on the worker that waits (another worker, with
    // nothing pending, would say goodbye to its connections at once)
    const node = await startNode({ workers: 1, config: baseConfig({ shutdownGraceMs: 5000 }) });
    const c = await connectClient(node, { clientId: 'acker' });
    await waitForConnections(node, 1);
    const keep = await rawHttp(node); // a keep-alive connection from before the signal
    await keep.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await keep.responses(1);
    const pending = pushRequest(node, { serviceRequest: { n: 1 }, clientIdPattern: 'acker', options: { awaitAcks: true, timeoutMs: 10000 } });
    const push = await c.next();
    assert.equal(push.type, 'push');
    const exit = node.stop('SIGTERM', 15000);
    await sleep(400 * SLOW);
    // still connected while the report waits: the ack still counts
    assert.equal(c.closeInfo, null, 'client cut before the report was complete');
    // draining: no new subscriber, even on a connection from before the signal
    await keep.write('GET /sse?channel=news HTTP/1.1\r\nHost: x\r\n\r\n');
    const [, late] = await keep.responses(2);
    assert.equal(late.status, 503);
    assert.deepEqual(late.body, { error: 'the node is shutting down' });
    c.send({ type: 'response', id: push.id, successful: true, message: 'done after SIGTERM' });
    const r = await pending;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.summary.acknowledged, 1);
    assert.equal(r.body.responseMessages[0].message, 'done after SIGTERM');
    assert.equal((await Promise.race([c.closed, sleep(5000).then(() => null)]))?.code, 1001);
    const info = await exit;
    assert.equal(info.code, 0);
  }));

  test('a second SIGTERM during the drain is ignored: the drain finishes and the exit is 0', withLogs(async () => {
    const node = await startNode({ workers: 2, config: baseConfig({ shutdownGraceMs: 1500 }) });
    const c = await connectClient(node, { clientId: 'twice' });
    await waitForConnections(node, 1);
    const pending = pushRequest(node, { serviceRequest: { n: 3 }, clientIdPattern: 'twice', options: { awaitAcks: true, timeoutMs: 30000 } });
    const push = await c.next();
    node.proc.kill('SIGTERM');
    await sleep(300);
    node.proc.kill('SIGTERM');
    await sleep(200);
    assert.equal(node.isRunning(), true, 'the second SIGTERM killed the node');
    c.send({ type: 'response', id: push.id, successful: true, message: 'ok' });
    assert.equal((await pending).body.summary.acknowledged, 1);
    const info = await node.exited;
    assert.deepEqual({ code: info.code, signal: info.signal }, { code: 0, signal: null });
  }));

  test('shutdownGraceMs bounds the wait: a client that never acks is cut and reported', withLogs(async () => {
    const node = await startNode({ workers: 1, config: baseConfig({ shutdownGraceMs: 800 }) });
    const c = await connectClient(node, { clientId: 'silent' });
    await waitForConnections(node, 1);
    const pending = pushRequest(node, { serviceRequest: { n: 2 }, clientIdPattern: 'silent', options: { awaitAcks: true, timeoutMs: 30000 } });
    await c.next();
    const t0 = Date.now();
    const exit = node.stop('SIGTERM', 15000);
    const r = await pending;
    const took = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.summary.acknowledged, 0);
    assert.equal(r.body.responseMessages[0].successful, false);
    assert.equal(r.body.responseMessages[0].message, 'closed');
    assert.ok(took >= 600 && took < 3000 * SLOW, `report after ${took} ms (grace 800 ms)`);
    assert.equal((await c.closed).code, 1001);
    assert.equal((await exit).code, 0);
  }));

  test('a device command enqueued and not yet polled survives the restart', withLogs(async () => {
    const node = await startNode({ workers: 1 });
    const dataDir = join(node.dir, 'data');
    const q = await api(node, 'POST', '/api/devices/4242/commands', { key: PUB_KEY, body: { verb: 'POST', endpoint: '/reboot', body: 'now' } });
    assert.equal(q.status, 201, q.text);
    const id = q.body.id;
    const info = await node.stop('SIGTERM', 15000);
    assert.equal(info.code, 0);
    const again = await startNode({ workers: 1, extraArgs: ['--data-dir', dataDir] });
    const st = await api(again, 'GET', `/api/devices/4242/commands/${id}`, { key: PUB_KEY });
    assert.equal(st.status, 200, st.text);
    assert.equal(st.body.status, 'queued');
    const poll = await api(again, 'GET', '/push?deviceId=4242');
    assert.equal(poll.status, 200);
    assert.equal(poll.body.endpoint, '/reboot');
    assert.equal(poll.body.body, 'now');
  }));
});

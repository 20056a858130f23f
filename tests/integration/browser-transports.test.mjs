// Every transport from a page the node serves, in a real browser (Debian chromium driven
// by playwright-core): the native WebSocket (a push request answered with a client
// response that shows in the report), the native EventSource (channel pushes, then a
// cut connection and the browser's own reconnect with Last-Event-ID: nothing lost,
// nothing twice), and the browser build of socket.io-client (polling, then the upgrade
// to WebSocket, then acks both ways).
//
// The page and socket.io.min.js are served by the node itself from the console's
// test-only files route (GET /console/files/{name}, "console": {"filesDir": DIR}). The browser
// reaches the node through a TCP relay of this test, so the test can cut the
// EventSource's connection and hold its reconnect while it pushes.
//
// VARIANTS lists the schemes the suite runs over: http, and https on the node's TLS
// listener; the page derives ws:/wss: from its own origin and the relay passes TLS
// through untouched.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startNode, cleanup, withLogs, api, baseConfig, pushRequest, waitForConnections, sleep, SLOW, PUB_KEY,
} from './lib/harness.mjs';
import { launch, watchErrors, screenshotOnFailure } from './lib/browser.mjs';
import { makeCa, makeServerCert, httpsFetch } from './lib/tls.mjs';

// not in the package's exports map: found by path
const SIO_MIN = fileURLToPath(new URL('./node_modules/socket.io-client/dist/socket.io.min.js', import.meta.url));
const T = 10000 * SLOW;

// https: a certificate made at test time; the page, wss: and the socket.io upgrade all
// go over the node's TLS listener (through the relay, which passes TLS through).
const certDir = mkdtempSync(join(tmpdir(), 'pushgate-browser-tls-'));
const ca = makeCa(certDir);
const cert = makeServerCert(certDir, ca, 'server');
const VARIANTS = [
  { name: 'http', scheme: 'http', config: {}, browser: {} },
  {
    name: 'https',
    scheme: 'https',
    config: { tls: { cert: cert.certPath, key: cert.keyPath } },
    browser: { ignoreHTTPSErrors: true },
    tls: { fetch: httpsFetch(ca.cert) },
  },
];

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>transports</title>
<link rel="icon" href="data:,"><script src="socket.io.min.js"></script></head><body><p id="ready">ready</p></body></html>`;

/** A TCP relay to the node: cut() destroys every relayed connection; hold() parks new
 * ones (unforwarded) until release(). seen holds the first bytes of each connection. */
async function startRelay(targetPort) {
  const pairs = new Set();
  const sockets = new Set();
  let held = null;
  const seen = [];
  const forward = (client, first) => {
    const up = net.connect(targetPort, '127.0.0.1');
    const pair = { client, up };
    pairs.add(pair);
    const drop = () => { pairs.delete(pair); client.destroy(); up.destroy(); };
    client.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    if (first.length) up.write(first);
    client.pipe(up);
    up.pipe(client);
  };
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.once('data', (d) => {
      client.pause();
      seen.push(d.toString('latin1'));
      if (held) held.push([client, d]);
      else { forward(client, d); client.resume(); }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    seen,
    cut() { for (const p of pairs) { p.client.destroy(); p.up.destroy(); } pairs.clear(); },
    hold() { held = []; },
    release() { const h = held || []; held = null; for (const [c, d] of h) { forward(c, d); c.resume(); } },
    close() { this.cut(); for (const s of sockets) s.destroy(); server.close(); server.unref(); },
  };
}

after(async () => { await cleanup(); });

for (const v of VARIANTS.filter((x) => !process.env.ONLY_VARIANT || x.name === process.env.ONLY_VARIANT)) {
  describe(`browser transports over ${v.name}`, { timeout: 60000 * SLOW }, () => {
    let node, relay, browser, page, origin;
    before(async () => {
      const dir = mkdtempSync(join(tmpdir(), 'pushgate-files-'));
      writeFileSync(join(dir, 'transports.html'), PAGE);
      copyFileSync(SIO_MIN, join(dir, 'socket.io.min.js'));
      const cfg = baseConfig({ console: { enabled: true, filesDir: dir }, sse: { retryMs: 200, heartbeatMs: 15000 }, ...v.config });
      node = await startNode({ config: cfg, ...(v.tls ? { tls: v.tls } : {}) });
      relay = await startRelay(node.port);
      origin = `${v.scheme}://127.0.0.1:${relay.port}`;
      browser = await launch(v.browser);
      page = watchErrors(await browser.context.newPage());
      await page.goto(`${origin}/console/files/transports.html`);
      await page.locator('#ready').waitFor({ timeout: T });
      assert.equal(await page.evaluate(() => typeof io), 'function', 'socket.io-client loaded from the node');
    });
    after(async () => {
      if (browser) await browser.close();
      if (relay) relay.close();
    });
    const step = (name, fn) => test(name, withLogs(() => screenshotOnFailure(page, `transports-${v.name}-${name}`, fn)));

    test('the files route: flat names only, nothing outside filesDir', withLogs(async () => {
      for (const p of ['/console/files/..%2Fconfig.json', '/console/files/.hidden', '/console/files/nope.html', '/console/files/']) {
        assert.equal((await api(node, 'GET', p)).status, 404, p);
      }
      const r = await (node.fetch || fetch)(`${node.url}/console/files/socket.io.min.js`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /^text\/javascript/);
      assert.equal((await r.text()).length, readFileSync(SIO_MIN, 'utf8').length);
    }));

    step('native WebSocket: a push request arrives; the page\'s response frame is in the report', async () => {
      await page.evaluate(() => new Promise((resolve, reject) => {
        const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
        const ws = new WebSocket(`${scheme}://${location.host}/websocket?sessionId=s-john&clientId=browser.ws`);
        window.wsGot = [];
        ws.onmessage = (e) => {
          const f = JSON.parse(e.data);
          window.wsGot.push(f);
          if (f.type === 'push') ws.send(JSON.stringify({ type: 'response', id: f.id, successful: true, message: `browser saw ${f.payload.n}` }));
        };
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error('websocket error'));
      }));
      const conns = await waitForConnections(node, 1, 3000 * SLOW);
      assert.deepEqual(conns.map((c) => [c.clientId, c.transport]), [['browser.ws', 'websocket']]);
      const r = await pushRequest(node, {
        serviceRequest: { n: 7 }, clientIdPattern: 'browser\\.ws', options: { awaitAcks: true, timeoutMs: 5000 * SLOW },
      });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.successful, m.message]),
        [['browser.ws', true, 'browser saw 7']]);
      assert.equal(r.body.summary.acknowledged, 1);
      const got = await page.evaluate(() => window.wsGot);
      assert.deepEqual(got, [{ type: 'push', id: r.body.pushId, event: null, channel: null, payload: { n: 7 } }]);
    });

    step('native EventSource: channel pushes; the connection is cut; the browser reconnects with Last-Event-ID and gets what it missed, once', async () => {
      const push = async (n) => {
        const r = await api(node, 'POST', '/api/push', { key: PUB_KEY, body: { channel: 'news', event: 'headline', data: { n } } });
        assert.equal(r.status, 200, r.text);
        return r.headers.get('x-push-id');
      };
      await page.evaluate(() => {
        window.sseGot = [];
        window.sseOpens = 0;
        const es = new EventSource('/sse?channel=news&clientId=browser.sse');
        es.onopen = () => { window.sseOpens++; };
        es.onmessage = (e) => window.sseGot.push({ id: e.lastEventId, data: JSON.parse(e.data) });
        window.es = es;
      });
      await page.waitForFunction(() => window.sseOpens === 1, null, { timeout: T });
      const id1 = await push(1);
      await page.waitForFunction(() => window.sseGot.length === 1, null, { timeout: T });
      // cut the connection and hold the reconnect while two pushes go out
      relay.hold();
      const before = relay.seen.length;
      relay.cut();
      await waitForConnections(node, 0, 3000 * SLOW);
      const id2 = await push(2);
      const id3 = await push(3);
      await sleep(300); // the browser's retry (200 ms) is parked in the relay
      relay.release();
      await page.waitForFunction(() => window.sseOpens === 2 && window.sseGot.length === 3, null, { timeout: T });
      const id4 = await push(4);
      await page.waitForFunction(() => window.sseGot.length === 4, null, { timeout: T });
      await sleep(150);
      const got = await page.evaluate(() => { window.es.close(); return window.sseGot; });
      assert.deepEqual(got.map((g) => g.id), [id1, id2, id3, id4]);
      assert.deepEqual(got.map((g) => g.data.data.n), [1, 2, 3, 4]);
      assert.deepEqual(got.map((g) => [g.data.channel, g.data.event]), Array(4).fill(['news', 'headline']));
      // the cut itself may show as a failed load (over TLS: ERR_CONNECTION_CLOSED); it was
      // meant, so it is not one of the page's errors
      for (let i = page.errors.length - 1; i >= 0; i--) {
        if (/net::ERR_CONNECTION_(CLOSED|RESET)/.test(page.errors[i])) page.errors.splice(i, 1);
      }
      if (v.scheme === 'http') {
        // in the clear, the relay also sees the header itself (over TLS, pushes 2 and 3
        // arriving after the reconnect are what shows it was sent)
        const reconnect = relay.seen.slice(before).find((s) => s.startsWith('GET /sse?'));
        assert.ok(reconnect, 'the browser reconnected by itself');
        assert.match(reconnect, new RegExp(`\\r\\nlast-event-id: ${id1}\\r\\n`, 'i'));
      }
    });

    step('socket.io-client (browser build): polling, then the upgrade to WebSocket, then acks both ways', async () => {
      await page.evaluate(() => new Promise((resolve, reject) => {
        window.sio = { transports: [], pushes: [] };
        const s = io('/', { transports: ['polling', 'websocket'], reconnection: false, auth: { token: 's-john', clientId: 'browser.sio' } });
        window.sioSocket = s;
        // the upgrade may complete before the namespace's CONNECT arrives: both are
        // watched from the engine's open, and the step goes on once both happened
        let connected = false;
        let upgraded = false;
        s.io.on('open', () => {
          window.sio.transports.push(s.io.engine.transport.name);
          s.io.engine.once('upgrade', (t) => {
            window.sio.transports.push(t.name);
            upgraded = true;
            if (connected) resolve();
          });
        });
        s.on('connect', () => {
          connected = true;
          if (upgraded) resolve();
        });
        s.on('connect_error', (e) => reject(new Error(e.message)));
        s.on('push', (payload, pushId, ack) => { window.sio.pushes.push({ payload, pushId }); ack({ successful: true, message: `sio saw ${payload.n}` }); });
      }));
      assert.deepEqual(await page.evaluate(() => window.sio.transports), ['polling', 'websocket']);
      const sub = await page.evaluate(() => window.sioSocket.timeout(5000).emitWithAck('subscribe', ['news']));
      assert.deepEqual(sub, { channels: ['news'] });
      const conns = await waitForConnections(node, 1, 3000 * SLOW);
      assert.deepEqual(conns.map((c) => c.clientId), ['browser.sio']);
      const r = await pushRequest(node, {
        serviceRequest: { n: 9 }, clientIdPattern: 'browser\\.sio', options: { awaitAcks: true, timeoutMs: 5000 * SLOW },
      });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.responseMessages.map((m) => [m.clientId, m.successful, m.message]),
        [['browser.sio', true, 'sio saw 9']]);
      assert.deepEqual(await page.evaluate(() => window.sio.pushes), [{ payload: { n: 9 }, pushId: r.body.pushId }]);
      await page.evaluate(() => window.sioSocket.disconnect());
      assert.deepEqual(page.errors, []);
    });
  });
}

// The operator console (GET /console) in a real browser (Debian chromium driven by
// playwright-core): sign in with the admin key, watch a WebSocket client of this test
// appear, filter clients by the push patterns, send a push request the client answers
// and read the report, edit a stream (a bad field shows its error at the field), and
// enqueue a device command that a device simulated here executes. Also, without a
// browser: the asset route (off by default, content types, ETag/304, CSP) and the admin
// stats stream. A failing browser step saves a screenshot (its path is printed).

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, api, baseConfig, connectClient, pushRequest, sleep, SLOW,
  ADMIN_KEY, PUB_KEY,
} from './lib/harness.mjs';
import { DeviceSim } from './lib/device-sim.mjs';
import { launch, watchErrors, screenshotOnFailure } from './lib/browser.mjs';

const T = 10000 * SLOW; // browser waits

function consoleConfig() {
  const cfg = baseConfig({
    console: { enabled: true },
    streams: {
      t1: {
        'app-health': {
          name: 'Application Health', publicSubscribe: true,
          events: [{ namespace: 'status-service', name: 'health-check-started' }],
        },
      },
    },
  });
  cfg.sessions.push({ sessionId: 's-t1', user: 'tina', roles: ['viewer'], tenant: 't1' });
  return cfg;
}

/** Reads one `event: stats` from the admin stream; resolves its data parsed. */
async function readStats(node, n = 1, key = ADMIN_KEY) {
  const ctl = new AbortController();
  const res = await fetch(`${node.url}/api/admin/stats/stream`, { headers: { authorization: `Bearer ${key}` }, signal: ctl.signal });
  if (res.status !== 200) return { status: res.status, body: await res.text() };
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const events = [];
  const deadline = Date.now() + 5000 * SLOW + n * 1500;
  while (events.length < n && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const m = block.match(/^event: stats\ndata: (.*)$/m);
      if (m) events.push(JSON.parse(m[1]));
    }
  }
  ctl.abort();
  return { status: res.status, headers: res.headers, events };
}

after(async () => { await cleanup(); });

describe('console assets and admin stats (no browser)', { timeout: 60000 * SLOW }, () => {
  test('off unless console.enabled: 404', withLogs(async () => {
    const node = await startNode();
    for (const p of ['/console', '/console/app.js']) {
      const r = await api(node, 'GET', p);
      assert.equal(r.status, 404, p);
    }
    await node.stop();
  }));

  test('page and files: content types, ETag and 304, CSP; unknown file 404', withLogs(async () => {
    const node = await startNode({ config: consoleConfig() });
    const want = { '/console': 'text/html', '/console/': 'text/html', '/console/index.html': 'text/html', '/console/app.js': 'text/javascript', '/console/style.css': 'text/css' };
    for (const [p, type] of Object.entries(want)) {
      const r = await fetch(node.url + p);
      const text = await r.text();
      assert.equal(r.status, 200, p);
      assert.ok(r.headers.get('content-type').startsWith(type), `${p}: ${r.headers.get('content-type')}`);
      assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
      assert.equal(r.headers.get('cache-control'), 'no-cache');
      const etag = r.headers.get('etag');
      assert.match(etag, /^"[0-9a-f]{20}"$/);
      assert.ok(text.length > 100, p);
      const again = await fetch(node.url + p, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304, p);
      assert.equal((await again.text()).length, 0);
      assert.equal(again.headers.get('etag'), etag);
    }
    const html = await (await fetch(node.url + '/console')).text();
    assert.match(html, /<script src="\/console\/app.js" defer><\/script>/);
    assert.doesNotMatch(html, /<script>|https?:\/\//, 'no inline script, nothing from elsewhere');
    assert.equal((await fetch(node.url + '/console/nope.js')).status, 404);
    assert.equal((await fetch(node.url + '/console/files/index.html')).status, 404, 'no filesDir: no files route');
    await node.stop();
  }));

  test('GET /api/admin/stats/stream: admin only; once a second: nodes, clients by transport and tenant, rates, device queue', withLogs(async () => {
    const node = await startNode({ config: consoleConfig(), workers: 2 });
    assert.equal((await readStats(node, 1, PUB_KEY)).status, 403);
    const a = await connectClient(node, { sessionId: 's-john', clientId: 'stats.a' });
    const b = await connectClient(node, { sessionId: 's-t1', clientId: 'stats.b' });
    const t0 = Date.now();
    const first = await readStats(node, 1);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'text/event-stream');
    const s = first.events[0];
    assert.equal(s.health, 'ready');
    assert.equal(s.nodeId, 'n1');
    assert.deepEqual(s.nodes.map((n) => [n.nodeId, n.workers]), [['n1', 2]]);
    assert.deepEqual(s.connections.byTransport, { websocket: 2 });
    assert.deepEqual(s.connections.byTenant, { '': 1, t1: 1 });
    assert.equal(s.connections.sockets.websocket, 2);
    assert.deepEqual(s.devices, { queued: 0, inFlight: 0 });
    assert.equal(s.slowConsumerCloses, 0);
    assert.ok(Date.now() - t0 < 1000 * SLOW, 'the first event comes at once');
    // a stream of three: rates follow the pushes made meanwhile
    const p = readStats(node, 3);
    await sleep(300);
    for (let i = 0; i < 10; i++) assert.equal((await pushRequest(node, { serviceRequest: { i } })).status, 200);
    const { events } = await p;
    assert.equal(events.length, 3);
    assert.ok(events[2].at - events[0].at >= 1800, 'about a second apart');
    const delivered = events[2].deliveries.ok - events[0].deliveries.ok;
    assert.equal(delivered, 20);
    assert.equal(events[2].pushes.total - events[0].pushes.total, 10);
    const rateSum = events.slice(1).reduce((x, e) => x + e.deliveries.perSecond, 0);
    assert.ok(rateSum > 5, `deliveries/s reflected: ${events.map((e) => e.deliveries.perSecond)}`);
    a.close();
    b.close();
    await node.stop();
  }));
});

describe('the console in Chromium', { timeout: 90000 * SLOW }, () => {
  let node, browser, page, john, mary;
  before(async () => {
    node = await startNode({ config: consoleConfig() });
    browser = await launch();
    page = watchErrors(await browser.context.newPage());
    john = await connectClient(node, { sessionId: 's-john', clientId: 'tribefire-control-center.1' });
    mary = await connectClient(node, { sessionId: 's-mary', clientId: 'tribefire-explorer.2' });
  });
  after(async () => {
    if (browser) await browser.close();
  });
  const step = (name, fn) => test(name, withLogs(() => screenshotOnFailure(page, `console-${name}`, fn)));

  step('sign in with the admin key: kept in sessionStorage, never in the URL; the overview goes live', async () => {
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${node.url}/console`);
    await page.getByLabel('Admin API key').fill('wrong-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#sign-in-error').filter({ hasText: 'not an admin key' }).waitFor({ timeout: T });
    await page.getByLabel('Admin API key').fill(ADMIN_KEY);
    await page.keyboard.press('Enter');
    await page.locator('#live').filter({ hasText: 'live' }).waitFor({ timeout: T });
    await page.locator('#st-clients').filter({ hasText: /^2$/ }).waitFor({ timeout: T });
    assert.equal(await page.locator('#st-health').textContent(), 'ready');
    assert.equal(await page.locator('#nodes-table tbody td').first().textContent(), 'n1');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('pushgate.adminKey')), ADMIN_KEY);
    assert.ok(requests.length > 3);
    for (const u of requests) assert.ok(!u.includes(ADMIN_KEY), `key in a URL: ${u}`);
    assert.deepEqual(page.errors.filter((e) => !/status of 403/.test(e)), []);
  });

  step('clients: a new client appears; a pattern shows exactly whom a push would reach; a bad pattern is shown at its field', async () => {
    await page.getByRole('link', { name: 'Clients' }).click();
    const rows = page.locator('#clients-table tbody tr');
    await rows.filter({ hasText: 'tribefire-explorer.2' }).waitFor({ timeout: T });
    const late = await connectClient(node, { sessionId: 's-t1', clientId: 'late.3' });
    // the table refreshes by itself every 2 s
    const row = rows.filter({ hasText: 'late.3' });
    await row.waitFor({ timeout: T });
    assert.deepEqual(await row.locator('td').allTextContents().then((c) => c.slice(0, 7)),
      ['late.3', 's-t1', 'tina', 'viewer, $user-tina', 't1', 'websocket', 'n1']);
    const view = page.locator('#clients');
    await view.getByLabel('clientIdPattern').fill('tribefire-.*');
    await view.getByLabel('rolePattern').fill('\\$user-john');
    await page.locator('#clients-count').filter({ hasText: /^1 client matches/ }).waitFor({ timeout: T });
    assert.deepEqual(await rows.locator('td:first-child').allTextContents(), ['tribefire-control-center.1']);
    await view.getByLabel('rolePattern').fill('(');
    await page.locator('#cl-role-err').filter({ hasText: 'rolePattern: ' }).waitFor({ timeout: T });
    assert.equal(await view.getByLabel('rolePattern').getAttribute('aria-invalid'), 'true');
    await view.getByLabel('rolePattern').fill('\\$user-john');
    await page.locator('#clients-count').filter({ hasText: /^1 client matches/ }).waitFor({ timeout: T });
    await late.close();
  });

  step('compose: the patterns carried over, a push request with acks; the client answers; the report shows it', async () => {
    await page.getByRole('button', { name: 'Compose a push to these' }).click();
    assert.equal(await page.locator('#pr-client').inputValue(), 'tribefire-.*');
    // invalid JSON is caught before sending
    await page.getByLabel('serviceRequest (JSON object)').fill('{"message": ');
    await page.getByRole('button', { name: 'Send push request' }).click();
    await page.locator('#pr-payload-err').filter({ hasText: 'not valid JSON' }).waitFor({ timeout: T });
    await page.getByLabel('serviceRequest (JSON object)').fill('{"_type": "Notify", "message": "from the console"}');
    await page.getByLabel('await acks').check();
    await page.getByLabel('timeout (ms)').fill('3000');
    await page.getByRole('button', { name: 'Send push request' }).click();
    const frame = await john.next(T);
    assert.equal(frame.type, 'push');
    assert.deepEqual(frame.payload, { _type: 'Notify', message: 'from the console' });
    john.send({ type: 'response', id: frame.id, successful: true, message: 'seen by john' });
    await page.locator('#report-table tbody tr').first().waitFor({ timeout: T });
    assert.deepEqual(await page.locator('#report-table tbody tr').allInnerTexts().then((r) => r.map((x) => x.split('\t'))),
      [['tribefire-control-center.1', 's-john', 'n1', 'yes', 'seen by john']]);
    assert.match(await page.locator('#report-summary').textContent(), /matched 1, delivered 1, failed 0, acknowledged 1, nodes 1/);
    assert.equal(await page.locator('#report-missing').textContent(), 'nodesMissing: none');
    assert.equal(await page.locator('#report-id').textContent(), frame.id);
    await mary.expectNone(200);
  });

  step('compose: a channel push reaches a subscriber of the channel', async () => {
    john.send({ type: 'subscribe', channels: ['ops.alerts'] });
    assert.deepEqual(await john.next(T), { type: 'subscribed', channels: ['ops.alerts'] });
    const form = page.locator('#channel-form');
    await form.getByRole('button', { name: 'Send channel push' }).click();
    await page.locator('#ch-channel-err').filter({ hasText: 'channel is required' }).waitFor({ timeout: T });
    await form.getByLabel('channel').fill('ops.alerts');
    await form.getByLabel('event').fill('disk-full');
    await form.getByLabel('data (JSON)').fill('{"host": "db1"}');
    await form.getByRole('button', { name: 'Send channel push' }).click();
    const f = await john.next(T);
    assert.deepEqual([f.type, f.channel, f.event, f.payload], ['push', 'ops.alerts', 'disk-full', { host: 'db1' }]);
    await page.locator('#ch-result').filter({ hasText: `Sent push ${f.id}: reached 1 subscriber.` }).waitFor({ timeout: T });
  });

  step('streams: listed for the tenant, edited, a bad field shows its error at the field', async () => {
    await page.getByRole('link', { name: 'Streams' }).click();
    await page.getByLabel('Tenant').fill('t1');
    await page.getByRole('button', { name: 'Load' }).click();
    const form = page.locator('form[data-stream="app-health"]');
    await form.waitFor({ timeout: T });
    assert.equal(await form.getByLabel('name', { exact: true }).inputValue(), 'Application Health');
    await form.getByLabel('name', { exact: true }).fill('App Health (edited)');
    await form.getByLabel('subscriberRoles (comma-separated)').fill('ops, viewer');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.locator('#streams-status').filter({ hasText: 'Saved stream app-health' }).waitFor({ timeout: T });
    const saved = await api(node, 'GET', '/configuration/v2/configuration/platform/push-service?tenantId=t1', { key: ADMIN_KEY });
    assert.equal(saved.body['app-health'].name, 'App Health (edited)');
    assert.deepEqual(saved.body['app-health'].subscriberRoles, ['ops', 'viewer']);
    const form2 = page.locator('form[data-stream="app-health"]');
    await form2.getByLabel(/^events/).fill('[{"namespace": "", "name": "x"}]');
    await form2.getByRole('button', { name: 'Save' }).click();
    const err = form2.locator('#sf-app-health-events-err');
    await err.filter({ hasText: 'update.app-health.events[0].namespace must be a non-empty string' }).waitFor({ timeout: T });
    assert.equal(await form2.getByLabel(/^events/).getAttribute('aria-invalid'), 'true');
    assert.ok(await form2.getByLabel(/^events/).evaluate((e) => e === document.activeElement), 'focus moves to the bad field');
    const after = await api(node, 'GET', '/configuration/v2/configuration/platform/push-service?tenantId=t1', { key: ADMIN_KEY });
    assert.equal(after.body['app-health'].events[0].namespace, 'status-service', 'refused whole');
  });

  step('devices: enqueue a command; the simulated device executes it; status and result show', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByLabel('deviceId').fill('4242');
    await page.getByLabel('endpoint').fill('load_objects');
    await page.getByLabel('body (JSON, optional)').fill('{"object": "users"}');
    await page.getByRole('button', { name: 'Enqueue' }).click();
    await page.locator('#cmd-detail dd[data-k="status"]').filter({ hasText: 'queued' }).waitFor({ timeout: T });
    await page.locator('#devices-table tbody tr').filter({ hasText: '4242' }).waitFor({ timeout: T });
    const dev = new DeviceSim(node, 4242, { execute: (c) => ({ response: { users: 3, got: c.body } }) });
    const done = await dev.drain();
    assert.equal(done.length, 1);
    assert.equal(done[0].endpoint, 'load_objects');
    await page.locator('#cmd-detail dd[data-k="status"]').filter({ hasText: 'done' }).waitFor({ timeout: T });
    assert.equal(await page.locator('#cmd-detail dd[data-k="response"]').textContent(), '{"users":3,"got":{"object":"users"}}');
    const cmdRow = page.locator('#commands-table tbody tr').first();
    await cmdRow.waitFor({ timeout: T });
    assert.match(await cmdRow.innerText(), /done/);
  });

  step('keyboard: Tab reaches the tabs in order with a visible focus ring; sign out forgets the key', async () => {
    await page.locator('#tab-overview').focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-clients');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.equal(outline, 'solid');
    await page.keyboard.press('Enter');
    await page.locator('#clients').waitFor({ state: 'visible', timeout: T });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin API key').waitFor({ timeout: T });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('pushgate.adminKey')), null);
    assert.deepEqual(page.errors.filter((e) => !/status of 4\d\d/.test(e)), []);
  });

  step('phone width (390 px): nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByLabel('Admin API key').fill(ADMIN_KEY);
    await page.keyboard.press('Enter');
    for (const v of ['overview', 'clients', 'compose', 'streams', 'devices']) {
      await page.locator(`#tab-${v}`).click();
      await page.locator(`#${v}`).waitFor({ state: 'visible', timeout: T });
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(w <= 390, `${v}: page is ${w} px wide`);
    }
  });
});

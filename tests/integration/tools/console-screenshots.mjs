// Screenshots of the console at laptop (1280 px) and phone (390 px) widths, for a
// person to look at: node tests/integration/tools/console-screenshots.mjs [OUTDIR]
// (default /tmp). Starts a node with sample streams, a client and a device.
const OUT = process.argv[2] || '/tmp';
import { startNode, baseConfig, connectClient, cleanup, ADMIN_KEY, sleep } from '../lib/harness.mjs';
import { launch } from '../lib/browser.mjs';
import { DeviceSim, enqueue } from '../lib/device-sim.mjs';
const cfg = baseConfig({ console: { enabled: true }, streams: { t1: { 'app-health': { name: 'Application Health', publicSubscribe: true, events: [{ namespace: 'status-service', name: 'health-check-started', map: { app: 'payload.application.name' } }] }, ops: { name: 'Ops', subscriberRoles: ['ops'], events: [{ namespace: 'a', name: 'b' }] } } } });
const node = await startNode({ config: cfg });
await connectClient(node, { sessionId: 's-john', clientId: 'tribefire-control-center.1' });
await enqueue(node, 42, { endpoint: 'load_objects', body: { object: 'users' } });
await enqueue(node, 42, { endpoint: 'reboot' });
await new DeviceSim(node, 42).step();
const b = await launch();
for (const [w, h] of [[1280, 900], [390, 844]]) {
  const page = await b.context.newPage();
  page.on('pageerror', (e) => console.log('pageerror', e.message));
  await page.setViewportSize({ width: w, height: h });
  await page.goto(node.url + '/console');
  await page.fill('#api-key', ADMIN_KEY); await page.keyboard.press('Enter');
  await sleep(800);
  await page.click('#tab-streams'); await page.fill('#st-tenant', 't1'); await page.click('#tenant-form button[type=submit]'); await sleep(400);
  await page.fill('#sf-ops-events', '[{"namespace": ""}]'); await page.click('form[data-stream="ops"] button[type=submit]'); await sleep(400);
  await page.screenshot({ path: `${OUT}/streams-${w}.png`, fullPage: true });
  await page.click('#tab-devices'); await sleep(400);
  await page.click('#devices-table button'); await sleep(400);
  await page.screenshot({ path: `${OUT}/devices-${w}.png`, fullPage: true });
  await page.click('#tab-compose'); await page.click('#pr-send'); await sleep(400);
  await page.screenshot({ path: `${OUT}/compose-${w}.png`, fullPage: true });
  await page.close();
}
await b.close(); await cleanup();
console.log(`screenshots in ${OUT}: {streams,devices,compose}-{1280,390}.png`);
process.exit(0);

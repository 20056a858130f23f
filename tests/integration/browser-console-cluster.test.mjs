// The console's Clients view over a cluster (issue 11, "merged over the cluster"), in a
// real browser (Debian chromium driven by playwright-core): two nodes on one Redis, the
// console on n1 lists a client connected to n2 with node n2 (and n1's own client with
// n1), and its overview counts both nodes' clients; after kill -9 of n2 both views name
// it in nodesMissing.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { cleanup, withLogs, baseConfig, connectClient, SLOW, ADMIN_KEY } from './lib/harness.mjs';
import { startRedis, startClusterNode, waitMembers } from './lib/cluster.mjs';
import { launch, watchErrors, screenshotOnFailure } from './lib/browser.mjs';

const T = 10000 * SLOW;

describe('the console\'s Clients view over a cluster', { timeout: 60000 * SLOW }, () => {
  let redis, n1, n2, browser, page;
  before(async () => {
    redis = await startRedis();
    const config = baseConfig({ applicationId: 'console-cluster', console: { enabled: true } });
    [n1, n2] = await Promise.all(['n1', 'n2'].map((id) => startClusterNode(redis, id, { config, workers: 1, nats: null })));
    await waitMembers([n1, n2], ['n1', 'n2']);
    browser = await launch();
    page = watchErrors(await browser.context.newPage());
  });
  after(async () => {
    if (browser) await browser.close();
    try {
      await cleanup();
    } finally {
      await redis?.stop();
    }
  });

  test('rows from both nodes with their node; a node killed shows in nodesMissing', withLogs(() => screenshotOnFailure(page, 'console-cluster-clients', async () => {
    const here = await connectClient(n1, { sessionId: 's-john', clientId: 'here.1' });
    const there = await connectClient(n2, { sessionId: 's-mary', clientId: 'there.2' });
    await page.goto(`${n1.url}/console`);
    await page.getByLabel('Admin API key').fill(ADMIN_KEY);
    await page.keyboard.press('Enter');
    // the overview's live counts cover both nodes
    await page.locator('#st-clients').filter({ hasText: /^2$/ }).waitFor({ timeout: T });
    assert.deepEqual(await page.locator('#transport-table tbody td').allTextContents(), ['websocket', '2']);
    assert.equal(await page.locator('#stats-missing').isHidden(), true);
    await page.getByRole('link', { name: 'Clients' }).click();
    const rows = page.locator('#clients-table tbody tr');
    const row = rows.filter({ hasText: 'there.2' });
    await row.waitFor({ timeout: T });
    const cells = async (r) => (await r.locator('td').allTextContents()).slice(0, 7);
    assert.deepEqual(await cells(row), ['there.2', 's-mary', 'mary', 'viewer, $user-mary', '–', 'websocket', 'n2']);
    assert.deepEqual((await cells(rows.filter({ hasText: 'here.1' }))).at(6), 'n1');
    assert.equal(await page.locator('#clients-missing').isHidden(), true);
    // the patterns filter every node's clients
    await page.locator('#clients').getByLabel('sessionIdPattern').fill('s-mary');
    await page.locator('#clients-count').filter({ hasText: /^1 client matches/ }).waitFor({ timeout: T });
    assert.deepEqual(await rows.locator('td:first-child').allTextContents(), ['there.2']);
    await page.locator('#clients').getByLabel('sessionIdPattern').fill('');
    await n2.kill();
    there.terminate();
    // at once, while n2 is still a member (its key outlives it by 2 to 3 s): a refresh
    // of the Clients view waits for n2 and names it; so does the overview's next round
    // (updated in the background)
    await page.getByRole('button', { name: 'Refresh' }).click();
    const shows = (sel, text) => page.waitForFunction(([q, t]) => document.querySelector(q).textContent.includes(t), [sel, text], { timeout: T });
    await Promise.all([shows('#clients-missing', 'nodesMissing: n2'), shows('#stats-missing', 'nodesMissing: n2')]);
    assert.deepEqual(await rows.locator('td:first-child').allTextContents(), ['here.1']);
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('#st-clients').filter({ hasText: /^1$/ }).waitFor({ timeout: T });
    assert.deepEqual(page.errors, []);
    await here.close();
  })));
});

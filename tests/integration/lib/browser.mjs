// Headless Debian Chromium driven by playwright-core (no browser download): launch(),
// and withPage(), which saves a full-page screenshot to an artifacts dir when the
// test body throws and prints its path.
//
// The flags are the ones this sandbox needs (no network beyond loopback, running as
// root): see docs/console.md. PUSHGATE_CHROMIUM overrides the executable;
// PUSHGATE_ARTIFACTS the screenshot dir (default: <tmp>/pushgate-artifacts).

import { chromium } from 'playwright-core';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = process.env.PUSHGATE_CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = process.env.PUSHGATE_ARTIFACTS || join(tmpdir(), 'pushgate-artifacts');

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Starts Chromium with a fresh profile; options go to the browser context (e.g.
 * ignoreHTTPSErrors for a test certificate). Returns {context, close()}. */
export async function launch({ viewport = { width: 1280, height: 900 }, ...options } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: run scripts/setup.sh (Debian package chromium)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'pushgate-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, viewport, timeout: 30000, ...options,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Collects the page's script errors and console errors in page.errors. */
export function watchErrors(page) {
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  return page;
}

/** Runs fn(); when it throws, saves a screenshot of page, prints its path, rethrows. */
export async function screenshotOnFailure(page, name, fn) {
  try {
    return await fn();
  } catch (e) {
    mkdirSync(ARTIFACTS, { recursive: true });
    const file = join(ARTIFACTS, `${name.replace(/[^A-Za-z0-9_-]+/g, '-')}-${Date.now()}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    console.error(`[browser] ${name} failed; screenshot: ${file}; page errors: ${JSON.stringify(page.errors || [])}`);
    throw e;
  }
}

/**
 * Runs fn(page) on a new page of context; console errors of the page are collected in
 * page.errors. On failure saves <ARTIFACTS>/<name>-<time>.png, prints its path, and
 * rethrows.
 */
export async function withPage(context, name, fn) {
  const page = watchErrors(await context.newPage());
  try {
    return await screenshotOnFailure(page, name, () => fn(page));
  } finally {
    await page.close().catch(() => {});
  }
}

// The command line: `pushgate version`, `pushgate push-request` against a running node,
// and `serve` refusing a bad configuration.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startNode, cleanup, withLogs, connectClient, runCli, waitForConnections, delivered, pushFrame,
  freePort, PUB_KEY,
} from './lib/harness.mjs';

let node;
let c1;
let c10;
let m1;

before(async () => {
  node = await startNode({ workers: 2 });
  c1 = await connectClient(node, { sessionId: 's-john', clientId: 'c1' });
  c10 = await connectClient(node, { sessionId: 's-john', clientId: 'c10' });
  m1 = await connectClient(node, { sessionId: 's-mary', clientId: 'm1' });
  await waitForConnections(node, 3);
});

after(cleanup);

const all = () => [c1, c10, m1];

function parseStdout(r) {
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`stdout is not JSON (${e.message}): ${JSON.stringify(r.stdout)}; stderr: ${r.stderr}`);
  }
}

test('pushgate version prints a version and exits 0', withLogs(async () => {
  const r = await runCli(['version']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\d+\.\d+\.\d+/);
  assert.ok(r.stdout.trim().split('\n').length <= 3, `version output: ${r.stdout}`);
}));

test('push-request delivers to the client the pattern matches (full match) and prints the PushResponse', withLogs(async () => {
  const r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--client-id-pattern', 'c1', '--payload', '{"a":1}']);
  assert.equal(r.code, 0, `exit ${r.code}; stderr: ${r.stderr}`);
  const out = parseStdout(r);
  assert.equal(typeof out.pushId, 'string');
  assert.deepEqual(out.responseMessages, [delivered('c1', 's-john')]);
  assert.deepEqual(out.summary, { matched: 1, delivered: 1, failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] });
  assert.deepEqual(await c1.next(), pushFrame(out.pushId, { a: 1 }));
  await Promise.all(all().map((c) => c.expectNone(200)));
}));

test('push-request with --role-pattern and --session-id-pattern', withLogs(async () => {
  let r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--role-pattern', '\\$user-mary', '--payload', '{"b":2}']);
  assert.equal(r.code, 0, r.stderr);
  let out = parseStdout(r);
  assert.deepEqual(out.responseMessages, [delivered('m1', 's-mary')]);
  assert.deepEqual(await m1.next(), pushFrame(out.pushId, { b: 2 }));

  r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--session-id-pattern', 's-john', '--client-id-pattern', 'c1.*', '--payload', '{"c":3}']);
  assert.equal(r.code, 0, r.stderr);
  out = parseStdout(r);
  assert.deepEqual(out.responseMessages.map((m) => m.clientId).sort(), ['c1', 'c10']);
  assert.deepEqual(await c1.next(), pushFrame(out.pushId, { c: 3 }));
  assert.deepEqual(await c10.next(), pushFrame(out.pushId, { c: 3 }));
  await Promise.all(all().map((c) => c.expectNone(200)));
}));

test('push-request --report summary prints no responseMessages', withLogs(async () => {
  const r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--payload', '{"d":4}', '--report', 'summary']);
  assert.equal(r.code, 0, r.stderr);
  const out = parseStdout(r);
  assert.deepEqual(Object.keys(out).sort(), ['pushId', 'summary']);
  assert.equal(out.summary.matched, 3);
  for (const c of all()) assert.deepEqual(await c.next(), pushFrame(out.pushId, { d: 4 }));
}));

test('push-request --await-acks --timeout-ms reports acks and timeouts', withLogs(async () => {
  const pending = runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--client-id-pattern', 'c1|c10', '--payload', '{"e":5}', '--await-acks', '--timeout-ms', '1000']);
  const f1 = await c1.next(5000);
  const f10 = await c10.next(5000);
  assert.equal(f1.id, f10.id);
  c1.send({ type: 'response', id: f1.id, successful: true, message: 'cli ok' });
  const r = await pending;
  assert.equal(r.code, 0, r.stderr);
  const out = parseStdout(r);
  const byId = Object.fromEntries(out.responseMessages.map((m) => [m.clientId, m]));
  assert.deepEqual(byId.c1, delivered('c1', 's-john', 'cli ok'));
  assert.deepEqual(byId.c10, delivered('c10', 's-john', 'timeout', false));
  assert.equal(out.summary.acknowledged, 1);
  await Promise.all(all().map((c) => c.expectNone(200)));
}));

test('push-request with a wrong key exits non-zero and prints the error on stderr', withLogs(async () => {
  const r = await runCli(['push-request', '--url', node.url, '--key', 'wrong-key', '--client-id-pattern', 'c1', '--payload', '{"a":1}']);
  assert.equal(r.code, 1, `exit code; stdout ${r.stdout}`);
  assert.match(r.stderr, /Access Forbidden/);
  assert.equal(r.stdout.trim(), '');
  await Promise.all(all().map((c) => c.expectNone(200)));
}));

test('push-request with an invalid pattern exits 1 with the 422 error on stderr', withLogs(async () => {
  const r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--client-id-pattern', '(', '--payload', '{"a":1}']);
  assert.equal(r.code, 1, `exit code; stdout ${r.stdout}`);
  assert.match(r.stderr, /clientIdPattern: invalid regular expression/);
}));

test('push-request with a payload that is not a JSON object exits non-zero', withLogs(async () => {
  for (const payload of ['{bad', '[1,2]', '"str"']) {
    const r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY, '--payload', payload]);
    assert.notEqual(r.code, 0, `payload ${payload}: stdout ${r.stdout}`);
    assert.equal(r.signal, null);
  }
  await Promise.all(all().map((c) => c.expectNone(200)));
}));

test('push-request to a node that is not there exits non-zero', withLogs(async () => {
  const port = await freePort();
  const r = await runCli(['push-request', '--url', `http://127.0.0.1:${port}`, '--key', PUB_KEY, '--payload', '{"a":1}']);
  assert.notEqual(r.code, 0);
  assert.equal(r.signal, null, 'the CLI must not crash');
  assert.ok(r.stderr.length > 0, 'says why on stderr');
}));

test('push-request without --url or --payload exits non-zero', withLogs(async () => {
  let r = await runCli(['push-request', '--key', PUB_KEY, '--payload', '{"a":1}']);
  assert.notEqual(r.code, 0);
  assert.equal(r.signal, null);
  r = await runCli(['push-request', '--url', node.url, '--key', PUB_KEY]);
  assert.notEqual(r.code, 0);
  assert.equal(r.signal, null);
}));

test('an unknown command exits non-zero', withLogs(async () => {
  const r = await runCli(['frobnicate']);
  assert.notEqual(r.code, 0);
  assert.equal(r.signal, null);
  assert.ok(r.stderr.length > 0);
}));

test('serve with a missing or invalid config file exits non-zero', withLogs(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pushgate-cli-'));
  try {
    const port = await freePort();
    let r = await runCli(['serve', '--config', join(dir, 'missing.json'), '--listen', `127.0.0.1:${port}`, '--workers', '1', '--data-dir', join(dir, 'data')], { timeoutMs: 8000 });
    assert.notEqual(r.code, 0, 'missing config');
    assert.equal(r.signal, null, 'must exit by itself, not be killed after the timeout');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"apiKeys": [');
    r = await runCli(['serve', '--config', bad, '--listen', `127.0.0.1:${port}`, '--workers', '1', '--data-dir', join(dir, 'data')], { timeoutMs: 8000 });
    assert.notEqual(r.code, 0, 'invalid JSON config');
    assert.equal(r.signal, null, 'must exit by itself, not be killed after the timeout');
    assert.ok(r.stderr.length > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}));

test('push sends a channel push (seed 003) and prints the sanitized push; the subscriber gets it', withLogs(async () => {
  c10.send({ type: 'subscribe', channels: ['cli-news'] });
  assert.deepEqual(await c10.next(), { type: 'subscribed', channels: ['cli-news'] });
  const r = await runCli(['push', '--url', node.url, '--key', PUB_KEY, '--channel', 'cli-news', '--channel', 'cli-news',
    '--channel', 'cli-other', '--event', 'woohoo', '--data', '{"n":1}']);
  assert.equal(r.code, 0, `exit ${r.code}; stderr: ${r.stderr}`);
  assert.equal(r.stdout.trim(), '{"channel":["cli-news","cli-other"],"data":{"n":1},"event":"woohoo"}');
  const m = await c10.next();
  assert.equal(m.type, 'push');
  assert.equal(m.channel, 'cli-news');
  assert.equal(m.event, 'woohoo');
  assert.deepEqual(m.payload, { n: 1 });
  await Promise.all([c1, m1].map((c) => c.expectNone(200)));
}));

test('push with a bad key or without --channel exits non-zero', withLogs(async () => {
  let r = await runCli(['push', '--url', node.url, '--key', 'nope', '--channel', 'a', '--event', 'e', '--data', '1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Access Forbidden/);
  r = await runCli(['push', '--url', node.url, '--key', PUB_KEY, '--event', 'e', '--data', '1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--channel/);
}));

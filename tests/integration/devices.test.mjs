// The device command queue (seed 004, docs/devices.md): devices polling GET /push and
// posting POST /result, driven by the simulator in lib/device-sim.mjs; the operator API
// under /api/devices; redelivery, TTL, cancel, waitMs, the queue bound, bad input;
// durability across kill -9; 10k devices; the long poll (device.holdMs).

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startNode, cleanup, withLogs, baseConfig, sleep, runCli, rawHttp, SLOW, PUB_KEY, ADMIN_KEY,
} from './lib/harness.mjs';
import {
  DeviceSim, request, enqueue, getCommand, listCommands, cancelCommand, makeAgent, metricValue, pool,
} from './lib/device-sim.mjs';

after(cleanup);

const REDELIVERY_MS = 700 * SLOW;

/** Polls every 50 ms until a command comes (the redelivery); resolves it and when it came. */
async function pollUntilCommand(dev, timeoutMs = 10000 * SLOW) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const p = await dev.poll();
    if (p.command) return { command: p.command, at: Date.now() };
    await sleep(50);
  }
  throw new Error(`device ${dev.deviceId}: no command within ${timeoutMs} ms`);
}

function deviceConfig(device = {}, extra = {}) {
  return baseConfig({ device: { redeliveryMs: REDELIVERY_MS, maxQueue: 5, ...device }, ...extra });
}

async function metrics(node) {
  const r = await request(node, 'GET', '/metrics');
  assert.equal(r.status, 200);
  return r.text;
}

describe('device queue: devices and operators', () => {
  let node;
  before(async () => { node = await startNode({ workers: 2, config: deviceConfig() }); });

  test('an empty queue answers 200 with an empty body (Content-Length: 0)', withLogs(async () => {
    const r = await request(node, 'GET', '/push?deviceId=1000');
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    assert.equal(r.headers['content-length'], '0');
  }));

  test('poll → command → result → poll → empty, as the seed describes', withLogs(async () => {
    const dev = new DeviceSim(node, 1001);
    const e = await enqueue(node, 1001, { verb: 'POST', endpoint: 'load_objects', body: { object: 'users' }, contentType: 'application/json' });
    assert.equal(e.status, 201, e.text);
    assert.deepEqual(Object.keys(e.body).sort(), ['id', 'status']);
    assert.equal(e.body.status, 'queued');
    assert.equal(e.headers.location, `/api/devices/1001/commands/${e.body.id}`);

    const p = await dev.poll();
    assert.equal(p.status, 200);
    assert.match(p.headers['content-type'], /^application\/json/);
    assert.deepEqual(p.command, { verb: 'POST', endpoint: 'load_objects', body: { object: 'users' }, contentType: 'application/json' });

    const users = [{ id: 1, registration: 'Test', name: 'Walter White', password: 'Heisenberg', salt: '', expires: 0, user_type_id: 0, begin_time: 0, end_time: 0 }];
    const r = await dev.result({ response: { users } });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    assert.equal(r.headers['content-length'], '0');

    const again = await dev.poll();
    assert.equal(again.status, 200);
    assert.equal(again.text, '');

    const g = await getCommand(node, 1001, e.body.id);
    assert.equal(g.status, 200, g.text);
    assert.equal(g.body.id, e.body.id);
    assert.equal(g.body.deviceId, 1001);
    assert.equal(g.body.status, 'done');
    assert.deepEqual(g.body.response, { users });
    assert.equal(g.body.error, undefined);
    assert.equal(g.body.attempts, 1);
    assert.equal(g.body.verb, 'POST');
    assert.equal(g.body.endpoint, 'load_objects');
    assert.deepEqual(g.body.body, { object: 'users' });
    for (const k of ['createdAt', 'sentAt', 'completedAt']) assert.equal(typeof g.body[k], 'number', k);
    assert.ok(g.body.createdAt <= g.body.sentAt && g.body.sentAt <= g.body.completedAt);
  }));

  test('defaults are filled in and absent optional fields are omitted', withLogs(async () => {
    const dev = new DeviceSim(node, 1002);
    assert.equal((await enqueue(node, 1002, { endpoint: 'reboot' })).status, 201);
    assert.equal((await enqueue(node, 1002, { verb: 'get', endpoint: 'user_list', queryString: 'limit=10', body: 'plain text', contentType: 'text/plain' })).status, 201);
    const [a, b] = await dev.drain();
    assert.deepEqual(a, { verb: 'POST', endpoint: 'reboot', contentType: 'application/json' });
    assert.deepEqual(b, { verb: 'GET', endpoint: 'user_list', body: 'plain text', contentType: 'text/plain', queryString: 'limit=10' });
  }));

  test('several commands are executed one at a time, in enqueue order', withLogs(async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const e = await enqueue(node, 1003, { endpoint: `step_${i}`, body: { i } });
      assert.equal(e.status, 201);
      ids.push(e.body.id);
    }
    assert.deepEqual([...ids].sort((x, y) => x - y), ids, 'ids grow in enqueue order');
    const dev = new DeviceSim(node, 1003);
    // one in flight: a second poll before the result gets nothing
    const first = await dev.poll();
    assert.equal(first.command.endpoint, 'step_0');
    const second = await dev.poll();
    assert.equal(second.text, '', 'nothing while step_0 is in flight');
    assert.equal((await dev.result({ response: 0 })).status, 200);
    const rest = await dev.drain();
    assert.deepEqual(rest.map((c) => c.endpoint), ['step_1', 'step_2', 'step_3', 'step_4']);
    const l = await listCommands(node, 1003);
    assert.equal(l.status, 200);
    assert.deepEqual(l.body.commands.map((c) => c.id), ids);
    assert.ok(l.body.commands.every((c) => c.status === 'done'));
  }));

  test('an error result makes the command failed with what the device said', withLogs(async () => {
    const dev = new DeviceSim(node, 1004, { execute: (c) => (c.endpoint === 'bad' ? { error: 'user not found' } : { response: 'ok' }) });
    const a = await enqueue(node, 1004, { endpoint: 'bad' });
    const b = await enqueue(node, 1004, { endpoint: 'good' });
    await dev.drain();
    const ga = await getCommand(node, 1004, a.body.id);
    assert.equal(ga.body.status, 'failed');
    assert.equal(ga.body.error, 'user not found');
    assert.equal(ga.body.response, undefined);
    const gb = await getCommand(node, 1004, b.body.id);
    assert.equal(gb.body.status, 'done');
    assert.equal(gb.body.response, 'ok');
    const failed = await listCommands(node, 1004, { status: 'failed' });
    assert.deepEqual(failed.body.commands.map((c) => c.id), [a.body.id]);
    const both = await listCommands(node, 1004, { status: 'failed,done' });
    assert.equal(both.body.commands.length, 2);
  }));

  test('application/octet-stream bodies are base64 strings, checked on enqueue', withLogs(async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 251, 255, 10, 13]);
    const b64 = bytes.toString('base64');
    const e = await enqueue(node, 1005, { endpoint: 'upload_photo', contentType: 'application/octet-stream', body: b64 });
    assert.equal(e.status, 201, e.text);
    const dev = new DeviceSim(node, 1005);
    const p = await dev.poll();
    assert.deepEqual(p.command, { verb: 'POST', endpoint: 'upload_photo', body: b64, contentType: 'application/octet-stream' });
    assert.deepEqual(Buffer.from(p.command.body, 'base64'), bytes);
    await dev.result({ response: {} });
    for (const body of ['not base64!', 'QQ', { a: 1 }, 12]) {
      const bad = await enqueue(node, 1005, { endpoint: 'upload_photo', contentType: 'application/octet-stream', body });
      assert.equal(bad.status, 422, `${JSON.stringify(body)}: ${bad.text}`);
      assert.match(bad.body.error, /body/);
      assert.match(bad.body.error, /base64/);
    }
  }));

  test('a command whose result is lost is sent again after redeliveryMs, attempts counted', withLogs(async () => {
    const dev = new DeviceSim(node, 1006);
    const e = await enqueue(node, 1006, { endpoint: 'open_door' });
    const t0 = Date.now();
    assert.equal((await dev.poll()).command.endpoint, 'open_door');
    const t1 = Date.now();
    // the device's result never arrives; it polls again at once: still in flight
    assert.equal((await dev.poll()).text, '');
    let g = await getCommand(node, 1006, e.body.id);
    assert.equal(g.body.status, 'sent');
    assert.equal(g.body.attempts, 1);
    const before = metricValue(await metrics(node), 'pushgate_device_redeliveries_total');
    const p = await pollUntilCommand(dev);
    assert.equal(p.command.endpoint, 'open_door', 'redelivered');
    assert.ok(p.at - t0 >= REDELIVERY_MS, `redelivered after ${p.at - t0} ms, before redeliveryMs`);
    assert.ok(p.at - t1 < REDELIVERY_MS + 2000 * SLOW, `redelivered only after ${p.at - t1} ms`);
    g = await getCommand(node, 1006, e.body.id);
    assert.equal(g.body.status, 'sent');
    assert.equal(g.body.attempts, 2);
    assert.equal(metricValue(await metrics(node), 'pushgate_device_redeliveries_total'), before + 1);
    await dev.result({ response: 'opened' });
    g = await getCommand(node, 1006, e.body.id);
    assert.equal(g.body.status, 'done');
    assert.equal(g.body.attempts, 2);
    assert.equal((await dev.poll()).text, '');
  }));

  test('ttlSeconds: a command not delivered in time expires', withLogs(async () => {
    const e = await enqueue(node, 1007, { endpoint: 'too_late', ttlSeconds: 1 });
    assert.equal(e.status, 201);
    const keep = await enqueue(node, 1007, { endpoint: 'in_time' });
    let g = await getCommand(node, 1007, e.body.id);
    assert.equal(g.body.status, 'queued');
    assert.equal(g.body.expiresAt - g.body.createdAt, 1000);
    await sleep(1300);
    g = await getCommand(node, 1007, e.body.id);
    assert.equal(g.body.status, 'expired');
    assert.equal(g.body.attempts, 0);
    assert.equal(typeof g.body.completedAt, 'number');
    const dev = new DeviceSim(node, 1007);
    const done = await dev.drain();
    assert.deepEqual(done.map((c) => c.endpoint), ['in_time']);
    assert.equal((await getCommand(node, 1007, keep.body.id)).body.status, 'done');
    const m = await metrics(node);
    assert.ok(metricValue(m, 'pushgate_device_commands_total', { status: 'expired' }) >= 1);
  }));

  test('DELETE cancels a queued command; 409 when not queued; 404 when unknown', withLogs(async () => {
    const a = await enqueue(node, 1008, { endpoint: 'a' });
    const b = await enqueue(node, 1008, { endpoint: 'b' });
    const c = await enqueue(node, 1008, { endpoint: 'c' });
    const d = await cancelCommand(node, 1008, b.body.id);
    assert.equal(d.status, 200, d.text);
    assert.equal(d.body.status, 'cancelled');
    assert.equal(d.body.id, b.body.id);
    const again = await cancelCommand(node, 1008, b.body.id);
    assert.equal(again.status, 409);
    assert.match(again.body.error, /cancelled/);
    assert.equal((await cancelCommand(node, 1008, 987654321)).status, 404);
    assert.equal((await cancelCommand(node, 1009, a.body.id)).status, 404, 'another device\'s command is not found');
    const dev = new DeviceSim(node, 1008);
    const p = await dev.poll();
    assert.equal(p.command.endpoint, 'a');
    const inFlight = await cancelCommand(node, 1008, a.body.id);
    assert.equal(inFlight.status, 409);
    assert.match(inFlight.body.error, /sent/);
    await dev.result({ response: 1 });
    assert.deepEqual((await dev.drain()).map((x) => x.endpoint), ['c']);
    assert.equal((await getCommand(node, 1008, b.body.id)).body.status, 'cancelled');
    assert.equal((await cancelCommand(node, 1008, c.body.id)).status, 409);
  }));

  test('waitMs: the enqueue answers with the device\'s result once it arrives', withLogs(async () => {
    const dev = new DeviceSim(node, 1010, { agent: makeAgent(2) });
    const t0 = Date.now();
    const waiting = enqueue(node, 1010, { endpoint: 'get_status' }, { query: { waitMs: 20000 } });
    // the device polls on its own connections (possibly another worker) a little later
    await sleep(200);
    let cmd = null;
    for (let i = 0; i < 50 && !cmd; i++) {
      cmd = (await dev.poll()).command;
      if (!cmd) await sleep(20);
    }
    assert.equal(cmd?.endpoint, 'get_status');
    await sleep(100);
    assert.equal((await dev.result({ response: { temperature: 21 } })).status, 200);
    const r = await waiting;
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.status, 'done');
    assert.deepEqual(r.body.response, { temperature: 21 });
    assert.equal(r.body.attempts, 1);
    assert.ok(Date.now() - t0 < 10000 * SLOW);

    const failing = enqueue(node, 1010, { endpoint: 'x' }, { query: { waitMs: 20000 } });
    await sleep(50);
    const dev2 = new DeviceSim(node, 1010, { execute: () => ({ error: 'no such endpoint' }) });
    for (let i = 0; i < 50 && !(await dev2.step()); i++) await sleep(20);
    const f = await failing;
    assert.equal(f.status, 201);
    assert.equal(f.body.status, 'failed');
    assert.equal(f.body.error, 'no such endpoint');
  }));

  test('waitMs: at the timeout the enqueue answers with the current status', withLogs(async () => {
    const t0 = Date.now();
    const r = await enqueue(node, 1011, { endpoint: 'nobody_polls' }, { query: { waitMs: 400 } });
    const took = Date.now() - t0;
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.status, 'queued');
    assert.equal(r.body.attempts, 0);
    assert.ok(took >= 350, `answered after ${took} ms`);
    // sent but no result: the status at the timeout is sent
    const dev = new DeviceSim(node, 1012);
    const waiting = enqueue(node, 1012, { endpoint: 'slow' }, { query: { waitMs: 500 } });
    await sleep(100);
    assert.equal((await dev.poll()).command?.endpoint, 'slow');
    const w = await waiting;
    assert.equal(w.body.status, 'sent');
    await dev.result({ response: null });
    // cancelling ends a wait at once
    const waiting2 = enqueue(node, 1013, { endpoint: 'cancel_me' }, { query: { waitMs: 20000 } });
    await sleep(200);
    const l = await listCommands(node, 1013);
    const id = l.body.commands[0].id;
    const t1 = Date.now();
    assert.equal((await cancelCommand(node, 1013, id)).status, 200);
    const c = await waiting2;
    assert.equal(c.body.status, 'cancelled');
    assert.ok(Date.now() - t1 < 3000 * SLOW);
  }));

  test('the queue is bounded per device: 429 past device.maxQueue', withLogs(async () => {
    for (let i = 0; i < 5; i++) assert.equal((await enqueue(node, 1014, { endpoint: `e${i}` })).status, 201);
    const r = await enqueue(node, 1014, { endpoint: 'one_too_many' });
    assert.equal(r.status, 429);
    assert.match(r.body.error, /maxQueue/);
    assert.equal((await enqueue(node, 1015, { endpoint: 'other_device' })).status, 201);
    // finishing one makes room
    const dev = new DeviceSim(node, 1014);
    await dev.step();
    assert.equal((await enqueue(node, 1014, { endpoint: 'now_fits' })).status, 201);
    await dev.drain();
  }));

  test('bad ids and bodies from devices: 400 with a JSON error, and the device can go on', withLogs(async () => {
    for (const q of ['', '?deviceId=', '?deviceId=abc', '?deviceId=1.5', '?deviceId=99999999999999999999', '?device=1']) {
      const r = await request(node, 'GET', `/push${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(typeof r.body.error, 'string', q);
      assert.match(r.body.error, /deviceId/);
      const p = await request(node, 'POST', `/result${q}`, { body: { response: 1 } });
      assert.equal(p.status, 400, q);
      assert.match(p.body.error, /deviceId/);
    }
    const e = await enqueue(node, 1016, { endpoint: 'x' });
    const dev = new DeviceSim(node, 1016);
    assert.equal((await dev.poll()).command.endpoint, 'x');
    for (const body of ['', 'not json', '[1]', '{}', '{"other":1}', '{"response":1', '"response"']) {
      const r = await dev.result(body);
      assert.equal(r.status, 400, body);
      assert.equal(typeof r.body.error, 'string', body);
    }
    assert.equal((await getCommand(node, 1016, e.body.id)).body.status, 'sent', 'still in flight');
    assert.equal((await dev.result({ response: 'finally' })).status, 200);
    assert.equal((await getCommand(node, 1016, e.body.id)).body.status, 'done');
    // a negative id is an int64 like any other
    assert.equal((await request(node, 'GET', '/push?deviceId=-5')).status, 200);
  }));

  test('bad operator requests: 403, 400, 404, 405, 422 naming the field', withLogs(async () => {
    let r = await enqueue(node, 1017, { endpoint: 'x' }, { key: null });
    assert.equal(r.status, 403);
    assert.deepEqual(r.body, { error: 'Access Forbidden' });
    r = await enqueue(node, 1017, { endpoint: 'x' }, { key: 'wrong' });
    assert.equal(r.status, 403);
    assert.equal((await request(node, 'GET', '/api/devices/1017/commands')).status, 403);
    assert.equal((await request(node, 'GET', '/api/devices')).status, 403);
    assert.equal((await enqueue(node, 1017, { endpoint: 'x' }, { key: ADMIN_KEY })).status, 201, 'admin implies publish');

    const cases = [
      [{}, /endpoint/],
      [{ endpoint: '' }, /endpoint/],
      [{ endpoint: 7 }, /endpoint/],
      [{ endpoint: 'x', verb: 'PUT' }, /verb/],
      [{ endpoint: 'x', contentType: 5 }, /contentType/],
      [{ endpoint: 'x', queryString: {} }, /queryString/],
      [{ endpoint: 'x', ttlSeconds: 0 }, /ttlSeconds/],
      [{ endpoint: 'x', ttlSeconds: 'soon' }, /ttlSeconds/],
      [{ endpoint: 'x', priority: 1 }, /priority/],
    ];
    for (const [body, re] of cases) {
      r = await enqueue(node, 1017, body);
      assert.equal(r.status, 422, JSON.stringify(body));
      assert.match(r.body.error, re, JSON.stringify(body));
    }
    for (const raw of ['not json', '[1,2]', '']) {
      r = await request(node, 'POST', '/api/devices/1017/commands', { body: raw, key: PUB_KEY });
      assert.equal(r.status, 422, raw);
    }
    for (const [m, p, status] of [
      ['POST', '/api/devices/abc/commands', 400],
      ['GET', '/api/devices/1.5/commands', 400],
      ['GET', '/api/devices/1017/commands/abc', 400],
      ['GET', '/api/devices/1017/commands/424242', 404],
      ['GET', '/api/devices/1017/nothing', 404],
      ['GET', '/api/devices/1017/commands/1/more', 404],
      ['PUT', '/api/devices/1017/commands', 405],
      ['POST', '/api/devices/1017/commands/1', 405],
      ['GET', '/api/devices/1017/commands?status=bogus', 400],
      ['GET', '/api/devices/1017/commands?limit=-1', 400],
      ['POST', '/api/devices/1017/commands?waitMs=abc', 400],
      ['POST', '/api/devices/1017/commands?waitMs=60001', 400],
    ]) {
      r = await request(node, m, p, { key: PUB_KEY, body: m === 'POST' ? { endpoint: 'x' } : undefined });
      assert.equal(r.status, status, `${m} ${p}: ${r.text}`);
      assert.equal(typeof r.body.error, 'string', `${m} ${p}`);
    }
  }));

  test('a result with nothing in flight is kept as an orphan and still answered 200 empty', withLogs(async () => {
    const dev = new DeviceSim(node, 1018);
    const r = await dev.result({ response: { spontaneous: true } });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    await dev.result({ error: 'late error' });
    const o = await request(node, 'GET', '/api/devices/1018/orphans', { key: PUB_KEY });
    assert.equal(o.status, 200, o.text);
    assert.equal(o.body.orphans.length, 2);
    assert.deepEqual(o.body.orphans[0].response, { spontaneous: true });
    assert.equal(o.body.orphans[1].error, 'late error');
    assert.equal(o.body.orphans[0].deviceId, 1018);
    assert.equal(typeof o.body.orphans[0].receivedAt, 'number');
    assert.ok(metricValue(await metrics(node), 'pushgate_device_orphan_results_total') >= 2);
  }));

  test('GET /api/devices lists polling devices with lastPollAt and queue depth; /metrics has the gauges', withLogs(async () => {
    const t0 = Date.now();
    await new DeviceSim(node, 1019).poll();
    await enqueue(node, 1020, { endpoint: 'queued_for_a_device_that_never_polled' });
    await enqueue(node, 1019, { endpoint: 'q1' });
    await enqueue(node, 1019, { endpoint: 'q2' });
    await new DeviceSim(node, 1019).poll();
    const r = await request(node, 'GET', '/api/devices?after=1018&limit=2', { key: PUB_KEY });
    assert.equal(r.status, 200, r.text);
    const [d19, d20] = r.body.devices;
    assert.equal(r.body.devices.length, 2);
    assert.equal(d19.deviceId, 1019);
    assert.ok(d19.lastPollAt >= t0 - 1000 && d19.lastPollAt <= Date.now() + 1000);
    assert.equal(d19.polls, 2);
    assert.equal(d19.queued, 1);
    assert.equal(d19.inFlight, 1);
    assert.equal(d20.deviceId, 1020);
    assert.equal(d20.lastPollAt, null);
    assert.equal(d20.queued, 1);
    const one = await request(node, 'GET', '/api/devices/1019', { key: PUB_KEY });
    assert.equal(one.status, 200);
    assert.equal(one.body.queued, 1);
    const m = await metrics(node);
    assert.ok(metricValue(m, 'pushgate_device_queue_depth') >= 2);
    assert.ok(metricValue(m, 'pushgate_device_commands_in_flight') >= 1);
    for (const s of ['queued', 'sent', 'done', 'failed', 'expired', 'cancelled']) {
      assert.notEqual(metricValue(m, 'pushgate_device_commands_total', { status: s }), null, s);
    }
  }));

  test('HEAD /push does not take a command', withLogs(async () => {
    await enqueue(node, 1021, { endpoint: 'keep' });
    const h = await request(node, 'HEAD', '/push?deviceId=1021');
    assert.equal(h.status, 200);
    assert.equal((await new DeviceSim(node, 1021).poll()).command.endpoint, 'keep');
  }));
});

describe('device queue: durability across kill -9', () => {
  test('acknowledged enqueues survive kill -9 before any poll', withLogs(async () => {
    const cfg = deviceConfig({ maxQueue: 100 });
    const a = await startNode({ workers: 2, config: cfg });
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const e = await enqueue(a, 2001, { endpoint: `cmd_${i}`, body: { i } });
      assert.equal(e.status, 201);
      ids.push(e.body.id);
    }
    await a.kill();
    const b = await startNode({ workers: 2, config: cfg, extraArgs: ['--data-dir', join(a.dir, 'data')] });
    const dev = new DeviceSim(b, 2001, { agent: makeAgent(1) });
    const done = await dev.drain();
    assert.deepEqual(done.map((c) => c.endpoint), ids.map((_, i) => `cmd_${i}`));
    assert.deepEqual(done.map((c) => c.body.i), ids.map((_, i) => i));
    const m = await metrics(b);
    assert.equal(metricValue(m, 'pushgate_device_queue_depth'), 0);
  }));

  test('a command in flight at kill -9 is redelivered after restart, results are kept', withLogs(async () => {
    const cfg = deviceConfig();
    const a = await startNode({ workers: 1, config: cfg });
    const done = await enqueue(a, 2002, { endpoint: 'finished_before' });
    const inflight = await enqueue(a, 2002, { endpoint: 'in_flight' });
    const dev = new DeviceSim(a, 2002, { agent: makeAgent(1) });
    assert.equal((await dev.step()).endpoint, 'finished_before');
    assert.equal((await dev.poll()).command.endpoint, 'in_flight');
    const sentAt = Date.now();
    await a.kill();
    const b = await startNode({ workers: 2, config: cfg, extraArgs: ['--data-dir', join(a.dir, 'data')] });
    let g = await getCommand(b, 2002, done.body.id);
    assert.equal(g.body.status, 'done');
    assert.deepEqual(g.body.response, { ok: true, endpoint: 'finished_before' });
    g = await getCommand(b, 2002, inflight.body.id);
    assert.equal(g.body.status, 'sent');
    const dev2 = new DeviceSim(b, 2002, { agent: makeAgent(1) });
    const p = await pollUntilCommand(dev2);
    assert.equal(p.command.endpoint, 'in_flight', 'redelivered after the restart');
    assert.ok(p.at - sentAt >= REDELIVERY_MS - 50, `redelivered ${p.at - sentAt} ms after the delivery`);
    assert.equal((await dev2.result({ response: 'done at last' })).status, 200);
    g = await getCommand(b, 2002, inflight.body.id);
    assert.equal(g.body.status, 'done');
    assert.equal(g.body.attempts, 2);
    assert.equal(metricValue(await metrics(b), 'pushgate_device_commands_in_flight'), 0);
  }));

  test('kill -9 in the middle of a burst of enqueues, polls and results loses nothing acknowledged', withLogs(async () => {
    const cfg = deviceConfig({ maxQueue: 1000 });
    const a = await startNode({ workers: 2, config: cfg });
    const agent = makeAgent(32);
    const acked = new Map(); // id -> device
    const results = new Map(); // device -> endpoints whose result was acknowledged
    let stop = false;
    const enqueuers = Array.from({ length: 16 }, async (_, k) => {
      for (let i = 0; !stop; i++) {
        const dev = 2100 + (k % 8);
        try {
          const e = await enqueue(a, dev, { endpoint: `e${k}_${i}` }, { agent });
          if (e.status === 201) acked.set(e.body.id, dev);
        } catch { return; }
      }
    });
    const devices = Array.from({ length: 8 }, async (_, k) => {
      const sim = new DeviceSim(a, 2100 + k, { agent });
      while (!stop) {
        try {
          const p = await sim.poll();
          if (!p.command) { await sleep(5); continue; }
          const r = await sim.result({ response: p.command.endpoint });
          if (r.status === 200) {
            if (!results.has(2100 + k)) results.set(2100 + k, new Set());
            results.get(2100 + k).add(p.command.endpoint);
          }
        } catch { return; }
      }
    });
    await sleep(700);
    await a.kill();
    stop = true;
    await Promise.all([...enqueuers, ...devices]);
    agent.destroy();
    assert.ok(acked.size > 20, `only ${acked.size} enqueues acknowledged before the kill`);
    const b = await startNode({ workers: 2, config: cfg, extraArgs: ['--data-dir', join(a.dir, 'data')] });
    const check = makeAgent(16);
    const got = await pool([...acked], 16, async ([id, dev]) => (await getCommand(b, dev, id, { agent: check })));
    for (const g of got) assert.equal(g.status, 200, `an acknowledged command is missing after kill -9: ${g.text}`);
    // every result the node acknowledged closed its command (or found nothing in flight)
    const byEndpoint = new Map(got.map((g) => [g.body.endpoint, g.body]));
    for (const [, eps] of results) {
      for (const ep of eps) {
        const c = byEndpoint.get(ep);
        if (!c) continue; // committed, but the kill came before its 201 reached the client
        assert.equal(c.status, 'done', `${ep}: result acknowledged but status ${c.status}`);
      }
    }
    check.destroy();
  }));
});

describe('device queue: 10k devices polling concurrently', () => {
  test('10k devices, one command each, over 200 keep-alive connections', withLogs(async () => {
    const node = await startNode({ workers: 2, config: deviceConfig() });
    const N = 10000;
    const agent = makeAgent(200);
    const t0 = Date.now();
    const ids = Array.from({ length: N }, (_, i) => 100000 + i);
    await pool(ids, 200, async (id) => {
      const e = await enqueue(node, id, { endpoint: 'sync', body: { device: id } }, { agent });
      assert.equal(e.status, 201, e.text);
    });
    const tEnq = Date.now();
    let m = await metrics(node);
    assert.equal(metricValue(m, 'pushgate_device_queue_depth'), N);
    const executed = await pool(ids, 200, async (id) => {
      const sim = new DeviceSim(node, id, { agent });
      const cmds = await sim.drain();
      assert.equal(cmds.length, 1);
      assert.deepEqual(cmds[0].body, { device: id });
      return cmds.length;
    });
    const t1 = Date.now();
    assert.equal(executed.reduce((a, b) => a + b, 0), N);
    m = await metrics(node);
    assert.equal(metricValue(m, 'pushgate_device_queue_depth'), 0);
    assert.equal(metricValue(m, 'pushgate_device_commands_in_flight'), 0);
    assert.equal(metricValue(m, 'pushgate_device_commands_total', { status: 'done' }), N);
    agent.destroy();
    process.stdout.write(`# 10k devices: enqueue ${tEnq - t0} ms, poll+result+poll ${t1 - tEnq} ms\n`);
    assert.ok(t1 - t0 < 60000 * SLOW, `took ${t1 - t0} ms`);
  }));
});

describe('device queue: long poll (device.holdMs)', () => {
  test('a held poll is answered by an enqueue made on another connection (any worker)', withLogs(async () => {
    const node = await startNode({ workers: 2, config: deviceConfig({ holdMs: 20000 }) });
    const devices = Array.from({ length: 8 }, (_, i) => 3000 + i);
    // every device holds a poll on its own connection (spread over both workers)
    const t0 = Date.now();
    const polls = devices.map((id) => new DeviceSim(node, id, { agent: makeAgent(1) }).poll());
    await sleep(300);
    const opAgent = makeAgent(4);
    for (const id of devices) assert.equal((await enqueue(node, id, { endpoint: `wake_${id}` }, { agent: opAgent })).status, 201);
    const got = await Promise.all(polls);
    const took = Date.now() - t0;
    got.forEach((p, i) => assert.equal(p.command?.endpoint, `wake_${devices[i]}`));
    assert.ok(took < 5000 * SLOW, `held polls answered after ${took} ms`);
    // a poll finds a queued command at once, without holding
    await enqueue(node, 3100, { endpoint: 'ready' });
    const t1 = Date.now();
    assert.equal((await new DeviceSim(node, 3100).poll()).command.endpoint, 'ready');
    assert.ok(Date.now() - t1 < 2000 * SLOW);
    // a held poll whose device gets nothing stays held while another device is woken
    const quiet = new DeviceSim(node, 3200, { agent: makeAgent(1) }).poll({ timeoutMs: 60000 });
    let quietDone = false;
    quiet.then(() => { quietDone = true; });
    await sleep(200);
    await enqueue(node, 3201, { endpoint: 'not_for_3200' });
    await sleep(300);
    assert.equal(quietDone, false);
    // SIGTERM answers held polls at once (empty), and the node exits 0
    const t2 = Date.now();
    const info = await node.stop('SIGTERM');
    assert.deepEqual(info, { code: 0, signal: null });
    const q = await quiet;
    assert.equal(q.status, 200);
    assert.equal(q.text, '');
    assert.ok(Date.now() - t2 < 4000 * SLOW, `shutdown took ${Date.now() - t2} ms`);
  }));

  test('a held poll with nothing to do answers empty when the hold ends', withLogs(async () => {
    const node = await startNode({ workers: 1, config: deviceConfig({ holdMs: 500 }) });
    const t0 = Date.now();
    const p = await new DeviceSim(node, 3300).poll();
    const took = Date.now() - t0;
    assert.equal(p.status, 200);
    assert.equal(p.text, '');
    assert.ok(took >= 450, `answered after ${took} ms`);
    // a client that goes away while held does no harm
    const raw = await rawHttp(node);
    await raw.write('GET /push?deviceId=3301 HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(100);
    raw.destroy();
    await sleep(200); // let the node see the close (before it, the command would go to the dead poll)
    await enqueue(node, 3301, { endpoint: 'after_abort' });
    assert.equal((await new DeviceSim(node, 3301).poll()).command.endpoint, 'after_abort');
  }));

  test('pipelined requests behind a held poll are answered after it', withLogs(async () => {
    const node = await startNode({ workers: 1, config: deviceConfig({ holdMs: 400 }) });
    const raw = await rawHttp(node);
    await raw.write('GET /push?deviceId=3400 HTTP/1.1\r\nHost: x\r\n\r\nGET /push?deviceId=3401 HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(100);
    await enqueue(node, 3401, { endpoint: 'second' });
    const rs = await raw.responses(3, 5000 * SLOW);
    assert.equal(rs[0].status, 200);
    assert.equal(rs[0].text, '');
    assert.equal(rs[1].status, 200);
    assert.equal(rs[1].body.endpoint, 'second');
    assert.deepEqual(rs[2].body, { status: 'ok' });
    raw.destroy();
  }));
});

describe('device queue: configuration', () => {
  test('a bad device section is refused, naming the key', withLogs(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pushgate-devcfg-'));
    try {
      for (const [device, re] of [
        [{ holdMs: -1 }, /device\.holdMs must be/],
        [{ redeliveryMs: 'soon' }, /device\.redeliveryMs must be/],
        [{ maxQueue: 0 }, /device\.maxQueue must be/],
        [{ ttlSeconds: 1.5 }, /device\.ttlSeconds must be/],
        [{ colour: 1 }, /device\.colour/],
        ['fast', /device must be an object/],
      ]) {
        const path = join(dir, 'c.json');
        writeFileSync(path, JSON.stringify({ device }));
        const r = await runCli(['serve', '--config', path, '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')]);
        assert.notEqual(r.code, 0, JSON.stringify(device));
        assert.match(r.stderr, re, JSON.stringify(device));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }));
});

// POST /api/push-requests: targeting by the three patterns (full-match semantics),
// the frames clients receive, the PushResponse, validation errors, credentials,
// report modes and awaitAcks.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, connectClient, pushRequest, api, waitForConnections,
  delivered, pushFrame, byClientId, sleep, tryConnect, Client, ADMIN_KEY, PUB_KEY,
} from './lib/harness.mjs';

let node;
const C = {}; // name -> Client

// clientId, sessionId
const CLIENTS = {
  A: ['tribefire-explorer.auth', 's-john'],
  B: ['tribefire-control-center.auth', 's-john'],
  C: ['tribefire-explorer.cortex', 's-mary'],
  D: ['tribefire', 's-mary'],
};
const ALL = Object.keys(CLIENTS);

before(async () => {
  node = await startNode({ workers: 2 });
  for (const [name, [clientId, sessionId]] of Object.entries(CLIENTS)) {
    C[name] = await connectClient(node, { sessionId, clientId });
  }
  await waitForConnections(node, ALL.length);
});

after(cleanup);

// a test that failed half-way may leave frames behind: do not let them fail the next one
beforeEach(() => { for (const n of ALL) C[n]?.drain(); });

const NOTIFY = { _type: 'com.braintribe.model.notification.Notify', message: 'hi' };
const SUMMARY0 = { failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] };

/**
 * Send a push request with `selector`; assert 200, the exact report (matching clients
 * delivered), and that exactly the matching clients got exactly one frame.
 */
async function pushAndCheck(selector, expected, serviceRequest = NOTIFY) {
  const r = await pushRequest(node, { serviceRequest, ...selector });
  assert.equal(r.status, 200, `${JSON.stringify(selector)} → ${r.status} ${r.text}`);
  assert.equal(r.headers.get('content-type')?.split(';')[0], 'application/json');
  const { pushId } = r.body;
  assert.equal(typeof pushId, 'string');
  assert.ok(pushId.length > 0);
  const want = byClientId(expected.map((n) => delivered(...CLIENTS[n])));
  assert.deepEqual(byClientId(r.body.responseMessages), want, `report for ${JSON.stringify(selector)}`);
  assert.deepEqual(r.body.summary, { matched: expected.length, delivered: expected.length, ...SUMMARY0 });
  for (const n of expected) {
    assert.deepEqual(await C[n].next(), pushFrame(pushId, serviceRequest), `frame for ${n} (${CLIENTS[n][0]})`);
  }
  // nobody gets anything else: no duplicates, nothing for the non-matching
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
  return r.body;
}

test('empty selector reaches every client', withLogs(async () => {
  await pushAndCheck({}, ALL);
}));

test('PushResponse has exactly the documented shape', withLogs(async () => {
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire-explorer\\.auth' });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.body).sort(), ['pushId', 'responseMessages', 'summary']);
  assert.deepEqual(r.body.responseMessages, [{
    clientId: 'tribefire-explorer.auth',
    sessionId: 's-john',
    originId: { applicationId: 'pushgate', nodeId: 'n1' },
    successful: true,
    message: 'delivered',
  }]);
  assert.deepEqual(r.body.summary, { matched: 1, delivered: 1, failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] });
  assert.deepEqual(await C.A.next(), { type: 'push', id: r.body.pushId, event: null, channel: null, payload: NOTIFY });
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('clientIdPattern targets by client id', withLogs(async () => {
  await pushAndCheck({ clientIdPattern: 'tribefire-explorer\\..*' }, ['A', 'C']);
  await pushAndCheck({ clientIdPattern: 'tribefire-control-center\\.auth' }, ['B']);
  await pushAndCheck({ clientIdPattern: '.*\\.auth' }, ['A', 'B']);
}));

test('patterns must match the whole value', withLogs(async () => {
  await pushAndCheck({ clientIdPattern: 'tribefire' }, ['D']);
  await pushAndCheck({ clientIdPattern: '.*explorer.*' }, ['A', 'C']);
  await pushAndCheck({ clientIdPattern: 'explorer' }, []);
  await pushAndCheck({ clientIdPattern: 'tribefire-explorer' }, []);
  await pushAndCheck({ sessionIdPattern: 's-' }, []);
  await pushAndCheck({ rolePattern: 'locksmith' }, []);
  await pushAndCheck({ rolePattern: 'tf-' }, []);
  // alternation must be anchored as a whole, not per branch
  await pushAndCheck({ clientIdPattern: 'tribefire|xyz' }, ['D']);
}));

test('sessionIdPattern targets by session', withLogs(async () => {
  await pushAndCheck({ sessionIdPattern: 's-mary' }, ['C', 'D']);
  await pushAndCheck({ sessionIdPattern: 's-john' }, ['A', 'B']);
  await pushAndCheck({ sessionIdPattern: 's-.*' }, ALL);
}));

test('rolePattern matches roles, $group-<g> and $user-<u>', withLogs(async () => {
  await pushAndCheck({ rolePattern: 'tf-locksmith' }, ['A', 'B']);
  await pushAndCheck({ rolePattern: 'tf-.*' }, ['A', 'B']);
  await pushAndCheck({ rolePattern: 'viewer' }, ['C', 'D']);
  await pushAndCheck({ rolePattern: '\\$group-ops' }, ['A', 'B']);
  await pushAndCheck({ rolePattern: '\\$user-john' }, ['A', 'B']);
  await pushAndCheck({ rolePattern: '\\$user-mary' }, ['C', 'D']);
  await pushAndCheck({ rolePattern: '\\$user-.*' }, ALL);
  await pushAndCheck({ rolePattern: '\\$group-.*' }, ['A', 'B']);
  await pushAndCheck({ rolePattern: 'viewer|\\$group-ops' }, ALL);
  // group names are not roles by themselves
  await pushAndCheck({ rolePattern: 'ops' }, []);
  await pushAndCheck({ rolePattern: 'john' }, []);
}));

test('combined patterns are ANDed', withLogs(async () => {
  await pushAndCheck({ clientIdPattern: '.*explorer.*', rolePattern: 'viewer' }, ['C']);
  await pushAndCheck({ clientIdPattern: '.*explorer.*', sessionIdPattern: 's-john' }, ['A']);
  await pushAndCheck({ clientIdPattern: '.*\\.auth', rolePattern: '\\$group-ops', sessionIdPattern: 's-john' }, ['A', 'B']);
  await pushAndCheck({ clientIdPattern: '.*explorer.*', rolePattern: 'tf-locksmith', sessionIdPattern: 's-mary' }, []);
  await pushAndCheck({ clientIdPattern: 'tribefire', sessionIdPattern: 's-john' }, []);
}));

test('the payload arrives unchanged', withLogs(async () => {
  const payload = {
    _type: 'com.braintribe.model.notification.Notify',
    message: 'héllo wörld € 😀 "quoted" \\ back\nslash',
    n: 1.5, neg: -7, big: 12345678901234, t: true, f: false, nil: null,
    arr: [1, 'two', { three: [3] }, []], obj: {},
  };
  await pushAndCheck({ clientIdPattern: 'tribefire' }, ['D'], payload);
  await pushAndCheck({}, ALL, {});
}));

test('push ids are unique', withLogs(async () => {
  const ids = new Set();
  for (let i = 0; i < 5; i++) {
    const body = await pushAndCheck({ clientIdPattern: 'tribefire' }, ['D'], { i });
    ids.add(body.pushId);
  }
  assert.equal(ids.size, 5);
}));

// --- validation ----------------------------------------------------------------

async function expect422(body, errorCheck, raw = false) {
  const r = await pushRequest(node, raw ? body : body);
  assert.equal(r.status, 422, `${typeof body === 'string' ? body : JSON.stringify(body)} → ${r.status} ${r.text}`);
  assert.equal(typeof r.body?.error, 'string', `error body must be JSON: ${r.text}`);
  if (typeof errorCheck === 'string') assert.equal(r.body.error, errorCheck);
  else if (errorCheck instanceof RegExp) assert.match(r.body.error, errorCheck);
  return r;
}

const SR_ERR = 'serviceRequest is required and must be a JSON object';

test('422: serviceRequest missing or not an object', withLogs(async () => {
  await expect422({}, SR_ERR);
  await expect422({ clientIdPattern: '.*' }, SR_ERR);
  await expect422({ serviceRequest: 'notify' }, SR_ERR);
  await expect422({ serviceRequest: [1, 2] }, SR_ERR);
  await expect422({ serviceRequest: [] }, SR_ERR);
  await expect422({ serviceRequest: null }, SR_ERR);
  await expect422({ serviceRequest: 42 }, SR_ERR);
  await expect422({ serviceRequest: true }, SR_ERR);
  await Promise.all(ALL.map((n) => C[n].expectNone(100)));
}));

test('422: invalid regular expressions name the field and the offset', withLogs(async () => {
  for (const field of ['clientIdPattern', 'rolePattern', 'sessionIdPattern']) {
    for (const pattern of ['(', '[a-', '*a', 'a{2,1}']) {
      await expect422({ serviceRequest: NOTIFY, [field]: pattern },
        new RegExp(`^${field}: invalid regular expression at offset \\d+: .+`));
    }
  }
  const r = await expect422({ serviceRequest: NOTIFY, rolePattern: 'ok', clientIdPattern: 'ab(' }, /^clientIdPattern: /);
  assert.match(r.body.error, /offset 3: /, 'PCRE2 reports the error at the end of "ab("');
  await Promise.all(ALL.map((n) => C[n].expectNone(100)));
}));

test('422: patterns that are not strings name the field', withLogs(async () => {
  await expect422({ serviceRequest: NOTIFY, clientIdPattern: 5 }, /clientIdPattern/);
  await expect422({ serviceRequest: NOTIFY, rolePattern: ['a'] }, /rolePattern/);
  await expect422({ serviceRequest: NOTIFY, sessionIdPattern: { a: 1 } }, /sessionIdPattern/);
}));

test('422: malformed JSON body', withLogs(async () => {
  await expect422('{"serviceRequest":', /^body is not valid JSON: .+/);
  await expect422('{"serviceRequest": {"a": 1},}', /^body is not valid JSON: .+/);
  await expect422('not json at all', /^body is not valid JSON: .+/);
  await expect422('', /^body is not valid JSON/);
}));

test('422: a body that is JSON but not an object', withLogs(async () => {
  await expect422('[1,2]');
  await expect422('"text"');
  await expect422('null');
}));

test('422: bad options', withLogs(async () => {
  const REPORT_ERR = 'options.report must be one of full, summary, none';
  await expect422({ serviceRequest: NOTIFY, options: { report: 'everything' } }, REPORT_ERR);
  await expect422({ serviceRequest: NOTIFY, options: { report: 'FULL' } }, REPORT_ERR);
  await expect422({ serviceRequest: NOTIFY, options: { report: 1 } }, REPORT_ERR);
  await expect422({ serviceRequest: NOTIFY, options: { timeoutMs: 0 } }, /options\.timeoutMs/);
  await expect422({ serviceRequest: NOTIFY, options: { timeoutMs: 60001 } }, /options\.timeoutMs/);
  await expect422({ serviceRequest: NOTIFY, options: { timeoutMs: 'soon' } }, /options\.timeoutMs/);
  await expect422({ serviceRequest: NOTIFY, options: { awaitAcks: 'yes' } }, /options\.awaitAcks/);
  await expect422({ serviceRequest: NOTIFY, options: 'full' }, /options/);
  await Promise.all(ALL.map((n) => C[n].expectNone(100)));
}));

test('timeoutMs bounds 1 and 60000 are accepted', withLogs(async () => {
  for (const timeoutMs of [1, 60000]) {
    const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'nobody', options: { timeoutMs } });
    assert.equal(r.status, 200, `timeoutMs ${timeoutMs}: ${r.text}`);
  }
}));

test('a JSON body is read as JSON whatever its Content-Type (curl -d sends form-urlencoded)', withLogs(async () => {
  for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8']) {
    const r = await pushRequest(node, JSON.stringify({ serviceRequest: NOTIFY, clientIdPattern: 'nobody' }), PUB_KEY, { contentType });
    assert.equal(r.status, 200, `${contentType}: ${r.text}`);
    assert.equal(r.body.summary.matched, 0);
  }
  const bad = await pushRequest(node, 'serviceRequest=x', PUB_KEY, { contentType: 'application/x-www-form-urlencoded' });
  assert.equal(bad.status, 422, bad.text);
  assert.match(bad.body.error, /not valid JSON/);
  await Promise.all(ALL.map((n) => C[n].expectNone(100)));
}));

// --- credentials -----------------------------------------------------------------

test('403 Access Forbidden without a valid key', withLogs(async () => {
  const FORBIDDEN = { error: 'Access Forbidden' };
  let r = await pushRequest(node, { serviceRequest: NOTIFY }, null);
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, FORBIDDEN);
  r = await pushRequest(node, { serviceRequest: NOTIFY }, 'wrong-key');
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, FORBIDDEN);
  r = await pushRequest(node, { serviceRequest: NOTIFY }, null, { headers: { authorization: PUB_KEY } });
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, FORBIDDEN);
  r = await pushRequest(node, { serviceRequest: NOTIFY }, null, { headers: { authorization: `Basic ${Buffer.from('x:pub-key').toString('base64')}` } });
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, FORBIDDEN);
  // credentials are checked before the body: a bad body with a bad key is still 403
  r = await pushRequest(node, '{not json', 'wrong-key');
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, FORBIDDEN);
  await Promise.all(ALL.map((n) => C[n].expectNone(100)));
}));

test('the admin key implies publish', withLogs(async () => {
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire' }, ADMIN_KEY);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(await C.D.next(), pushFrame(r.body.pushId, NOTIFY));
}));

test('GET /api/push-requests is 405', withLogs(async () => {
  const r = await api(node, 'GET', '/api/push-requests', { key: PUB_KEY });
  assert.equal(r.status, 405, r.text);
}));

// --- report modes ------------------------------------------------------------------

test('report "summary" has the summary but no responseMessages', withLogs(async () => {
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: '.*explorer.*', options: { report: 'summary' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.body).sort(), ['pushId', 'summary']);
  assert.deepEqual(r.body.summary, { matched: 2, delivered: 2, ...SUMMARY0 });
  assert.deepEqual(await C.A.next(), pushFrame(r.body.pushId, NOTIFY));
  assert.deepEqual(await C.C.next(), pushFrame(r.body.pushId, NOTIFY));
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('report "full" explicitly is the default report', withLogs(async () => {
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire', options: { report: 'full' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body.responseMessages, [delivered(...CLIENTS.D)]);
  assert.deepEqual(await C.D.next(), pushFrame(r.body.pushId, NOTIFY));
}));

test('report "none" answers 202 with only the pushId, clients still receive', withLogs(async () => {
  const r = await pushRequest(node, { serviceRequest: NOTIFY, sessionIdPattern: 's-mary', options: { report: 'none' } });
  assert.equal(r.status, 202, r.text);
  assert.deepEqual(Object.keys(r.body), ['pushId']);
  assert.equal(typeof r.body.pushId, 'string');
  assert.ok(r.body.pushId.length > 0);
  assert.deepEqual(await C.C.next(), pushFrame(r.body.pushId, NOTIFY));
  assert.deepEqual(await C.D.next(), pushFrame(r.body.pushId, NOTIFY));
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

// --- awaitAcks -----------------------------------------------------------------------

test('awaitAcks: acknowledging clients appear with their own message', withLogs(async () => {
  const t0 = Date.now();
  const pending = pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: '.*explorer.*', options: { awaitAcks: true, timeoutMs: 10000 } });
  const fa = await C.A.next();
  const fc = await C.C.next();
  assert.equal(fa.type, 'push');
  assert.equal(fa.id, fc.id);
  C.A.send({ type: 'response', id: fa.id, successful: true, message: 'ok from A' });
  C.C.send({ type: 'response', id: fc.id, successful: true, message: 'ok from C' });
  const r = await pending;
  const elapsed = Date.now() - t0;
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.pushId, fa.id);
  assert.deepEqual(byClientId(r.body.responseMessages), [
    delivered('tribefire-explorer.auth', 's-john', 'ok from A'),
    delivered('tribefire-explorer.cortex', 's-mary', 'ok from C'),
  ]);
  assert.deepEqual(r.body.summary, { matched: 2, delivered: 2, failed: 0, acknowledged: 2, nodes: 1, nodesMissing: [] });
  assert.ok(elapsed < 5000, `the report must come when every client answered, not at the timeout (took ${elapsed} ms)`);
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('awaitAcks: a client that does not answer in time is reported "timeout"', withLogs(async () => {
  const t0 = Date.now();
  const pending = pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire-control-center\\.auth|tribefire', options: { awaitAcks: true, timeoutMs: 800 } });
  const fb = await C.B.next();
  const fd = await C.D.next();
  C.D.send({ type: 'response', id: fd.id, successful: true, message: 'D done' });
  const r = await pending;
  const elapsed = Date.now() - t0;
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.pushId, fb.id);
  assert.deepEqual(byClientId(r.body.responseMessages), [
    delivered('tribefire', 's-mary', 'D done'),
    delivered('tribefire-control-center.auth', 's-john', 'timeout', false),
  ]);
  assert.equal(r.body.summary.matched, 2);
  assert.equal(r.body.summary.acknowledged, 1);
  assert.equal(r.body.summary.failed, 1);
  assert.equal(r.body.summary.nodes, 1);
  assert.deepEqual(r.body.summary.nodesMissing, []);
  assert.ok(elapsed >= 700, `report came after ${elapsed} ms, before the 800 ms timeout`);
  assert.ok(elapsed < 4000, `report came after ${elapsed} ms, long after the 800 ms timeout`);
  // an answer after the report is ignored (no error frame, nothing else)
  C.B.send({ type: 'response', id: fb.id, successful: true, message: 'too late' });
  await Promise.all(ALL.map((n) => C[n].expectNone(200)));
}));

test('awaitAcks: a client answering successful:false is reported so', withLogs(async () => {
  const pending = pushRequest(node, { serviceRequest: NOTIFY, sessionIdPattern: 's-mary', options: { awaitAcks: true, timeoutMs: 5000 } });
  const fc = await C.C.next();
  const fd = await C.D.next();
  C.C.send({ type: 'response', id: fc.id, successful: false, message: 'cannot show notification' });
  C.D.send({ type: 'response', id: fd.id, successful: true, message: 'shown' });
  const r = await pending;
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(byClientId(r.body.responseMessages), [
    delivered('tribefire', 's-mary', 'shown'),
    delivered('tribefire-explorer.cortex', 's-mary', 'cannot show notification', false),
  ]);
  assert.equal(r.body.summary.matched, 2);
  assert.equal(r.body.summary.failed, 1);
  assert.equal(r.body.summary.nodes, 1);
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('awaitAcks with report summary counts acknowledgements', withLogs(async () => {
  const pending = pushRequest(node, { serviceRequest: NOTIFY, sessionIdPattern: 's-john', options: { awaitAcks: true, timeoutMs: 5000, report: 'summary' } });
  for (const n of ['A', 'B']) {
    const f = await C[n].next();
    C[n].send({ type: 'response', id: f.id, successful: true, message: 'ok' });
  }
  const r = await pending;
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.body).sort(), ['pushId', 'summary']);
  assert.deepEqual(r.body.summary, { matched: 2, delivered: 2, failed: 0, acknowledged: 2, nodes: 1, nodesMissing: [] });
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('awaitAcks: an answer from a client the push was not sent to does not count', withLogs(async () => {
  const pending = pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire', options: { awaitAcks: true, timeoutMs: 800 } });
  const fd = await C.D.next();
  // C was not targeted but sends a response carrying D's push id
  C.C.send({ type: 'response', id: fd.id, successful: true, message: 'spoofed' });
  const r = await pending;
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body.responseMessages, [delivered('tribefire', 's-mary', 'timeout', false)]);
  assert.equal(r.body.summary.acknowledged, 0);
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('awaitAcks: a second answer from the same client is ignored', withLogs(async () => {
  const pending = pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire|tribefire-explorer\\.auth', options: { awaitAcks: true, timeoutMs: 1500 } });
  const fd = await C.D.next();
  const fa = await C.A.next();
  C.D.send({ type: 'response', id: fd.id, successful: true, message: 'first' });
  C.D.send({ type: 'response', id: fd.id, successful: false, message: 'second' });
  await sleep(50);
  C.A.send({ type: 'response', id: fa.id, successful: true, message: 'a' });
  const r = await pending;
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(byClientId(r.body.responseMessages), [
    delivered('tribefire', 's-mary', 'first'),
    delivered('tribefire-explorer.auth', 's-john', 'a'),
  ]);
  assert.equal(r.body.summary.acknowledged, 2);
  await Promise.all(ALL.map((n) => C[n].expectNone(150)));
}));

test('awaitAcks: two pending pushes answered in reverse order each get their own answer', withLogs(async () => {
  const p1 = pushRequest(node, { serviceRequest: { n: 1 }, clientIdPattern: 'tribefire', options: { awaitAcks: true, timeoutMs: 5000 } });
  const f1 = await C.D.next();
  const p2 = pushRequest(node, { serviceRequest: { n: 2 }, clientIdPattern: 'tribefire', options: { awaitAcks: true, timeoutMs: 5000 } });
  const f2 = await C.D.next();
  assert.deepEqual([f1.payload, f2.payload], [{ n: 1 }, { n: 2 }]);
  C.D.send({ type: 'response', id: f2.id, successful: true, message: 'two' });
  const r2 = await p2;
  C.D.send({ type: 'response', id: f1.id, successful: false, message: 'one' });
  const r1 = await p1;
  assert.equal(r1.body.pushId, f1.id);
  assert.equal(r2.body.pushId, f2.id);
  assert.deepEqual(r1.body.responseMessages, [delivered('tribefire', 's-mary', 'one', false)]);
  assert.deepEqual(r2.body.responseMessages, [delivered('tribefire', 's-mary', 'two')]);
}));

test('awaitAcks: a client that disconnects before answering is reported unsuccessful', withLogs(async () => {
  const e = await connectClient(node, { sessionId: 's-john', clientId: 'goner' });
  await waitForConnections(node, ALL.length + 1);
  const t0 = Date.now();
  const pending = pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'goner', options: { awaitAcks: true, timeoutMs: 3000 } });
  await e.next();
  await e.close();
  const r = await pending;
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.responseMessages.length, 1);
  const [m] = r.body.responseMessages;
  assert.equal(m.clientId, 'goner');
  assert.equal(m.successful, false);
  assert.ok(['closed', 'timeout'].includes(m.message), `message ${m.message}`);
  assert.ok(Date.now() - t0 < 3000 + 2000, 'bounded by the timeout');
}));

test('clientId and sessionId query parameters are percent-decoded', withLogs(async () => {
  const clientId = 'app/ü x+y.1';
  const path = `/websocket?sessionId=${encodeURIComponent('s-mary')}&clientId=${encodeURIComponent(clientId)}`;
  const res = await tryConnect(node, null, { path });
  assert.equal(res.open, true, `${res.status} ${res.text}`);
  const e = new Client(res.ws, { clientId });
  await waitForConnections(node, ALL.length + 1);
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'app/ü x\\+y\\.1' });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body.responseMessages, [delivered(clientId, 's-mary')]);
  assert.deepEqual(await e.next(), pushFrame(r.body.pushId, NOTIFY));
  await e.close();
  await waitForConnections(node, ALL.length);
}));

test('awaitAcks with no matching client answers at once', withLogs(async () => {
  const t0 = Date.now();
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'nobody', options: { awaitAcks: true, timeoutMs: 10000 } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.body.responseMessages, []);
  assert.deepEqual(r.body.summary, { matched: 0, delivered: 0, failed: 0, acknowledged: 0, nodes: 1, nodesMissing: [] });
  assert.ok(Date.now() - t0 < 3000, 'no clients to wait for');
}));

test('a client that disconnects is no longer targeted', withLogs(async () => {
  const e = await connectClient(node, { sessionId: 's-john', clientId: 'tribefire-explorer.temp' });
  await waitForConnections(node, ALL.length + 1);
  const r1 = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire-explorer\\.temp' });
  assert.deepEqual(r1.body.responseMessages, [delivered('tribefire-explorer.temp', 's-john')]);
  assert.deepEqual(await e.next(), pushFrame(r1.body.pushId, NOTIFY));
  await e.close();
  await waitForConnections(node, ALL.length);
  await sleep(100);
  const r2 = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'tribefire-explorer\\.temp' });
  assert.equal(r2.status, 200, r2.text);
  assert.deepEqual(r2.body.responseMessages, []);
  assert.equal(r2.body.summary.matched, 0);
}));

test('two clients with the same clientId both receive', withLogs(async () => {
  const e1 = await connectClient(node, { sessionId: 's-john', clientId: 'twin' });
  const e2 = await connectClient(node, { sessionId: 's-mary', clientId: 'twin' });
  await waitForConnections(node, ALL.length + 2);
  const r = await pushRequest(node, { serviceRequest: NOTIFY, clientIdPattern: 'twin' });
  assert.equal(r.status, 200, r.text);
  const got = [...r.body.responseMessages].sort((a, b) => (a.sessionId < b.sessionId ? -1 : 1));
  assert.deepEqual(got, [delivered('twin', 's-john'), delivered('twin', 's-mary')]);
  assert.deepEqual(await e1.next(), pushFrame(r.body.pushId, NOTIFY));
  assert.deepEqual(await e2.next(), pushFrame(r.body.pushId, NOTIFY));
  await e1.close();
  await e2.close();
}));

test('no client saw a WebSocket error', () => {
  for (const n of ALL) assert.deepEqual(C[n].errors, [], `client ${n}`);
  for (const n of ALL) assert.equal(C[n].closeInfo, null, `client ${n} still open`);
});

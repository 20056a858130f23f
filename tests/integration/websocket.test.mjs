// GET /websocket: the checks made before the upgrade (docs/api.md), sessions from the
// config, the admin API and JWTs, and the server's answer to unknown client frames.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, cleanup, withLogs, tryConnect, connectClient, createSession, api, pushRequest,
  makeJwt, jwtSessionId, sleep, delivered, pushFrame, ADMIN_KEY, PUB_KEY, get, RawWs, wsPath, rawHttp,
} from './lib/harness.mjs';

let node;

before(async () => {
  node = await startNode({ workers: 2 });
});

after(cleanup);

const nowS = () => Math.floor(Date.now() / 1000);

async function expectRefused(params, status, error) {
  const r = await tryConnect(node, params);
  if (r.open) r.ws.terminate();
  assert.equal(r.open, false, `upgrade for ${JSON.stringify(params).slice(0, 200)} should be refused with ${status}`);
  assert.equal(r.status, status, `status for ${JSON.stringify(params).slice(0, 200)}; body ${r.text}`);
  assert.equal(typeof r.body, 'object', `error body must be JSON, got ${JSON.stringify(r.text)}`);
  assert.notEqual(r.body, null);
  assert.equal(typeof r.body.error, 'string', `error body ${r.text}`);
  if (error !== undefined) assert.equal(r.body.error, error);
  return r;
}

/** A push addressed to exactly this clientId; returns the report entry list. */
async function pushTo(clientId, payload = { _type: 'com.braintribe.model.notification.Notify', message: clientId }) {
  const r = await pushRequest(node, { serviceRequest: payload, clientIdPattern: clientId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') });
  assert.equal(r.status, 200, r.text);
  return { ...r.body, payload };
}

test('missing sessionId is 400 "sessionId is required"', withLogs(async () => {
  await expectRefused({ clientId: 'c1' }, 400, 'sessionId is required');
}));

test('empty sessionId is 400 "sessionId is required"', withLogs(async () => {
  await expectRefused({ sessionId: '', clientId: 'c1' }, 400, 'sessionId is required');
}));

test('missing clientId is 400 "clientId is required"', withLogs(async () => {
  await expectRefused({ sessionId: 's-john' }, 400, 'clientId is required');
}));

test('empty clientId is 400 "clientId is required"', withLogs(async () => {
  await expectRefused({ sessionId: 's-john', clientId: '' }, 400, 'clientId is required');
}));

test('missing parameters are checked before accept (400 before 406)', withLogs(async () => {
  await expectRefused({ clientId: 'c1', accept: 'text/xml' }, 400, 'sessionId is required');
}));

test('a plain GET without upgrade headers is 400', withLogs(async () => {
  const r = await get(node, wsPath({ sessionId: 's-john', clientId: 'c1' }));
  assert.equal(r.status, 400, r.text);
  assert.equal(typeof r.body?.error, 'string', r.text);
}));

test('an upgrade request without Sec-WebSocket-Key is 400', withLogs(async () => {
  const c = await rawHttp(node);
  await c.write(`GET ${wsPath({ sessionId: 's-john', clientId: 'c1' })} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const [resp] = await c.responses(1);
  assert.equal(resp.status, 400, resp.text);
  c.destroy();
}));

test('unknown session is 401', withLogs(async () => {
  await expectRefused({ sessionId: 's-nobody', clientId: 'c1' }, 401);
}));

test('unsupported accept is 406', withLogs(async () => {
  await expectRefused({ sessionId: 's-john', clientId: 'c1', accept: 'text/xml' }, 406);
  await expectRefused({ sessionId: 's-john', clientId: 'c1', accept: 'gm/xml' }, 406);
}));

test('accept is checked before the session (406 before 401)', withLogs(async () => {
  await expectRefused({ sessionId: 's-nobody', clientId: 'c1', accept: 'text/xml' }, 406);
}));

test('default accept, gm/json and application/json are accepted and receive pushes', withLogs(async () => {
  for (const [i, accept] of [undefined, 'gm/json', 'application/json'].entries()) {
    const clientId = `accept-${i}`;
    const c = await connectClient(node, { sessionId: 's-john', clientId, accept });
    const rep = await pushTo(clientId);
    assert.deepEqual(rep.responseMessages, [delivered(clientId, 's-john')]);
    assert.deepEqual(await c.next(), pushFrame(rep.pushId, rep.payload));
    await c.close();
    assert.deepEqual(c.errors, []);
  }
}));

test('the 101 answer carries the right Sec-WebSocket-Accept', withLogs(async () => {
  const raw = await RawWs.connect(node, wsPath({ sessionId: 's-john', clientId: 'raw-hs' }));
  assert.equal(raw.handshake.status, 101, raw.handshake.statusLine);
  assert.equal(raw.handshake.headers['sec-websocket-accept'], raw.expectedAccept());
  assert.match(raw.handshake.headers.upgrade, /^websocket$/i);
  assert.match(raw.handshake.headers.connection, /upgrade/i);
  raw.destroy();
}));

test('POST /api/sessions needs the admin scope', withLogs(async () => {
  let r = await createSession(node, { user: 'x' }, PUB_KEY);
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, { error: 'Access Forbidden' });
  r = await createSession(node, { user: 'x' }, null);
  assert.equal(r.status, 403, r.text);
  assert.deepEqual(r.body, { error: 'Access Forbidden' });
  r = await api(node, 'DELETE', '/api/sessions/s-john', { key: PUB_KEY });
  assert.equal(r.status, 403, r.text);
}));

test('POST /api/sessions without user is 422 naming the field', withLogs(async () => {
  const r = await createSession(node, { roles: ['a'] });
  assert.equal(r.status, 422, r.text);
  assert.match(r.body.error, /user/);
}));

test('a created session connects and carries its roles and groups', withLogs(async () => {
  const r = await createSession(node, { user: 'ann', roles: ['auditor'], groups: ['blue'] });
  assert.equal(r.status, 201, r.text);
  assert.equal(typeof r.body.sessionId, 'string');
  assert.ok(r.body.sessionId.length > 0);
  assert.equal(r.body.expiresAt, null, 'no ttlSeconds: expiresAt null');
  const sid = r.body.sessionId;
  const c = await connectClient(node, { sessionId: sid, clientId: 'ann-client' });
  for (const rolePattern of ['auditor', '\\$group-blue', '\\$user-ann']) {
    const p = await pushRequest(node, { serviceRequest: { rolePattern }, rolePattern });
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(p.body.responseMessages, [delivered('ann-client', sid)], `rolePattern ${rolePattern}`);
    assert.deepEqual(await c.next(), pushFrame(p.body.pushId, { rolePattern }));
  }
  await c.close();
}));

test('a session with ttlSeconds:1 expires', withLogs(async () => {
  const t0 = Date.now();
  const r = await createSession(node, { user: 'temp', roles: ['r'], ttlSeconds: 1 });
  assert.equal(r.status, 201, r.text);
  const sid = r.body.sessionId;
  assert.equal(typeof r.body.expiresAt, 'number', 'expiresAt is unix ms');
  assert.ok(r.body.expiresAt >= t0 + 1000 - 50 && r.body.expiresAt <= Date.now() + 1000 + 50,
    `expiresAt ${r.body.expiresAt} should be about now+1000 (now ${Date.now()})`);
  // still valid right away
  const ok = await tryConnect(node, { sessionId: sid, clientId: 'temp-early' });
  assert.equal(ok.open, true, `fresh session refused: ${ok.status} ${ok.text}`);
  ok.ws.terminate();
  await sleep(Math.max(0, t0 + 1300 - Date.now()));
  await expectRefused({ sessionId: sid, clientId: 'temp-late' }, 401);
}));

test('a revoked session is refused, its open connection keeps working', withLogs(async () => {
  const r = await createSession(node, { user: 'rev' });
  assert.equal(r.status, 201, r.text);
  const sid = r.body.sessionId;
  const c = await connectClient(node, { sessionId: sid, clientId: 'rev-open' });
  const del = await api(node, 'DELETE', `/api/sessions/${encodeURIComponent(sid)}`, { key: ADMIN_KEY });
  assert.equal(del.status, 204, del.text);
  assert.equal(del.text, '');
  await expectRefused({ sessionId: sid, clientId: 'rev-new' }, 401);
  // "Revoking does not cut open connections"
  const rep = await pushTo('rev-open');
  assert.deepEqual(rep.responseMessages, [delivered('rev-open', sid)]);
  assert.deepEqual(await c.next(), pushFrame(rep.pushId, rep.payload));
  // revoking again: unknown
  const again = await api(node, 'DELETE', `/api/sessions/${encodeURIComponent(sid)}`, { key: ADMIN_KEY });
  assert.equal(again.status, 404, again.text);
  const unknown = await api(node, 'DELETE', '/api/sessions/never-existed', { key: ADMIN_KEY });
  assert.equal(unknown.status, 404, unknown.text);
  await c.close();
}));

test('JWT session without jti: connects, roles/groups/user apply, reported as jwt-<sha256 prefix>', withLogs(async () => {
  const token = makeJwt({ sub: 'alice', roles: ['jwt-role'], groups: ['g1'], exp: nowS() + 600 });
  const c = await connectClient(node, { sessionId: token, clientId: 'jwt-a' });
  const sid = jwtSessionId(token);
  for (const rolePattern of ['jwt-role', '\\$group-g1', '\\$user-alice']) {
    const p = await pushRequest(node, { serviceRequest: { n: 1 }, rolePattern });
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(p.body.responseMessages, [delivered('jwt-a', sid)], `rolePattern ${rolePattern}`);
    assert.deepEqual(await c.next(), pushFrame(p.body.pushId, { n: 1 }));
  }
  // the session id patterns match is the derived id, never the token
  const bySid = await pushRequest(node, { serviceRequest: { n: 2 }, sessionIdPattern: sid });
  assert.deepEqual(bySid.body.responseMessages, [delivered('jwt-a', sid)]);
  assert.deepEqual(await c.next(), pushFrame(bySid.body.pushId, { n: 2 }));
  const byToken = await pushRequest(node, { serviceRequest: { n: 3 }, sessionIdPattern: token.replace(/\./g, '\\.') });
  assert.equal(byToken.status, 200, byToken.text);
  assert.deepEqual(byToken.body.responseMessages, []);
  assert.ok(!JSON.stringify(bySid.body).includes(token), 'the token never appears in reports');
  await c.expectNone(200);
  await c.close();
}));

test('JWT session with jti is reported under the jti', withLogs(async () => {
  const token = makeJwt({ sub: 'bob', roles: [], groups: [], exp: nowS() + 600, jti: 'jti-bob-1' });
  const c = await connectClient(node, { sessionId: token, clientId: 'jwt-b' });
  const p = await pushRequest(node, { serviceRequest: { n: 1 }, sessionIdPattern: 'jti-bob-1' });
  assert.equal(p.status, 200, p.text);
  assert.deepEqual(p.body.responseMessages, [delivered('jwt-b', 'jti-bob-1')]);
  assert.deepEqual(await c.next(), pushFrame(p.body.pushId, { n: 1 }));
  await c.close();
}));

test('JWT with a bad signature is 401', withLogs(async () => {
  const token = makeJwt({ sub: 'mallory', roles: ['admin'], exp: nowS() + 600 }, 'wrong-secret');
  await expectRefused({ sessionId: token, clientId: 'jwt-bad' }, 401);
  // tampered payload with the original signature
  const good = makeJwt({ sub: 'alice', roles: [], exp: nowS() + 600 });
  const [h, , s] = good.split('.');
  const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'root', roles: ['x'], exp: nowS() + 600 })).toString('base64url')}.${s}`;
  await expectRefused({ sessionId: forged, clientId: 'jwt-forged' }, 401);
}));

test('JWT with alg none is 401', withLogs(async () => {
  const h = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
  const p = Buffer.from(JSON.stringify({ sub: 'alice', exp: nowS() + 600 })).toString('base64url');
  await expectRefused({ sessionId: `${h}.${p}.`, clientId: 'jwt-none' }, 401);
}));

test('JWT with an expired exp is 401', withLogs(async () => {
  const token = makeJwt({ sub: 'alice', roles: ['r'], groups: [], exp: nowS() - 60 });
  await expectRefused({ sessionId: token, clientId: 'jwt-exp' }, 401);
}));

test('unknown client frame type gets an error frame and the connection stays open', withLogs(async () => {
  const c = await connectClient(node, { sessionId: 's-mary', clientId: 'frames-1' });
  const bad = [
    JSON.stringify({ type: 'bogus', id: 'x' }),
    'this is not json',
    JSON.stringify([1, 2, 3]),
    JSON.stringify({ id: 'no-type' }),
  ];
  for (const text of bad) {
    c.send(text);
    const m = await c.next();
    assert.equal(m.type, 'error', `answer to ${text}: ${JSON.stringify(m)}`);
    assert.equal(typeof m.error, 'string');
    assert.ok(m.error.length > 0);
    assert.deepEqual(Object.keys(m).sort(), ['error', 'type']);
  }
  // a response for an unknown push is ignored silently
  c.send({ type: 'response', id: 'no-such-push', successful: true, message: 'ok' });
  await c.expectNone(300);
  // still open and still receiving
  assert.equal(c.closeInfo, null);
  const rep = await pushTo('frames-1');
  assert.deepEqual(rep.responseMessages, [delivered('frames-1', 's-mary')]);
  assert.deepEqual(await c.next(), pushFrame(rep.pushId, rep.payload));
  assert.deepEqual(c.errors, []);
  await c.close();
}));

test('a client that closes is gone from later reports', withLogs(async () => {
  const c = await connectClient(node, { sessionId: 's-mary', clientId: 'leaver' });
  const closeInfo = await c.close(1000, 'bye');
  assert.equal(closeInfo.code, 1000, 'server echoes the close code');
  await sleep(100);
  const rep = await pushTo('leaver');
  assert.deepEqual(rep.responseMessages, []);
  assert.equal(rep.summary.matched, 0);
}));

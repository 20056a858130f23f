// Test harness for pushgate integration tests.
//
// startNode() spawns a real `pushgate serve` on a free loopback port with a JSON config
// in a fresh temp dir and waits for /readyz. connectClient() opens a WebSocket client
// whose received JSON messages are queued for next()/expectNone(). pushRequest() and
// api() call the HTTP API with fetch. RawWs speaks RFC 6455 over a raw node:net socket
// for framing tests, rawHttp() sends raw bytes and parses HTTP/1.1 responses.
//
// Every node and client opened here is tracked; call cleanup() in an after() hook.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import crypto from 'node:crypto';
import WebSocket from 'ws';

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, '..', '..', '..');
export const BIN = resolve(REPO_ROOT, process.env.PUSHGATE_BIN || 'build/pushgate');

export const PUB_KEY = 'pub-key';
export const ADMIN_KEY = 'admin-key';
export const JWT_SECRET = 'test-secret';
/** Timeouts stretch under sanitizers (scripts/test.sh sets PUSHGATE_SANITIZED=1). */
export const SLOW = process.env.PUSHGATE_SANITIZED ? 3 : 1;

/** The config most tests use (a fresh deep copy each call). */
export function baseConfig(overrides = {}) {
  const cfg = {
    applicationId: 'pushgate',
    nodeId: 'n1',
    apiKeys: [
      { key: PUB_KEY, scopes: ['publish'] },
      { key: ADMIN_KEY, scopes: ['admin'] },
    ],
    jwt: { secret: JWT_SECRET },
    sessions: [
      { sessionId: 's-john', user: 'john', roles: ['tf-locksmith'], groups: ['ops'] },
      { sessionId: 's-mary', user: 'mary', roles: ['viewer'] },
    ],
    limits: { maxOutputBytes: 1048576 },
  };
  const extraLimits = overrides.limits || {};
  Object.assign(cfg, overrides);
  cfg.limits = { maxOutputBytes: 1048576, ...extraLimits };
  return cfg;
}

// ---------------------------------------------------------------------------------
// process bookkeeping

const liveProcs = new Set();
const allNodes = [];
const openClients = new Set();

process.on('exit', () => {
  for (const p of liveProcs) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Bind port 0 on loopback, read the port the kernel gave, close. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

function tail(s, n) {
  return s.length > n ? '…' + s.slice(s.length - n) : s;
}

/**
 * Start a pushgate node. Returns
 * {port, url, wsUrl, dir, proc, logs(), stop(signal) -> Promise<{code, signal}>, exited}.
 */
export async function startNode({ workers = 1, config = baseConfig(), extraArgs = [], readyTimeoutMs = 10000 * SLOW, tls = null } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`pushgate binary not found at ${BIN} (build it with make, or set PUSHGATE_BIN)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'pushgate-it-'));
  const cfgPath = join(dir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify(config, null, 2));
  const port = await freePort();
  const args = [
    'serve', '--config', cfgPath, '--listen', `127.0.0.1:${port}`,
    '--workers', String(workers), '--data-dir', join(dir, 'data'), ...extraArgs,
  ];
  const proc = spawn(BIN, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  liveProcs.add(proc);
  let stderr = '';
  let stdout = '';
  proc.stderr.setEncoding('utf8');
  proc.stdout.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr += d; if (stderr.length > 4e6) stderr = stderr.slice(-2e6); });
  proc.stdout.on('data', (d) => { stdout += d; if (stdout.length > 4e6) stdout = stdout.slice(-2e6); });
  let exitInfo = null;
  const exited = new Promise((res) => {
    proc.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      liveProcs.delete(proc);
      res(exitInfo);
    });
    proc.on('error', (err) => {
      stderr += `\n[harness] spawn error: ${err.message}\n`;
      exitInfo = { code: null, signal: null, error: err };
      liveProcs.delete(proc);
      res(exitInfo);
    });
  });

  // tls: {fetch} (lib/tls.mjs): the node speaks https/wss; api() and readiness use that fetch
  const node = {
    port,
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    wsUrl: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    fetch: tls ? tls.fetch : fetch,
    dir,
    proc,
    args,
    exited,
    logs: () => stderr,
    stdout: () => stdout,
    isRunning: () => exitInfo === null,
    exitInfo: () => exitInfo,
    /** Send a signal and wait for the process to exit. */
    async stop(signal = 'SIGTERM', timeoutMs = 10000) {
      if (exitInfo) return exitInfo;
      try { proc.kill(signal); } catch { /* gone */ }
      const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
      const info = await exited;
      clearTimeout(t);
      return info;
    },
    kill() {
      if (!exitInfo) { try { proc.kill('SIGKILL'); } catch { /* gone */ } }
      return exited;
    },
  };
  allNodes.push(node);

  const deadline = Date.now() + readyTimeoutMs;
  let lastErr = '';
  while (Date.now() < deadline) {
    if (exitInfo) {
      throw new Error(`pushgate exited before ready (${JSON.stringify(exitInfo)}); args: ${args.join(' ')}\nstderr:\n${tail(stderr, 4000)}`);
    }
    try {
      const r = await node.fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) return node;
      lastErr = `status ${r.status}`;
    } catch (e) {
      lastErr = e.cause?.code || e.message;
    }
    await sleep(50);
  }
  await node.kill();
  throw new Error(`pushgate not ready within ${readyTimeoutMs} ms (${lastErr}); stderr:\n${tail(stderr, 4000)}`);
}

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/;

/**
 * Close every client, then stop every node this process started with SIGTERM (it must
 * exit 0, as docs/api.md says), killing what does not exit within 10 s. Throws when a
 * node did not exit cleanly or its stderr has a sanitizer report, so the after() hook
 * that calls it fails the file. Use as `after(cleanup)`.
 */
export async function cleanup() {
  for (const c of openClients) {
    try { c.terminate(); } catch { /* ignore */ }
  }
  openClients.clear();
  const problems = [];
  await Promise.all(allNodes.map(async (n) => {
    if (!n.isRunning()) return;
    const t0 = Date.now();
    const info = await n.stop('SIGTERM', 10000);
    if (info.code !== 0 || info.signal !== null) {
      problems.push(`pushgate :${n.port} did not exit 0 on SIGTERM at cleanup: ${JSON.stringify(info)} after ${Date.now() - t0} ms`);
    }
  }));
  for (const n of allNodes) {
    const m = SANITIZER_RE.exec(n.logs());
    if (m) problems.push(`pushgate :${n.port} stderr has a sanitizer report (${m[0]})`);
  }
  if (problems.length) {
    const logs = allNodes.filter((n) => SANITIZER_RE.test(n.logs()) || (n.exitInfo() && n.exitInfo().code !== 0))
      .map((n) => `--- pushgate :${n.port} stderr tail ---\n${tail(n.logs(), 6000)}`).join('\n');
    allNodes.length = 0;
    throw new Error(`${problems.join('\n')}\n${logs}`);
  }
  for (const n of allNodes) {
    try { rmSync(n.dir, { recursive: true, force: true }); } catch { /* ignore */ }
  }
  allNodes.length = 0;
}

/**
 * Wrap a test body so that, when it fails, the stderr of every node started in this
 * file is attached to the test output as a diagnostic.
 */
export function withLogs(fn) {
  return async (t) => {
    try {
      return await fn(t);
    } catch (err) {
      for (const n of allNodes) {
        t.diagnostic(`pushgate :${n.port} (${n.isRunning() ? 'running' : 'exited ' + JSON.stringify(n.exitInfo())}) stderr tail:\n${tail(n.logs(), 3000)}`);
      }
      throw err;
    }
  };
}

// ---------------------------------------------------------------------------------
// HTTP helpers

async function readBody(r) {
  const text = await r.text();
  let body = null;
  try { body = text.length ? JSON.parse(text) : null; } catch { body = undefined; }
  return { status: r.status, headers: r.headers, text, body };
}

/** Generic API call. body may be an object (sent as JSON) or a string (sent as is). */
export async function api(node, method, path, { key, body, headers = {}, contentType = 'application/json' } = {}) {
  const h = { ...headers };
  if (key !== undefined && key !== null) h.authorization = `Bearer ${key}`;
  const init = { method, headers: h, signal: AbortSignal.timeout(70000) };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (contentType && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = contentType;
  }
  const r = await (node.fetch || fetch)(node.url + path, init);
  return readBody(r);
}

/** POST /api/push-requests with `Authorization: Bearer <key>` (no header when key is null). */
export function pushRequest(node, body, key = PUB_KEY, opts = {}) {
  return api(node, 'POST', '/api/push-requests', { key, body, ...opts });
}

/** GET a path, returning {status, headers, text, body}. */
export function get(node, path, opts = {}) {
  return api(node, 'GET', path, opts);
}

/** Create a session with the admin API. Returns {status, body}. */
export function createSession(node, spec, key = ADMIN_KEY) {
  return api(node, 'POST', '/api/sessions', { key, body: spec });
}

/** Poll GET /api/connections until it reports n connections (best effort; returns the last list). */
export async function waitForConnections(node, n, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    try {
      const r = await get(node, '/api/connections', { key: ADMIN_KEY });
      if (r.status !== 200 || !r.body || !Array.isArray(r.body.connections)) return null;
      last = r.body.connections;
      if (last.length === n) return last;
    } catch { return null; }
    await sleep(25);
  }
  return last;
}

// ---------------------------------------------------------------------------------
// JWT

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Make an HS256 JWT with node:crypto. */
export function makeJwt(claims, secret = JWT_SECRET, header = { alg: 'HS256', typ: 'JWT' }) {
  const h = b64url(JSON.stringify(header));
  const p = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${sig}`;
}

/** The session id pushgate reports for a JWT without `jti`. */
export function jwtSessionId(token) {
  return 'jwt-' + crypto.createHash('sha256').update(token).digest('hex').slice(0, 16);
}

// ---------------------------------------------------------------------------------
// WebSocket clients

export function wsPath({ sessionId, clientId, accept } = {}) {
  const q = new URLSearchParams();
  if (sessionId !== undefined) q.set('sessionId', sessionId);
  if (clientId !== undefined) q.set('clientId', clientId);
  if (accept !== undefined) q.set('accept', accept);
  const s = q.toString();
  return '/websocket' + (s ? '?' + s : '');
}

/**
 * Try a WebSocket upgrade. Resolves {open: true, ws} on 101, or
 * {open: false, status, body, text, headers} when the server refuses the upgrade.
 */
export function tryConnect(node, params, { path, timeoutMs = 5000, wsOptions = {} } = {}) {
  const url = node.wsUrl + (path || wsPath(params));
  return new Promise((res, rej) => {
    const ws = new WebSocket(url, wsOptions);
    openClients.add(ws);
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      ws.terminate();
      rej(new Error(`WebSocket ${url}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.on('unexpected-response', (req, resp) => {
      let text = '';
      resp.setEncoding('utf8');
      resp.on('data', (d) => { text += d; });
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        openClients.delete(ws);
        let body;
        try { body = text.length ? JSON.parse(text) : null; } catch { body = undefined; }
        req.destroy();
        res({ open: false, status: resp.statusCode, headers: resp.headers, text, body });
      };
      resp.on('end', done);
      resp.on('close', done);
      resp.on('error', done);
    });
    ws.on('open', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      res({ open: true, ws });
    });
    ws.on('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      openClients.delete(ws);
      rej(err);
    });
  });
}

/** Wraps an open ws: queues messages (parsed JSON), records errors and the close. */
export class Client {
  constructor(ws, info = {}) {
    this.ws = ws;
    this.info = info;
    this.queue = [];
    this.waiters = [];
    this.errors = [];
    this.closeInfo = null;
    this.closed = new Promise((res) => { this._resolveClosed = res; });
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString('utf8');
      let msg;
      if (isBinary) msg = { __binary: Buffer.from(data) };
      else {
        try { msg = JSON.parse(text); } catch { msg = { __invalidJson: text }; }
      }
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.queue.push(msg);
    });
    ws.on('error', (err) => { this.errors.push(err); });
    ws.on('close', (code, reason) => {
      openClients.delete(ws);
      this.closeInfo = { code, reason: reason.toString('utf8') };
      this._resolveClosed(this.closeInfo);
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.label()}: connection closed (${code}) while waiting for a message`));
    });
  }

  label() { return `client ${this.info.clientId ?? '?'}`; }

  /** Next received message (parsed JSON); rejects after timeoutMs. */
  next(timeoutMs = 3000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(new Error(`${this.label()}: closed (${this.closeInfo.code}), no message queued`));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (m) => { clearTimeout(w.t); resolve(m); },
        reject: (e) => { clearTimeout(w.t); reject(e); },
      };
      w.t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.label()}: no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Resolves if nothing (more) arrives within ms; rejects with the unexpected message otherwise. */
  async expectNone(ms = 300) {
    if (this.queue.length) throw new Error(`${this.label()}: unexpected message ${JSON.stringify(this.queue[0]).slice(0, 500)}`);
    await sleep(ms);
    if (this.queue.length) throw new Error(`${this.label()}: unexpected message ${JSON.stringify(this.queue[0]).slice(0, 500)}`);
  }

  /** Drop whatever is queued. */
  drain() { const q = this.queue; this.queue = []; return q; }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  close(code = 1000, reason = '') { this.ws.close(code, reason); return this.closed; }

  terminate() { this.ws.terminate(); }
}

/** Connect a client; throws (with status and body) if the server refuses. */
export async function connectClient(node, { sessionId = 's-john', clientId, accept } = {}, opts = {}) {
  const r = await tryConnect(node, { sessionId, clientId, accept }, opts);
  if (!r.open) {
    throw new Error(`WebSocket upgrade refused for clientId=${clientId} sessionId=${String(sessionId).slice(0, 40)}: ${r.status} ${r.text}`);
  }
  return new Client(r.ws, { sessionId, clientId, accept });
}

/** The frame a client should receive for a push. */
export function pushFrame(id, payload) {
  return { type: 'push', id, event: null, channel: null, payload };
}

// ---------------------------------------------------------------------------------
// Raw HTTP over node:net

/** Parse as many complete HTTP/1.1 responses as the buffer holds. */
export function parseHttpResponses(buf) {
  const out = [];
  let off = 0;
  for (;;) {
    const headEnd = buf.indexOf('\r\n\r\n', off);
    if (headEnd < 0) break;
    const head = buf.subarray(off, headEnd).toString('latin1');
    const lines = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let p = headEnd + 4;
    let body;
    const status = Number(m[1]);
    if (headers['transfer-encoding'] && /chunked/i.test(headers['transfer-encoding'])) {
      const chunks = [];
      let complete = false;
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le < 0) break;
        const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size');
        if (size === 0) {
          const end = buf.indexOf('\r\n\r\n', le);
          if (end < 0) break;
          p = end + 4;
          complete = true;
          break;
        }
        if (buf.length < le + 2 + size + 2) break;
        chunks.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      if (!complete) break;
      body = Buffer.concat(chunks);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) break;
      body = buf.subarray(p, p + n);
      p += n;
    } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      body = Buffer.alloc(0);
    } else {
      // read until close: only complete when the caller says the socket ended
      body = buf.subarray(p);
      out.push({ status, reason: m[2] || '', headers, text: body.toString('utf8'), untilClose: true });
      off = buf.length;
      break;
    }
    const text = body.toString('utf8');
    let json;
    try { json = text.length ? JSON.parse(text) : null; } catch { json = undefined; }
    out.push({ status, reason: m[2] || '', headers, text, body: json });
    off = p;
  }
  return { responses: out, rest: buf.subarray(off) };
}

/**
 * A raw TCP connection to a node for HTTP tests.
 * conn.write(bytes); await conn.responses(n, timeoutMs); conn.ended (promise).
 */
export async function rawHttp(node) {
  const sock = net.connect(node.port, '127.0.0.1');
  await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
  let buf = Buffer.alloc(0);
  let endedFlag = false;
  const listeners = new Set();
  const ended = new Promise((res) => {
    sock.on('close', () => { endedFlag = true; res(); for (const l of listeners) l(); });
  });
  sock.on('error', () => { /* reset by peer etc.: reported through close */ });
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); for (const l of listeners) l(); });
  return {
    sock,
    ended,
    isEnded: () => endedFlag,
    write: (data) => new Promise((res) => sock.write(data, () => res())),
    /** Wait until n complete responses arrived (counting from the start of the connection). */
    responses(n, timeoutMs = 5000) {
      return new Promise((res, rej) => {
        const check = () => {
          let parsed;
          try { parsed = parseHttpResponses(buf).responses; } catch (e) { done(); rej(e); return; }
          const complete = parsed.filter((r) => !r.untilClose || endedFlag);
          if (complete.length >= n) { done(); res(complete); return; }
          if (endedFlag) { done(); rej(new Error(`connection closed after ${complete.length} of ${n} responses; got ${JSON.stringify(buf.toString('latin1').slice(0, 600))}`)); }
        };
        const t = setTimeout(() => { done(); rej(new Error(`only ${parseHttpResponses(buf).responses.length} of ${n} responses within ${timeoutMs} ms; got ${JSON.stringify(buf.toString('latin1').slice(0, 600))}`)); }, timeoutMs);
        const done = () => { clearTimeout(t); listeners.delete(check); };
        listeners.add(check);
        check();
      });
    },
    raw: () => buf,
    destroy: () => sock.destroy(),
  };
}

/** Resolves true if the socket is closed by the peer within ms. */
export async function closedWithin(promise, ms) {
  let timer;
  const r = await Promise.race([promise.then(() => true), new Promise((res) => { timer = setTimeout(() => res(false), ms); })]);
  clearTimeout(timer);
  return r;
}

// ---------------------------------------------------------------------------------
// Raw WebSocket (RFC 6455) over node:net

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

/** Encode one frame. mask: true (random key), false, or a 4-byte Buffer. */
export function encodeFrame({ fin = true, rsv = 0, opcode, payload = Buffer.alloc(0), mask = true, lengthOverride } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = lengthOverride ?? data.length;
  let hdr;
  if (len < 126) {
    hdr = Buffer.alloc(2);
    hdr[1] = len;
  } else if (len < 65536) {
    hdr = Buffer.alloc(4);
    hdr[1] = 126;
    hdr.writeUInt16BE(len, 2);
  } else {
    hdr = Buffer.alloc(10);
    hdr[1] = 127;
    hdr.writeBigUInt64BE(BigInt(len), 2);
  }
  hdr[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  if (!mask) return Buffer.concat([hdr, data]);
  hdr[1] |= 0x80;
  const key = Buffer.isBuffer(mask) ? mask : crypto.randomBytes(4);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([hdr, key, masked]);
}

/** Decode frames from buf. Returns {frames, rest}. */
export function decodeFrames(buf) {
  const frames = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const b0 = buf[off];
    const b1 = buf[off + 1];
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (buf.length < p + 2) break;
      len = buf.readUInt16BE(p); p += 2;
    } else if (len === 127) {
      if (buf.length < p + 8) break;
      len = Number(buf.readBigUInt64BE(p)); p += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key = null;
    if (masked) {
      if (buf.length < p + 4) break;
      key = buf.subarray(p, p + 4); p += 4;
    }
    if (buf.length < p + len) break;
    let payload = Buffer.from(buf.subarray(p, p + len));
    if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload });
    off = p + len;
  }
  return { frames, rest: buf.subarray(off) };
}

export class RawWs {
  /** Open a TCP connection and perform the handshake for `path`. */
  static async connect(node, path, { extraHeaders = '' } = {}) {
    const sock = net.connect(node.port, '127.0.0.1');
    sock.setNoDelay(true);
    await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
    const key = crypto.randomBytes(16).toString('base64');
    sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${node.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`);
    const raw = new RawWs(sock, key);
    await raw._handshakeDone;
    return raw;
  }

  constructor(sock, key) {
    this.sock = sock;
    this.key = key;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.violations = [];
    this.handshake = null;
    this.tcpClosed = false;
    this.ended = new Promise((res) => { this._resolveEnded = res; });
    this._handshakeDone = new Promise((res, rej) => { this._hsRes = res; this._hsRej = rej; });
    sock.on('data', (d) => this._onData(d));
    sock.on('error', () => { /* surfaced through close */ });
    sock.on('close', () => {
      this.tcpClosed = true;
      this._resolveEnded();
      if (!this.handshake) this._hsRej(new Error('closed before handshake response'));
      this._wake();
    });
  }

  _onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    if (!this.handshake) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const head = this.buf.subarray(0, i).toString('latin1');
      const lines = head.split('\r\n');
      const headers = {};
      for (const l of lines.slice(1)) {
        const j = l.indexOf(':');
        if (j > 0) headers[l.slice(0, j).trim().toLowerCase()] = l.slice(j + 1).trim();
      }
      this.handshake = { status: Number(lines[0].split(' ')[1]), statusLine: lines[0], headers };
      this.buf = this.buf.subarray(i + 4);
      this._hsRes(this.handshake);
      if (this.handshake.status !== 101) return;
    }
    if (this.handshake.status !== 101) return;
    const { frames, rest } = decodeFrames(this.buf);
    this.buf = Buffer.from(rest);
    for (const f of frames) {
      if (f.masked) this.violations.push('server frame is masked');
      if (f.rsv) this.violations.push(`server frame has RSV bits ${f.rsv}`);
      this.frames.push(f);
    }
    this._wake();
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The Sec-WebSocket-Accept value the server must answer with. */
  expectedAccept() {
    return crypto.createHash('sha1').update(this.key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  }

  send(frameSpec) { this.sock.write(encodeFrame(frameSpec)); }
  sendRaw(buf) { this.sock.write(buf); }
  sendText(text, mask = true) { this.send({ opcode: OP.TEXT, payload: Buffer.from(text), mask }); }
  sendClose(code = 1000, reason = '') {
    const p = Buffer.alloc(2 + Buffer.byteLength(reason));
    p.writeUInt16BE(code, 0);
    p.write(reason, 2);
    this.send({ opcode: OP.CLOSE, payload: p });
  }

  /**
   * Next frame from the server. Server pings are answered with a pong and skipped
   * unless skipPings is false.
   */
  async nextFrame(timeoutMs = 3000, { skipPings = true } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.frames.length) {
        const f = this.frames.shift();
        if (skipPings && f.opcode === OP.PING) {
          if (!this.tcpClosed) this.send({ opcode: OP.PONG, payload: f.payload });
          continue;
        }
        return f;
      }
      if (this.tcpClosed) throw new Error('TCP connection closed, no frame queued');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${timeoutMs} ms`);
      await new Promise((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => { clearTimeout(t); res(); });
      });
    }
  }

  /** Next text message as parsed JSON (data frames must be unfragmented text). */
  async nextJson(timeoutMs = 3000) {
    const f = await this.nextFrame(timeoutMs);
    if (f.opcode !== OP.TEXT) throw new Error(`expected a text frame, got opcode ${f.opcode} payload ${f.payload.toString('latin1').slice(0, 200)}`);
    return JSON.parse(f.payload.toString('utf8'));
  }

  /**
   * Wait for the server's close frame; returns {code, reason}, echoing a close back
   * (as a client should). Data frames before it are skipped.
   */
  async expectClose(timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = await this.nextFrame(Math.max(1, deadline - Date.now()));
      if (f.opcode !== OP.CLOSE) continue;
      const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null;
      const reason = f.payload.length > 2 ? f.payload.subarray(2).toString('utf8') : '';
      if (!this.tcpClosed) {
        try { this.sendClose(1000); } catch { /* ignore */ }
      }
      return { code, reason };
    }
  }

  /** Resolves if no frame (other than pings) arrives within ms. */
  async expectNoFrame(ms = 300) {
    await sleep(ms);
    const data = this.frames.filter((f) => f.opcode !== OP.PING);
    if (data.length) throw new Error(`unexpected frame opcode ${data[0].opcode}: ${data[0].payload.toString('utf8').slice(0, 300)}`);
  }

  destroy() { this.sock.destroy(); }
}

// ---------------------------------------------------------------------------------
// CLI

/** Run the pushgate binary with args; resolves {code, signal, stdout, stderr}. */
export function runCli(args, { timeoutMs = 15000 } = {}) {
  return new Promise((res) => {
    execFile(BIN, args, { cwd: REPO_ROOT, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      let code = 0;
      let signal = null;
      if (err) {
        code = typeof err.code === 'number' ? err.code : null;
        signal = err.signal || null;
        if (code === null && !signal) stderr += `\n[harness] ${err.message}`;
      }
      res({ code, signal, stdout, stderr });
    });
  });
}

/** Sort report entries by clientId for deterministic comparisons. */
export function byClientId(msgs) {
  return [...msgs].sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0));
}

/** The report entry for one delivered client. */
export function delivered(clientId, sessionId, message = 'delivered', successful = true) {
  return { clientId, sessionId, originId: { applicationId: 'pushgate', nodeId: 'n1' }, successful, message };
}

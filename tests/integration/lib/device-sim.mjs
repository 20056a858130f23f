// A device that polls, as seed 004 describes it: GET /push?deviceId= answers an empty
// body when there is nothing to do, or one command {verb, endpoint, body, contentType,
// queryString}; the device executes it and POSTs {"response": …} or {"error": "…"} to
// /result?deviceId=, which is answered with an empty body; then it polls again.
//
// Requests go over node:http with a keep-alive agent, so many simulated devices share
// a bounded pool of connections (the 10k-devices test), and so the tests see the raw
// status, headers and body text.

import http from 'node:http';
import { PUB_KEY } from './harness.mjs';

/** A keep-alive agent: at most maxSockets connections to the node. */
export function makeAgent(maxSockets = 16) {
  return new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
}

const defaultAgent = makeAgent(32);

/**
 * One HTTP request. body: an object (sent as JSON), a string or a Buffer (sent as is).
 * Resolves {status, headers, text, body} (body: parsed JSON, null when empty,
 * undefined when not JSON).
 */
export function request(node, method, path, { body, key, headers = {}, agent = defaultAgent, timeoutMs = 70000 } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    let data = null;
    if (body !== undefined) {
      data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(data);
    }
    const req = http.request({ host: '127.0.0.1', port: node.port, method, path, headers: h, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try { parsed = text.length ? JSON.parse(text) : null; } catch { parsed = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, body: parsed });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (data !== null) req.write(data);
    req.end();
  });
}

/** POST /api/devices/{id}/commands with the publish key; query e.g. {waitMs: 500}. */
export function enqueue(node, deviceId, command, { key = PUB_KEY, query = {}, agent } = {}) {
  const q = new URLSearchParams(query).toString();
  return request(node, 'POST', `/api/devices/${deviceId}/commands${q ? '?' + q : ''}`, { body: command, key, agent });
}

/** GET /api/devices/{id}/commands/{cmdId}. */
export function getCommand(node, deviceId, id, { key = PUB_KEY, agent } = {}) {
  return request(node, 'GET', `/api/devices/${deviceId}/commands/${id}`, { key, agent });
}

/** GET /api/devices/{id}/commands?status=…; resolves the list (asserting 200 is the caller's job). */
export function listCommands(node, deviceId, query = {}, { key = PUB_KEY, agent } = {}) {
  const q = new URLSearchParams(query).toString();
  return request(node, 'GET', `/api/devices/${deviceId}/commands${q ? '?' + q : ''}`, { key, agent });
}

/** DELETE /api/devices/{id}/commands/{cmdId}. */
export function cancelCommand(node, deviceId, id, { key = PUB_KEY, agent } = {}) {
  return request(node, 'DELETE', `/api/devices/${deviceId}/commands/${id}`, { key, agent });
}

/**
 * A simulated device. execute(command) returns what the device reports:
 * {response: …} or {error: "…"} (default: {response: {ok: true, endpoint}}).
 */
export class DeviceSim {
  constructor(node, deviceId, { agent = defaultAgent, execute } = {}) {
    this.node = node;
    this.deviceId = deviceId;
    this.agent = agent;
    this.execute = execute || ((cmd) => ({ response: { ok: true, endpoint: cmd.endpoint } }));
    this.executed = [];
  }

  /** GET /push: resolves {status, headers, text, command} (command null on an empty answer). */
  async poll({ timeoutMs } = {}) {
    const r = await request(this.node, 'GET', `/push?deviceId=${encodeURIComponent(this.deviceId)}`, { agent: this.agent, timeoutMs });
    if (r.status !== 200) return { ...r, command: null };
    if (r.text.length === 0) return { ...r, command: null };
    if (r.body === undefined) throw new Error(`device ${this.deviceId}: /push answered a body that is not JSON: ${r.text.slice(0, 200)}`);
    return { ...r, command: r.body };
  }

  /** POST /result with a result object (or a raw string body). */
  result(result) {
    return request(this.node, 'POST', `/result?deviceId=${encodeURIComponent(this.deviceId)}`, { body: result, agent: this.agent });
  }

  /** One transaction: poll; if a command came, execute it and post the result. Resolves the command or null. */
  async step() {
    const p = await this.poll();
    if (p.status !== 200) throw new Error(`device ${this.deviceId}: /push answered ${p.status} ${p.text}`);
    if (!p.command) return null;
    const res = await this.execute(p.command);
    const r = await this.result(res);
    if (r.status !== 200 || r.text !== '') throw new Error(`device ${this.deviceId}: /result answered ${r.status} ${JSON.stringify(r.text)}`);
    this.executed.push(p.command);
    return p.command;
  }

  /** Polls until the server answers empty; resolves the commands executed, in order. */
  async drain(max = 10000) {
    const done = [];
    for (let i = 0; i < max; i++) {
      const c = await this.step();
      if (!c) return done;
      done.push(c);
    }
    throw new Error(`device ${this.deviceId}: still commands after ${max} polls`);
  }
}

/** Sum of a metric's samples in Prometheus text matching the given labels (null when absent). */
export function metricValue(text, name, labels = {}) {
  const re = new RegExp(`^${name}(?:\\{([^}]*)\\})?\\s+([0-9.eE+-]+)$`, 'gm');
  let sum = null;
  for (const m of text.matchAll(re)) {
    const l = Object.fromEntries([...(m[1] || '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).some(([k, v]) => l[k] !== v)) continue;
    sum = (sum ?? 0) + Number(m[2]);
  }
  return sum;
}

/** Runs fn over items with at most n in flight; resolves the results in order. */
export async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return out;
}

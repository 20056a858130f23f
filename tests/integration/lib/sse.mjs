// SSE helpers for the channel and stream suites.
//
// - parseSse(): an incremental Server-Sent Events parser written from the WHATWG HTML
//   spec (§9.2.6): lines end at CRLF, LF or CR; `:` lines are comments; one optional
//   space after the colon is dropped; a blank line dispatches. It records every field
//   name of every event, so tests can assert that no input forged a field or an event.
// - sseOpen(): GET an SSE URL over a raw node:net socket (exact response head and body
//   bytes), parsed as it arrives: next() / expectNone() / waitComment().
// - openEventSource(): the npm `eventsource` client (v4), queued like sseOpen.
// - startProxy(): a loopback TCP proxy in this process that can drop every connection
//   and refuse new ones for a while, to make an EventSource reconnect by itself.
//
// Everything opened here is tracked: closeAllSse() closes it (call it in after(),
// before the harness's cleanup(), so no EventSource keeps reconnecting).

import net from 'node:net';
import { EventSource } from 'eventsource';
import { sleep, SLOW } from './harness.mjs';

const open = new Set(); // objects with close()

export function closeAllSse() {
  for (const o of [...open]) {
    try { o.close(); } catch { /* ignore */ }
  }
  open.clear();
}

// ---------------------------------------------------------------------------------
// the parser

/**
 * Incremental SSE parser. feed(text) returns nothing; parsed items go to onEvent /
 * onComment / onRetry. An event: {type, data, id (the last event ID after it), fields:
 * [field names in order], unknown: [unknown field names]}.
 */
export function parseSse({ onEvent = () => {}, onComment = () => {}, onRetry = () => {} } = {}) {
  let pending = '';
  let lastCR = false; // the previous chunk ended in CR: a leading LF is part of that line end
  let data = [];
  let type = '';
  let fields = [];
  let unknown = [];
  let lastEventId = '';
  const line = (l) => {
    if (l === '') {
      const f = fields; const u = unknown;
      fields = []; unknown = [];
      if (data.length === 0) { type = ''; return; } // nothing to dispatch (spec)
      const ev = { type: type || 'message', data: data.join('\n'), id: lastEventId, fields: f, unknown: u };
      data = []; type = '';
      onEvent(ev);
      return;
    }
    if (l[0] === ':') { onComment(l.slice(1).replace(/^ /, '')); return; }
    const i = l.indexOf(':');
    const name = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value[0] === ' ') value = value.slice(1);
    fields.push(name);
    if (name === 'data') data.push(value);
    else if (name === 'event') type = value;
    else if (name === 'id') { if (!value.includes('\0')) lastEventId = value; }
    else if (name === 'retry') { if (/^\d+$/.test(value)) onRetry(Number(value)); }
    else unknown.push(name);
  };
  return {
    feed(text) {
      let s = pending + text;
      if (lastCR && s[0] === '\n') s = s.slice(1);
      lastCR = false;
      let start = 0;
      for (let i = 0; i < s.length; i++) {
        const c = s[i];
        if (c !== '\r' && c !== '\n') continue;
        line(s.slice(start, i));
        if (c === '\r') {
          if (i + 1 < s.length) { if (s[i + 1] === '\n') i++; } else lastCR = true;
        }
        start = i + 1;
      }
      pending = s.slice(start);
    },
    lastEventId: () => lastEventId,
  };
}

/** Parse a whole SSE body; returns {events, comments, retries}. */
export function parseSseText(text) {
  const events = []; const comments = []; const retries = [];
  const p = parseSse({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c), onRetry: (r) => retries.push(r) });
  p.feed(text);
  return { events, comments, retries };
}

// ---------------------------------------------------------------------------------
// a queue with timeouts

class Queue {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.waiters = [];
    this.endedWith = null;
  }

  push(x) {
    const w = this.waiters.shift();
    if (w) w.resolve(x); else this.items.push(x);
  }

  end(reason) {
    this.endedWith = reason;
    for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.label}: ${reason} while waiting`));
  }

  next(timeoutMs = 3000 * SLOW) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.endedWith) return Promise.reject(new Error(`${this.label}: ${this.endedWith}, nothing queued`));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (x) => { clearTimeout(w.t); resolve(x); },
        reject: (e) => { clearTimeout(w.t); reject(e); },
      };
      w.t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.label}: nothing within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  async nextN(n, timeoutMs = 3000 * SLOW) {
    const out = [];
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < n; i++) {
      try {
        out.push(await this.next(Math.max(1, deadline - Date.now())));
      } catch (e) {
        e.message += ` (got ${out.length} of ${n}: ${JSON.stringify(out).slice(0, 800)})`;
        throw e;
      }
    }
    return out;
  }

  async expectNone(ms = 300) {
    await sleep(ms);
    if (this.items.length) throw new Error(`${this.label}: unexpected ${JSON.stringify(this.items[0]).slice(0, 500)}`);
  }

  drain() { const q = this.items; this.items = []; return q; }
}

// ---------------------------------------------------------------------------------
// raw SSE over node:net

function parseHead(head) {
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(m[1]), statusLine: lines[0], headers };
}

/**
 * GET path on node (anything with .port) over a raw socket.
 * Resolves, once the head arrived, to
 *   {status, headers, statusLine, head,
 *    body (error responses: parsed JSON or undefined), text (error body),
 *    next(timeoutMs) -> event, nextN(n), expectNone(ms), waitComment(timeoutMs),
 *    events: Queue, comments: [], retries: [], raw() -> body text so far,
 *    ended: Promise, isEnded(), close()}
 * headers: object of request headers to add.
 */
export function sseOpen(node, path, { headers = {}, timeoutMs = 5000 * SLOW, host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(node.port, host);
    sock.setNoDelay(true);
    let headBuf = Buffer.alloc(0);
    let head = null;
    let bodyBuf = Buffer.alloc(0);
    let endedFlag = false;
    let resolveEnded;
    const ended = new Promise((r) => { resolveEnded = r; });
    const events = new Queue(`SSE ${path}`);
    const comments = [];
    const commentWaiters = [];
    const retries = [];
    let bodyText = '';
    const decoder = new TextDecoder('utf-8');
    const parser = parseSse({
      onEvent: (e) => events.push(e),
      onComment: (c) => { comments.push(c); for (const w of commentWaiters.splice(0)) w(c); },
      onRetry: (r) => retries.push(r),
    });
    const conn = {
      path,
      events,
      comments,
      retries,
      ended,
      isEnded: () => endedFlag,
      raw: () => bodyText,
      next: (ms) => events.next(ms),
      nextN: (n, ms) => events.nextN(n, ms),
      expectNone: (ms) => events.expectNone(ms),
      lastEventId: () => parser.lastEventId(),
      waitComment(ms = 3000 * SLOW) {
        return new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error(`SSE ${path}: no comment within ${ms} ms`)), ms);
          commentWaiters.push((c) => { clearTimeout(t); res(c); });
        });
      },
      close() { open.delete(conn); sock.destroy(); },
    };
    const timer = setTimeout(() => {
      if (head) return;
      sock.destroy();
      reject(new Error(`SSE ${path}: no response head within ${timeoutMs} ms`));
    }, timeoutMs);
    const onBody = (d) => {
      bodyBuf = Buffer.concat([bodyBuf, d]);
      if (head.status === 200) {
        const t = decoder.decode(d, { stream: true });
        bodyText += t;
        parser.feed(t);
      }
    };
    sock.on('data', (d) => {
      if (head) { onBody(d); return; }
      headBuf = Buffer.concat([headBuf, d]);
      const i = headBuf.indexOf('\r\n\r\n');
      if (i < 0) return;
      try {
        head = parseHead(headBuf.subarray(0, i).toString('latin1'));
      } catch (e) { clearTimeout(timer); sock.destroy(); reject(e); return; }
      head.head = headBuf.subarray(0, i).toString('latin1');
      clearTimeout(timer);
      Object.assign(conn, head);
      const rest = headBuf.subarray(i + 4);
      if (head.status !== 200) {
        // an error answer: read its Content-Length body, then resolve
        const n = Number(head.headers['content-length'] || 0);
        const finish = () => {
          const text = bodyBuf.subarray(0, n).toString('utf8');
          conn.text = text;
          try { conn.body = text.length ? JSON.parse(text) : null; } catch { conn.body = undefined; }
          sock.destroy();
          resolve(conn);
        };
        bodyBuf = Buffer.from(rest);
        if (bodyBuf.length >= n) { finish(); return; }
        sock.removeAllListeners('data');
        sock.on('data', (more) => { bodyBuf = Buffer.concat([bodyBuf, more]); if (bodyBuf.length >= n) finish(); });
        sock.on('close', () => { if (!conn.text) finish(); });
        return;
      }
      open.add(conn);
      if (rest.length) onBody(rest);
      resolve(conn);
    });
    sock.on('error', (e) => { if (!head) { clearTimeout(timer); reject(e); } });
    sock.on('close', () => {
      endedFlag = true;
      open.delete(conn);
      events.end('connection closed');
      resolveEnded();
      if (!head) { clearTimeout(timer); reject(new Error(`SSE ${path}: closed before a response head`)); }
    });
    sock.on('connect', () => {
      const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${node.port}\r\nAccept: text/event-stream\r\n${extra}\r\n`);
    });
  });
}

/** sseOpen, asserting a 200 (throws with the status and body otherwise). */
export async function sseSubscribe(node, path, opts) {
  const c = await sseOpen(node, path, opts);
  if (c.status !== 200) throw new Error(`SSE ${path}: ${c.status} ${c.text}`);
  return c;
}

/** Parse the data of an SSE event as JSON. */
export const jsonData = (ev) => JSON.parse(ev.data);

// ---------------------------------------------------------------------------------
// the npm eventsource client (v4)

/**
 * new EventSource(url) from the `eventsource` package, with optional extra request
 * headers and another fetch (through its `fetch` option). Returns
 *   {es, events: Queue of {type: 'message'|'gap'|…, data, lastEventId, origin},
 *    next(), nextN(), expectNone(), opened: Promise, errors: [], opens: count, close()}
 */
export function openEventSource(url, { headers, eventTypes = ['gap'], fetchImpl } = {}) {
  const init = {};
  if (headers || fetchImpl) {
    // fetchImpl: another fetch (lib/tls.mjs httpsFetch for a test CA)
    const f = fetchImpl || fetch;
    init.fetch = (input, i) => f(input, { ...i, headers: { ...i.headers, ...headers } });
  }
  const es = new EventSource(url, init);
  const events = new Queue(`EventSource ${url}`);
  const errors = [];
  let opens = 0;
  let resolveOpened;
  let rejectOpened;
  const opened = new Promise((res, rej) => { resolveOpened = res; rejectOpened = rej; });
  opened.catch(() => {});
  const w = {
    es, events, errors, opened,
    get opens() { return opens; },
    next: (ms) => events.next(ms),
    nextN: (n, ms) => events.nextN(n, ms),
    expectNone: (ms) => events.expectNone(ms),
    close() { open.delete(w); es.close(); },
  };
  es.onopen = () => { opens++; resolveOpened(); };
  es.onerror = (e) => {
    errors.push(e);
    if (es.readyState === EventSource.CLOSED) rejectOpened(new Error(`EventSource ${url} closed: ${e.message ?? ''} ${e.code ?? ''}`));
  };
  const rec = (e) => events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId, origin: e.origin });
  es.onmessage = rec;
  for (const t of eventTypes) es.addEventListener(t, rec);
  open.add(w);
  return w;
}

export { EventSource };

// ---------------------------------------------------------------------------------
// a TCP proxy that can cut connections

/**
 * Listen on a free loopback port and forward each connection to target (anything
 * with .port). Returns {port, requests: [first bytes of each client connection as
 * latin1], drop() (destroy every open pair), refuse (set true to destroy new
 * connections at once), close()}.
 */
export async function startProxy(target) {
  const pairs = new Set();
  const requests = [];
  const proxy = {
    port: 0,
    requests,
    refuse: false,
    drop() {
      for (const [a, b] of pairs) { a.destroy(); b.destroy(); }
      pairs.clear();
    },
    close() {
      open.delete(proxy);
      proxy.drop();
      srv.close();
    },
  };
  const srv = net.createServer((client) => {
    if (proxy.refuse) { client.destroy(); return; }
    const up = net.connect(target.port, '127.0.0.1');
    const pair = [client, up];
    pairs.add(pair);
    let first = true;
    client.on('data', (d) => {
      if (first) { requests.push(d.toString('latin1')); first = false; }
      up.write(d);
    });
    up.on('data', (d) => client.write(d));
    const end = () => { client.destroy(); up.destroy(); pairs.delete(pair); };
    client.on('close', end); up.on('close', end);
    client.on('error', end); up.on('error', end);
  });
  await new Promise((res) => srv.listen(0, '127.0.0.1', res));
  proxy.port = srv.address().port;
  open.add(proxy);
  return proxy;
}

/** Poll fn() until it returns truthy or timeoutMs passes; returns the last value. */
export async function until(fn, timeoutMs = 3000 * SLOW, stepMs = 25) {
  const deadline = Date.now() + timeoutMs;
  let v;
  while (Date.now() < deadline) {
    v = await fn();
    if (v) return v;
    await sleep(stepMs);
  }
  return v;
}

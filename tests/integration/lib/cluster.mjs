// Cluster helpers: a real redis-server and a real nats-server on free loopback ports
// (started and stopped by the test), pushgate nodes joined to them with
// --redis/--nats/--node-id (through the harness's startNode), tiny RESP and NATS clients
// to look inside, and waits on membership and readiness.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { freePort, sleep, startNode, baseConfig, get, ADMIN_KEY, SLOW } from './harness.mjs';

const redises = new Set();

process.on('exit', () => {
  for (const r of redises) {
    try { r.proc?.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/** Send one command over RESP; resolves to the raw reply text (enough for tests). */
export function redisCommand(port, ...args) {
  return new Promise((res, rej) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    const t = setTimeout(() => { sock.destroy(); rej(new Error(`redis ${args[0]}: no reply`)); }, 2000);
    sock.on('error', (e) => { clearTimeout(t); rej(e); });
    sock.on('connect', () => {
      sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(''));
    });
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.endsWith('\r\n')) {
        clearTimeout(t);
        sock.end();
        res(buf);
      }
    });
  });
}

/**
 * Start redis-server on a free loopback port, no persistence (with persistDir: an AOF
 * there, fsynced at every write, so a restart keeps every acknowledged write). Returns
 * {port, url, kill() (SIGKILL, resolves when gone), restart() (same port), stop()}.
 */
export async function startRedis({ persistDir } = {}) {
  const port = await freePort();
  const r = { port, url: `redis://127.0.0.1:${port}`, proc: null, log: '' };
  const persistence = persistDir
    ? ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', persistDir]
    : ['--appendonly', 'no'];
  r.start = async () => {
    r.proc = spawn('redis-server', ['--port', String(port), '--save', '', ...persistence, '--bind', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    r.proc.stdout.on('data', (d) => { r.log += d; });
    r.proc.stderr.on('data', (d) => { r.log += d; });
    r.exited = new Promise((res) => r.proc.on('exit', res));
    const deadline = Date.now() + 5000 * SLOW;
    while (Date.now() < deadline) {
      try {
        if ((await redisCommand(port, 'PING')).startsWith('+PONG')) return r;
      } catch { /* not yet */ }
      await sleep(25);
    }
    throw new Error(`redis-server did not start on ${port}:\n${r.log.slice(-2000)}`);
  };
  r.kill = async () => {
    if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) {
      r.proc.kill('SIGKILL');
      await r.exited;
    }
  };
  r.restart = async () => { await r.kill(); return r.start(); };
  r.stop = async () => { await r.kill(); redises.delete(r); };
  redises.add(r);
  return r.start();
}

/**
 * The bus the cluster tests run on: kind 'redis' (the default: Redis carries the
 * messages and keeps the state) or 'nats' (cluster-nats.test.mjs sets it before it
 * imports cluster.test.mjs: NATS carries the messages, Redis keeps the state). With
 * nats set, every startClusterNode also joins that nats-server.
 */
export const clusterBus = { kind: 'redis', nats: null };

/**
 * Start one node of the cluster on redis (null: none) and, by default, on
 * clusterBus.nats; id becomes its nodeId.
 */
export function startClusterNode(redis, id, { workers = 2, config = baseConfig(), extraArgs = [], nats = clusterBus.nats } = {}) {
  const bus = [...(redis ? ['--redis', redis.url] : []), ...(nats ? ['--nats', nats.url] : [])];
  return startNode({ workers, config, extraArgs: [...bus, '--node-id', id, ...extraArgs] });
}

/**
 * Start nats-server on a free loopback port (`nats-server -a 127.0.0.1 -p PORT`).
 * Returns {port, url, kill() (SIGKILL, resolves when gone), start() (same port),
 * restart(), stop()}, the shape of startRedis's.
 */
export async function startNats() {
  const port = await freePort();
  const n = { port, url: `nats://127.0.0.1:${port}`, proc: null, log: '' };
  n.start = async () => {
    n.proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    n.proc.stdout.on('data', (d) => { n.log += d; });
    n.proc.stderr.on('data', (d) => { n.log += d; });
    n.exited = new Promise((res) => n.proc.on('exit', res));
    const deadline = Date.now() + 5000 * SLOW;
    while (Date.now() < deadline) {
      try {
        const sub = await natsSubscribe(port, '_probe');
        sub.close();
        return n;
      } catch { /* not yet */ }
      await sleep(25);
    }
    throw new Error(`nats-server did not start on ${port}:\n${n.log.slice(-2000)}`);
  };
  n.kill = async () => {
    if (n.proc && n.proc.exitCode === null && n.proc.signalCode === null) {
      n.proc.kill('SIGKILL');
      await n.exited;
    }
  };
  n.restart = async () => { await n.kill(); return n.start(); };
  n.stop = async () => { await n.kill(); redises.delete(n); };
  redises.add(n);
  return n.start();
}

/**
 * A minimal NATS client (the text protocol: INFO, CONNECT, SUB, MSG, PING/PONG)
 * subscribed to subject. Resolves once the server has the subscription, to
 * {messages: [{subject, data}], next(timeoutMs) (the next message not yet taken),
 * close()}.
 */
export function natsSubscribe(port, subject) {
  return new Promise((res, rej) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let ready = false;
    let taken = 0;
    const waiters = [];
    const sub = {
      messages: [],
      close: () => sock.destroy(),
      next: (timeoutMs = 3000 * SLOW) => {
        if (taken < sub.messages.length) return Promise.resolve(sub.messages[taken++]);
        return new Promise((ok, fail) => {
          const t = setTimeout(() => fail(new Error(`nats ${subject}: no message in ${timeoutMs} ms`)), timeoutMs);
          waiters.push(() => { clearTimeout(t); ok(sub.messages[taken++]); });
        });
      },
    };
    const t = setTimeout(() => { sock.destroy(); rej(new Error('nats: no PONG')); }, 2000);
    sock.on('error', (e) => { clearTimeout(t); rej(e); });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString('utf8');
        if (line.startsWith('MSG ')) {
          const parts = line.split(' ');
          const size = Number(parts[parts.length - 1]);
          if (buf.length < eol + 2 + size + 2) return;
          const data = buf.subarray(eol + 2, eol + 2 + size).toString('utf8');
          buf = buf.subarray(eol + 2 + size + 2);
          sub.messages.push({ subject: parts[1], data });
          if (waiters.length) waiters.shift()();
          continue;
        }
        buf = buf.subarray(eol + 2);
        if (line.startsWith('INFO ')) {
          sock.write(`CONNECT {"verbose":false,"pedantic":false}\r\nSUB ${subject} 1\r\nPING\r\n`);
        } else if (line === 'PING') {
          sock.write('PONG\r\n');
        } else if (line === 'PONG' && !ready) {
          ready = true;
          clearTimeout(t);
          res(sub);
        } else if (line.startsWith('-ERR')) {
          clearTimeout(t);
          sock.destroy();
          rej(new Error(`nats: ${line}`));
        }
      }
    });
  });
}

/** GET /api/nodes → the sorted node ids (null when the call fails). */
export async function memberIds(node) {
  const r = await get(node, '/api/nodes', { key: ADMIN_KEY });
  if (r.status !== 200) return null;
  return r.body.nodes.map((n) => n.nodeId).sort();
}

/** Wait until every node lists exactly ids as members. Returns the last lists. */
export async function waitMembers(nodes, ids, timeoutMs = 8000 * SLOW) {
  const want = JSON.stringify([...ids].sort());
  const deadline = Date.now() + timeoutMs;
  let last = [];
  while (Date.now() < deadline) {
    last = await Promise.all(nodes.map((n) => memberIds(n).catch(() => null)));
    if (last.every((l) => JSON.stringify(l) === want)) return last;
    await sleep(50);
  }
  throw new Error(`members did not become ${want}: ${JSON.stringify(last)}`);
}

/** Wait until /readyz answers status on every node. Returns the last bodies. */
export async function waitReady(nodes, status, timeoutMs = 10000 * SLOW) {
  const deadline = Date.now() + timeoutMs;
  let last = [];
  while (Date.now() < deadline) {
    last = await Promise.all(nodes.map((n) => get(n, '/readyz').catch((e) => ({ status: 0, text: e.message }))));
    if (last.every((r) => r.status === status)) return last.map((r) => r.body);
    await sleep(50);
  }
  throw new Error(`readyz did not become ${status}: ${JSON.stringify(last.map((r) => [r.status, r.text]))}`);
}

/**
 * Start a real Redis Cluster of `masters` redis-server processes (cluster-enabled, no
 * replicas, no persistence, in a temporary directory) joined by `redis-cli --cluster
 * create`, and wait until every node says cluster_state:ok. Returns {ports, seeds
 * ["127.0.0.1:P", ...], command(port, ...args), nodeIdOf(port), slotOwner(slot) (port),
 * stop()}.
 */
export async function startRedisCluster({ masters = 3 } = {}) {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'pg-rcluster-'));
  const procs = [];
  const ports = [];
  let log = '';
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    const busPort = await freePort();
    ports.push(port);
    const p = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-port', String(busPort),
      '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir,
      '--cluster-node-timeout', '5000',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.stdout.on('data', (d) => { log += d; });
    p.stderr.on('data', (d) => { log += d; });
    const r = { proc: p, kill: async () => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); } };
    redises.add(r);
    procs.push(r);
  }
  const stop = async () => {
    for (const r of procs) {
      await r.kill();
      redises.delete(r);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const deadline = Date.now() + 5000 * SLOW;
      for (;;) {
        try {
          if ((await redisCommand(port, 'PING')).startsWith('+PONG')) break;
        } catch { /* not yet */ }
        if (Date.now() > deadline) throw new Error(`redis-server did not start on ${port}:\n${log.slice(-2000)}`);
        await sleep(25);
      }
    }
    const out = await new Promise((res, rej) => {
      const c = spawn('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
        '--cluster-replicas', '0', '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      c.stdout.on('data', (d) => { text += d; });
      c.stderr.on('data', (d) => { text += d; });
      const t = setTimeout(() => { c.kill('SIGKILL'); rej(new Error(`redis-cli --cluster create hung:\n${text}`)); }, 20000 * SLOW);
      c.on('exit', (code) => { clearTimeout(t); code === 0 ? res(text) : rej(new Error(`redis-cli --cluster create: ${code}\n${text}`)); });
    });
    const deadline = Date.now() + 15000 * SLOW;
    for (;;) {
      const infos = await Promise.all(ports.map((p) => redisCommand(p, 'CLUSTER', 'INFO').catch(() => '')));
      if (infos.every((i) => i.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok: ${infos.join('\n')}\n${out}`);
      await sleep(100);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const nodeIdOf = async (port) => (await redisCommand(port, 'CLUSTER', 'MYID')).split('\r\n')[1];
  /** The port of the master that serves slot (from CLUSTER SHARDS-free CLUSTER NODES). */
  const slotOwner = async (slot) => {
    const text = await redisCommand(ports[0], 'CLUSTER', 'NODES');
    for (const line of text.split('\n')) {
      const f = line.trim().split(' ');
      if (f.length < 9 || !f[2].includes('master')) continue;
      for (const range of f.slice(8)) {
        const [a, b = a] = range.split('-').map(Number);
        if (slot >= a && slot <= b) return Number(f[1].split(':')[1].split('@')[0]);
      }
    }
    return null;
  };
  return { ports, seeds: ports.map((p) => `127.0.0.1:${p}`), command: redisCommand, nodeIdOf, slotOwner, stop, dir };
}

/** Start one node of the cluster on a Redis Cluster (config "redis": {"cluster": seeds}). */
export function startRedisClusterNode(rc, id, { workers = 2, config = baseConfig(), extraArgs = [] } = {}) {
  return startNode({ workers, config: { ...config, redis: { cluster: rc.seeds } }, extraArgs: ['--node-id', id, ...extraArgs] });
}

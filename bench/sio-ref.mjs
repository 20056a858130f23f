// Reference server for bench/socketio.sh: the npm `socket.io` v4 server doing what
// pushgate does for a seed 002 stream subscriber, so that the same socket.io-client
// load (bench/sio-load.mjs) can run against both:
//
//   - namespace /bench admits clients that ask for ?stream=ticks (others: connect_error
//     "unknown stream"), like pushgate's tenant namespace /<tenant>?stream=<id>;
//   - POST /event/v1/events with an event {namespace, name, …} emits it to the whole
//     namespace as `${namespace}:${name}` with (event, offset), one encoding shared by
//     every client (socket.io's broadcast), and answers 200 {"streams":["ticks"]} at
//     once, as pushgate's event endpoint does;
//   - GET /readyz answers 200; POST /gc runs a full GC (node --expose-gc) so the
//     benchmark can read RSS after one, as it does for pushgate (no GC there).
//
// Usage: node --expose-gc bench/sio-ref.mjs PORT   (listens on 127.0.0.1 only)

import http from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node --expose-gc bench/sio-ref.mjs PORT');
  process.exit(2);
}

let seq = 0;
const boot = Date.now().toString(16).padStart(13, '0');
const nextId = () => `${boot}-00000000-${(++seq).toString(16).padStart(8, '0')}`;

function body(req) {
  return new Promise((res, rej) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => res(Buffer.concat(chunks).toString('utf8')));
    req.on('error', rej);
  });
}

const httpServer = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  if (req.method === 'POST' && path === '/event/v1/events') {
    let ev;
    try {
      ev = JSON.parse(await body(req));
    } catch {
      res.writeHead(422, { 'content-type': 'application/json' }).end('{"error":"not JSON"}');
      return;
    }
    nsp.emit(`${ev.namespace}:${ev.name}`, ev, nextId());
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"streams":["ticks"]}');
  } else if (path === '/readyz') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
  } else if (req.method === 'POST' && path === '/gc') {
    if (global.gc) global.gc();
    res.writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ gc: !!global.gc, sockets: nsp.sockets.size }));
  } else {
    res.writeHead(404).end();
  }
});

// pings out of the measured window, as in pushgate's bench config; no compression
// (pushgate has none), no connection state recovery (pushgate's replay is its own)
const io = new Server(httpServer, {
  serveClient: false,
  transports: ['polling', 'websocket'],
  pingInterval: 3600000,
  pingTimeout: 3600000,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 1e6,
});
const nsp = io.of('/bench');
nsp.use((socket, next) => {
  if (socket.handshake.query.stream === 'ticks' || socket.handshake.auth?.stream === 'ticks') next();
  else next(new Error('unknown stream'));
});

httpServer.listen(port, '127.0.0.1', () => {
  console.error(`sio-ref: socket.io ${process.env.npm_package_version || ''} listening on 127.0.0.1:${port}`);
});
const stop = () => { io.close(); httpServer.close(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

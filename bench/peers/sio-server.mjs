// The npm socket.io peer for bench/peers.sh: a client joins a room with
// emit('subscribe', [name], ack) (acked {"channels": [...]}, as pushgate's main
// namespace does); POST /pub emits the JSON body to room `bench` as event `bench`
// (one encoding shared by the room: socket.io's broadcast) and answers 200.
// GET /readyz answers 200.
// Usage: node bench/peers/sio-server.mjs PORT   (127.0.0.1 only)
import http from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node bench/peers/sio-server.mjs PORT');
  process.exit(2);
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/pub') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let doc;
      try {
        doc = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(422, { 'Content-Length': 0 });
        res.end();
        return;
      }
      io.to('bench').emit('bench', doc);
      res.writeHead(200, { 'Content-Length': 0 });
      res.end();
    });
    return;
  }
  if (req.url === '/readyz') {
    res.writeHead(200, { 'Content-Length': 0 });
    res.end();
  }
});
const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false });
io.on('connection', (socket) => {
  socket.on('subscribe', (channels, ack) => {
    for (const c of channels) socket.join(c);
    if (typeof ack === 'function') ack({ channels });
  });
});
server.listen(port, '127.0.0.1');

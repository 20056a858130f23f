// The plain Node `ws` peer for bench/peers.sh: every WebSocket (any path) is a
// subscriber; POST /pub sends the request body to each open one (the broadcast loop
// of ws's README) and answers 200. GET /readyz answers 200.
// Usage: node bench/peers/ws-server.mjs PORT   (127.0.0.1 only)
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node bench/peers/ws-server.mjs PORT');
  process.exit(2);
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/pub') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const data = Buffer.concat(chunks);
      for (const ws of wss.clients) {
        if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: false });
      }
      res.writeHead(200, { 'Content-Length': 0 });
      res.end();
    });
    return;
  }
  res.writeHead(req.url === '/readyz' ? 200 : 404, { 'Content-Length': 0 });
  res.end();
});
server.keepAliveTimeout = 0;
const wss = new WebSocketServer({ server, perMessageDeflate: false });
server.listen(port, '127.0.0.1');

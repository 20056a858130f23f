// Records the first flight of real HTTP/2 clients (curl, Node http2) as seeds for
// fuzz_h2_session: node tests/fuzz/capture_h2_corpus.mjs tests/fuzz/corpus/fuzz_h2_session
import net from 'node:net';
import http2 from 'node:http2';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const dir = process.argv[2];
function capture(name, client) {
  return new Promise((resolve) => {
    const srv = net.createServer((sock) => {
      const chunks = [];
      sock.on('data', (d) => chunks.push(d));
      setTimeout(() => {
        // byte 0: feed chunk size (0: whole), byte 1: flush budget (0: unbounded)
        writeFileSync(`${dir}/${name}`, Buffer.concat([Buffer.from([0, 0]), ...chunks]));
        sock.destroy(); srv.close(); resolve();
      }, 400);
    });
    srv.listen(0, '127.0.0.1', () => client(srv.address().port));
  });
}
const curl = (args) => (port) => execFile('curl', ['-s', '--max-time', '1', '--http2-prior-knowledge', ...args.map((a) => a.replace('PORT', port))], () => {});
await capture('curl-get-healthz', curl(['http://127.0.0.1:PORT/healthz']));
await capture('curl-post-push', curl(['-X', 'POST', '-H', 'Authorization: Bearer k', '-d', '{"channel":"a","event":"e","data":1}', 'http://127.0.0.1:PORT/api/push']));
await capture('node-sse-and-hold', (port) => {
  const s = http2.connect(`http://127.0.0.1:${port}`); s.on('error', () => {});
  for (const p of ['/sse?channel=a', '/hold', '/x?y=1', '/reset']) s.request({ ':path': p, 'last-event-id': '1' }).on('error', () => {}).end();
  const r = s.request({ ':method': 'POST', ':path': '/sse' }); r.on('error', () => {}); r.end('abc');
  setTimeout(() => s.destroy(), 300);
});
await capture('node-head-and-reset', (port) => {
  const s = http2.connect(`http://127.0.0.1:${port}`); s.on('error', () => {});
  s.request({ ':method': 'HEAD', ':path': '/healthz' }).on('error', () => {}).end();
  const r = s.request({ ':path': '/hold' }); r.on('error', () => {});
  setTimeout(() => r.close(8), 50);
  setTimeout(() => s.destroy(), 300);
});

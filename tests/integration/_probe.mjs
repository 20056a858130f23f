import { io } from 'socket.io-client';
import { startNode, baseConfig, sleep, makeJwt, cleanup } from './lib/harness.mjs';
const node = await startNode({ config: baseConfig(), workers: 2 });
let fails = 0;
for (let i = 0; i < 30; i++) {
  const s = io(node.url + '/', { forceNew: true, reconnection: false });
  await new Promise((r, j) => { s.on('connect', r); s.on('connect_error', j); });
  const t0 = s.io.engine.transport.name;
  try { await s.timeout(1000).emitWithAck('hello', 1, 2); } catch (e) { fails++; console.log(i, 'ERR', e.message, t0, s.io.engine.transport.name); }
  s.disconnect();
}
console.log('fails', fails);
await sleep(300);
await cleanup();

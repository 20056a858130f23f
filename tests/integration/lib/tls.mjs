// TLS helpers for integration tests: a CA and server certificates made with the openssl
// command at test time, a fetch() over node:https that trusts that CA (for api(),
// readiness and the `eventsource` package), and the certificate a TLS client sees.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import https from 'node:https';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { Readable } from 'node:stream';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA in dir. Returns {cert (PEM), certPath, keyPath}. */
export function makeCa(dir, name = 'ca') {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.pem`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=pushgate test ${name}`], dir);
  return { cert: readFileSync(certPath, 'utf8'), certPath, keyPath };
}

/**
 * A server certificate for localhost / 127.0.0.1 signed by ca. Returns
 * {certPath, keyPath, cert (PEM), fingerprint256 (as node's tls reports it)}.
 */
export function makeServerCert(dir, ca, name) {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const certPath = join(dir, `${name}.pem`);
  const extPath = join(dir, `${name}.ext`);
  writeFileSync(extPath, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyPath, '-out', csrPath, '-subj', `/CN=${name}`], dir);
  openssl(['x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath,
    '-set_serial', '0x' + crypto.randomBytes(8).toString('hex'), '-days', '2',
    '-out', certPath, '-extfile', extPath], dir);
  const cert = readFileSync(certPath, 'utf8');
  return { certPath, keyPath, cert, fingerprint256: new crypto.X509Certificate(cert).fingerprint256 };
}

/**
 * A fetch() over node:https trusting ca (Node 20's global fetch takes no CA). Enough of
 * fetch for api(), readiness checks and the `eventsource` package: method, headers,
 * string/bytes body, signal; the Response body streams.
 */
export function httpsFetch(ca, { keepAlive = true } = {}) {
  const agent = new https.Agent({ ca, keepAlive, maxSockets: 16 });
  const f = (input, init = {}) => new Promise((resolve, reject) => {
    const url = new URL(typeof input === 'string' ? input : input.url ?? String(input));
    const headers = {};
    if (init.headers) new Headers(init.headers).forEach((v, k) => { headers[k] = v; });
    const req = https.request(url, { method: init.method || 'GET', headers, agent, signal: init.signal });
    req.on('response', (res) => {
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) v.forEach((x) => h.append(k, x));
        else if (v !== undefined) h.set(k, String(v));
      }
      const noBody = [204, 205, 304].includes(res.statusCode) || (init.method || 'GET') === 'HEAD';
      if (noBody) res.resume();
      resolve(new Response(noBody ? null : Readable.toWeb(res), { status: res.statusCode, statusText: res.statusMessage, headers: h }));
    });
    req.on('error', reject);
    const body = init.body;
    if (body === undefined || body === null) req.end();
    else req.end(typeof body === 'string' || body instanceof Uint8Array ? body : String(body));
  });
  f.agent = agent;
  return f;
}

/**
 * Opens a TLS connection to port trusting ca; resolves {socket, fingerprint256, alpn,
 * protocol} once the handshake is done (rejects on a handshake error).
 */
export function tlsConnect(port, { ca, ALPNProtocols, minVersion, maxVersion, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols, minVersion, maxVersion });
    const t = setTimeout(() => { socket.destroy(); reject(new Error(`no TLS handshake within ${timeoutMs} ms`)); }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(t);
      resolve({ socket, fingerprint256: socket.getPeerCertificate().fingerprint256, alpn: socket.alpnProtocol, protocol: socket.getProtocol() });
    });
    socket.once('error', (e) => { clearTimeout(t); socket.destroy(); reject(e); });
  });
}

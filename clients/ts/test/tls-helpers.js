// Test helpers for TCP + TLS: certificates made with `openssl` at test time (a CA, a
// server certificate it signs for localhost / 127.0.0.1 / ::1, and an unrelated CA), and
// a terminator that accepts TLS (or plain TCP) on 127.0.0.1 and forwards each
// connection to a real server's Unix socket, standing in for `docdb serve --listen`.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';

function hasOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the TLS tests are skipped, or false. Under CI a missing openssl fails instead. */
export const SKIP_TLS = hasOpenssl()
  ? false
  : 'openssl not found: the TLS tests need it to make their certificates';
if (SKIP_TLS) {
  if (process.env.CI) throw new Error(`${SKIP_TLS} (CI is set)`);
  console.log(`\n*** SKIPPING DocDB TLS tests: ${SKIP_TLS} ***\n`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir, name) {
  openssl(dir, [
    'req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2',
    '-subj', `/CN=DocDB test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

/**
 * Makes `ca.pem` (+ key), `server.pem` / `server.key` signed by it (valid for localhost,
 * 127.0.0.1 and ::1, two days) and `other-ca.pem`, an unrelated CA, in `dir`. Returns
 * the PEM texts and the file paths.
 */
export function makeCerts(dir) {
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  openssl(dir, ['req', ...EC, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(
    join(dir, 'server.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\n' +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl(dir, [
    'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '2',
    '-days', '2', '-out', 'server.pem', '-extfile', 'server.ext',
  ]);
  const read = (f) => readFileSync(join(dir, f), 'utf8');
  return {
    ca: read('ca.pem'),
    otherCa: read('other-ca.pem'),
    cert: read('server.pem'),
    key: read('server.key'),
    certFile: join(dir, 'server.pem'),
    keyFile: join(dir, 'server.key'),
    caFile: join(dir, 'ca.pem'),
  };
}

/**
 * Listens on 127.0.0.1 (an ephemeral port) with TLS (`{ key, cert }`) or plain TCP
 * (`null`) and forwards every connection, byte for byte, to the Unix socket `socketPath`.
 * `accepted` counts the connections that reached the forwarding stage; `dropAll()`
 * cuts every open one, as a server or network failure would.
 */
export async function startTerminator(socketPath, creds) {
  const open = new Set();
  const t = {
    port: 0,
    accepted: 0,
    dropAll() {
      for (const kill of open) kill();
    },
    async close() {
      t.dropAll();
      await new Promise((r) => server.close(() => r()));
    },
  };
  const onConn = (down) => {
    t.accepted++;
    const up = net.createConnection({ path: socketPath });
    const kill = () => {
      open.delete(kill);
      down.destroy();
      up.destroy();
    };
    open.add(kill);
    for (const s of [down, up]) {
      s.on('error', kill);
      s.on('close', kill);
    }
    down.pipe(up);
    up.pipe(down);
  };
  const server = creds ? tls.createServer({ key: creds.key, cert: creds.cert }, onConn) : net.createServer(onConn);
  // A client that refuses the certificate aborts the handshake: nothing to forward.
  server.on('tlsClientError', () => {});
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  t.port = server.address().port;
  return t;
}

// The client against the real `docdb serve --listen` (TLS with certificates made in the
// test, and `--insecure-tcp` on loopback). A token is always required on TCP, whatever
// `auth.mode` is: these servers run with the default `--auth none`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { connect, ConnectionError, DeniedError } from '../dist/index.js';
import { DOCDB_BIN, SKIP_E2E, TestServer, tempDir } from './helpers.js';
import { makeCerts, SKIP_TLS } from './tls-helpers.js';

const LOCAL = '127.0.0.1';

const SKIP_TCP = SKIP_E2E || SKIP_TLS;

/** Starts `docdb serve --listen 127.0.0.1:0 ...` and returns it with its bound port. */
async function startTcp(extraArgs) {
  const server = await TestServer.start(['--listen', `${LOCAL}:0`, ...extraArgs], { logLevel: 'info' });
  const addr = await server.startupField('tcp');
  const m = addr.match(/^127\.0\.0\.1:(\d+)$/);
  assert.ok(m, `tcp=${addr}`);
  server.port = Number(m[1]);
  assert.ok(server.port > 0);
  return server;
}

const issue = (server, db, rights) =>
  execFileSync(DOCDB_BIN, ['token', 'issue', '--data-dir', server.dataDir, '--db', db, '--rights', rights])
    .toString()
    .trim();

describe('docdb serve --listen with TLS', { skip: SKIP_TCP, timeout: 120_000 }, () => {
  let dir;
  let certs;
  let server;
  before(async () => {
    dir = tempDir('docdb-tcp-');
    certs = makeCerts(dir);
    server = await startTcp(['--tls-cert', certs.certFile, '--tls-key', certs.keyFile]);
    assert.equal(await server.startupField('tls'), 'true');
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('with the CA and a token: writes, reads, 500 pipelined calls, the token\'s scope', async () => {
    const client = await connect({ host: LOCAL, port: server.port, tls: { ca: certs.ca }, token: issue(server, 't-*', 'write'), maxInFlight: 16 });
    try {
      const db = await client.openDb('t-one');
      await db.create('_default', 1n, { a: 1 });
      assert.deepEqual(await db.read('_default', 1n), { a: 1 });
      const ids = Array.from({ length: 500 }, (_, i) => BigInt(i + 10));
      await Promise.all(ids.map((id) => db.create('_default', id, { id: Number(id) })));
      const docs = await Promise.all(ids.map((id) => db.read('_default', id)));
      assert.deepEqual(docs.map((d) => d.id), ids.map(Number));
      const results = await db.batch([
        { op: 'create', id: 1n, doc: {} },
        { op: 'read', id: 2n },
        { op: 'read', id: 1n },
      ]);
      assert.deepEqual(results.map((r) => r.status), [3, 2, 0]);
      await assert.rejects(client.openDb('other'), (e) => e instanceof DeniedError && e.status === 5 && /outside/.test(e.message));
      await assert.rejects(client.stats(), (e) => e instanceof DeniedError && /admin/.test(e.message));
    } finally {
      client.destroy();
    }
  });

  test('no token: every call is DeniedError `authentication required` although --auth is none', async () => {
    const client = await connect({ host: LOCAL, port: server.port, tls: { ca: certs.ca } });
    try {
      for (const call of [() => client.openDb('x'), () => client.listDbs(), () => client.stats(), () => client.database(1n).read(1n)]) {
        await assert.rejects(call(), (e) => e instanceof DeniedError && e.status === 5 && e.message === 'authentication required');
      }
      const info = await client.auth(issue(server, '*', 'admin'));
      assert.equal(info.rights, 'admin');
      assert.equal(typeof (await client.stats()).totalDbs, 'bigint');
    } finally {
      client.destroy();
    }
  });

  test('a refused token, an unrelated CA: connect rejects with DeniedError / ConnectionError', async () => {
    await assert.rejects(
      connect({ host: LOCAL, port: server.port, tls: { ca: certs.ca }, token: 'garbage' }),
      (e) => e instanceof DeniedError && e.status === 5,
    );
    await assert.rejects(
      connect({ host: LOCAL, port: server.port, tls: { ca: certs.otherCa }, token: issue(server, '*', 'read') }),
      (e) => e instanceof ConnectionError && /^TLS handshake with 127\.0\.0\.1:\d+ failed: /.test(e.message),
    );
  });

  test('plain TCP to the TLS port fails with ConnectionError, not a hang', async () => {
    await assert.rejects(
      connect({ host: LOCAL, port: server.port, insecureTcp: true, token: issue(server, '*', 'read'), reconnectTimeoutMs: 1000 }),
      (e) => e instanceof ConnectionError && /before answering Auth .*connect with tls/.test(e.message),
    );
  });
});

describe('docdb serve --listen: restarts and --insecure-tcp', { skip: SKIP_TCP, timeout: 120_000 }, () => {
  test('the server restarts on the same port: the client reconnects, authenticates again, the data is there', async () => {
    const dir = tempDir('docdb-tcp-');
    const certs = makeCerts(dir);
    const server = await startTcp(['--tls-cert', certs.certFile, '--tls-key', certs.keyFile]);
    const client = await connect({
      host: LOCAL,
      port: server.port,
      tls: { ca: certs.ca },
      token: issue(server, 'r-*', 'write'),
      reconnectTimeoutMs: 15_000,
    });
    try {
      const db = await client.openDb('r-a');
      await db.create('_default', 1n, { v: 1 });
      // Same port from now on (the first start took any free one).
      server.extraArgs = server.extraArgs.map((a) => (a === `${LOCAL}:0` ? `${LOCAL}:${server.port}` : a));
      await server.restart();
      assert.deepEqual(await db.read('_default', 1n), { v: 1 });
      await db.update('_default', 1n, { v: 2 });
      assert.deepEqual(await db.read('_default', 1n), { v: 2 });
    } finally {
      client.destroy();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--insecure-tcp on loopback: insecureTcp with a token works; TLS to it fails clearly', async () => {
    const server = await startTcp(['--insecure-tcp']);
    try {
      assert.equal(await server.startupField('tls'), 'false');
      const client = await connect({ host: LOCAL, port: server.port, insecureTcp: true, token: issue(server, '*', 'write') });
      try {
        const db = await client.openDb('plain');
        await db.create('_default', 1n, { plain: true });
        assert.deepEqual(await db.read('_default', 1n), { plain: true });
      } finally {
        client.destroy();
      }
      await assert.rejects(
        connect({ host: LOCAL, port: server.port, tls: true, reconnectTimeoutMs: 10_000 }),
        (e) =>
          e instanceof ConnectionError &&
          /^TLS handshake with 127\.0\.0\.1:\d+ failed: the server does not speak TLS .*insecureTcp: true$/.test(e.message),
      );
    } finally {
      await server.stop();
    }
  });
});

// The client over TCP + TLS. Until `docdb serve --listen` is used here, the server side
// is a TLS terminator started in the test (test/tls-helpers.js) in front of a real
// `docdb serve --auth token` on its Unix socket: the same frames, a token required.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { Client, connect, ConnectionError, DeniedError } from '../dist/index.js';
import { DOCDB_BIN, SKIP_E2E, TestServer, tempDir } from './helpers.js';
import { makeCerts, SKIP_TLS, startTerminator } from './tls-helpers.js';

const LOCAL = '127.0.0.1';

describe('connect({ host, port }) options', () => {
  test('TCP without tls or insecureTcp, both, or a bad port is refused before connecting', async () => {
    await assert.rejects(connect({ host: LOCAL, port: 1 }), (e) => e instanceof TypeError && /insecureTcp/.test(e.message));
    await assert.rejects(
      connect({ host: LOCAL, port: 1, tls: true, insecureTcp: true }),
      (e) => e instanceof TypeError && /exclude/.test(e.message),
    );
    await assert.rejects(connect({ host: LOCAL, port: 0, tls: true }), RangeError);
    await assert.rejects(connect({ host: '', port: 7, tls: true }), TypeError);
    await assert.rejects(connect({ host: LOCAL, port: 7, tls: { ca: 42 } }), TypeError);
  });

  test('the client names its address; a Unix path stays socketPath', () => {
    const a = new Client({ host: LOCAL, port: 7070, tls: true });
    assert.equal(a.address, '127.0.0.1:7070');
    assert.equal(a.socketPath, '');
    assert.equal(new Client({ host: '[::1]', port: 7070, insecureTcp: true }).address, '[::1]:7070');
    const u = new Client('/tmp/x.sock');
    assert.equal(u.socketPath, '/tmp/x.sock');
    assert.equal(u.address, '/tmp/x.sock');
  });
});

describe('TLS: certificates the client does not trust', { skip: SKIP_TLS, timeout: 60_000 }, () => {
  let dir;
  let certs;
  let term;
  before(async () => {
    dir = tempDir('docdb-tls-');
    certs = makeCerts(dir);
    // Nothing behind it: a connection that passed the handshake would fail later, not here.
    term = await startTerminator(`${dir}/none.sock`, certs);
  });
  after(async () => {
    await term?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [what, tls, pattern] of [
    ['an unrelated CA', () => ({ ca: certs.otherCa }), /unable to verify/],
    ['the system roots (the test CA is not among them)', () => true, /unable to verify|self.signed|issuer/i],
    ['a server name the certificate does not carry', () => ({ ca: certs.ca, servername: 'db.example' }), /altnames|db\.example/],
  ]) {
    test(`${what}: connect rejects with ConnectionError at once, not after the retries`, async () => {
      const t0 = Date.now();
      await assert.rejects(connect({ host: LOCAL, port: term.port, tls: tls(), reconnectTimeoutMs: 10_000 }), (e) => {
        assert.ok(e instanceof ConnectionError, `${e?.name}: ${e?.message}`);
        assert.match(e.message, /^TLS handshake with 127\.0\.0\.1:\d+ failed: /);
        assert.match(e.message, pattern);
        return true;
      });
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    });
  }
});

describe('TLS: a peer that accepts and never answers', { timeout: 30_000 }, () => {
  test('connect gives up after reconnectTimeoutMs (at least 1 s per attempt) with ConnectionError', async () => {
    const held = new Set();
    const silent = net.createServer((s) => held.add(s));
    await new Promise((r) => silent.listen({ host: LOCAL, port: 0 }, () => r()));
    try {
      const t0 = Date.now();
      await assert.rejects(
        connect({ host: LOCAL, port: silent.address().port, tls: true, reconnectTimeoutMs: 300 }),
        (e) => e instanceof ConnectionError && /^cannot connect to 127\.0\.0\.1:\d+: no connection within \d+ ms/.test(e.message),
      );
      const took = Date.now() - t0;
      assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(() => r()));
    }
  });
});

describe('TCP + TLS end-to-end (TLS terminator in front of docdb --auth token)', { skip: SKIP_E2E || SKIP_TLS, timeout: 120_000 }, () => {
  let server;
  let certs;
  let dir;
  let issue;
  before(async () => {
    server = await TestServer.start(['--auth', 'token']);
    dir = tempDir('docdb-tls-');
    certs = makeCerts(dir);
    issue = (db, rights) =>
      execFileSync(DOCDB_BIN, ['token', 'issue', '--data-dir', server.dataDir, '--db', db, '--rights', rights])
        .toString()
        .trim();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh terminator for `fn(term)`, closed afterwards. */
  const withTerm = (fn, tlsOn = true) => async () => {
    const term = await startTerminator(server.socket, tlsOn ? certs : null);
    try {
      await fn(term);
    } finally {
      await term.close();
    }
  };

  test(
    'with the CA and a token: auth first, scope held, writes and reads, 500 pipelined calls',
    withTerm(async (term) => {
      const client = await connect({ host: LOCAL, port: term.port, tls: { ca: certs.ca }, token: issue('t-*', 'write'), maxInFlight: 16 });
      try {
        const db = await client.openDb('t-one');
        await db.create('_default', 1n, { a: 1 });
        assert.deepEqual(await db.read('_default', 1n), { a: 1 });
        await assert.rejects(client.openDb('other'), (e) => e instanceof DeniedError && e.status === 5 && /outside/.test(e.message));
        const ids = Array.from({ length: 500 }, (_, i) => BigInt(i + 10));
        const writes = ids.map((id) => db.create('_default', id, { id: Number(id) }));
        assert.ok(client.inFlight > 16, 'calls beyond maxInFlight wait in the client');
        await Promise.all(writes);
        const docs = await Promise.all(ids.map((id) => db.read('_default', id)));
        assert.deepEqual(docs.map((d) => d.id), ids.map(Number));
        assert.equal(term.accepted, 1, 'one connection carried everything');
      } finally {
        client.destroy();
      }
    }),
  );

  test(
    'servername: the certificate is checked against the given name',
    withTerm(async (term) => {
      const client = await connect({ host: LOCAL, port: term.port, tls: { ca: certs.ca, servername: 'localhost' }, token: issue('*', 'read') });
      try {
        assert.deepEqual(await client.listDbs().then((l) => Array.isArray(l)), true);
      } finally {
        client.destroy();
      }
    }),
  );

  test(
    'no token: a call fails with DeniedError `authentication required`, then auth() works',
    withTerm(async (term) => {
      const client = await connect({ host: LOCAL, port: term.port, tls: { ca: certs.ca } });
      try {
        await assert.rejects(client.openDb('t-x'), (e) => e instanceof DeniedError && e.status === 5 && e.message === 'authentication required');
        await client.auth(issue('t-*', 'write'));
        await (await client.openDb('t-x')).create('_default', 1n, { ok: true });
      } finally {
        client.destroy();
      }
    }),
  );

  test(
    'a refused token rejects connect() with DeniedError',
    withTerm(async (term) => {
      await assert.rejects(
        connect({ host: LOCAL, port: term.port, tls: { ca: certs.ca }, token: 'garbage' }),
        (e) => e instanceof DeniedError && e.status === 5 && /malformed token/.test(e.message),
      );
    }),
  );

  test(
    'the terminator drops the connection: the call on the wire fails, the next reconnects, re-authenticates and reopens',
    withTerm(async (term) => {
      const client = await connect({ host: LOCAL, port: term.port, tls: { ca: certs.ca }, token: issue('t-*', 'write') });
      try {
        const db = await client.openDb('t-drop');
        await db.create('_default', 1n, { v: 1 });
        const inFlight = db.read('_default', 1n);
        term.dropAll();
        await assert.rejects(inFlight, (e) => e instanceof ConnectionError && /127\.0\.0\.1:\d+ (closed|failed)/.test(e.message));
        // Under token auth the new connection holds nothing until Auth and OpenDB are sent
        // again: without them this would be `authentication required`.
        assert.deepEqual(await db.read('_default', 1n), { v: 1 });
        await db.update('_default', 1n, { v: 2 });
        assert.deepEqual(await db.read('_default', 1n), { v: 2 });
        assert.equal(term.accepted, 2);
      } finally {
        client.destroy();
      }
    }),
  );

  test(
    'a drop with calls waiting for the window: the one on the wire fails, the waiting ones go out on the next connection',
    withTerm(async (term) => {
      const client = await connect({ host: LOCAL, port: term.port, tls: { ca: certs.ca }, token: issue('t-*', 'write'), maxInFlight: 1 });
      try {
        const db = await client.openDb('t-window');
        await db.create('_default', 1n, { v: 1 });
        const calls = Array.from({ length: 5 }, () => db.read('_default', 1n).then((d) => d, (e) => e));
        term.dropAll();
        const out = await Promise.all(calls);
        assert.ok(out[0] instanceof ConnectionError, `first: ${out[0]}`);
        assert.deepEqual(out.slice(1), [{ v: 1 }, { v: 1 }, { v: 1 }, { v: 1 }]);
        assert.equal(term.accepted, 2);
      } finally {
        client.destroy();
      }
    }),
  );

  test(
    'insecureTcp: plain TCP to a plain listener, token and all',
    withTerm(async (term) => {
      const client = await connect({ host: LOCAL, port: term.port, insecureTcp: true, token: issue('t-*', 'write') });
      try {
        const db = await client.openDb('t-plain');
        await db.create('_default', 7n, { plain: true });
        assert.deepEqual(await db.read('_default', 7n), { plain: true });
      } finally {
        client.destroy();
      }
    }, false),
  );
});

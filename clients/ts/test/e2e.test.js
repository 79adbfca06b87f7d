// End-to-end tests against the real server (binary from DOCDB_BIN), each test with its
// own server, data dir and socket.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  connect,
  ConflictError,
  ConnectionError,
  DeniedError,
  DocDBError,
  FrameTooLargeError,
  MAX_FRAME,
  NotFoundError,
  ServerError,
} from '../dist/index.js';
import { execFileSync } from 'node:child_process';

import { DOCDB_BIN, SKIP_E2E, TestServer } from './helpers.js';

/** Runs `fn(server, client)` with a fresh server, and cleans up. */
function withServer(fn, { args = [], options = {} } = {}) {
  return async () => {
    const server = await TestServer.start(args);
    let client;
    try {
      client = await connect(server.socket, options);
      await fn(server, client);
    } finally {
      client?.destroy();
      await server.stop();
    }
  };
}

const isErr = (cls, status, text) => (e) => {
  assert.ok(e instanceof cls, `expected ${cls.name}, got ${e?.name}: ${e?.message}`);
  assert.ok(e instanceof DocDBError);
  assert.equal(e.status, status);
  if (text !== undefined) assert.equal(e.serverMessage, text);
  return true;
};

describe('DocDB end-to-end', { skip: SKIP_E2E, timeout: 120_000 }, () => {
  test(
    'secondary indexes: create, list, unique conflict, drop',
    withServer(async (_s, client) => {
      const db = await client.openDb('idx');
      await db.create('', 1n, { email: 'a' });
      await db.create('', 2n, { email: 'b' });
      await db.createIndex('', { name: 'by_email', fields: [['email', 1]], unique: true });
      const list = await db.listIndexes('');
      assert.equal(list.length, 1);
      assert.deepEqual(list[0].fields, [['email', 1]]);
      assert.equal(list[0].unique, true);
      assert.equal(list[0].entries, 2);
      await assert.rejects(
        db.create('', 3n, { email: 'a' }),
        isErr(ConflictError, 3, 'duplicate key for unique index by_email'),
      );
      await assert.rejects(db.dropIndex('', 'nope'), isErr(NotFoundError, 2, 'index not found: nope'));
      await db.dropIndex('', 'by_email');
      assert.deepEqual(await db.listIndexes(''), []);
      await db.create('', 3n, { email: 'a' });
    }),
  );

  test(
    'CRUD with JSON and raw documents, ids above 2^53',
    withServer(async (_s, client) => {
      const db = await client.openDb('crud');
      assert.equal(typeof db.id, 'bigint');
      assert.ok(db.id >= 1n);
      const again = await client.openDb('crud');
      assert.equal(again.id, db.id, 'opening by name again gives the same id');

      await db.createCollection('users');
      await db.create('users', 1n, { name: 'Ada', tags: ['x'] });
      assert.deepEqual(await db.read('users', 1n), { name: 'Ada', tags: ['x'] });
      await db.update('users', 1n, { name: 'Ada L.' });
      assert.deepEqual(await db.read('users', 1n), { name: 'Ada L.' });
      await db.delete('users', 1n);
      await assert.rejects(db.read('users', 1n), isErr(NotFoundError, 2, 'document not found'));

      const big = 2n ** 64n - 2n;
      await db.createRaw('', big, '{"n":18446744073709551615}');
      const raw = await db.readRaw('', big);
      assert.ok(raw instanceof Uint8Array);
      assert.equal(Buffer.from(raw).toString(), '{"n":18446744073709551615}');
      await db.updateRaw('_default', big, new TextEncoder().encode('[1,2,3]'));
      assert.deepEqual(await db.read('', big), [1, 2, 3]);
      await db.create('', 2n ** 53n + 1n, 'a');
      await db.create('', 2n ** 53n, 'b');
      assert.equal(await db.read('', 2n ** 53n + 1n), 'a', 'ids differing above 2^53 stay distinct');
      for (const v of [null, true, 0, -1.5, 'str', [], {}]) {
        await db.update('', 2n ** 53n, v);
        assert.deepEqual(await db.read('', 2n ** 53n), v);
      }
      await assert.rejects(db.createRaw('', 9n, 'not json'), isErr(ServerError, 1, 'payload must be valid JSON (forbidden prefixes: raw: hex:)'));
      await assert.rejects(db.create('', 9n, undefined), TypeError);
      await assert.rejects(db.read('', -1n), RangeError);
      await assert.rejects(db.read('', 1.5), TypeError);
    }),
  );

  test(
    'the README example',
    withServer(async (server) => {
      const logged = [];
      const log = console.log;
      console.log = (...a) => logged.push(a);
      try {
        // As in README.md, with the test's socket.
        const client = await connect(server.socket);
        const db = await client.openDb('app');
        await db.createCollection('users');
        await db.create('users', 1n, { name: 'Ada', langs: ['en'] });
        await db.patch('users', 1n, [{ op: 'add', path: '/langs/-', value: 'fr' }]);
        console.log(await db.read('users', 1n));
        for await (const { id, doc } of db.scanAll('users')) console.log(id, doc);
        try { await db.read('users', 2n); } catch (e) { if (!(e instanceof NotFoundError)) throw e; }
        await client.close();
      } finally {
        console.log = log;
      }
      const ada = { name: 'Ada', langs: ['en', 'fr'] };
      assert.deepEqual(logged, [[ada], [1n, ada]]);
    }),
  );

  test(
    'patch: DocDB ops and RFC 6902 ops, all or nothing',
    withServer(async (_s, client) => {
      const db = await client.openDb('patch');
      await db.createCollection('p');
      await db.create('p', 1n, { a: 1, list: [1, 2, 3] });
      await db.patch('p', 1n, [
        { op: 'set', path: '/b/c', value: 'deep' },
        { op: 'delete', path: '/a' },
        { op: 'insert', path: '/list/0', value: 0 },
        { op: 'remove', path: '/list/3' },
        { op: 'add', path: '/list/-', value: 9 },
        { op: 'replace', path: '/b/c', value: 'r' },
        { op: 'copy', from: '/b', path: '/b2' },
        { op: 'move', from: '/b2', path: '/m' },
        { op: 'test', path: '/m/c', value: 'r' },
      ]);
      assert.deepEqual(await db.read('p', 1n), { b: { c: 'r' }, list: [0, 1, 2, 9], m: { c: 'r' } });
      await db.patchRaw('p', 1n, '[{"Op":"set","Path":"/k","Value":1}]');
      assert.equal((await db.read('p', 1n)).k, 1);

      const before = await db.read('p', 1n);
      await assert.rejects(
        db.patch('p', 1n, [
          { op: 'set', path: '/z', value: 1 },
          { op: 'delete', path: '/missing' },
        ]),
        isErr(ServerError, 1),
      );
      assert.deepEqual(await db.read('p', 1n), before, 'a failed patch changes nothing');
      await assert.rejects(db.patch('p', 1n, [{ op: 'test', path: '/k', value: 2 }]), isErr(ServerError, 1, 'patch test failed'));
      await assert.rejects(db.patch('p', 1n, [{ op: 'set', path: 'no-slash', value: 1 }]), isErr(ServerError, 1, 'invalid JSON path'));
      await assert.rejects(db.patchRaw('p', 1n, '{"op":"set"}'), isErr(ServerError, 1, 'invalid patch operations'));
      await assert.rejects(db.patch('p', 2n, [{ op: 'set', path: '/a', value: 1 }]), isErr(NotFoundError, 2, 'document not found'));
      await db.create('p', 3n, [1]);
      await assert.rejects(db.patch('p', 3n, [{ op: 'set', path: '/a', value: 1 }]), isErr(ServerError, 1, 'document is not a JSON object'));
    }),
  );

  test(
    'collections: create, list, delete, their errors',
    withServer(async (_s, client) => {
      const db = await client.openDb('colls');
      assert.deepEqual(await db.listCollections(), ['_default']);
      await db.createCollection('b');
      await db.createCollection('a');
      assert.deepEqual(await db.listCollections(), ['_default', 'a', 'b']);
      await assert.rejects(db.createCollection('a'), isErr(ConflictError, 1, 'collection already exists'));
      await db.create('a', 1n, {});
      await assert.rejects(db.deleteCollection('a'), isErr(ServerError, 1, 'collection is not empty'));
      await db.delete('a', 1n);
      await db.deleteCollection('a');
      assert.deepEqual(await db.listCollections(), ['_default', 'b']);
      await assert.rejects(db.deleteCollection('a'), isErr(NotFoundError, 1, 'collection not found'));
      await assert.rejects(db.createCollection('bad/name'), isErr(ServerError, 1));
      await assert.rejects(db.createCollection('x'.repeat(65)), RangeError);
      await assert.rejects(db.create('nope', 1n, {}), isErr(NotFoundError, 1, 'collection not found'));
      await assert.rejects(db.read('nope', 1n), (e) => /collection not found: "nope"/.test(e.message));
    }),
  );

  test(
    'conflict and not-found statuses',
    withServer(async (_s, client) => {
      const db = await client.openDb('status');
      await db.create('', 1n, { v: 1 });
      await assert.rejects(db.create('', 1n, { v: 2 }), isErr(ConflictError, 3, 'document already exists'));
      assert.deepEqual(await db.read('', 1n), { v: 1 });
      await assert.rejects(db.update('', 2n, {}), isErr(NotFoundError, 2, 'document not found'));
      await assert.rejects(db.delete('', 2n), isErr(NotFoundError, 2, 'document not found'));
      await assert.rejects(db.read('', 2n), isErr(NotFoundError, 2, 'document not found'));
      const ghost = client.database(999_999n);
      await assert.rejects(ghost.read('', 1n), isErr(ServerError, 1, 'database not open'));
      await assert.rejects(client.openDb('../escape'), isErr(ServerError, 1));
    }),
  );

  test(
    'dropDb: the old id is refused, the name makes a new empty database',
    withServer(async (_s, client) => {
      const db = await client.openDb('tenant');
      const other = await client.openDb('tenant2');
      await db.create('', 1n, { v: 1 });
      await other.create('', 1n, { v: 2 });
      await client.dropDb('tenant');
      await assert.rejects(db.read('', 1n), isErr(ServerError, 1, 'database was dropped'));
      await assert.rejects(client.dropDb('tenant'), isErr(NotFoundError, 2, 'database not found'));
      assert.deepEqual((await client.listDbs()).map((d) => d.name), ['tenant2']);
      const again = await client.openDb('tenant');
      assert.ok(again.id > other.id, 'ids are never reused');
      await assert.rejects(again.read('', 1n), isErr(NotFoundError, 2, 'document not found'));
      assert.deepEqual(await other.read('', 1n), { v: 2 });
    }),
  );

  test(
    'batch: per-op results, each op on its own',
    withServer(async (_s, client) => {
      const db = await client.openDb('batch');
      await db.create('', 2n, { two: 2 });
      const rs = await db.batch([
        { op: 'create', id: 1n, doc: { one: 1 } },
        { op: 'create', id: 2n, doc: {} },
        { op: 'read', id: 2n },
        { op: 'read', id: 3n },
        { op: 'update', id: 1n, raw: '{"one":"1"}' },
        { op: 'delete', id: 4n },
        { op: 'patch', id: 1n, patch: [{ op: 'set', path: '/p', value: true }] },
        { op: 5, id: 1n },
        { op: 'read', id: 1n },
      ]);
      assert.deepEqual(
        rs.map((r) => r.status),
        [0, 3, 0, 2, 0, 2, 0, 1, 0],
      );
      assert.deepEqual(
        rs.map((r) => r.ok),
        [true, false, true, false, true, false, true, false, true],
      );
      assert.deepEqual(rs[2].doc, { two: 2 });
      assert.equal(rs[1].error.serverMessage, 'document already exists');
      assert.ok(rs[3].error instanceof NotFoundError);
      assert.equal(rs[7].error.serverMessage, 'unknown operation type');
      assert.deepEqual(rs[8].doc, { one: '1', p: true });
      assert.deepEqual(await db.read('', 1n), { one: '1', p: true }, 'the ops that succeeded are applied');
      const ok = await db.batch([{ op: 'read', id: 2n }]);
      assert.equal(ok[0].ok, true);
      assert.deepEqual(await db.batch([]), []);
    }),
  );

  test(
    'transaction: all or nothing',
    withServer(async (_s, client) => {
      const db = await client.openDb('tx');
      await db.create('', 10n, { n: 10 });
      const rs = await db.transaction([
        { op: 'create', id: 1n, doc: { n: 1 } },
        { op: 'update', id: 10n, doc: { n: 11 } },
        { op: 'read', id: 1n },
        { op: 'patch', id: 10n, patch: [{ op: 'set', path: '/p', value: 1 }] },
      ]);
      assert.ok(rs.every((r) => r.ok));
      assert.deepEqual(rs[2].doc, { n: 1 }, 'a transaction reads its own writes');
      assert.deepEqual(await db.read('', 10n), { n: 11, p: 1 });

      await assert.rejects(
        db.transaction([
          { op: 'create', id: 2n, doc: { n: 2 } },
          { op: 'delete', id: 10n },
          { op: 'create', id: 1n, doc: {} },
          { op: 'create', id: 3n, doc: {} },
        ]),
        (e) => isErr(ConflictError, 3, 'document already exists')(e) && e.opIndex === 2,
      );
      await assert.rejects(db.read('', 2n), NotFoundError, 'nothing of the failed transaction applied');
      assert.deepEqual(await db.read('', 10n), { n: 11, p: 1 });
      await assert.rejects(
        db.transaction([{ op: 'create', id: 5n, doc: 1 }, { op: 'read', id: 6n }]),
        (e) => isErr(NotFoundError, 2)(e) && e.opIndex === 1,
      );
      await assert.rejects(db.read('', 5n), NotFoundError);
      await assert.rejects(db.transaction([{ op: 'create', id: 7n, doc: 1 }, { op: 8, id: 1n }]), (e) => isErr(ServerError, 1, 'unknown operation type')(e) && e.opIndex === 1);
      await assert.rejects(db.read('', 7n), NotFoundError);
    }),
  );

  test(
    'scan: pages and an async iterator over 2,500 documents',
    withServer(async (_s, client) => {
      const db = await client.openDb('scan');
      await db.createCollection('items');
      const N = 2500;
      for (let start = 0; start < N; start += 500) {
        const rs = await db.batch(
          Array.from({ length: 500 }, (_, i) => ({ op: 'create', collection: 'items', id: BigInt(start + i + 1), doc: { i: start + i + 1 } })),
        );
        assert.ok(rs.every((r) => r.ok));
      }
      await db.create('', 0n, 'zero');

      const seen = [];
      for await (const { id, doc } of db.scanAll('items')) {
        assert.equal(doc.i, Number(id));
        seen.push(id);
      }
      assert.equal(seen.length, N);
      assert.deepEqual(seen, Array.from({ length: N }, (_, i) => BigInt(i + 1)), 'every id once, in order');

      const p1 = await db.scan('items', { limit: 1000 });
      assert.equal(p1.items.length, 1000);
      assert.equal(p1.next, 1000n);
      const p3 = await db.scan('items', { startAfter: 2000n, limit: 1000 });
      assert.equal(p3.items.length, 500);
      assert.equal(p3.next, null);
      assert.equal((await db.scan('items', { startAfter: 2500n })).items.length, 0);
      const raw = await db.scanRaw('items', { startAfter: 41n, limit: 1 });
      assert.equal(Buffer.from(raw.items[0].doc).toString(), '{"i":42}');

      let count = 0;
      for await (const row of db.scanAll('items', { startAfter: 2400n, pageSize: 7 })) {
        assert.equal(row.id, 2401n + BigInt(count));
        count++;
      }
      assert.equal(count, 100);

      // Document 0 is reachable, also with pages of one.
      await db.create('', 5n, 'five');
      const small = [];
      for await (const r of db.scanAll('', { pageSize: 1 })) small.push([r.id, r.doc]);
      assert.deepEqual(small, [
        [0n, 'zero'],
        [5n, 'five'],
      ]);
      await assert.rejects(db.scan('items', { limit: 1001 }), RangeError);
    }),
  );

  test(
    'query: filter, sort, projection, paging with next, explain, and error texts',
    { skip: SKIP_E2E },
    withServer(async (_s, client) => {
      const db = await client.openDb('query');
      const rs = await db.batch(
        Array.from({ length: 60 }, (_, i) => ({ op: 'create', id: BigInt(i), doc: { n: i, g: i % 4 } })),
      );
      assert.ok(rs.every((r) => r.ok));
      await db.createRaw('', 100n, '{"n":100,"big":9007199254740993}');
      const page = await db.query('', { filter: { g: 1, n: { $gte: 20 } }, sort: [['n', -1]], limit: 3, projection: ['n'], explain: true });
      assert.deepEqual(page.items, [
        { id: 57n, doc: { n: 57 } },
        { id: 53n, doc: { n: 53 } },
        { id: 49n, doc: { n: 49 } },
      ]);
      assert.equal(typeof page.next, 'string');
      assert.deepEqual(page.plan, { kind: 'scan', collection: '_default', examined: 61 });
      const ids = [];
      for await (const r of db.queryAll('', { filter: { g: 1, n: { $gte: 20 } }, sort: [['n', -1]], limit: 3 })) ids.push(r.id);
      assert.deepEqual(ids, [57n, 53n, 49n, 45n, 41n, 37n, 33n, 29n, 25n, 21n]);
      const one = await db.query('', { filter: { n: 100 } });
      assert.equal(one.items[0].doc.big, 9007199254740993n, 'large integers stay exact');
      assert.equal(one.next, null);
      await assert.rejects(
        db.query('', { filter: { n: { $in: 3 } } }),
        isErr(ServerError, 1, 'invalid query: $in at path n needs an array, got a number'),
      );
    }),
  );

  test(
    'reply budget: scanAll across short pages; an Execute over the frame limit rejects clearly',
    withServer(async (_s, client) => {
      const db = await client.openDb('budget');
      // 1,000 documents of 20 KB: 20 MB, more than one 16 MiB frame and than the
      // server's 8 MiB page budget.
      const pad = 'x'.repeat(20_000);
      for (let start = 1; start <= 1000; start += 100) {
        const rs = await db.batch(
          Array.from({ length: 100 }, (_, i) => ({ op: 'create', id: BigInt(start + i), doc: { i: start + i, pad } })),
        );
        assert.ok(rs.every((r) => r.ok));
      }
      const page = await db.scanRaw('', { limit: 1000 });
      assert.ok(page.items.length < 1000 && page.items.length > 300, `${page.items.length} rows`);
      assert.equal(page.next, page.items[page.items.length - 1].id, 'a short page says where to resume');
      const seen = [];
      for await (const { id, doc } of db.scanAll('', { pageSize: 1000 })) {
        assert.equal(doc.i, Number(id));
        seen.push(id);
      }
      assert.deepEqual(seen, Array.from({ length: 1000 }, (_, i) => BigInt(i + 1)), 'every id once, in order');

      // 1,000 reads of a 20 KB document would be a 20 MB reply.
      await assert.rejects(
        db.batch(Array.from({ length: 1000 }, () => ({ op: 'read', id: 1n }))),
        (e) => e instanceof ServerError && e.status === 1 && /reply exceeds the frame limit \(16 MiB\): the first \d+ of 1000 ops ran/.test(e.message),
      );
      await assert.rejects(
        db.transaction([{ op: 'create', id: 5000n, doc: 1 }, ...Array.from({ length: 1000 }, () => ({ op: 'read', id: 1n }))]),
        (e) => e instanceof ServerError && e.message.includes('the transaction was not applied'),
      );
      await assert.rejects(db.read('', 5000n), NotFoundError);
    }),
  );

  test(
    '1,000 pipelined requests on one connection (default server and client settings)',
    withServer(async (_s, client) => {
      const db = await client.openDb('pipe');
      const N = 1000;
      const creates = Array.from({ length: N }, (_, i) => db.create('', BigInt(i), { i }));
      assert.equal(client.inFlight, N, 'all 1,000 are in flight at once');
      await Promise.all(creates);
      const docs = await Promise.all(Array.from({ length: N }, (_, i) => db.read('', BigInt(i))));
      docs.forEach((d, i) => assert.equal(d.i, i));
      const mixed = await Promise.allSettled(
        Array.from({ length: N }, (_, i) => (i % 2 ? db.read('', BigInt(i)) : db.create('', BigInt(i), {}))),
      );
      mixed.forEach((r, i) => {
        if (i % 2) assert.equal(r.value.i, i);
        else assert.ok(r.reason instanceof ConflictError);
      });
      assert.equal(client.inFlight, 0);
      const st = await client.stats();
      assert.ok(st.totalTxns >= BigInt(N));
    }),
  );

  test(
    '1,000 requests all on the wire at once against a deep queue',
    withServer(
      async (_s, client) => {
        const db = await client.openDb('wire');
        const rs = await Promise.all(Array.from({ length: 1000 }, (_, i) => db.batch([{ op: 'create', id: BigInt(i), doc: i }])));
        assert.ok(rs.every((r) => r[0].ok));
        const docs = await Promise.all(Array.from({ length: 1000 }, (_, i) => db.read('', BigInt(i))));
        docs.forEach((d, i) => assert.equal(d, i));
      },
      { args: ['--queue-depth', '2000'], options: { maxInFlight: Infinity } },
    ),
  );

  test(
    '`request queue is full` is retried (the server did not run the request), or surfaced when retries are off',
    withServer(
      async (server, client) => {
        const db = await client.openDb('full');
        await Promise.all(Array.from({ length: 300 }, (_, i) => db.create('', BigInt(i), { i })));
        for (let i = 0; i < 300; i += 37) assert.deepEqual(await db.read('', BigInt(i)), { i });

        const raw = await connect(server.socket, { maxInFlight: Infinity, queueFullRetryMs: 0 });
        try {
          const rdb = raw.database(db.id);
          const settled = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => rdb.create('', BigInt(1000 + i), {})));
          const full = settled.filter((r) => r.status === 'rejected');
          assert.ok(full.length > 0, 'a burst over a queue of 2 overflows');
          for (const r of full) assert.ok(isErr(ServerError, 1, 'request queue is full')(r.reason));
        } finally {
          raw.destroy();
        }
      },
      { args: ['--queue-depth', '2'], options: { maxInFlight: Infinity } },
    ),
  );

  test(
    'reconnect after the server restarts; database handles keep their id',
    withServer(
      async (server, client) => {
        const db = await client.openDb('persist');
        await db.create('', 1n, { before: true });
        assert.equal(await server.terminate(), 0, 'SIGTERM exits 0');
        // Down: calls fail with ConnectionError once the retry window is over.
        await assert.rejects(db.read('', 1n), ConnectionError);
        assert.equal(client.connected, false);
        await server.spawn();
        assert.deepEqual(await db.read('', 1n), { before: true }, 'transparent reconnect, same id');
        await db.create('', 2n, { after: true });
        // A restart between two calls is not seen at all.
        await server.restart();
        assert.deepEqual(await db.read('', 2n), { after: true });
        assert.equal((await client.openDb('persist')).id, db.id);
      },
      { options: { reconnectTimeoutMs: 300 } },
    ),
  );

  test(
    'requests in flight when the server goes away reject with ConnectionError',
    withServer(
      async (server, client) => {
        const db = await client.openDb('inflight');
        // An fsync per write: 2,000 creates take far longer than the kill below, so
        // some are certainly still in flight when the server dies.
        const N = 2000;
        const calls = Array.from({ length: N }, (_, i) => db.create('', BigInt(i + 1), { i: i + 1 }));
        await calls[0];
        server.child.kill('SIGKILL');
        const settled = await Promise.allSettled(calls);
        const acked = [];
        let io = 0;
        settled.forEach((r, i) => {
          if (r.status === 'fulfilled') acked.push(BigInt(i + 1));
          else {
            assert.ok(r.reason instanceof ConnectionError, String(r.reason));
            io += 1;
          }
        });
        console.log(`${acked.length} answered before the kill, ${io} failed with ConnectionError`);
        assert.ok(io >= 1, 'no request was in flight at the kill: nothing tested');
        assert.ok(acked.length >= 1, 'the first create was answered before the kill');
        await server.exited;
        server.child = null;
        await server.spawn();
        // Acknowledged writes survived the kill; every row is a document (a failed
        // page throws), none unexpected or repeated.
        const stored = new Set();
        for await (const { id, doc } of db.scanAll('', { pageSize: 1000 })) {
          assert.ok(id >= 1n && id <= BigInt(N), `unexpected document ${id}`);
          assert.deepEqual(doc, { i: Number(id) });
          assert.ok(!stored.has(id), `document ${id} scanned twice`);
          stored.add(id);
        }
        const lost = acked.filter((id) => !stored.has(id));
        assert.deepEqual(lost, [], 'acknowledged but lost');
        await db.create('', 5000n, {});
        assert.deepEqual(await db.read('', 5000n), {});
      },
      // All 2,000 on the wire at once (not waiting in the client for the window, which
      // would make them requests that never left, sent again after a reconnect).
      {
        args: ['--queue-depth', '4096', '--fsync-mode', 'always'],
        options: { reconnectTimeoutMs: 300, maxInFlight: 4096 },
      },
    ),
  );

  test(
    'stats, listDbs, metrics, schedulerStats, heal, closeDb',
    withServer(async (_s, client) => {
      const a = await client.openDb('alpha');
      const b = await client.openDb('beta');
      await a.create('', 1n, { x: 1 });
      const st = await client.stats();
      for (const k of ['totalDbs', 'activeDbs', 'totalTxns', 'walSize', 'memoryUsed']) assert.equal(typeof st[k], 'bigint', k);
      assert.equal(st.totalDbs, 2n);
      const dbs = await client.listDbs();
      assert.deepEqual(
        dbs.map((d) => [d.name, d.id]),
        [
          ['alpha', a.id],
          ['beta', b.id],
        ],
      );
      assert.ok(!Number.isNaN(Date.parse(dbs[0].createdAt)));
      assert.equal(dbs[0].docsLive, 1n);
      assert.equal(typeof dbs[0].walSize, 'bigint');
      const m = await client.metrics();
      assert.match(m, /docdb_operations_total/);
      const ss = await client.schedulerStats();
      assert.equal(typeof ss.worker_count, 'number');
      assert.ok(ss.worker_pool);
      await a.heal('', 1n);
      assert.deepEqual(await a.healAll(), []);
      const hs = await a.healStats();
      assert.equal(typeof hs.TotalScans, 'number');
      assert.ok(Array.isArray(hs.Unrecoverable));
      await a.close();
      assert.deepEqual(await a.read('', 1n), { x: 1 }, 'a closed database reopens on use');
      await client.closeDb(b);
    }),
  );

  test(
    'calls without a collection use _default; the README example runs twice',
    withServer(async (_s, client) => {
      const db = await client.openDb('defaults');
      await db.create(2n, { a: 1 });
      assert.deepEqual(await db.read(2n), { a: 1 });
      assert.deepEqual(await db.read('_default', 2n), { a: 1 });
      await db.update(2n, { a: 2 });
      await db.patch(2n, [{ op: 'add', path: '/b', value: 3 }]);
      assert.deepEqual(await db.read(2n), { a: 2, b: 3 });
      await db.createRaw(3n, '{"raw":true}');
      assert.equal(new TextDecoder().decode(await db.readRaw(3n)), '{"raw":true}');
      await db.heal(3n);
      await db.delete(3n);
      await assert.rejects(db.read(3n), isErr(NotFoundError, 2, 'document not found'));
      await assert.rejects(db.create(2n, {}), isErr(ConflictError, 3, 'document already exists'));
      // The README's idempotent example, twice.
      for (let run = 0; run < 2; run++) {
        const app = await client.openDb('app');
        try {
          await app.createCollection('users');
        } catch (e) {
          if (!(e instanceof ConflictError)) throw e;
        }
        await app.delete('users', 1n).catch((e) => {
          if (!(e instanceof NotFoundError)) throw e;
        });
        await app.create('users', 1n, { name: 'Ada', langs: ['en'] });
        await app.patch('users', 1n, [{ op: 'add', path: '/langs/-', value: 'fr' }]);
        assert.deepEqual(await app.read('users', 1n), { name: 'Ada', langs: ['en', 'fr'] });
      }
    }),
  );

  test(
    'frame size limit: oversized requests are refused locally, the connection stays',
    withServer(async (_s, client) => {
      const db = await client.openDb('big');
      const huge = 'x'.repeat(MAX_FRAME);
      await assert.rejects(db.create('', 1n, huge), (e) => e instanceof FrameTooLargeError && e.status === 1);
      // A 1 MiB document goes through, and the connection is fine after the refusal.
      const mib = 'y'.repeat(1 << 20);
      await db.create('', 2n, mib);
      assert.equal((await db.read('', 2n)).length, 1 << 20);
    }),
  );
});

describe('DocDB auth end-to-end', { skip: SKIP_E2E, timeout: 60_000 }, () => {
  test('auth(token) scopes the client, reconnects re-authenticate, refusals are DeniedError', async () => {
    const server = await TestServer.start(['--auth', 'token']);
    const issue = (db, rights) =>
      execFileSync(DOCDB_BIN, ['token', 'issue', '--data-dir', server.dataDir, '--db', db, '--rights', rights])
        .toString()
        .trim();
    const client = await connect(server.socket);
    try {
      await assert.rejects(client.openDb('t-a'), (e) => e instanceof DeniedError && e.status === 5 && e.message === 'authentication required');
      const info = await client.auth(issue('t-*', 'write'));
      assert.deepEqual(info, { db: 't-*', rights: 'write', expires: null });
      const db = await client.openDb('t-a');
      await db.create('_default', 1, { a: 1 });
      await assert.rejects(client.openDb('other'), (e) => e instanceof DeniedError && /outside/.test(e.message));
      await assert.rejects(client.stats(), (e) => e instanceof DeniedError && /needs admin/.test(e.message));
      await server.restart();
      assert.deepEqual(await db.read('_default', 1), { a: 1 });
      await assert.rejects(client.auth('garbage'), (e) => e instanceof DeniedError && /malformed token/.test(e.message));
    } finally {
      client.destroy();
      await server.stop();
    }
  });

  test('the token option authenticates every connection of a Unix-socket client, the first included', async () => {
    const server = await TestServer.start(['--auth', 'token']);
    const token = execFileSync(DOCDB_BIN, ['token', 'issue', '--data-dir', server.dataDir, '--db', 'o-*', '--rights', 'write'])
      .toString()
      .trim();
    const client = await connect(server.socket, { token });
    try {
      const db = await client.openDb('o-a');
      await db.create('_default', 1n, { a: 1 });
      await server.restart();
      assert.deepEqual(await db.read('_default', 1n), { a: 1 });
      await assert.rejects(connect(server.socket, { token: 'garbage' }), (e) => e instanceof DeniedError && e.status === 5);
    } finally {
      client.destroy();
      await server.stop();
    }
  });
});

// Client behaviour against a scripted in-process server: out-of-order and fragmented
// responses, protocol errors, dropped connections, reconnects, timeouts, close.
// Needs no DocDB binary.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';

import {
  Client,
  connect,
  ConnectionError,
  decodeRequest,
  encodeResponse,
  encodeStatusResults,
  FrameReader,
  MAX_FRAME,
  NotFoundError,
  ConflictError,
  ProtocolError,
  TimeoutError,
} from '../dist/index.js';
import { tempDir } from './helpers.js';

const dirs = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// Whatever a test leaves open (it failed half-way) is closed after it, so a failure
// never hangs the run.
const open = new Set();
afterEach(async () => {
  for (const x of open) await x.close().catch(() => {});
  open.clear();
});
/** `connect` that is cleaned up after the test. */
async function connectT(path, options) {
  const c = await connect(path, options);
  open.add({ close: async () => c.destroy() });
  return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A server calling `onRequest(req, conn)` for every request frame. */
async function fakeServer(onRequest) {
  const dir = tempDir('docdb-fake-');
  dirs.push(dir);
  const path = join(dir, 'fake.sock');
  const conns = new Set();
  const server = net.createServer((sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => {});
    const reader = new FrameReader();
    sock.on('data', (chunk) => {
      for (const f of reader.push(chunk)) onRequest(decodeRequest(f), sock);
    });
  });
  let accepted = 0;
  server.on('connection', () => accepted++);
  await new Promise((r) => server.listen(path, r));
  let closed = false;
  const handle = {
    path,
    conns,
    accepted: () => accepted,
    async close() {
      if (closed) return;
      closed = true;
      for (const c of conns) c.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  open.add(handle);
  return handle;
}

const reply = (sock, requestId, status, data) => sock.write(encodeResponse({ requestId, status, data }));

describe('scripted server', { timeout: 60_000 }, () => {
  test('responses out of order and in odd fragments are matched by request id', async () => {
    const N = 300;
    let held = [];
    const srv = await fakeServer((req, sock) => {
      held.push(req);
      if (held.length < N) return;
      // Answer all of them in reverse order, as one byte stream cut at random.
      const bytes = Buffer.concat(held.reverse().map((r) => encodeResponse({ requestId: r.requestId, status: 0, data: r.ops[0].payload })));
      held = [];
      (async () => {
        let seed = 7;
        for (let p = 0; p < bytes.length; ) {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          const n = 1 + (seed % 97);
          sock.write(bytes.subarray(p, p + n));
          p += n;
          if (seed % 5 === 0) await sleep(1);
        }
      })();
    });
    const client = await connectT(srv.path, { maxInFlight: Infinity });
    const calls = [];
    for (let i = 0; i < N; i++) {
      calls.push(client.request(3, 1n, [{ opType: 2, collection: '', docId: BigInt(i), payload: Buffer.from(`p${i}`) }]));
    }
    const got = await Promise.all(calls);
    got.forEach((r, i) => assert.equal(Buffer.from(r.data).toString(), `p${i}`));
    await client.close();
    await srv.close();
  });

  test('maxInFlight: at most that many requests on the wire; the rest wait in order', async () => {
    let onWire = 0;
    let peak = 0;
    const order = [];
    const srv = await fakeServer((req, sock) => {
      onWire++;
      peak = Math.max(peak, onWire);
      order.push(req.ops[0].docId);
      setTimeout(() => {
        onWire--;
        reply(sock, req.requestId, 0, Buffer.from('ok'));
      }, 1);
    });
    const client = await connectT(srv.path, { maxInFlight: 8 });
    const calls = Array.from({ length: 200 }, (_, i) => client.request(3, 1n, [{ opType: 2, collection: '', docId: BigInt(i) }]));
    assert.equal(client.inFlight, 200);
    await Promise.all(calls);
    assert.ok(peak <= 8 && peak >= 2, `peak ${peak}`);
    assert.deepEqual(order, Array.from({ length: 200 }, (_, i) => BigInt(i)), 'sent in call order');
    await client.close();
    await srv.close();
  });

  test('a broken connection fails the requests on the wire; those still waiting go out on the next one', async () => {
    let first = true;
    let seen = 0;
    const srv = await fakeServer((req, sock) => {
      if (first) {
        if (++seen === 4) {
          first = false;
          sock.destroy(); // four on the wire, none answered
        }
        return;
      }
      reply(sock, req.requestId, 0, req.ops[0].payload);
    });
    const client = await connectT(srv.path, { maxInFlight: 4 });
    const calls = Array.from({ length: 20 }, (_, i) => client.request(3, 1n, [{ opType: 2, collection: '', docId: 0n, payload: Buffer.from(`${i}`) }]));
    const settled = await Promise.allSettled(calls);
    settled.slice(0, 4).forEach((r) => assert.ok(r.status === 'rejected' && r.reason instanceof ConnectionError, String(r.reason)));
    settled.slice(4).forEach((r, i) => assert.equal(Buffer.from(r.value.data).toString(), `${i + 4}`));
    assert.equal(srv.accepted(), 2);
    await client.close();
    await srv.close();
  });

  test('a response frame over the limit is a ProtocolError for everything in flight, then a reconnect', async () => {
    let n = 0;
    const srv = await fakeServer((req, sock) => {
      n++;
      if (n === 3) {
        const head = Buffer.alloc(4);
        head.writeUInt32LE(MAX_FRAME + 1);
        sock.write(head);
      } else if (n > 3) {
        reply(sock, req.requestId, 0, Buffer.alloc(40));
      }
    });
    const client = await connectT(srv.path);
    const inflight = [1, 2, 3].map(() => client.request(4, 0n, []));
    for (const p of inflight) {
      await assert.rejects(p, (e) => e instanceof ProtocolError && e instanceof ConnectionError && /exceeds the maximum/.test(e.message));
    }
    const st = await client.stats();
    assert.equal(st.totalDbs, 0n);
    assert.equal(srv.accepted(), 2, 'the bad connection was closed, a new one opened');
    await client.close();
    await srv.close();
  });

  test('a malformed response frame is a ProtocolError', async () => {
    const srv = await fakeServer((req, sock) => {
      const f = Buffer.from(encodeResponse({ requestId: req.requestId, status: 0, data: Buffer.from('abc') }));
      f.writeUInt32LE(f.length - 4 + 1, 0); // one trailing byte inside the frame
      sock.write(Buffer.concat([f, Buffer.from([0])]));
    });
    const client = await connectT(srv.path);
    await assert.rejects(client.metrics(), (e) => e instanceof ProtocolError && /trailing bytes/.test(e.message));
    await client.close();
    await srv.close();
  });

  test('the server closing the connection fails every request in flight; the next call reconnects', async () => {
    let seen = 0;
    const srv = await fakeServer((req, sock) => {
      seen++;
      if (seen === 50) sock.destroy();
      else if (seen > 50) reply(sock, req.requestId, 0, Buffer.from('# metrics'));
    });
    const client = await connectT(srv.path);
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => client.metrics()));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof ConnectionError, String(r.reason));
    }
    assert.equal(client.connected, false);
    assert.equal(await client.metrics(), '# metrics');
    assert.equal(client.connected, true);
    await client.close();
    await srv.close();
  });

  test('request id 0 with an error is the server turning the connection away', async () => {
    const srv = await fakeServer((_req, sock) => {
      reply(sock, 0n, 1, Buffer.from('too many connections'));
      sock.end();
    });
    const client = await connectT(srv.path);
    await assert.rejects(client.metrics(), (e) => e instanceof ConnectionError && /too many connections/.test(e.message));
    await client.close();
    await srv.close();
  });

  test('typed errors by status, per-op statuses of a failed batch', async () => {
    const srv = await fakeServer((req, sock) => {
      if (req.command === 1) return reply(sock, req.requestId, 0, Buffer.alloc(8, 0));
      // Execute with per-op statuses (3 | 0x80): op 0 ok (create), op 1 conflict,
      // op 2 read ok, op 3 read not found; the reply itself is OK.
      assert.equal(req.command, 131);
      reply(
        sock,
        req.requestId,
        0,
        encodeStatusResults([
          { status: 0, data: Buffer.alloc(0) },
          { status: 3, data: Buffer.from('document already exists') },
          { status: 0, data: Buffer.from('{"a":1}') },
          { status: 2, data: Buffer.from('document not found') },
        ]),
      );
    });
    const client = await connectT(srv.path);
    const db = await client.openDb('x');
    const rs = await db.batch([
      { op: 'create', id: 1n, doc: 1 },
      { op: 'create', id: 2n, doc: 2 },
      { op: 'read', id: 3n },
      { op: 'read', id: 4n },
    ]);
    assert.deepEqual(rs.map((r) => r.status), [0, 3, 0, 2]);
    assert.ok(rs[1].error instanceof ConflictError);
    assert.equal(rs[1].error.opIndex, 1);
    assert.deepEqual(rs[2].doc, { a: 1 });
    assert.ok(rs[3].error instanceof NotFoundError);
    await client.close();
    await srv.close();
  });

  test('a failed transaction (per-op statuses) rejects with the failing op, a plain-text error as itself', async () => {
    const na = Buffer.from('transaction not applied: op 1 failed');
    const srv = await fakeServer((req, sock) => {
      if (req.command === 1) return reply(sock, req.requestId, 0, Buffer.alloc(8, 0));
      assert.equal(req.command, 141);
      if (req.ops.length === 1) return reply(sock, req.requestId, 1, Buffer.from('database not open'));
      reply(
        sock,
        req.requestId,
        0,
        encodeStatusResults([
          { status: 1, data: na },
          { status: 2, data: Buffer.from('document not found') },
          { status: 1, data: na },
        ]),
      );
    });
    const client = await connectT(srv.path);
    const db = await client.openDb('x');
    await assert.rejects(
      db.transaction([
        { op: 'create', id: 1n, doc: 1 },
        { op: 'read', id: 2n },
        { op: 'create', id: 3n, doc: 3 },
      ]),
      (e) => e instanceof NotFoundError && e.opIndex === 1 && e.message === 'document not found',
    );
    await assert.rejects(
      db.transaction([{ op: 'read', id: 2n }]),
      (e) => e.status === 1 && e.message === 'database not open',
    );
    await client.close();
    await srv.close();
  });

  test('timeoutMs: an unanswered request fails with TimeoutError, the connection stays', async () => {
    const srv = await fakeServer((req, sock) => {
      if (req.ops.length > 0) reply(sock, req.requestId, 0, Buffer.from('late-but-ok'));
    });
    const client = await connectT(srv.path, { timeoutMs: 100 });
    await assert.rejects(client.metrics(), TimeoutError);
    assert.equal(client.connected, true);
    const r = await client.request(12, 0n, [{ opType: 2, collection: '', docId: 0n }]);
    assert.equal(Buffer.from(r.data).toString(), 'late-but-ok');
    await client.close();
    await srv.close();
  });

  test('connecting to a missing socket fails with ConnectionError after the retry window', async () => {
    const dir = tempDir('docdb-fake-');
    dirs.push(dir);
    const t0 = Date.now();
    await assert.rejects(connect(join(dir, 'nope.sock'), { reconnectTimeoutMs: 300 }), (e) => e instanceof ConnectionError && /cannot connect/.test(e.message));
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 3000, `took ${took} ms`);
  });

  test('close() answers what is in flight first, then refuses new calls', async () => {
    const srv = await fakeServer((req, sock) => setTimeout(() => reply(sock, req.requestId, 0, Buffer.from('m')), 50));
    const client = await connectT(srv.path);
    const p = client.metrics();
    await client.close();
    assert.equal(await p, 'm');
    await assert.rejects(client.metrics(), (e) => e instanceof ConnectionError && /closed/.test(e.message));
    await srv.close();
  });

  test('an idle client does not keep the process alive', async () => {
    const srv = await fakeServer((req, sock) => reply(sock, req.requestId, 0, Buffer.from('m')));
    const script = `
      const { connect } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const c = await connect(${JSON.stringify(srv.path)});
      console.log(await c.metrics());
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const hung = setTimeout(() => child.kill(), 10_000);
    const code = await new Promise((r) => child.once('exit', (c, sig) => r(sig === 'SIGTERM' ? 'hung' : c)));
    clearTimeout(hung);
    assert.equal(code, 0);
    assert.equal(out.trim(), 'm');
    await srv.close();
  });

  test('Client without connect(): the first call connects', async () => {
    const srv = await fakeServer((req, sock) => reply(sock, req.requestId, 0, Buffer.from('m')));
    const client = new Client(srv.path);
    assert.equal(client.connected, false);
    assert.equal(await client.metrics(), 'm');
    await client.close();
    await srv.close();
  });
});

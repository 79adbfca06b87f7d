// Codec unit tests: the shared byte vectors of test/fixtures/frames.json (also checked
// by crates/docdb-protocol/tests/fixtures.rs), the frame reader's chunk handling, the
// frame size limits and the bigint-exact JSON helpers.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  decodeRequest,
  decodeResponse,
  decodeResults,
  decodeStatusResults,
  encodeRequest,
  encodeResponse,
  encodeResults,
  encodeStatusResults,
  FrameError,
  FrameReader,
  FrameTooLargeError,
  DocDBError,
  MAX_FRAME,
  parseBigJson,
} from '../dist/index.js';
import { splitScanPage, splitScanReply } from '../dist/json.js';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/frames.json', import.meta.url), 'utf8'));

const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b) => Buffer.from(b).toString('hex');

function requestOf(o) {
  return {
    requestId: BigInt(o.request_id),
    dbId: BigInt(o.db_id),
    command: o.command,
    ops: o.ops.map((op) => ({
      opType: op.op_type,
      collection: op.collection,
      docId: BigInt(op.doc_id),
      patch: op.patch === null ? null : hex(op.patch),
      payload: hex(op.payload),
    })),
  };
}

function requestJson(r) {
  return {
    request_id: r.requestId.toString(),
    db_id: r.dbId.toString(),
    command: r.command,
    ops: r.ops.map((op) => ({
      op_type: op.opType,
      collection: op.collection,
      doc_id: op.docId.toString(),
      patch: op.patch === null ? null : toHex(op.patch),
      payload: toHex(op.payload),
    })),
  };
}

describe('shared fixture frames.json', () => {
  test('pins the same frame limit', () => {
    assert.equal(fixture.max_frame, MAX_FRAME);
  });

  test('covers patch, unknown op, multi-op Execute, u64 above 2^53, results payload', () => {
    const ops = fixture.requests.flatMap((e) => e.request.ops);
    assert.ok(ops.some((o) => o.op_type === 7 && o.patch));
    assert.ok(ops.some((o) => ![1, 2, 3, 4, 7].includes(o.op_type)));
    assert.ok(fixture.requests.some((e) => e.request.command === 3 && e.request.ops.length > 1));
    const big = (s) => BigInt(s) > 2n ** 53n;
    assert.ok(
      fixture.requests.some((e) => big(e.request.request_id) || big(e.request.db_id) || e.request.ops.some((o) => big(o.doc_id))),
    );
    assert.ok(fixture.responses.some((e) => e.results));
    assert.ok(fixture.responses.some((e) => e.statuses));
    assert.ok(fixture.requests.some((e) => e.request.command === 131));
  });

  for (const e of fixture.requests) {
    test(`request: ${e.name}`, () => {
      const wire = hex(e.wire);
      assert.equal(toHex(encodeRequest(requestOf(e.request))), e.wire, 'encoded');
      assert.equal(new DataView(wire.buffer).getUint32(0, true), wire.length - 4, 'length prefix');
      const decoded = decodeRequest(wire.subarray(4));
      assert.deepEqual(requestJson(decoded), e.request, 'decoded');
    });
  }

  for (const e of fixture.responses) {
    test(`response: ${e.name}`, () => {
      const wire = hex(e.wire);
      const r = decodeResponse(wire.subarray(4));
      assert.equal(r.requestId, BigInt(e.response.request_id));
      assert.equal(r.status, e.response.status);
      assert.equal(toHex(r.data), e.response.data);
      assert.equal(toHex(encodeResponse(r)), e.wire, 're-encoded');
      if (e.results) {
        const results = decodeResults(r.data);
        assert.deepEqual(results.map(toHex), e.results);
        assert.equal(toHex(encodeResults(results)), e.response.data, 'results re-encoded');
      }
      if (e.statuses) {
        const results = decodeStatusResults(r.data);
        assert.deepEqual(
          results.map((x) => [x.status, toHex(x.data)]),
          e.statuses,
        );
        assert.equal(toHex(encodeStatusResults(results)), e.response.data, 'statuses re-encoded');
      }
    });
  }

  const checkError = (fn, want) => {
    assert.throws(fn, (err) => {
      assert.ok(err instanceof FrameError, `FrameError, got ${err}`);
      assert.equal(err.reason, want.reason);
      assert.equal(err.requestId, want.request_id === null ? null : BigInt(want.request_id));
      return true;
    });
  };
  for (const e of fixture.invalid_requests) {
    test(`invalid request: ${e.name}`, () => checkError(() => decodeRequest(hex(e.frame)), e.error));
  }
  for (const e of fixture.invalid_responses) {
    test(`invalid response: ${e.name}`, () => checkError(() => decodeResponse(hex(e.frame)), e.error));
  }
  for (const e of fixture.invalid_results) {
    test(`invalid results: ${e.name}`, () => checkError(() => decodeResults(hex(e.data)), e.error));
  }
});

describe('FrameReader', () => {
  const wires = fixture.responses.map((e) => hex(e.wire));
  const stream = Buffer.concat(wires);
  const frames = wires.map((w) => toHex(w.subarray(4)));

  test('coalesced: every frame from one chunk', () => {
    const r = new FrameReader();
    assert.deepEqual(r.push(stream).map(toHex), frames);
    assert.equal(r.pending, 0);
  });

  test('partial: one byte at a time', () => {
    const r = new FrameReader();
    const got = [];
    for (let i = 0; i < stream.length; i++) got.push(...r.push(stream.subarray(i, i + 1)));
    assert.deepEqual(got.map(toHex), frames);
  });

  test('every split point of the whole stream, and random chunkings', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new FrameReader();
      const got = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
      assert.deepEqual(got.map(toHex), frames, `cut at ${cut}`);
    }
    let seed = 1;
    const rand = (n) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const r = new FrameReader();
      const got = [];
      for (let p = 0; p < stream.length; ) {
        const n = 1 + rand(40);
        got.push(...r.push(stream.subarray(p, p + n)));
        p += n;
      }
      assert.deepEqual(got.map(toHex), frames, `round ${round}`);
    }
  });

  test('an empty frame and an empty chunk', () => {
    const r = new FrameReader();
    assert.deepEqual(r.push(new Uint8Array(0)), []);
    assert.deepEqual(r.push(Uint8Array.of(0, 0, 0, 0)).map(toHex), ['']);
  });

  test('a length over MAX_FRAME is refused before buffering', () => {
    const r = new FrameReader();
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, MAX_FRAME + 1, true);
    assert.throws(() => r.push(head.subarray(0, 2)).concat(r.push(head.subarray(2))), FrameError);
    const ok = new FrameReader();
    new DataView(head.buffer).setUint32(0, MAX_FRAME, true);
    assert.deepEqual(ok.push(head), []);
    assert.equal(ok.pending, 0);
  });
});

describe('frame size limit on requests', () => {
  const op = (n) => ({ opType: 1, collection: 'c', docId: 1n, payload: new Uint8Array(n) });
  // Header 21 bytes, op overhead 1 + 2 + 1 + 8 + 4 = 16.
  const fixed = 21 + 16;

  test('a frame of exactly MAX_FRAME is encoded', () => {
    const bytes = encodeRequest({ requestId: 1n, dbId: 1n, command: 3, ops: [op(MAX_FRAME - fixed)] });
    assert.equal(bytes.length, MAX_FRAME + 4);
  });

  test('one byte more is refused with FrameTooLargeError (a DocDBError)', () => {
    assert.throws(
      () => encodeRequest({ requestId: 1n, dbId: 1n, command: 3, ops: [op(MAX_FRAME - fixed + 1)] }),
      (e) => e instanceof FrameTooLargeError && e instanceof DocDBError && e.serverMessage === 'frame size exceeds maximum',
    );
  });

  test('collection over 64 bytes and ids out of u64 range are refused', () => {
    assert.throws(() => encodeRequest({ requestId: 1n, dbId: 1n, command: 3, ops: [{ ...op(0), collection: 'x'.repeat(65) }] }), RangeError);
    assert.throws(() => encodeRequest({ requestId: 1n, dbId: 2n ** 64n, command: 3, ops: [] }), RangeError);
    assert.throws(() => encodeRequest({ requestId: 1n, dbId: -1n, command: 3, ops: [] }), RangeError);
    assert.throws(() => encodeRequest({ requestId: 1n, dbId: 1, command: 3, ops: [] }), TypeError);
  });
});

describe('bigint-exact JSON', () => {
  test('parseBigJson keeps integers above 2^53 exact', () => {
    const v = parseBigJson('{"a":[1,-2,9007199254740993,18446744073709551615,1.5,2e3],"b":"x\\"y\\u00e9","c":null,"d":true,"e":{}}');
    assert.deepEqual(v, { a: [1, -2, 9007199254740993n, 18446744073709551615n, 1.5, 2000], b: 'x"yé', c: null, d: true, e: {} });
    for (const bad of ['', '[1,]', '{"a"}', '[1] x', 'nul', '"open']) {
      assert.throws(() => parseBigJson(bad), SyntaxError, bad);
    }
  });

  test('splitScanReply: ids exact, documents as their bytes', () => {
    const doc = '{"s":"a}\\"]","n":[1,{"x":null}],"big":18446744073709551615}';
    const text = `[{"id":0,"doc":${doc}},{"id":9007199254740993,"doc":"str"},{"id":18446744073709551615,"doc":-1.5e3},{"id":5,"doc":null}]`;
    const rows = splitScanReply(Buffer.from(text));
    assert.deepEqual(
      rows.map((r) => [r.id, Buffer.from(r.doc).toString()]),
      [
        [0n, doc],
        [9007199254740993n, '"str"'],
        [18446744073709551615n, '-1.5e3'],
        [5n, 'null'],
      ],
    );
    assert.deepEqual(splitScanReply(Buffer.from('[]')), []);
    assert.deepEqual(splitScanReply(Buffer.from(' [ { "doc" : [ ] , "id" : 3 } ] ')).map((r) => r.id), [3n]);
    for (const bad of ['[', '[{"id":1}]', '[{"id":-1,"doc":1}]', '[{"id":1,"doc":1}] x', '{}']) {
      assert.throws(() => splitScanReply(Buffer.from(bad)), SyntaxError, bad);
    }
  });

  test('splitScanPage: rows and where to resume', () => {
    const p = splitScanPage(Buffer.from('{"rows":[{"id":18446744073709551614,"doc":{"a":"]}"}}],"next":18446744073709551614}'));
    assert.deepEqual(
      p.rows.map((r) => [r.id, Buffer.from(r.doc).toString()]),
      [[18446744073709551614n, '{"a":"]}"}']],
    );
    assert.equal(p.next, 18446744073709551614n);
    const end = splitScanPage(Buffer.from(' { "next" : null , "rows" : [ ] } '));
    assert.deepEqual(end, { rows: [], next: null });
    for (const bad of ['[]', '{"rows":[]}', '{"next":null}', '{"rows":[],"next":-1}', '{"rows":[],"next":"1"}', '{"rows":[],"next":null} x']) {
      assert.throws(() => splitScanPage(Buffer.from(bad)), SyntaxError, bad);
    }
  });
});

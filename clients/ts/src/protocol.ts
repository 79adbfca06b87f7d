/**
 * DocDB's wire protocol (SPEC §8): frame layouts, command, op type and status codes.
 * Byte-for-byte the layout of `crates/docdb-protocol` (pinned by the shared fixture
 * `test/fixtures/frames.json`, checked by both codecs).
 *
 * ```text
 * message  := length u32  frame[length]            -- little-endian everywhere
 * request  := request_id u64  db_id u64  command u8  op_count u32  op*
 * op       := op_type u8  coll_len u16  coll[coll_len ≤ 64]  doc_id u64
 *             [patch_len u32  patch[patch_len]]      -- only when op_type == 7 (Patch)
 *             payload_len u32  payload[payload_len]
 * response := request_id u64  status u8  data_len u32  data[data_len]
 * ```
 */

import { FrameTooLargeError } from './errors.js';

/** Largest frame accepted in either direction: a 16 MiB document plus room for its header. */
export const MAX_FRAME = 16 * 1024 * 1024 + 4096;

/** Longest collection name in bytes. */
export const MAX_COLLECTION_LEN = 64;

const U64_MAX = (1n << 64n) - 1n;

/** Commands: the request frame's `command` byte. */
export const Command = {
  OpenDb: 1,
  CloseDb: 2,
  Execute: 3,
  Stats: 4,
  CreateCollection: 5,
  DeleteCollection: 6,
  ListCollections: 7,
  ListDbs: 8,
  Heal: 9,
  HealAll: 10,
  HealStats: 11,
  Metrics: 12,
  Transaction: 13,
  SchedulerStats: 14,
  Scan: 15,
  Auth: 16,
  DropDb: 17,
  Query: 18,
  CreateIndex: 19,
  DropIndex: 20,
  ListIndexes: 21,
} as const;
export type Command = (typeof Command)[keyof typeof Command];

/**
 * Flag bit of the command byte: an Execute or Transaction sent with it (3 | 0x80,
 * 13 | 0x80) is answered OK with each op's own status ({@link decodeStatusResults});
 * a non-OK reply is then a request-level error, its data plain text.
 */
export const PER_OP_STATUS = 0x80;

/** Prefix of the text of the ops that did not fail in a failed per-op-status Transaction. */
export const TX_NOT_APPLIED = 'transaction not applied';

/**
 * Operation types inside Execute and Transaction. Codes 5, 6, 8 and 9 are reserved
 * for WAL records; the server answers them with `unknown operation type`.
 */
export const OpType = {
  Create: 1,
  Read: 2,
  Update: 3,
  Delete: 4,
  Patch: 7,
} as const;
export type OpType = (typeof OpType)[keyof typeof OpType];

/** Response status codes. Servers may add codes ≥ 5; they are kept as numbers. */
export const Status = {
  Ok: 0,
  Error: 1,
  NotFound: 2,
  Conflict: 3,
  MemoryLimit: 4,
  Denied: 5,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** One operation of a request. */
export interface Op {
  /** Raw op type (unknown codes are encoded as given). */
  opType: number;
  /** Collection name; `""` means `_default`. */
  collection: string | Uint8Array;
  docId: bigint;
  /** Patch operations JSON; encoded only for op type 7 (absent = empty). */
  patch?: Uint8Array | null | undefined;
  payload?: Uint8Array | undefined;
}

/** A request frame. */
export interface Request {
  requestId: bigint;
  dbId: bigint;
  command: number;
  ops: Op[];
}

/** A decoded request: collection names are returned as UTF-8 text, patch as `null` unless op type 7. */
export interface DecodedRequest {
  requestId: bigint;
  dbId: bigint;
  command: number;
  ops: DecodedOp[];
}

export interface DecodedOp {
  opType: number;
  collection: string;
  docId: bigint;
  patch: Uint8Array | null;
  payload: Uint8Array;
}

/** A response frame. `status` is raw: newer servers may send codes ≥ 5. */
export interface Response {
  requestId: bigint;
  status: number;
  data: Uint8Array;
}

/** A frame that does not follow the layout, or is over {@link MAX_FRAME}. */
export class FrameError extends Error {
  /** The request id, when the first 8 bytes were readable. */
  readonly requestId: bigint | null;
  /** What is wrong, in the words of the Rust codec (`DecodeError::reason`). */
  readonly reason: string;
  constructor(reason: string, requestId: bigint | null = null) {
    super(`malformed frame: ${reason}`);
    this.name = 'FrameError';
    this.requestId = requestId;
    this.reason = reason;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** UTF-8 bytes of a string, or the bytes themselves. */
export function bytesOf(v: string | Uint8Array | undefined | null): Uint8Array {
  if (v === undefined || v === null) return new Uint8Array(0);
  return typeof v === 'string' ? encoder.encode(v) : v;
}

/** UTF-8 text of bytes (invalid sequences become U+FFFD). */
export function textOf(b: Uint8Array): string {
  return decoder.decode(b);
}

function checkU64(v: bigint, what: string): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${what} must be a bigint, got ${typeof v}`);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${what} out of u64 range: ${v}`);
  return v;
}

/**
 * Encodes a request as it goes on the wire: `u32 length` followed by the frame.
 * Throws `RangeError` for a collection over 64 bytes or an id out of u64 range, and
 * {@link FrameTooLargeError} for a frame over {@link MAX_FRAME} (the server would close
 * the connection on either).
 */
export function encodeRequest(req: Request): Uint8Array {
  checkU64(req.requestId, 'request id');
  checkU64(req.dbId, 'database id');
  const ops = req.ops.map((op) => {
    const collection = bytesOf(op.collection);
    if (collection.length > MAX_COLLECTION_LEN) {
      throw new RangeError(`collection name longer than ${MAX_COLLECTION_LEN} bytes`);
    }
    if (!Number.isInteger(op.opType) || op.opType < 0 || op.opType > 255) {
      throw new RangeError(`op type must be a byte, got ${op.opType}`);
    }
    checkU64(op.docId, 'document id');
    const patch = op.opType === OpType.Patch ? bytesOf(op.patch) : null;
    const payload = bytesOf(op.payload);
    return { opType: op.opType, collection, docId: op.docId, patch, payload };
  });
  if (!Number.isInteger(req.command) || req.command < 0 || req.command > 255) {
    throw new RangeError(`command must be a byte, got ${req.command}`);
  }
  let len = 8 + 8 + 1 + 4;
  for (const op of ops) {
    len += 1 + 2 + op.collection.length + 8 + 4 + op.payload.length;
    if (op.patch) len += 4 + op.patch.length;
  }
  if (len > MAX_FRAME) {
    throw new FrameTooLargeError(len, MAX_FRAME);
  }
  const out = new Uint8Array(4 + len);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let p = 0;
  dv.setUint32(p, len, true);
  p += 4;
  dv.setBigUint64(p, req.requestId, true);
  p += 8;
  dv.setBigUint64(p, req.dbId, true);
  p += 8;
  dv.setUint8(p, req.command);
  p += 1;
  dv.setUint32(p, ops.length, true);
  p += 4;
  for (const op of ops) {
    dv.setUint8(p, op.opType);
    p += 1;
    dv.setUint16(p, op.collection.length, true);
    p += 2;
    out.set(op.collection, p);
    p += op.collection.length;
    dv.setBigUint64(p, op.docId, true);
    p += 8;
    if (op.patch) {
      dv.setUint32(p, op.patch.length, true);
      p += 4;
      out.set(op.patch, p);
      p += op.patch.length;
    }
    dv.setUint32(p, op.payload.length, true);
    p += 4;
    out.set(op.payload, p);
    p += op.payload.length;
  }
  return out;
}

class Cursor {
  pos = 0;
  private readonly dv: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  remaining(): number {
    return this.buf.length - this.pos;
  }
  take(n: number): Uint8Array | null {
    if (n > this.remaining()) return null;
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  u8(): number | null {
    if (this.remaining() < 1) return null;
    return this.dv.getUint8(this.pos++);
  }
  u16(): number | null {
    if (this.remaining() < 2) return null;
    const v = this.dv.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number | null {
    if (this.remaining() < 4) return null;
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(): bigint | null {
    if (this.remaining() < 8) return null;
    const v = this.dv.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
}

/** Smallest encoded op: type, collection length, doc id, payload length. */
const MIN_OP = 1 + 2 + 8 + 4;

/** Decodes a request frame (the bytes after the length prefix). Throws {@link FrameError}. */
export function decodeRequest(frame: Uint8Array): DecodedRequest {
  const c = new Cursor(frame);
  const requestId = c.u64();
  if (requestId === null) throw new FrameError('frame shorter than a request header');
  const fail = (reason: string): never => {
    throw new FrameError(reason, requestId);
  };
  const dbId = c.u64() ?? fail('frame shorter than a request header');
  const command = c.u8() ?? fail('frame shorter than a request header');
  const count = c.u32() ?? fail('frame shorter than a request header');
  if (count > Math.floor(c.remaining() / MIN_OP)) fail('op count exceeds what the frame holds');
  const ops: DecodedOp[] = [];
  for (let i = 0; i < count; i++) {
    const opType = c.u8() ?? fail('truncated op');
    const clen = c.u16() ?? fail('truncated op');
    // Longer names decode: the server answers them with an error (SPEC §8.2).
    const collection = c.take(clen) ?? fail('truncated collection name');
    const docId = c.u64() ?? fail('truncated op');
    let patch: Uint8Array | null = null;
    if (opType === OpType.Patch) {
      const plen = c.u32() ?? fail('truncated patch length');
      patch = c.take(plen) ?? fail('patch length exceeds the frame');
    }
    const len = c.u32() ?? fail('truncated payload length');
    const payload = c.take(len) ?? fail('payload length exceeds the frame');
    ops.push({ opType, collection: textOf(collection), docId, patch, payload });
  }
  if (c.remaining() !== 0) fail('trailing bytes after the last op');
  return { requestId, dbId, command, ops };
}

/** Encodes a response as it goes on the wire: `u32 length` followed by the frame. */
export function encodeResponse(resp: Response): Uint8Array {
  checkU64(resp.requestId, 'request id');
  const len = 8 + 1 + 4 + resp.data.length;
  const out = new Uint8Array(4 + len);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, len, true);
  dv.setBigUint64(4, resp.requestId, true);
  dv.setUint8(12, resp.status);
  dv.setUint32(13, resp.data.length, true);
  out.set(resp.data, 17);
  return out;
}

/** Decodes a response frame (the bytes after the length prefix). Throws {@link FrameError}. */
export function decodeResponse(frame: Uint8Array): Response {
  const c = new Cursor(frame);
  const requestId = c.u64();
  if (requestId === null) throw new FrameError('frame shorter than a response header');
  const fail = (reason: string): never => {
    throw new FrameError(reason, requestId);
  };
  const status = c.u8() ?? fail('frame shorter than a response header');
  const len = c.u32() ?? fail('frame shorter than a response header');
  const data = c.take(len) ?? fail('data length exceeds the frame');
  if (c.remaining() !== 0) fail('trailing bytes after the data');
  return { requestId, status, data };
}

/** Execute/Transaction reply data: `u32 n`, then per op `u32 len, bytes`. */
export function encodeResults(results: Uint8Array[]): Uint8Array {
  let len = 4;
  for (const r of results) len += 4 + r.length;
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, results.length, true);
  let p = 4;
  for (const r of results) {
    dv.setUint32(p, r.length, true);
    p += 4;
    out.set(r, p);
    p += r.length;
  }
  return out;
}

/** Parses Execute/Transaction reply data. Throws {@link FrameError}. */
export function decodeResults(data: Uint8Array): Uint8Array[] {
  const c = new Cursor(data);
  const fail = (reason: string): never => {
    throw new FrameError(reason);
  };
  const n = c.u32() ?? fail('truncated result count');
  if (n > Math.floor(c.remaining() / 4)) fail('result count exceeds the data');
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const len = c.u32() ?? fail('truncated result');
    out.push(c.take(len) ?? fail('result length exceeds the data'));
  }
  if (c.remaining() !== 0) fail('trailing bytes after the results');
  return out;
}

/** One op's result in the per-op status form: its status (0 = OK) and bytes. */
export interface StatusResult {
  status: number;
  data: Uint8Array;
}

/** Per-op status reply data: `u32 n`, then per op `u8 status, u32 len, bytes`. */
export function encodeStatusResults(results: StatusResult[]): Uint8Array {
  let len = 4;
  for (const r of results) len += 5 + r.data.length;
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, results.length, true);
  let p = 4;
  for (const r of results) {
    out[p] = r.status;
    dv.setUint32(p + 1, r.data.length, true);
    p += 5;
    out.set(r.data, p);
    p += r.data.length;
  }
  return out;
}

/** Parses per-op status reply data. Throws {@link FrameError}. */
export function decodeStatusResults(data: Uint8Array): StatusResult[] {
  const c = new Cursor(data);
  const fail = (reason: string): never => {
    throw new FrameError(reason);
  };
  const n = c.u32() ?? fail('truncated result count');
  if (n > Math.floor(c.remaining() / 5)) fail('result count exceeds the data');
  const out: StatusResult[] = [];
  for (let i = 0; i < n; i++) {
    const status = c.u8() ?? fail('truncated result');
    const len = c.u32() ?? fail('truncated result');
    out.push({ status, data: c.take(len) ?? fail('result length exceeds the data') });
  }
  if (c.remaining() !== 0) fail('trailing bytes after the results');
  return out;
}

/**
 * Splits a byte stream into frames: feed it chunks as they arrive (partial frames,
 * several frames per chunk, a length prefix split across chunks), get whole frames
 * back. A length over {@link MAX_FRAME} throws {@link FrameError} before anything
 * is buffered for it; the stream cannot be trusted after that.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  /** Length of the frame being assembled, once its prefix has been read. */
  private need: number | null = null;

  constructor(private readonly maxFrame: number = MAX_FRAME) {}

  /** Bytes held for an incomplete frame. */
  get pending(): number {
    return this.buffered;
  }

  /** Adds a chunk; returns the frames it completed (without their length prefixes). */
  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.need === null) {
        if (this.buffered < 4) break;
        const head = this.read(4);
        const len = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
        if (len > this.maxFrame) {
          this.chunks = [];
          this.buffered = 0;
          throw new FrameError(`response frame of ${len} bytes exceeds the maximum of ${this.maxFrame}`);
        }
        this.need = len;
      }
      if (this.buffered < this.need) break;
      frames.push(this.read(this.need));
      this.need = null;
    }
    return frames;
  }

  /** Takes exactly `n` buffered bytes (n ≤ buffered), copying only across chunk boundaries. */
  private read(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let p = 0;
    while (p < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - p);
      out.set(c.subarray(0, k), p);
      p += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}

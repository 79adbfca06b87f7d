/**
 * The client: one pipelined connection per {@link Client}, reconnected on demand, and
 * {@link Database} handles that carry a database id.
 */

import * as net from 'node:net';

import { Connection, type Endpoint, endpointLabel, NotSent } from './connection.js';
import {
  ConnectionError,
  DocDBError,
  errorForStatus,
  ProtocolError,
} from './errors.js';
import { type BigJson, parseBigJson, splitScanPage, toU64 } from './json.js';
import {
  bytesOf,
  Command,
  decodeStatusResults,
  encodeRequest,
  OpType,
  PER_OP_STATUS,
  type Op,
  type Response,
  type StatusResult,
  textOf,
  TX_NOT_APPLIED,
} from './protocol.js';

/** Document ids, database ids and every other u64 of the protocol. */
export type DocId = bigint;

/** The collection every database has; calls that take no collection use it. */
export const DEFAULT_COLLECTION = '_default';

/** Largest Scan page the server returns (it caps larger limits). */
export const MAX_SCAN_LIMIT = 1000;

/** What an Auth granted (the server's reply). */
export interface AuthInfo {
  /** Database-name pattern the connection may reach. */
  db: string;
  rights: 'read' | 'write' | 'admin';
  /** Unix seconds, or null: never. */
  expires: number | null;
}

export interface ClientOptions {
  /**
   * How long to keep trying to (re)connect, with exponential backoff, before a call
   * fails with {@link ConnectionError}. Milliseconds; default 2000.
   */
  reconnectTimeoutMs?: number;
  /**
   * Reject a request with `TimeoutError` when its response has not arrived within
   * this many milliseconds (the request may still be applied). 0 (default): wait.
   */
  timeoutMs?: number;
  /**
   * Most requests on the wire at once on the connection; more wait in the client, in
   * order. Keeps a burst (say 1,000 calls in a `Promise.all`) within the server's
   * per-database queue (`sched.queue_depth`, default 100). Default 64.
   */
  maxInFlight?: number;
  /**
   * When the server answers `request queue is full` (the request was not run), send it
   * again with backoff for up to this many milliseconds before failing with that
   * `ServerError`. 0 disables. Default 5000.
   */
  queueFullRetryMs?: number;
  /**
   * Authenticate with this token (see `docdb token issue`) on every connection, the
   * first included, before anything else is sent; as if {@link Client.auth} had been
   * called. A server on TCP requires it. A refused token rejects {@link connect} with
   * `DeniedError`.
   */
  token?: string;
}

/** TLS settings of a TCP connection. The server's certificate is always verified. */
export interface TlsOptions {
  /**
   * PEM CA certificate(s) to trust instead of the system's roots (e.g. the CA that
   * signed the server's `--tls-cert`). Default: the system's roots.
   */
  ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array>;
  /** The name the certificate must carry; default `host` (when it is not an IP address). */
  servername?: string;
}

/** The address part of {@link TcpConnectOptions}. */
export interface TcpAddress extends ClientOptions {
  /** Host name or IP address (`::1` or `[::1]`); also the name the certificate must carry. */
  host: string;
  port: number;
}

/**
 * {@link connect} over TCP, to a server started with `--listen HOST:PORT`: either TLS
 * (`tls: true` trusts the system's roots, `tls: { ca }` the given CA) or, spelled out,
 * plain TCP (`insecureTcp: true`: only for a server run with `--insecure-tcp`, which
 * listens on loopback only, or through a tunnel that encrypts; the token then crosses
 * the connection in clear text).
 */
export type TcpConnectOptions = TcpAddress &
  ({ tls: true | TlsOptions; insecureTcp?: false } | { insecureTcp: true; tls?: undefined });

function pemList(ca: NonNullable<TlsOptions['ca']>): Buffer[] {
  const one = (x: string | Uint8Array) => (typeof x === 'string' ? Buffer.from(x, 'utf8') : Buffer.from(x));
  if (typeof ca === 'string' || ca instanceof Uint8Array) return [one(ca)];
  if (Array.isArray(ca)) return (ca as ReadonlyArray<string | Uint8Array>).map(one);
  throw new TypeError('tls.ca must be a PEM string, bytes, or an array of them');
}

/**
 * Checks the TCP options (also as plain JavaScript may pass them) and makes the
 * endpoint; a mistake is a TypeError/RangeError at once.
 */
function tcpEndpoint(options: TcpConnectOptions): Endpoint {
  const o = options as { host?: unknown; port?: unknown; tls?: unknown; insecureTcp?: unknown };
  if (o === null || typeof o !== 'object') throw new TypeError('connect() needs a socket path or { host, port, tls }');
  if (typeof o.host !== 'string' || o.host === '') throw new TypeError('connect(): `host` must be a non-empty string');
  const port = o.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`connect(): \`port\` must be an integer 1..65535, got ${String(port)}`);
  }
  // `[::1]` as written in an address means `::1`.
  const bare = o.host.startsWith('[') && o.host.endsWith(']') ? o.host.slice(1, -1) : o.host;
  const host = net.isIPv6(bare) ? bare : o.host;
  const tls = o.tls;
  if (o.insecureTcp === true) {
    if (tls !== undefined && tls !== null && tls !== false) {
      throw new TypeError('connect(): `tls` and `insecureTcp` exclude each other');
    }
    return { kind: 'tcp', host, port, tls: null };
  }
  if (tls === true) return { kind: 'tcp', host, port, tls: {} };
  if (tls !== null && typeof tls === 'object') {
    const { ca, servername } = tls as TlsOptions;
    const t: { ca?: Buffer[]; servername?: string } = {};
    if (ca !== undefined) t.ca = pemList(ca);
    if (servername !== undefined) {
      if (typeof servername !== 'string' || servername === '') {
        throw new TypeError('connect(): `tls.servername` must be a non-empty string');
      }
      t.servername = servername;
    }
    return { kind: 'tcp', host, port, tls: t };
  }
  throw new TypeError(
    'connect(): TCP needs `tls: true` (system roots) or `tls: { ca }`; plain TCP only with `insecureTcp: true`',
  );
}

/** Pool statistics (Stats, command 4). */
export interface Stats {
  totalDbs: bigint;
  activeDbs: bigint;
  totalTxns: bigint;
  walSize: bigint;
  memoryUsed: bigint;
}

/** One database of ListDBs (command 8). */
export interface DbInfo {
  name: string;
  id: bigint;
  /** RFC 3339. */
  createdAt: string;
  walSize: bigint;
  memoryUsed: bigint;
  docsLive: bigint;
}

/** HealStats (command 11), with the server's field names. */
export interface HealStats {
  TotalScans: number;
  DocumentsHealed: number;
  DocumentsCorrupted: number;
  OnDemandHealings: number;
  BackgroundHealings: number;
  /** RFC 3339; `0001-01-01T00:00:00Z` for never. */
  LastScanTime: string;
  LastHealingTime: string;
  /** Documents found corrupt with no intact copy left. */
  Unrecoverable: { Collection: string; ID: bigint }[];
  [key: string]: unknown;
}

/** SchedulerStats (command 14), as the server sends it. */
export interface SchedulerStats {
  queue_depths: Record<string, number>;
  total_queued?: number;
  avg_queue_depth: number;
  worker_count: number;
  policy: string;
  panics: number;
  worker_pool: {
    running_workers: number;
    waiting_tasks: number;
    free_workers: number;
    pool_capacity: number;
    [key: string]: unknown;
  };
  wal_group_commit: Record<
    string,
    {
      total_batches: number;
      total_records: number;
      avg_batch_size: number;
      avg_batch_latency_ns: number;
      max_batch_size: number;
      max_batch_latency_ns: number;
      last_flush_time_unix_ns: number;
      [key: string]: unknown;
    }
  >;
  [key: string]: unknown;
}

/**
 * One patch operation. DocDB's own ops `set`, `delete`, `insert` and the RFC 6902 ops
 * `add`, `remove`, `replace`, `move`, `copy`, `test`; paths are JSON Pointers.
 */
export interface PatchOp {
  op: 'set' | 'delete' | 'insert' | 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  value?: unknown;
  from?: string;
}

export type OpName = 'create' | 'read' | 'update' | 'delete' | 'patch';

/** One operation of {@link Database.batch} or {@link Database.transaction}. */
export interface BatchOp {
  /** The operation, or a raw op type code (sent as is; unknown codes fail that op). */
  op: OpName | number;
  /** Collection; omitted or `""` means `_default`. */
  collection?: string;
  id: DocId;
  /** create/update: the document, serialized with `JSON.stringify`. */
  doc?: unknown;
  /** create/update: the document's JSON bytes as they are (instead of `doc`). */
  raw?: Uint8Array | string;
  /** patch: the operations (or their JSON text/bytes). */
  patch?: readonly PatchOp[] | Uint8Array | string;
}

/**
 * A Scan page: rows in id order; `next` is the id to start after for the next page,
 * `null` at the end. (A `next` of `0n` cannot be asked for: `startAfter` 0 means from
 * the start. {@link Database.scanAll} handles that case.)
 */
export interface ScanPage<T = unknown> {
  items: ScanItem<T>[];
  next: bigint | null;
}

export interface ScanItem<T = unknown> {
  id: bigint;
  doc: T;
}

/** An index field: a dotted path and 1 (ascending) or -1 (descending). */
export type IndexField = [path: string, direction: 1 | -1];

/** A secondary index definition (CreateIndex). */
export interface IndexSpec {
  name: string;
  fields: IndexField[];
  /** Refuse a second document with the same key. Default false. */
  unique?: boolean;
}

/** One index as ListIndexes reports it. */
export interface IndexInfo {
  name: string;
  fields: IndexField[];
  unique: boolean;
  /** Documents indexed. */
  entries: number;
  /** Entries whose key holds an array (indexed as the whole array). */
  array_entries?: number;
  /** Bytes counted towards the database's memory limit. */
  memory_bytes?: number;
  /** Still building (its createIndex not answered yet): queries do not use it. */
  building?: boolean;
}

export interface ScanOptions {
  /** Start after this id; 0 (default) means from the start (document 0 included). */
  startAfter?: DocId;
  /** Page size, 1..1000; default 100. */
  limit?: number;
}

/** A query (command 18, SPEC §11); every key optional. */
export interface QueryOptions {
  /** MongoDB-style filter, e.g. `{ age: { $gte: 18 } }`; default `{}` (all). */
  filter?: Record<string, unknown>;
  /** `[path, 1 | -1]` pairs; default: by id. Ties by id ascending. */
  sort?: Array<[string, 1 | -1]>;
  /** Rows per page, 1..1000; default 100. */
  limit?: number;
  /** The `next` of a previous page (same filter and sort). */
  after?: string | null;
  /** Dotted paths to return (the id always comes with the row). */
  projection?: string[];
  /** Adds `plan` to the page. */
  explain?: boolean;
}

/**
 * A query page: rows in the query's order; `next` is the cursor for the following
 * page, `null` at the end. Documents are parsed so integers beyond 2^53 stay exact
 * (as `bigint`).
 */
export interface QueryPage<T = unknown> {
  items: ScanItem<T>[];
  next: string | null;
  plan?: unknown;
}

export interface ScanAllOptions {
  startAfter?: DocId;
  /** Rows per request, 1..1000; default 1000. */
  pageSize?: number;
}

const OP_CODES: Record<OpName, number> = {
  create: OpType.Create,
  read: OpType.Read,
  update: OpType.Update,
  delete: OpType.Delete,
  patch: OpType.Patch,
};

const U64_MAX = (1n << 64n) - 1n;
const EMPTY: Uint8Array = new Uint8Array(0);

/** An id as bigint; safe non-negative integer numbers are accepted too. */
function u64(v: DocId | number, what = 'id'): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) throw new RangeError(`${what} out of u64 range: ${v}`);
    return v;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new TypeError(`${what} must be a bigint (u64), got ${typeof v === 'number' ? v : typeof v}`);
}

function jsonBytes(doc: unknown): Uint8Array {
  const text = JSON.stringify(doc);
  if (text === undefined) throw new TypeError(`cannot serialize ${typeof doc} as JSON`);
  return bytesOf(text);
}

function patchBytes(patch: readonly PatchOp[] | Uint8Array | string | undefined): Uint8Array {
  if (patch === undefined) throw new TypeError('patch op needs `patch`');
  if (typeof patch === 'string' || patch instanceof Uint8Array) return bytesOf(patch);
  return jsonBytes(patch);
}

/** The outcome of one op of a batch or transaction. */
export class OpResult<T = unknown> {
  constructor(
    /** Position in the request. */
    readonly index: number,
    readonly op: OpName | number,
    /** 0 when the op succeeded, else its own status (sent per op by the server). */
    readonly status: number,
    /** A read's document bytes, a failed op's error text, else empty. */
    readonly data: Uint8Array,
  ) {}

  get ok(): boolean {
    return this.status === 0;
  }

  /** The typed error of a failed op. */
  get error(): DocDBError | undefined {
    return this.ok ? undefined : errorForStatus(this.status, textOf(this.data), { opIndex: this.index });
  }

  /** A successful read's document, parsed; `undefined` otherwise. */
  get doc(): T | undefined {
    if (!this.ok || this.op !== 'read' || this.data.length === 0) return undefined;
    return JSON.parse(textOf(this.data)) as T;
  }
}

/**
 * A DocDB client. Create it with {@link connect}. Calls may be issued concurrently: they
 * are pipelined on one connection. After the connection breaks, requests in flight fail
 * with {@link ConnectionError} and the next call reconnects (retrying with backoff for
 * up to `reconnectTimeoutMs`); {@link Database} handles stay valid.
 */
export class Client {
  /** The Unix socket path; `''` for a TCP client. */
  readonly socketPath: string;
  /** Where the client connects, as messages name it: the socket path, or `host:port`. */
  readonly address: string;
  private readonly endpoint: Endpoint;
  private readonly reconnectTimeoutMs: number;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly queueFullRetryMs: number;
  private conn: Connection | null = null;
  /** The token of the last successful {@link Client.auth}, sent on every new connection. */
  private token: string | null = null;
  /** Databases opened under a token, reopened on every new connection. */
  private readonly opened = new Set<string>();
  private connecting: Promise<Connection> | null = null;
  private closed = false;
  private nextId = 1n;

  /**
   * Use {@link connect}. `target` is a Unix socket path, or the TCP options (which then
   * carry the client options too; `options` is ignored).
   */
  constructor(target: string | TcpConnectOptions, options: ClientOptions = {}) {
    if (typeof target === 'string') {
      this.endpoint = { kind: 'unix', path: target };
      this.socketPath = target;
    } else {
      this.endpoint = tcpEndpoint(target);
      this.socketPath = '';
      options = target;
    }
    this.address = endpointLabel(this.endpoint);
    if (options.token !== undefined) {
      if (typeof options.token !== 'string' || options.token === '') throw new TypeError('`token` must be a non-empty string');
      this.token = options.token;
    }
    this.reconnectTimeoutMs = options.reconnectTimeoutMs ?? 2000;
    this.timeoutMs = options.timeoutMs ?? 0;
    this.maxInFlight = options.maxInFlight ?? 64;
    this.queueFullRetryMs = options.queueFullRetryMs ?? 5000;
    if (!(this.maxInFlight >= 1)) throw new RangeError(`maxInFlight must be at least 1, got ${this.maxInFlight}`);
  }

  /** Whether a connection is up right now. */
  get connected(): boolean {
    return this.conn !== null && this.conn.alive;
  }

  /** Requests not yet answered: on the wire, or waiting for the `maxInFlight` window. */
  get inFlight(): number {
    return this.conn?.alive ? this.conn.inFlight : 0;
  }

  /** Connects now if not connected (calls do this on their own). */
  async ensureConnected(): Promise<void> {
    await this.connection();
  }

  private connection(): Promise<Connection> {
    if (this.closed) return Promise.reject(new ConnectionError('client is closed'));
    if (this.conn?.alive) return Promise.resolve(this.conn);
    if (this.connecting === null) {
      this.connecting = this.dial().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async dial(): Promise<Connection> {
    const deadline = Date.now() + this.reconnectTimeoutMs;
    let delay = 10;
    for (;;) {
      let last: Error;
      try {
        const c = await Connection.open(this.endpoint, this.timeoutMs, this.maxInFlight, Math.max(deadline - Date.now(), 1000));
        if (this.closed) {
          c.destroy(new ConnectionError('client is closed'));
          throw new ConnectionError('client is closed');
        }
        await this.handshake(c);
        this.conn = c;
        return c;
      } catch (e) {
        if (e instanceof DocDBError && !(e instanceof ConnectionError)) throw e;
        if (e instanceof ConnectionError) throw e;
        last = e as Error;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) {
        throw new ConnectionError(`cannot connect to ${this.address}: ${last.message}`, { cause: last });
      }
      await new Promise((r) => setTimeout(r, Math.min(delay, left)));
      delay = Math.min(delay * 2, 250);
    }
  }

  /**
   * Sends one request and returns the raw response, whatever its status (the building
   * block of every other call). Throws {@link FrameTooLargeError} for a request over
   * the frame limit without sending it, {@link ConnectionError} when the connection fails.
   */
  request(command: number, dbId: bigint, ops: Op[]): Promise<Response> {
    const requestId = this.nextId++;
    let bytes: Uint8Array;
    try {
      bytes = encodeRequest({ requestId, dbId, command, ops });
    } catch (e) {
      return Promise.reject(e);
    }
    const sent = this.sendEncoded(requestId, bytes);
    if (this.queueFullRetryMs <= 0) return sent;
    return sent.then((r) => (isQueueFull(r) ? this.retryQueueFull(bytes, r) : r));
  }

  private sendEncoded(requestId: bigint, bytes: Uint8Array): Promise<Response> {
    const c = this.conn;
    const sent = c !== null && c.alive && !this.closed ? c.send(requestId, bytes) : this.connection().then((c2) => c2.send(requestId, bytes));
    // A request that never left the client (its connection broke while it waited for
    // the window) goes out on the next connection; one on the wire fails instead.
    return sent.catch((e: unknown) => {
      if (!(e instanceof NotSent)) throw e;
      if (this.closed) throw e.reason;
      return this.sendEncoded(requestId, bytes);
    });
  }

  /** Sends a request the server turned away with `request queue is full` again, with backoff. */
  private async retryQueueFull(bytes: Uint8Array, first: Response): Promise<Response> {
    const deadline = Date.now() + this.queueFullRetryMs;
    let delay = 1;
    let last = first;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
      delay = Math.min(delay * 2, 64);
      // A fresh request id; the earlier bytes may still be referenced by the socket.
      const requestId = this.nextId++;
      const again = bytes.slice();
      new DataView(again.buffer, again.byteOffset, again.byteLength).setBigUint64(4, requestId, true);
      last = await this.sendEncoded(requestId, again);
      if (!isQueueFull(last)) return last;
    }
    return last;
  }

  /** Sends a request and returns its data when the status is OK; throws the typed error otherwise. */
  async call(command: number, dbId: bigint, ops: Op[]): Promise<Uint8Array> {
    const r = await this.request(command, dbId, ops);
    if (r.status !== 0) throw errorForStatus(r.status, textOf(r.data));
    return r.data;
  }

  /**
   * Authenticates with `token` (Auth, command 16; see `docdb token issue`): the
   * connection then holds the token's scope, and every reconnect authenticates again
   * and reopens the databases opened so far (under access control a connection may
   * use only ids it opened). A refused token throws {@link DeniedError}.
   */
  async auth(token: string): Promise<AuthInfo> {
    const data = await this.call(Command.Auth, 0n, [
      { opType: OpType.Create, collection: '', docId: 0n, payload: bytesOf(token) },
    ]);
    this.token = token;
    return JSON.parse(textOf(data)) as AuthInfo;
  }

  /** Auth and the databases opened so far, on a new connection before it is used. */
  private async handshake(c: Connection): Promise<void> {
    if (this.token === null) return;
    const run = async (command: number, payload: string) => {
      const requestId = this.nextId++;
      const ops = [{ opType: OpType.Create, collection: '', docId: 0n, payload: bytesOf(payload) }];
      const r = await c.send(requestId, encodeRequest({ requestId, dbId: 0n, command, ops }));
      if (r.status !== 0) {
        c.destroy(new ConnectionError('handshake failed'));
        throw errorForStatus(r.status, textOf(r.data));
      }
    };
    try {
      await run(Command.Auth, this.token);
    } catch (e) {
      // A TLS listener cannot read a plain frame and closes the connection.
      if (e instanceof ConnectionError && this.endpoint.kind === 'tcp' && this.endpoint.tls === null) {
        throw new ConnectionError(
          `${e.message} before answering Auth (a server listening with TLS does that to plain TCP: connect with tls)`,
          { cause: e },
        );
      }
      throw e;
    }
    for (const name of this.opened) await run(Command.OpenDb, name);
  }

  /** Opens (creating on first use) the database `name`. */
  async openDb(name: string): Promise<Database> {
    const data = await this.call(Command.OpenDb, 0n, [
      { opType: OpType.Create, collection: '', docId: 0n, payload: bytesOf(name) },
    ]);
    if (data.length !== 8) throw new ProtocolError(`OpenDB reply of ${data.length} bytes, expected 8`);
    const id = new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true);
    if (this.token !== null) this.opened.add(name);
    return new Database(this, id, name);
  }

  /** A handle for a database id already known (no request is made). */
  database(id: DocId, name = ''): Database {
    return new Database(this, u64(id, 'database id'), name);
  }

  /** Closes a database on the server (checkpointed; reopened by its next request). */
  async closeDb(db: Database | DocId): Promise<void> {
    const id = db instanceof Database ? db.id : u64(db, 'database id');
    await this.call(Command.CloseDb, id, []);
  }

  /**
   * Drops the database `name` (DropDB): the server closes it, answers its pending and
   * later requests `database was dropped`, removes its files and frees the name (a later
   * `openDb(name)` makes a new, empty database with a new id). An unknown name rejects
   * with NotFoundError (`database not found`). Needs an admin token under token auth.
   */
  async dropDb(name: string): Promise<void> {
    await this.call(Command.DropDb, 0n, [
      { opType: OpType.Create, collection: '', docId: 0n, payload: bytesOf(name) },
    ]);
  }

  /** Pool statistics: 5 × u64. */
  async stats(): Promise<Stats> {
    const data = await this.call(Command.Stats, 0n, []);
    if (data.length < 40) throw new ProtocolError(`Stats reply of ${data.length} bytes, expected 40`);
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const f = (i: number) => dv.getBigUint64(i * 8, true);
    return { totalDbs: f(0), activeDbs: f(1), totalTxns: f(2), walSize: f(3), memoryUsed: f(4) };
  }

  /** Every active database. */
  async listDbs(): Promise<DbInfo[]> {
    const rows = parseJsonReply(await this.call(Command.ListDbs, 0n, []), 'ListDBs');
    if (!Array.isArray(rows)) throw new ProtocolError('ListDBs reply is not an array');
    return rows.map((r) => {
      const o = r as { [k: string]: BigJson };
      return {
        name: String(o['Name']),
        id: toU64(o['ID'], 'ID'),
        createdAt: String(o['CreatedAt']),
        walSize: toU64(o['WALSize'] ?? 0, 'WALSize'),
        memoryUsed: toU64(o['MemoryUsed'] ?? 0, 'MemoryUsed'),
        docsLive: toU64(o['DocsLive'] ?? 0, 'DocsLive'),
      };
    });
  }

  /** The Prometheus text exposition. */
  async metrics(): Promise<string> {
    return textOf(await this.call(Command.Metrics, 0n, []));
  }

  /** Scheduler, worker-pool and group-commit figures. */
  async schedulerStats(): Promise<SchedulerStats> {
    return JSON.parse(textOf(await this.call(Command.SchedulerStats, 0n, []))) as SchedulerStats;
  }

  /**
   * Closes the client: new calls fail with {@link ConnectionError}; requests in flight
   * are answered first.
   */
  async close(): Promise<void> {
    this.closed = true;
    const c = this.conn;
    this.conn = null;
    if (c) await c.close();
  }

  /** Closes at once: requests in flight reject with {@link ConnectionError}. */
  destroy(): void {
    this.closed = true;
    this.conn?.destroy(new ConnectionError('client destroyed'));
    this.conn = null;
  }
}

const QUEUE_FULL = 'request queue is full';

/** The server's answer for a request it did not run because the database's queue was full. */
function isQueueFull(r: Response): boolean {
  return r.status === 1 && r.data.length === QUEUE_FULL.length && textOf(r.data) === QUEUE_FULL;
}

function parseJsonReply(data: Uint8Array, what: string): BigJson {
  try {
    return parseBigJson(textOf(data));
  } catch (e) {
    throw new ProtocolError(`${what} reply is not JSON: ${(e as Error).message}`, { cause: e });
  }
}

function toOp(o: BatchOp): { name: OpName | number; op: Op } {
  const collection = o.collection ?? '';
  const docId = u64(o.id);
  let code: number;
  if (typeof o.op === 'number') code = o.op;
  else {
    const c = OP_CODES[o.op];
    if (c === undefined) throw new TypeError(`unknown op ${JSON.stringify(o.op)}`);
    code = c;
  }
  let payload: Uint8Array = EMPTY;
  let patch: Uint8Array | null = null;
  if (code === OpType.Patch) patch = patchBytes(o.patch);
  else if (code === OpType.Create || code === OpType.Update) {
    if (o.raw !== undefined) payload = bytesOf(o.raw);
    else if ('doc' in o) payload = jsonBytes(o.doc);
    else throw new TypeError(`${o.op} op needs \`doc\` or \`raw\``);
  } else if (o.raw !== undefined) payload = bytesOf(o.raw);
  return { name: o.op, op: { opType: code, collection, docId, patch, payload } };
}

/**
 * Per-op results of an Execute/Transaction reply to a request sent with
 * {@link PER_OP_STATUS}: each op with its own status. A non-OK reply is a whole-request
 * failure (such as `database not open`), its data plain text: thrown as its typed error.
 */
function perOp(resp: Response, names: (OpName | number)[]): OpResult[] {
  if (resp.status !== 0) throw errorForStatus(resp.status, textOf(resp.data));
  let results: StatusResult[];
  try {
    results = decodeStatusResults(resp.data);
  } catch (e) {
    throw new ProtocolError(`malformed results: ${(e as Error).message}`, { cause: e });
  }
  if (results.length !== names.length) {
    throw new ProtocolError(`reply has ${results.length} results for ${names.length} ops`);
  }
  return results.map((r, i) => new OpResult(i, names[i]!, r.status, r.data));
}

/**
 * A logical database on the server, by id. Handles are cheap, survive reconnects, and
 * may be shared by concurrent calls.
 */
export class Database {
  constructor(
    readonly client: Client,
    /** The database id (u64). */
    readonly id: bigint,
    /** The name it was opened with (`""` for {@link Client.database} without one). */
    readonly name: string,
  ) {}

  private async single(name: OpName, op: Op): Promise<Uint8Array> {
    const resp = await this.client.request(Command.Execute | PER_OP_STATUS, this.id, [op]);
    const r = perOp(resp, [name])[0]!;
    if (r.status !== 0) {
      const text = textOf(r.data);
      // Name the collection the user asked for: the server's text does not.
      const detail = text === 'collection not found' ? JSON.stringify(op.collection || DEFAULT_COLLECTION) : undefined;
      throw errorForStatus(r.status, text, detail === undefined ? {} : { detail });
    }
    return r.data;
  }

  /** Inserts a document (JSON-serialized); {@link ConflictError} if the id exists. */
  create(id: DocId, doc: unknown): Promise<void>;
  create(collection: string, id: DocId, doc: unknown): Promise<void>;
  async create(...args: [DocId, unknown] | [string, DocId, unknown]): Promise<void> {
    const [collection, id, doc] = (args.length === 2 ? [DEFAULT_COLLECTION, ...args] : args) as [string, DocId, unknown];
    await this.createRaw(collection, id, jsonBytes(doc));
  }

  /** Inserts a document given as JSON bytes or text. */
  createRaw(id: DocId, json: Uint8Array | string): Promise<void>;
  createRaw(collection: string, id: DocId, json: Uint8Array | string): Promise<void>;
  async createRaw(...args: [DocId, Uint8Array | string] | [string, DocId, Uint8Array | string]): Promise<void> {
    const [collection, id, json] = (args.length === 2 ? [DEFAULT_COLLECTION, ...args] : args) as [string, DocId, Uint8Array | string];
    await this.single('create', { opType: OpType.Create, collection, docId: u64(id), payload: bytesOf(json) });
  }

  /** The latest committed version, parsed; {@link NotFoundError} if absent. */
  read<T = unknown>(id: DocId): Promise<T>;
  read<T = unknown>(collection: string, id: DocId): Promise<T>;
  async read<T = unknown>(...args: [DocId] | [string, DocId]): Promise<T> {
    const [collection, id] = (args.length === 1 ? [DEFAULT_COLLECTION, args[0]] : args) as [string, DocId];
    return JSON.parse(textOf(await this.readRaw(collection, id))) as T;
  }

  /** The latest committed version as JSON bytes. */
  readRaw(id: DocId): Promise<Uint8Array>;
  readRaw(collection: string, id: DocId): Promise<Uint8Array>;
  async readRaw(...args: [DocId] | [string, DocId]): Promise<Uint8Array> {
    const [collection, id] = (args.length === 1 ? [DEFAULT_COLLECTION, args[0]] : args) as [string, DocId];
    const data = await this.single('read', { opType: OpType.Read, collection, docId: u64(id) });
    return data.slice();
  }

  /** Replaces a document; {@link NotFoundError} if absent. */
  update(id: DocId, doc: unknown): Promise<void>;
  update(collection: string, id: DocId, doc: unknown): Promise<void>;
  async update(...args: [DocId, unknown] | [string, DocId, unknown]): Promise<void> {
    const [collection, id, doc] = (args.length === 2 ? [DEFAULT_COLLECTION, ...args] : args) as [string, DocId, unknown];
    await this.updateRaw(collection, id, jsonBytes(doc));
  }

  updateRaw(id: DocId, json: Uint8Array | string): Promise<void>;
  updateRaw(collection: string, id: DocId, json: Uint8Array | string): Promise<void>;
  async updateRaw(...args: [DocId, Uint8Array | string] | [string, DocId, Uint8Array | string]): Promise<void> {
    const [collection, id, json] = (args.length === 2 ? [DEFAULT_COLLECTION, ...args] : args) as [string, DocId, Uint8Array | string];
    await this.single('update', { opType: OpType.Update, collection, docId: u64(id), payload: bytesOf(json) });
  }

  /** Deletes a document; {@link NotFoundError} if absent. */
  delete(id: DocId): Promise<void>;
  delete(collection: string, id: DocId): Promise<void>;
  async delete(...args: [DocId] | [string, DocId]): Promise<void> {
    const [collection, id] = (args.length === 1 ? [DEFAULT_COLLECTION, args[0]] : args) as [string, DocId];
    await this.single('delete', { opType: OpType.Delete, collection, docId: u64(id) });
  }

  /** Applies patch operations atomically to an existing JSON object. */
  patch(id: DocId, ops: readonly PatchOp[]): Promise<void>;
  patch(collection: string, id: DocId, ops: readonly PatchOp[]): Promise<void>;
  async patch(...args: [DocId, readonly PatchOp[]] | [string, DocId, readonly PatchOp[]]): Promise<void> {
    const [collection, id, ops] = (args.length === 2 ? [DEFAULT_COLLECTION, ...args] : args) as [string, DocId, readonly PatchOp[]];
    await this.patchRaw(collection, id, jsonBytes(ops));
  }

  /** Applies patch operations given as JSON bytes or text. */
  patchRaw(id: DocId, opsJson: Uint8Array | string): Promise<void>;
  patchRaw(collection: string, id: DocId, opsJson: Uint8Array | string): Promise<void>;
  async patchRaw(...args: [DocId, Uint8Array | string] | [string, DocId, Uint8Array | string]): Promise<void> {
    const [collection, id, opsJson] = (args.length === 2 ? [DEFAULT_COLLECTION, ...args] : args) as [string, DocId, Uint8Array | string];
    await this.single('patch', { opType: OpType.Patch, collection, docId: u64(id), patch: bytesOf(opsJson) });
  }

  /**
   * Runs ops in order, each atomic on its own (Execute). Resolves with one
   * {@link OpResult} per op, failures included; rejects only when the request as a
   * whole fails (connection, unknown database, ...).
   */
  async batch(ops: readonly BatchOp[]): Promise<OpResult[]> {
    const conv = ops.map(toOp);
    const resp = await this.client.request(
      Command.Execute | PER_OP_STATUS,
      this.id,
      conv.map((c) => c.op),
    );
    return perOp(
      resp,
      conv.map((c) => c.name),
    );
  }

  /**
   * Applies all ops or none (Transaction, command 13), at one snapshot. Resolves with
   * the per-op results (reads carry their documents); rejects with the typed error of
   * the op that failed (its `opIndex` set) and nothing applied.
   */
  async transaction(ops: readonly BatchOp[]): Promise<OpResult[]> {
    const conv = ops.map(toOp);
    const resp = await this.client.request(
      Command.Transaction | PER_OP_STATUS,
      this.id,
      conv.map((c) => c.op),
    );
    const rs = perOp(
      resp,
      conv.map((c) => c.name),
    );
    const failed = rs.filter((r) => !r.ok);
    if (failed.length === 0) return rs;
    // The op that failed has its own text; the others say `transaction not applied:
    // op N failed`. When every op has the same error, the commit itself failed.
    const cause = failed.find((r) => !textOf(r.data).startsWith(TX_NOT_APPLIED)) ?? failed[0]!;
    const allSame = failed.length === rs.length && rs.every((r) => textOf(r.data) === textOf(cause.data));
    throw errorForStatus(cause.status, textOf(cause.data), allSame && rs.length > 1 ? {} : { opIndex: cause.index });
  }

  /** Creates a collection; {@link ConflictError} `collection already exists` if it does. */
  async createCollection(name: string): Promise<void> {
    await this.client.call(Command.CreateCollection, this.id, [
      { opType: OpType.Create, collection: name, docId: 0n },
    ]);
  }

  /** Deletes an empty collection (`collection is not empty` otherwise). */
  async deleteCollection(name: string): Promise<void> {
    await this.client.call(Command.DeleteCollection, this.id, [
      { opType: OpType.Delete, collection: name, docId: 0n },
    ]);
  }

  /** Collection names, sorted. */
  async listCollections(): Promise<string[]> {
    const v = JSON.parse(textOf(await this.client.call(Command.ListCollections, this.id, []))) as unknown;
    if (!Array.isArray(v)) throw new ProtocolError('ListCollections reply is not an array');
    return v as string[];
  }

  /**
   * Creates a secondary index; resolves once it is built. A unique index over
   * documents sharing a key rejects with ConflictError
   * (`duplicate key for unique index NAME`).
   */
  async createIndex(collection: string, spec: IndexSpec): Promise<void> {
    const payload = { name: spec.name, fields: spec.fields, unique: spec.unique ?? false };
    await this.client.call(Command.CreateIndex, this.id, [
      { opType: OpType.Create, collection, docId: 0n, payload: bytesOf(JSON.stringify(payload)) },
    ]);
  }

  /** Drops an index (NotFoundError `index not found: NAME` if there is none). */
  async dropIndex(collection: string, name: string): Promise<void> {
    await this.client.call(Command.DropIndex, this.id, [
      { opType: OpType.Create, collection, docId: 0n, payload: bytesOf(JSON.stringify({ name })) },
    ]);
  }

  /** The collection's indexes, by name. */
  async listIndexes(collection: string): Promise<IndexInfo[]> {
    const v = JSON.parse(
      textOf(await this.client.call(Command.ListIndexes, this.id, [{ opType: OpType.Create, collection, docId: 0n }])),
    ) as unknown;
    if (!Array.isArray(v)) throw new ProtocolError('ListIndexes reply is not an array');
    return v as IndexInfo[];
  }

  /** One page of documents in id order, parsed. */
  async scan<T = unknown>(collection: string, options: ScanOptions = {}): Promise<ScanPage<T>> {
    const page = await this.scanRaw(collection, options);
    return {
      items: page.items.map((r) => ({ id: r.id, doc: JSON.parse(textOf(r.doc)) as T })),
      next: page.next,
    };
  }

  /** One page of documents in id order, as JSON bytes. */
  async scanRaw(collection: string, options: ScanOptions = {}): Promise<ScanPage<Uint8Array>> {
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SCAN_LIMIT) {
      throw new RangeError(`scan limit must be 1..${MAX_SCAN_LIMIT}, got ${limit}`);
    }
    const startAfter = u64(options.startAfter ?? 0n, 'startAfter');
    const data = await this.client.call(Command.Scan, this.id, [
      {
        opType: OpType.Read,
        collection,
        docId: startAfter,
        // The form that says where to resume: a page may end before `limit` at the
        // server's reply budget, so its length does not tell the end.
        payload: bytesOf(JSON.stringify({ limit, next: true })),
      },
    ]);
    let page;
    try {
      page = splitScanPage(data);
    } catch (e) {
      throw new ProtocolError(`malformed Scan reply: ${(e as Error).message}`, { cause: e });
    }
    const items = page.rows.map((r) => ({ id: r.id, doc: r.doc.slice() }));
    return { items, next: page.next };
  }

  /** Every document of a collection in id order, fetched page by page. */
  async *scanAll<T = unknown>(collection: string, options: ScanAllOptions = {}): AsyncGenerator<ScanItem<T>> {
    for await (const row of this.scanAllRaw(collection, options)) {
      yield { id: row.id, doc: JSON.parse(textOf(row.doc)) as T };
    }
  }

  /** As {@link scanAll}, with documents as JSON bytes. */
  async *scanAllRaw(collection: string, options: ScanAllOptions = {}): AsyncGenerator<ScanItem<Uint8Array>> {
    const pageSize = options.pageSize ?? MAX_SCAN_LIMIT;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_SCAN_LIMIT) {
      throw new RangeError(`scan page size must be 1..${MAX_SCAN_LIMIT}, got ${pageSize}`);
    }
    // `startAfter` 0 means "from the start", so "after document 0" cannot be said:
    // once document 0 was the last row seen, ask from the start for one row more and
    // drop it.
    const start = u64(options.startAfter ?? 0n, 'startAfter');
    /** The last id yielded (or given); `null` = from the start. */
    let after: bigint | null = start === 0n ? null : start;
    let skipZero = false;
    for (;;) {
      const limit = skipZero ? Math.min(pageSize + 1, MAX_SCAN_LIMIT) : pageSize;
      const page = await this.scanRaw(collection, { startAfter: after ?? 0n, limit });
      let items = page.items;
      if (skipZero) items = items.filter((r) => r.id !== 0n);
      for (const r of items) {
        if (after !== null && r.id <= after) {
          throw new ProtocolError(`Scan returned id ${r.id} out of order (after ${after})`);
        }
        after = r.id;
        yield r;
      }
      if (page.next === null) return;
      if (after === null || (after === 0n && items.length === 0 && skipZero)) {
        // Document 0 alone filled the page again: "after 0" cannot be asked for.
        throw new ProtocolError('Scan made no progress (document 0 alone fills a page)');
      }
      skipZero = page.next === 0n;
    }
  }

  /** One page of a query on a collection. A bad query rejects with a `ServerError`
   * whose text starts `invalid query: `. */
  async query<T = unknown>(collection: string, options: QueryOptions = {}): Promise<QueryPage<T>> {
    const q: Record<string, unknown> = { filter: options.filter ?? {} };
    if (options.sort !== undefined) q.sort = options.sort;
    if (options.limit !== undefined) q.limit = options.limit;
    if (options.after !== undefined && options.after !== null) q.after = options.after;
    if (options.projection !== undefined) q.projection = options.projection;
    if (options.explain) q.explain = true;
    const data = await this.client.call(Command.Query, this.id, [
      { opType: OpType.Read, collection, docId: 0n, payload: bytesOf(JSON.stringify(q)) },
    ]);
    let v: BigJson;
    try {
      v = parseBigJson(textOf(data));
    } catch (e) {
      throw new ProtocolError(`malformed Query reply: ${(e as Error).message}`, { cause: e });
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Array.isArray(v.rows)) {
      throw new ProtocolError('malformed Query reply: no rows');
    }
    const items = v.rows.map((r) => {
      if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new ProtocolError('malformed Query row');
      return { id: toU64(r.id, 'Query row id'), doc: r.doc as T };
    });
    const next = typeof v.next === 'string' ? v.next : null;
    const page: QueryPage<T> = { items, next };
    if (v.plan !== undefined) page.plan = v.plan;
    return page;
  }

  /** Every row of a query, fetched page by page. */
  async *queryAll<T = unknown>(collection: string, options: QueryOptions = {}): AsyncGenerator<ScanItem<T>> {
    let after = options.after ?? null;
    for (;;) {
      const page = await this.query<T>(collection, { ...options, after });
      yield* page.items;
      if (page.next === null) return;
      after = page.next;
    }
  }

  /** Rebuilds one document from the WAL if it is corrupt. */
  heal(id: DocId): Promise<void>;
  heal(collection: string, id: DocId): Promise<void>;
  async heal(...args: [DocId] | [string, DocId]): Promise<void> {
    const [collection, id] = (args.length === 1 ? [DEFAULT_COLLECTION, args[0]] : args) as [string, DocId];
    await this.client.call(Command.Heal, this.id, [{ opType: OpType.Read, collection, docId: u64(id) }]);
  }

  /** Scans the whole database and heals what is corrupt; returns the ids healed. */
  async healAll(): Promise<bigint[]> {
    const v = parseJsonReply(await this.client.call(Command.HealAll, this.id, []), 'HealAll');
    if (!Array.isArray(v)) throw new ProtocolError('HealAll reply is not an array');
    return v.map((x) => toU64(x, 'healed id'));
  }

  /** Healing counters. */
  async healStats(): Promise<HealStats> {
    const v = parseJsonReply(await this.client.call(Command.HealStats, this.id, []), 'HealStats');
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw new ProtocolError('HealStats reply is not an object');
    }
    const out: { [k: string]: unknown } = {};
    for (const [k, x] of Object.entries(v)) out[k] = typeof x === 'bigint' ? Number(x) : x;
    const un = (v['Unrecoverable'] ?? []) as { [k: string]: BigJson }[];
    out['Unrecoverable'] = un.map((u) => ({ Collection: String(u['Collection']), ID: toU64(u['ID'], 'ID') }));
    return out as HealStats;
  }

  /** Closes the database on the server (CloseDB); the handle stays usable. */
  async close(): Promise<void> {
    await this.client.closeDb(this.id);
  }
}

/**
 * Connects to a DocDB server: `connect(socketPath, options?)` over its Unix socket, or
 * `connect({ host, port, tls: true | { ca }, token, ...options })` over TCP + TLS
 * (`insecureTcp: true` instead of `tls` for plain TCP). Retries with backoff for up to
 * `reconnectTimeoutMs` (default 2 s), then rejects with {@link ConnectionError}; a
 * certificate the client does not trust fails at once (ConnectionError), a refused
 * token with `DeniedError`. Bad options throw TypeError/RangeError.
 */
export async function connect(socketPath: string, options?: ClientOptions): Promise<Client>;
export async function connect(options: TcpConnectOptions): Promise<Client>;
export async function connect(target: string | TcpConnectOptions, options: ClientOptions = {}): Promise<Client> {
  const c = new Client(target, options);
  try {
    await c.ensureConnected();
  } catch (e) {
    c.destroy();
    throw e;
  }
  return c;
}

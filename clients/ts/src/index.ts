/**
 * DocDB client for Node.js ≥ 20 and Bun: the binary protocol over a Unix socket or
 * TCP + TLS, with pipelining, typed errors and transparent reconnects. No runtime
 * dependencies.
 *
 * ```ts
 * import { connect } from 'docdb-client';
 * const client = await connect('/tmp/docdb.sock');
 * // or: await connect({ host: 'db.example', port: 7070, tls: true, token });
 * const db = await client.openDb('app');
 * await db.create('users', 1n, { name: 'Ada' });
 * ```
 */

export {
  connect,
  Client,
  Database,
  OpResult,
  MAX_SCAN_LIMIT,
  type AuthInfo,
  DEFAULT_COLLECTION,
  type BatchOp,
  type ClientOptions,
  type DbInfo,
  type DocId,
  type HealStats,
  type IndexField,
  type IndexInfo,
  type IndexSpec,
  type OpName,
  type PatchOp,
  type QueryOptions,
  type QueryPage,
  type ScanAllOptions,
  type ScanItem,
  type ScanOptions,
  type ScanPage,
  type SchedulerStats,
  type Stats,
  type TcpAddress,
  type TcpConnectOptions,
  type TlsOptions,
} from './client.js';
export {
  CLIENT_STATUS,
  ConflictError,
  ConnectionError,
  DeniedError,
  DocDBError,
  errorForStatus,
  FrameTooLargeError,
  MemoryLimitError,
  NotFoundError,
  ProtocolError,
  ServerError,
  TimeoutError,
  type DocDBErrorOptions,
} from './errors.js';
export {
  Command,
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
  MAX_COLLECTION_LEN,
  MAX_FRAME,
  OpType,
  PER_OP_STATUS,
  Status,
  TX_NOT_APPLIED,
  type StatusResult,
  type DecodedOp,
  type DecodedRequest,
  type Op,
  type Request,
  type Response,
} from './protocol.js';
export { parseBigJson, type BigJson } from './json.js';

/**
 * One socket to the server (Unix socket, TCP or TLS over TCP): requests are written as
 * they come (pipelined, coalesced per tick, at most `maxInFlight` on the wire, the rest
 * queued in order) and responses are matched to their promises by request id, in
 * whatever order they arrive.
 */

import * as net from 'node:net';
import * as tls from 'node:tls';

import { ConnectionError, ProtocolError, TimeoutError, type DocDBError } from './errors.js';
import { decodeResponse, FrameReader, MAX_FRAME, textOf, type Response } from './protocol.js';

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The encoded request until it is written; `null` once on the wire. */
  bytes: Uint8Array | null;
}

/**
 * Why a request that was never written failed: its connection broke while it waited
 * for the window. The client sends such requests again on the next connection.
 */
export class NotSent extends Error {
  constructor(readonly reason: DocDBError) {
    super(reason.message);
  }
}

/** Where a connection goes: a Unix socket path, or a TCP address with or without TLS. */
export type Endpoint =
  | { kind: 'unix'; path: string }
  | {
      kind: 'tcp';
      host: string;
      port: number;
      /** TLS settings (certificates always verified), or `null` for plain TCP. */
      tls: { ca?: Buffer[]; servername?: string } | null;
    };

/** The endpoint as error messages name it: the path, `host:port` or `[v6]:port`. */
export function endpointLabel(e: Endpoint): string {
  if (e.kind === 'unix') return e.path;
  return `${net.isIPv6(e.host) ? `[${e.host}]` : e.host}:${e.port}`;
}

/**
 * Whether a TLS failure cannot be cured by trying again: a certificate the client does
 * not trust (OpenSSL's verify codes, Node's host-name check) or a peer that does not
 * speak TLS. Such errors fail the connect at once instead of being retried.
 */
function isPermanentTlsError(e: Error): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return /CERT|SIGNATURE|ISSUER|ERR_SSL_|ERR_TLS_|SSL_ERROR|TLS_ERROR/.test(code);
}

/** A TLS failure in words: OpenSSL's multi-line detail cut to its first line, and a hint. */
function tlsReason(e: Error): string {
  const code = String((e as { code?: unknown }).code);
  if (/WRONG_VERSION_NUMBER/.test(code)) {
    return `the server does not speak TLS (${code}); for a --insecure-tcp listener use insecureTcp: true`;
  }
  const first = e.message.split('\n')[0]!.trim();
  return `${first} (${code})`;
}

export class Connection {
  /** False once the socket failed or was closed: never used again after that. */
  alive = true;
  /** Unanswered requests, written or still waiting for the window. */
  private readonly pending = new Map<bigint, Pending>();
  /** Request ids written and not yet answered (timed-out ones included: they still hold a server slot). */
  private readonly onWire = new Set<bigint>();
  /** Request ids waiting for the window, in order (`head` is the next one). */
  private waiting: bigint[] = [];
  private head = 0;
  private readonly reader = new FrameReader(MAX_FRAME);
  private corked = false;
  private drained: (() => void) | null = null;

  private constructor(
    private readonly socket: net.Socket,
    /** The endpoint as messages name it. */
    private readonly label: string,
    private readonly timeoutMs: number,
    private readonly maxInFlight: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e: Error) => this.fail(new ConnectionError(`connection to ${label} failed: ${e.message}`, { cause: e })));
    socket.on('close', () => this.fail(new ConnectionError(`connection to ${label} closed`)));
    // Idle connections do not keep the process alive; requests in flight do.
    socket.unref();
  }

  /**
   * Connects once (for TLS: through the handshake, the server's certificate verified).
   * Rejects with the socket's error, which the caller may retry, or with a
   * {@link ConnectionError} for a TLS failure that trying again cannot cure (an
   * untrusted certificate, a name mismatch, a peer that does not speak TLS). Gives up
   * after `connectTimeoutMs` (a host that drops packets would otherwise take minutes).
   */
  static open(endpoint: Endpoint, timeoutMs: number, maxInFlight: number, connectTimeoutMs: number): Promise<Connection> {
    const label = endpointLabel(endpoint);
    return new Promise((resolve, reject) => {
      let socket: net.Socket;
      let ready: string;
      if (endpoint.kind === 'unix') {
        socket = net.createConnection({ path: endpoint.path });
        ready = 'connect';
      } else if (endpoint.tls === null) {
        socket = net.createConnection({ host: endpoint.host, port: endpoint.port });
        ready = 'connect';
      } else {
        const opts: tls.ConnectionOptions = { host: endpoint.host, port: endpoint.port, rejectUnauthorized: true };
        if (endpoint.tls.ca !== undefined) opts.ca = endpoint.tls.ca;
        if (endpoint.tls.servername !== undefined) opts.servername = endpoint.tls.servername;
        socket = tls.connect(opts);
        ready = 'secureConnect';
      }
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection within ${connectTimeoutMs} ms`));
      }, Math.max(connectTimeoutMs, 1));
      const onError = (e: Error) => {
        clearTimeout(timer);
        socket.destroy();
        if (endpoint.kind === 'tcp' && endpoint.tls !== null && isPermanentTlsError(e)) {
          reject(new ConnectionError(`TLS handshake with ${label} failed: ${tlsReason(e)}`, { cause: e }));
        } else {
          reject(e);
        }
      };
      socket.once('error', onError);
      socket.once(ready, () => {
        clearTimeout(timer);
        socket.off('error', onError);
        if (endpoint.kind === 'tcp') {
          // Frames are coalesced per tick already; Nagle would only add latency.
          socket.setNoDelay(true);
          socket.setKeepAlive(true, 30_000);
        }
        resolve(new Connection(socket, label, timeoutMs, maxInFlight));
      });
    });
  }

  /** Requests waiting for their response (sent or waiting for the window). */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends one encoded request (`u32 length` + frame) and waits for its response. At
   * most `maxInFlight` requests are on the wire at once; the others wait here, in order.
   */
  send(requestId: bigint, bytes: Uint8Array): Promise<Response> {
    if (!this.alive) {
      return Promise.reject(new NotSent(new ConnectionError(`connection to ${this.label} closed`)));
    }
    return new Promise<Response>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      if (this.timeoutMs > 0) {
        timer = setTimeout(() => {
          if (this.pending.delete(requestId)) {
            this.idleCheck();
            reject(new TimeoutError(`no response within ${this.timeoutMs} ms`));
          }
        }, this.timeoutMs);
      }
      if (this.pending.size === 0) this.socket.ref();
      this.pending.set(requestId, { resolve, reject, timer, bytes });
      this.waiting.push(requestId);
      this.pump();
    });
  }

  /** Writes waiting requests while the window has room. */
  private pump(): void {
    while (this.onWire.size < this.maxInFlight && this.head < this.waiting.length) {
      const id = this.waiting[this.head++]!;
      const p = this.pending.get(id);
      if (p === undefined || p.bytes === null) continue; // timed out while waiting
      const bytes = p.bytes;
      p.bytes = null;
      this.onWire.add(id);
      // Frames written in the same tick go out in one write.
      if (!this.corked) {
        this.corked = true;
        this.socket.cork();
        process.nextTick(() => {
          this.corked = false;
          this.socket.uncork();
        });
      }
      this.socket.write(bytes);
    }
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
  }

  /** Waits for the requests in flight, then closes the socket. */
  async close(): Promise<void> {
    if (this.pending.size > 0) {
      await new Promise<void>((resolve) => {
        this.drained = resolve;
      });
    }
    this.destroy(new ConnectionError('client closed'));
  }

  /** Closes now: requests in flight reject with `err`. */
  destroy(err: DocDBError): void {
    this.fail(err);
  }

  private onData(chunk: Uint8Array): void {
    let frames: Uint8Array[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      this.fail(new ProtocolError(`protocol error from ${this.label}: ${(e as Error).message}`, { cause: e }));
      return;
    }
    for (const frame of frames) {
      let resp: Response;
      try {
        resp = decodeResponse(frame);
      } catch (e) {
        this.fail(new ProtocolError(`protocol error from ${this.label}: ${(e as Error).message}`, { cause: e }));
        return;
      }
      this.onWire.delete(resp.requestId);
      const p = this.pending.get(resp.requestId);
      if (p === undefined) {
        if (resp.requestId === 0n && resp.status !== 0) {
          // Request id 0 is never used by this client: the server's word on the whole
          // connection (too many connections, a frame it refused), after which it closes.
          this.fail(new ConnectionError(`server closed the connection: ${textOf(resp.data)}`));
          return;
        }
        // A late answer to a request that timed out.
        continue;
      }
      this.pending.delete(resp.requestId);
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.resolve(resp);
    }
    this.pump();
    this.idleCheck();
  }

  private idleCheck(): void {
    if (this.pending.size === 0) {
      if (this.alive) this.socket.unref();
      if (this.drained) {
        const d = this.drained;
        this.drained = null;
        d();
      }
    }
  }

  private fail(err: DocDBError): void {
    if (!this.alive) return;
    this.alive = false;
    this.socket.destroy();
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.onWire.clear();
    this.waiting = [];
    this.head = 0;
    for (const p of pending) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      // Rejected in call order, so requests sent again keep their order.
      p.reject(p.bytes !== null ? new NotSent(err) : err);
    }
    if (this.drained) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }
}

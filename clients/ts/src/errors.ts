/**
 * Typed errors. Every error this package raises for a request is a {@link DocDBError}:
 * the server's failures by status ({@link ServerError} 1, {@link NotFoundError} 2,
 * {@link ConflictError} 3, {@link MemoryLimitError} 4; other codes as the base class),
 * and the client's own ({@link ConnectionError}, {@link ProtocolError},
 * {@link TimeoutError}, {@link FrameTooLargeError}) with `status` -1 or 1.
 */

/** Status used for errors raised by the client itself (no server status). */
export const CLIENT_STATUS = -1;

export interface DocDBErrorOptions {
  /** Index of the failed op inside a batch or transaction, when known. */
  opIndex?: number;
  cause?: unknown;
  /** The wire status, when it is not the class's usual one (see {@link errorForStatus}). */
  status?: number;
  /** What the request was about (e.g. the collection), appended to `message`. */
  detail?: string;
}

/** Base class: `status` is the server's status code, `serverMessage` its error text. */
export class DocDBError extends Error {
  /** Wire status (1 Error, 2 NotFound, 3 Conflict, 4 MemoryLimit, ≥ 5 newer codes), or -1. */
  readonly status: number;
  /** The server's error text exactly as sent (stable strings, see SPEC §2), or the client's. */
  readonly serverMessage: string;
  /** For a failed op inside a batch or transaction: its index. */
  readonly opIndex: number | undefined;

  constructor(status: number, serverMessage: string, options: DocDBErrorOptions = {}) {
    super(
      options.detail === undefined ? serverMessage : `${serverMessage}: ${options.detail}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = new.target.name;
    this.status = options.status ?? status;
    this.serverMessage = serverMessage;
    this.opIndex = options.opIndex;
  }
}

/** Status 1: the request failed (invalid JSON, unknown op, collection errors, ...). */
export class ServerError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(1, message, options);
  }
}

/** Status 2: `document not found` (and `collection not found`, whose status is 1). */
export class NotFoundError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(2, message, options);
  }
}

/**
 * Status 3: `document already exists`, or a transaction conflict (and
 * `collection already exists`, whose status is 1).
 */
export class ConflictError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(3, message, options);
  }
}

/** Status 4: `memory limit exceeded`. */
export class MemoryLimitError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(4, message, options);
  }
}

/**
 * Status 5: refused by the server's access control: `authentication required`, or
 * `permission denied: <why>` (a bad, expired or other-key token, a database outside
 * the token's scope, rights the token lacks).
 */
export class DeniedError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(5, message, options);
  }
}

/**
 * The connection failed (could not connect, closed, reset) or the client was closed.
 * Every request in flight on a broken connection rejects with it; whether the server
 * applied such a request is unknown. The next call reconnects.
 */
export class ConnectionError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(CLIENT_STATUS, message, options);
  }
}

/**
 * The server sent something that does not follow the protocol (a malformed frame, a
 * frame over the size limit, an unexpected reply). The connection is closed, so this
 * is also a {@link ConnectionError}.
 */
export class ProtocolError extends ConnectionError {}

/** No response within the client's `timeoutMs`. The request may still be applied. */
export class TimeoutError extends DocDBError {
  constructor(message: string, options?: DocDBErrorOptions) {
    super(CLIENT_STATUS, message, options);
  }
}

/**
 * The request would be a frame over the protocol's limit (16 MiB + 4096 bytes); it was
 * not sent. Status 1 and the server's own text for the case, `frame size exceeds maximum`.
 */
export class FrameTooLargeError extends DocDBError {
  /** Bytes the frame would have had (without the length prefix). */
  readonly frameLength: number;
  readonly maxFrame: number;
  constructor(frameLength: number, maxFrame: number) {
    super(1, 'frame size exceeds maximum');
    this.frameLength = frameLength;
    this.maxFrame = maxFrame;
    this.message = `frame size exceeds maximum (${frameLength} > ${maxFrame} bytes)`;
  }
}

/**
 * The typed error for a server status and its text. Two collection failures the server
 * reports with status 1 get the class of what they mean, keeping `status` 1:
 * `collection already exists` is a {@link ConflictError} and `collection not found` a
 * {@link NotFoundError}.
 */
export function errorForStatus(status: number, message: string, options?: DocDBErrorOptions): DocDBError {
  if (status === 1 && message === 'collection already exists') {
    return new ConflictError(message, { ...options, status });
  }
  if (status === 1 && message === 'collection not found') {
    return new NotFoundError(message, { ...options, status });
  }
  switch (status) {
    case 1:
      return new ServerError(message, options);
    case 2:
      return new NotFoundError(message, options);
    case 3:
      return new ConflictError(message, options);
    case 4:
      return new MemoryLimitError(message, options);
    case 5:
      return new DeniedError(message, options);
    default:
      return new DocDBError(status, message, options);
  }
}

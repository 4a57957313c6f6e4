// The client half of gRPC over HTTP/2 (grpc/grpc PROTOCOL-HTTP2.md) on crisp's own HTTP/2
// (common/h2/client-connection.ts): one connection per unix socket, opened at the first call and again at
// the next call after it closed (the peer restarted); each call is one stream. Calls fail with errors
// shaped as grpc-js's (code, details), so isGrpcError and the callers' status checks see no difference.
import { connect } from 'node:net';
import { ClientConnection, type ClientStream } from './h2/client-connection.js';
import { ErrorCode } from './h2/frames.js';
import { encodeHeaderBlock, type HeaderMap } from './h2/hpack.js';
import { FRAME_HEADER, decodeGrpcMessage, formatGrpcTimeout, frameMessage } from './grpc-wire.js';
import { status, statusName, type StatusCode } from './grpc-types.js';
import { unixSocketPath } from './unix-socket.js';

/** A call's failure: its gRPC status code and message, and the trailers that carried them. */
export interface GrpcCallError extends Error {
  code: StatusCode;
  details: string;
  metadata: Record<string, string>;
}

export function grpcCallError(code: StatusCode, details: string, metadata: Record<string, string> = {}): GrpcCallError {
  return Object.assign(new Error(`${code} ${statusName(code)}: ${details}`), { code, details, metadata });
}

export interface ChannelOptions {
  /** Largest message sent or received (default 64 MiB). */
  maxMessageBytes?: number;
}

/** What a call tells its owner: each message as it is complete, then the end (null = status OK). */
export interface CallHandlers {
  message(payload: Buffer): void;
  end(err: GrpcCallError | null): void;
  /**
   * The owner queues messages and says when it read each (ClientCall.consumed, with the message's
   * length): the peer is then held to a window ahead of the reader. Otherwise a message counts as read
   * once handed over.
   */
  readonly paced?: boolean;
}

export interface CallStart {
  path: string;
  metadata: Record<string, string>;
  /** Milliseconds until the deadline; 0 = none. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** INADEQUATE_SECURITY (RFC 9113, 7): frames.ts lists only the codes the connections send. */
const INADEQUATE_SECURITY = 0xc;

/** The status a stream reset by the peer means (PROTOCOL-HTTP2.md, "Errors"). */
function rstStatus(code: number): StatusCode {
  if (code === ErrorCode.REFUSED_STREAM) return status.UNAVAILABLE;
  if (code === ErrorCode.CANCEL) return status.CANCELLED;
  if (code === ErrorCode.ENHANCE_YOUR_CALM) return status.RESOURCE_EXHAUSTED;
  if (code === INADEQUATE_SECURITY) return status.PERMISSION_DENIED;
  return status.INTERNAL;
}

/** The status an HTTP answer other than 200 means (grpc/grpc doc/http-grpc-status-mapping.md). */
function httpStatus(code: number): StatusCode {
  if (code === 400) return status.INTERNAL;
  if (code === 401) return status.UNAUTHENTICATED;
  if (code === 403) return status.PERMISSION_DENIED;
  if (code === 404) return status.UNIMPLEMENTED;
  if (code === 429 || code === 502 || code === 503 || code === 504) return status.UNAVAILABLE;
  return status.UNKNOWN;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** A peer's reset this close to the deadline is the deadline (timers and the peer's clock differ by a few ms). */
const DEADLINE_SLACK_MS = 50;
const RETRY_BASE_MS = 1000;
const RETRY_FACTOR = 1.6;
const RETRY_MAX_MS = 5000;

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

/** One HTTP/2 connection to a unix socket, shared by every call (and every service) on it. */
export class GrpcChannel {
  readonly path: string;
  readonly maxMessageBytes: number;
  private conn: ClientConnection | undefined;
  /** Calls in flight per connection: a connection without any does not keep the process alive. */
  private readonly inFlight = new Map<ClientConnection, number>();
  private closed = false;
  /** Connection attempts that failed in a row, and until when calls fail at once (as grpc-js's back-off). */
  private failures = 0;
  private retryAt = 0;
  private lastFailure = '';
  private connectCount = 0;

  constructor(address: string, options: ChannelOptions = {}) {
    this.path = unixSocketPath(address.startsWith('unix:') && !address.startsWith('unix://') ? address.slice('unix:'.length) : address);
    this.maxMessageBytes = options.maxMessageBytes ?? 64 * 1024 * 1024;
  }

  /** Connections made so far: a call that sees the count change lost the peer it started with (it restarted). */
  get connections(): number {
    return this.connectCount;
  }

  /** Let the calls in flight finish; later calls fail (UNAVAILABLE). */
  close(): void {
    this.closed = true;
    this.conn?.close();
    this.conn = undefined;
  }

  private current(): ClientConnection {
    if (this.conn?.usable) return this.conn;
    // A failed connect or a dropped socket reaches each call through its stream; the error is kept for
    // the back-off below.
    let failed: Error | undefined;
    let connected = false;
    const forget = () => {
      if (this.conn === conn) this.conn = undefined;
    };
    const conn: ClientConnection = new ClientConnection(connect(this.path), {
      onReady: () => {
        connected = true;
        this.connectCount++;
        this.failures = 0;
        this.retryAt = 0;
      },
      onError: (err) => (failed = err),
      onGoaway: forget,
      onClose: () => {
        forget();
        this.inFlight.delete(conn);
        // A peer that refused or dropped the connection is not asked again at once: calls fail
        // UNAVAILABLE for a back-off (1 s, x1.6 per failure in a row, at most 5 s), as grpc-js's channel
        // does. Retrying at every call would reach a restarting containerd in the middle of its recovery.
        if (this.closed || (connected && !failed)) return;
        this.failures++;
        this.retryAt = Date.now() + Math.min(RETRY_BASE_MS * RETRY_FACTOR ** (this.failures - 1), RETRY_MAX_MS);
        this.lastFailure = failed?.message ?? 'connection closed';
      },
    });
    conn.setRef(false);
    this.conn = conn;
    return conn;
  }

  private hold(conn: ClientConnection): () => void {
    const n = this.inFlight.get(conn) ?? 0;
    if (n === 0) conn.setRef(true);
    this.inFlight.set(conn, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(conn) ?? 1) - 1;
      if (left > 0) return void this.inFlight.set(conn, left);
      this.inFlight.delete(conn);
      conn.setRef(false);
    };
  }

  /** Start a call; `handlers.end` is called exactly once. */
  start(spec: CallStart, handlers: CallHandlers): ClientCall {
    const call = new ClientCall(this.maxMessageBytes, handlers, spec.signal);
    if (this.closed) {
      call.fail(status.UNAVAILABLE, `channel to ${this.path} is closed`);
      return call;
    }
    if (spec.signal?.aborted) {
      call.fail(status.CANCELLED, 'Cancelled on client');
      return call;
    }
    const wait = this.retryAt - Date.now();
    if (wait > 0 && !this.conn) {
      call.fail(status.UNAVAILABLE, `No connection established to ${this.path}: ${this.lastFailure} (next attempt in ${wait} ms)`);
      return call;
    }
    const fields: [string, string][] = [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', spec.path],
      [':authority', 'localhost'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
    ];
    if (spec.timeoutMs > 0) fields.push(['grpc-timeout', formatGrpcTimeout(spec.timeoutMs)]);
    for (const [k, v] of Object.entries(spec.metadata)) fields.push([k.toLowerCase(), v]);
    let conn: ClientConnection;
    let stream: ClientStream;
    try {
      conn = this.current();
      stream = conn.request(encodeHeaderBlock(fields), false, call, handlers.paced === true);
    } catch (err) {
      call.fail(status.UNAVAILABLE, `cannot start a call on ${this.path}: ${(err as Error).message}`);
      return call;
    }
    call.attach(stream, conn, this.hold(conn), spec.timeoutMs);
    return call;
  }
}

/** One call on its stream: frames out, messages and status in, deadline and cancellation. */
export class ClientCall {
  private stream: ClientStream | undefined;
  /** The stream's connection: dropped means it is gone. */
  private conn: ClientConnection | undefined;
  private outcome: GrpcCallError | null | undefined;
  private release: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the call's deadline passes (ms since the epoch); 0 = none. */
  private deadlineAt = 0;
  private readonly onAbort = () => this.fail(status.CANCELLED, 'Cancelled on client');
  private responseHeaders: HeaderMap | undefined;
  private trailers: HeaderMap | undefined;
  private chunks: Buffer[] = [];
  private have = 0;
  /** Length of the message being received; -1 while its 5-byte prefix is incomplete. */
  private need = -1;
  /** Paced calls: octets received, of messages handed over and not read, and given back (settleWindow). */
  private received = 0;
  private unread = 0;
  private released = 0;

  constructor(
    private readonly maxMessageBytes: number,
    private readonly handlers: CallHandlers,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Whether the call has its status (OK or not). */
  get done(): boolean {
    return this.outcome !== undefined;
  }

  /** The failure the call ended with, if it did. */
  get failure(): GrpcCallError | undefined {
    return this.outcome ?? undefined;
  }

  attach(stream: ClientStream, conn: ClientConnection, release: () => void, timeoutMs: number): void {
    this.stream = stream;
    this.conn = conn;
    this.release = release;
    if (stream.closed) return this.closed();
    if (this.signal?.aborted) return this.onAbort();
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (timeoutMs > 0) {
      this.deadlineAt = Date.now() + timeoutMs;
      this.armDeadline(this.deadlineAt);
    }
  }

  /** The stream's header blocks: the response headers, then the trailers. */
  headers(headers: HeaderMap): void {
    if (!this.responseHeaders) this.responseHeaders = headers;
    else this.trailers = headers;
  }

  close(): void {
    // Before attach (a stream closed while being opened) the call has nothing to read yet.
    if (this.stream) this.closed();
  }

  /** setTimeout fires at once for more than 2^31-1 ms: a deadline further out is reached in steps. */
  private armDeadline(at: number): void {
    const left = at - Date.now();
    if (left > MAX_TIMER_MS) this.timer = setTimeout(() => this.armDeadline(at), MAX_TIMER_MS);
    else this.timer = setTimeout(() => this.fail(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), Math.max(left, 0));
  }

  /** Send one message; `end` half-closes after it (unary and server-streaming requests). */
  send(payload: Uint8Array, end: boolean, done?: (err?: Error | null) => void): void {
    if (payload.length > this.maxMessageBytes) {
      this.fail(status.RESOURCE_EXHAUSTED, `Sent message larger than max (${payload.length} vs. ${this.maxMessageBytes})`);
      return done?.(this.outcome);
    }
    const stream = this.stream;
    if (this.outcome !== undefined || !stream || stream.closed || stream.localEnded) {
      return done?.(this.outcome ?? grpcCallError(status.INTERNAL, 'write after the call ended'));
    }
    stream.write(frameMessage(payload));
    if (end) stream.end();
    // Done once flow control let the message out (or the stream closed): callers pace their writes on it.
    if (done) void stream.drained().then(() => done(stream.closed && this.outcome ? this.outcome : null));
  }

  /** Half-close: no more messages from this side. */
  end(): void {
    if (this.outcome === undefined) this.stream?.end();
  }

  cancel(): void {
    this.fail(status.CANCELLED, 'Cancelled on client');
  }

  /** A paced owner read a message of `payloadBytes` (CallHandlers.paced). */
  consumed(payloadBytes: number): void {
    this.unread -= FRAME_HEADER + payloadBytes;
    this.settleWindow();
  }

  /**
   * A paced call gives back all it received but the messages its owner has not read yet: a message
   * still arriving never waits for a read (one larger than the window would wait forever), and the
   * server gets at most a window ahead of the reader.
   */
  private settleWindow(): void {
    const due = this.received - this.unread - this.released;
    if (due <= 0 || !this.stream) return;
    this.released += due;
    this.stream.consumed(due);
  }

  /** End the call with a failure of our own; the stream, if any, is reset with CANCEL. */
  fail(code: StatusCode, details: string): void {
    if (this.outcome !== undefined) return;
    this.finish(grpcCallError(code, details));
    if (this.stream && !this.stream.closed) this.stream.reset(ErrorCode.CANCEL);
  }

  private finish(outcome: GrpcCallError | null): void {
    this.outcome = outcome;
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.release?.();
    this.chunks = [];
    this.handlers.end(outcome);
  }

  /** A piece of the answer's body: messages are handed over as they complete. */
  data(chunk: Buffer): void {
    if (this.outcome !== undefined) return;
    this.chunks.push(chunk);
    this.have += chunk.length;
    this.received += chunk.length;
    while (this.outcome === undefined) {
      if (this.need < 0) {
        if (this.have < FRAME_HEADER) break;
        const head = this.take(FRAME_HEADER);
        if (head[0] !== 0) return this.fail(status.INTERNAL, 'received a compressed message, but no compression was negotiated');
        this.need = head.readUInt32BE(1);
        if (this.need > this.maxMessageBytes) {
          return this.fail(status.RESOURCE_EXHAUSTED, `Received message larger than max (${this.need} vs. ${this.maxMessageBytes})`);
        }
      }
      if (this.have < this.need) break;
      const payload = this.take(this.need);
      this.need = -1;
      if (this.handlers.paced) this.unread += FRAME_HEADER + payload.length;
      try {
        this.handlers.message(payload);
      } catch (err) {
        this.fail(status.INTERNAL, `Response message parsing error: ${(err as Error).message}`);
      }
    }
    if (this.handlers.paced) this.settleWindow();
  }

  /** The next `n` bytes received (copied only when they span chunks). */
  private take(n: number): Buffer {
    this.have -= n;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    return all.subarray(0, n);
  }

  /** The stream is gone: the status comes from the trailers (or a trailers-only answer), else from how it ended. */
  private closed(): void {
    if (this.outcome !== undefined) return;
    const stream = this.stream!;
    const headers = this.responseHeaders;
    const rst: number = stream.rstCode ?? ErrorCode.NO_ERROR;
    // The connection is gone (never made, or dropped): UNAVAILABLE, as for any transport failure. A
    // stream the peer reset on a live connection takes the status its reset code means.
    const dropped = this.conn?.dropped !== false;
    // The server learnt the deadline from grpc-timeout and may reset the stream (CANCEL) as it passes,
    // just before our own timer fires: that is the deadline, not a cancel.
    const hasStatus = (headers?.['grpc-status'] ?? this.trailers?.['grpc-status']) !== undefined;
    if (rst === ErrorCode.CANCEL && !hasStatus && this.deadlineAt > 0 && Date.now() >= this.deadlineAt - DEADLINE_SLACK_MS) {
      return this.finish(grpcCallError(status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
    }
    if (!headers) {
      const why = this.conn?.error?.message ?? (dropped ? 'connection closed' : `stream reset (RST_STREAM code ${rst})`);
      const code = dropped || rst === ErrorCode.NO_ERROR ? status.UNAVAILABLE : rstStatus(rst);
      return this.finish(grpcCallError(code, `No connection established: ${why}`));
    }
    const httpCode = Number(headerText(headers[':status']));
    const st = headers['grpc-status'] !== undefined ? headers : this.trailers;
    if (httpCode !== 200 && st?.['grpc-status'] === undefined) {
      return this.finish(grpcCallError(httpStatus(httpCode), `Received HTTP status code ${httpCode}`));
    }
    if (!st || st['grpc-status'] === undefined) {
      if (dropped) {
        const why = this.conn?.error ? `: ${this.conn.error.message}` : '';
        return this.finish(grpcCallError(status.UNAVAILABLE, `Connection dropped${why}`));
      }
      const code = rst === ErrorCode.NO_ERROR ? status.INTERNAL : rstStatus(rst);
      return this.finish(grpcCallError(code, `Stream ended without a status (RST_STREAM code ${rst})`));
    }
    const code = Number(headerText(st['grpc-status']));
    const details = decodeGrpcMessage(headerText(st['grpc-message']) ?? '');
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(st)) if (!k.startsWith(':') && v !== undefined) metadata[k] = headerText(v)!;
    if (!Number.isInteger(code) || code < 0 || code > 16) {
      return this.finish(grpcCallError(status.UNKNOWN, details || `invalid grpc-status ${code}`, metadata));
    }
    if (code !== status.OK) return this.finish(grpcCallError(code as StatusCode, details, metadata));
    if (this.have > 0 || this.need >= 0) {
      return this.finish(grpcCallError(status.INTERNAL, 'the stream ended inside a message', metadata));
    }
    this.finish(null);
  }
}

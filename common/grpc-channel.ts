// The client half of gRPC over HTTP/2 (grpc/grpc PROTOCOL-HTTP2.md) on node:http2: one HTTP/2 session
// per unix socket, opened at the first call and again at the next call after it closed (the peer
// restarted); each call is one stream. Calls fail with errors shaped as grpc-js's (code, details), so
// isGrpcError and the callers' status checks see no difference.
import * as http2 from 'node:http2';
import { connect } from 'node:net';
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
}

export interface CallStart {
  path: string;
  metadata: Record<string, string>;
  /** Milliseconds until the deadline; 0 = none. */
  timeoutMs: number;
  signal?: AbortSignal;
}

const {
  NGHTTP2_CANCEL,
  NGHTTP2_NO_ERROR,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INADEQUATE_SECURITY,
} = http2.constants;

/** The status a stream reset by the peer means (PROTOCOL-HTTP2.md, "Errors"). */
function rstStatus(code: number): StatusCode {
  if (code === NGHTTP2_REFUSED_STREAM) return status.UNAVAILABLE;
  if (code === NGHTTP2_CANCEL) return status.CANCELLED;
  if (code === NGHTTP2_ENHANCE_YOUR_CALM) return status.RESOURCE_EXHAUSTED;
  if (code === NGHTTP2_INADEQUATE_SECURITY) return status.PERMISSION_DENIED;
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

/** One HTTP/2 session to a unix socket, shared by every call (and every service) on it. */
export class GrpcChannel {
  readonly path: string;
  readonly maxMessageBytes: number;
  private session: http2.ClientHttp2Session | undefined;
  /** Calls in flight per session: a session without any does not keep the process alive. */
  private readonly inFlight = new Map<http2.ClientHttp2Session, number>();
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
    this.session?.close();
    this.session = undefined;
  }

  private current(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const session = http2.connect('http://localhost', {
      createConnection: () => connect(this.path),
      settings: { enablePush: false },
      // As grpc-js: node's per-session memory cap refuses new streams (ENHANCE_YOUR_CALM) while large
      // content writes are queued, and its header-block cap would fail calls with much metadata.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    });
    // A failed connect or a dropped socket reaches each call through its stream; the session's own
    // error event is kept for the back-off below.
    let failed: Error | undefined;
    let connected = false;
    session.on('error', (err: Error) => (failed = err));
    session.once('connect', () => {
      connected = true;
      this.connectCount++;
      this.failures = 0;
      this.retryAt = 0;
    });
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    session.once('goaway', forget);
    session.once('close', () => {
      forget();
      this.inFlight.delete(session);
      // A peer that refused or dropped the connection is not asked again at once: calls fail
      // UNAVAILABLE for a back-off (1 s, x1.6 per failure in a row, at most 5 s), as grpc-js's channel
      // does. Retrying at every call would reach a restarting containerd in the middle of its recovery.
      if (this.closed || (connected && !failed)) return;
      this.failures++;
      this.retryAt = Date.now() + Math.min(RETRY_BASE_MS * RETRY_FACTOR ** (this.failures - 1), RETRY_MAX_MS);
      this.lastFailure = failed?.message ?? 'connection closed';
    });
    session.unref();
    this.session = session;
    return session;
  }

  private hold(session: http2.ClientHttp2Session): () => void {
    const n = this.inFlight.get(session) ?? 0;
    if (n === 0) session.ref();
    this.inFlight.set(session, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(session) ?? 1) - 1;
      if (left > 0) return void this.inFlight.set(session, left);
      this.inFlight.delete(session);
      if (!session.destroyed) session.unref();
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
    if (wait > 0 && !this.session) {
      call.fail(status.UNAVAILABLE, `No connection established to ${this.path}: ${this.lastFailure} (next attempt in ${wait} ms)`);
      return call;
    }
    const headers: http2.OutgoingHttpHeaders = {
      ...spec.metadata,
      ':method': 'POST',
      ':path': spec.path,
      ':scheme': 'http',
      ':authority': 'localhost',
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    if (spec.timeoutMs > 0) headers['grpc-timeout'] = formatGrpcTimeout(spec.timeoutMs);
    let session: http2.ClientHttp2Session;
    let stream: http2.ClientHttp2Stream;
    try {
      session = this.current();
      stream = session.request(headers, { endStream: false });
    } catch (err) {
      call.fail(status.UNAVAILABLE, `cannot start a call on ${this.path}: ${(err as Error).message}`);
      return call;
    }
    call.attach(stream, this.hold(session), spec.timeoutMs);
    return call;
  }
}

/** One call on its stream: frames out, messages and status in, deadline and cancellation. */
export class ClientCall {
  private stream: http2.ClientHttp2Stream | undefined;
  /** The stream's session (a closed stream no longer names it): destroyed means the connection is gone. */
  private session: http2.Http2Session | undefined;
  private outcome: GrpcCallError | null | undefined;
  private release: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the call's deadline passes (ms since the epoch); 0 = none. */
  private deadlineAt = 0;
  private readonly onAbort = () => this.fail(status.CANCELLED, 'Cancelled on client');
  private responseHeaders: http2.IncomingHttpHeaders | undefined;
  private trailers: http2.IncomingHttpHeaders | undefined;
  private streamError: Error | undefined;
  private chunks: Buffer[] = [];
  private have = 0;
  /** Length of the message being received; -1 while its 5-byte prefix is incomplete. */
  private need = -1;

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

  attach(stream: http2.ClientHttp2Stream, release: () => void, timeoutMs: number): void {
    this.stream = stream;
    this.session = stream.session;
    this.release = release;
    stream.on('response', (headers) => {
      this.responseHeaders = headers;
    });
    stream.on('trailers', (trailers) => {
      this.trailers = trailers;
    });
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('error', (err) => {
      this.streamError ??= err;
    });
    stream.on('close', () => this.closed());
    // After the listeners: a stream reset at once must still find its 'error' listener.
    if (this.signal?.aborted) return this.onAbort();
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (timeoutMs > 0) {
      this.deadlineAt = Date.now() + timeoutMs;
      this.armDeadline(this.deadlineAt);
    }
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
    if (this.outcome !== undefined || !stream || stream.destroyed || stream.writableEnded) {
      return done?.(this.outcome ?? grpcCallError(status.INTERNAL, 'write after the call ended'));
    }
    const frame = frameMessage(payload);
    if (end) stream.end(frame, () => done?.());
    else stream.write(frame, (err) => done?.(err ? (this.outcome ?? err) : null));
  }

  /** Half-close: no more messages from this side. */
  end(): void {
    if (this.outcome === undefined && this.stream && !this.stream.writableEnded) this.stream.end();
  }

  cancel(): void {
    this.fail(status.CANCELLED, 'Cancelled on client');
  }

  /** End the call with a failure of our own; the stream, if any, is reset with CANCEL. */
  fail(code: StatusCode, details: string): void {
    if (this.outcome !== undefined) return;
    this.finish(grpcCallError(code, details));
    if (this.stream && !this.stream.closed) this.stream.close(NGHTTP2_CANCEL);
  }

  private finish(outcome: GrpcCallError | null): void {
    this.outcome = outcome;
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
    this.release?.();
    this.chunks = [];
    this.handlers.end(outcome);
  }

  private receive(chunk: Buffer): void {
    if (this.outcome !== undefined) return;
    this.chunks.push(chunk);
    this.have += chunk.length;
    while (this.outcome === undefined) {
      if (this.need < 0) {
        if (this.have < FRAME_HEADER) return;
        const head = this.take(FRAME_HEADER);
        if (head[0] !== 0) return this.fail(status.INTERNAL, 'received a compressed message, but no compression was negotiated');
        this.need = head.readUInt32BE(1);
        if (this.need > this.maxMessageBytes) {
          return this.fail(status.RESOURCE_EXHAUSTED, `Received message larger than max (${this.need} vs. ${this.maxMessageBytes})`);
        }
      }
      if (this.have < this.need) return;
      const payload = this.take(this.need);
      this.need = -1;
      try {
        this.handlers.message(payload);
      } catch (err) {
        this.fail(status.INTERNAL, `Response message parsing error: ${(err as Error).message}`);
      }
    }
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
    const rst = stream.rstCode ?? NGHTTP2_NO_ERROR;
    // The connection is gone (never made, or dropped): UNAVAILABLE, as for any transport failure. A
    // stream the peer reset on a live connection takes the status its reset code means.
    const dropped = this.session?.destroyed !== false;
    // The server learnt the deadline from grpc-timeout and may reset the stream (CANCEL) as it passes,
    // just before our own timer fires: that is the deadline, not a cancel.
    const hasStatus = (headers?.['grpc-status'] ?? this.trailers?.['grpc-status']) !== undefined;
    if (rst === NGHTTP2_CANCEL && !hasStatus && this.deadlineAt > 0 && Date.now() >= this.deadlineAt - DEADLINE_SLACK_MS) {
      return this.finish(grpcCallError(status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
    }
    if (!headers) {
      const why = this.streamError?.message ?? `stream reset (RST_STREAM code ${rst})`;
      const code = dropped || rst === NGHTTP2_NO_ERROR ? status.UNAVAILABLE : rstStatus(rst);
      return this.finish(grpcCallError(code, `No connection established: ${why}`));
    }
    const httpCode = Number(headers[':status']);
    const st = headers['grpc-status'] !== undefined ? headers : this.trailers;
    if (httpCode !== 200 && st?.['grpc-status'] === undefined) {
      return this.finish(grpcCallError(httpStatus(httpCode), `Received HTTP status code ${httpCode}`));
    }
    if (!st || st['grpc-status'] === undefined) {
      if (dropped) {
        const why = this.streamError ? `: ${this.streamError.message}` : '';
        return this.finish(grpcCallError(status.UNAVAILABLE, `Connection dropped${why}`));
      }
      const code = rst === NGHTTP2_NO_ERROR ? status.INTERNAL : rstStatus(rst);
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

// A lean gRPC server on crisp's own HTTP/2 server connection (common/h2) for unary and server-streaming
// methods, with typed handlers bound through one interceptor (the CRI instrument layer) so handlers stay
// free of logging, metrics and error mapping. What it implements of gRPC over HTTP/2 (grpc/grpc
// PROTOCOL-HTTP2.md):
// - requests: POST, content-type application/grpc[+proto] (else HTTP 415), one length-prefixed message,
//   grpc-timeout, metadata from the headers (-bin values base64), grpc-encoding identity only
//   (a compressed message or another encoding → UNIMPLEMENTED), at most maxReceiveMessageLength bytes
//   (→ RESOURCE_EXHAUSTED), an unknown path → UNIMPLEMENTED;
// - responses: headers, length-prefixed messages, trailers grpc-status / grpc-message (percent-encoded);
//   an error before any message is a trailers-only response;
// - cancellation: a client RST_STREAM or the deadline aborts the call's signal; a server stream waits
//   on HTTP/2 flow control (back-pressure) and stops waiting when the stream closes;
// - shutdown: GOAWAY, running calls finish (tryShutdown) or every connection is destroyed (forceShutdown).
// The connection answers PINGs (keepalive) and SETTINGS itself.
import { createServer, type Server, type Socket } from 'node:net';
import { ServerConnection, type ServerStream as H2Stream } from './h2/server-connection.js';
import { encodeHeaderBlock, type HeaderMap } from './h2/hpack.js';
import { ErrorCode } from './h2/frames.js';
import { codecFor, lookupService, type Input } from './proto-registry.js';
import { status, type MethodTable } from './grpc-types.js';
import { undecodableRequest } from './undecodable-request.js';
import {
  FRAME_HEADER,
  declaredLength,
  encodeGrpcMessage,
  frameMessage,
  parseGrpcTimeout,
  unframeSingle,
  writeFrameHeader,
} from './grpc-wire.js';

export interface CallInfo {
  /** "/runtime.v1.RuntimeService/Version" */
  path: string;
  /** "Version" */
  method: string;
  metadata: CallMetadata;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
}

export interface ServerStream<Res> {
  /** Resolves once the message is handed to the transport (waits on back-pressure). */
  write(message: Input<Res>): Promise<void>;
}

/**
 * A response already in protobuf wire form, sent as it is: for a handler that keeps the encoding of
 * what it answers often (ListContainers encodes each container once per change, not once per call).
 */
export class Encoded<Res> {
  declare private readonly response?: Res;
  private framed: Buffer | undefined;
  constructor(readonly bytes: Uint8Array) {}

  /** The message with its length prefix, made once: an Encoded kept as a constant answer is framed once. */
  frame(): Buffer {
    this.framed ??= frameMessage(this.bytes);
    return this.framed;
  }

  /** A message written after FRAME_HEADER bytes of room in `buffer`: the prefix goes there, nothing is copied. */
  static inFrame<Res>(buffer: Buffer): Encoded<Res> {
    writeFrameHeader(buffer);
    const e = new Encoded<Res>(buffer.subarray(FRAME_HEADER));
    e.framed = buffer;
    return e;
  }
}

export type UnaryHandler<Req, Res> = (request: Req, call: CallInfo) => Promise<Input<Res> | Encoded<Res>>;
export type ServerStreamHandler<Req, Res> = (request: Req, stream: ServerStream<Res>, call: CallInfo) => Promise<void>;

export type Handlers<M extends MethodTable<M>> = {
  [K in keyof M]: M[K]['requestStream'] extends true
    ? never
    : M[K]['responseStream'] extends true
      ? ServerStreamHandler<M[K]['request'], M[K]['response']>
      : UnaryHandler<M[K]['request'], M[K]['response']>;
};

/** Runs a handler; maps whatever it throws to a gRPC status (the interceptor's job). */
export type Interceptor = <T>(call: CallInfo, request: unknown, run: () => Promise<T>) => Promise<T>;
/** How a call ends: a gRPC status code and its message. */
export interface CallStatus {
  code?: number;
  details?: string;
}

export type ErrorMapper = (err: unknown) => CallStatus;

const METADATA_KEY = /^[0-9a-z_.-]+$/;

/** A call's metadata: its request headers that are not gRPC's or HTTP/2's own; `-bin` values are bytes. */
export class CallMetadata {
  private readonly values = new Map<string, (string | Buffer)[]>();

  /** Adds a value; a key gRPC does not allow (not [0-9a-z_.-]) is not metadata and is left out. */
  add(key: string, value: string | Buffer): void {
    if (!METADATA_KEY.test(key)) return;
    const list = this.values.get(key);
    if (list) list.push(value);
    else this.values.set(key, [value]);
  }

  get(key: string): (string | Buffer)[] {
    return this.values.get(key.toLowerCase()) ?? [];
  }
}

export interface GrpcServerOptions {
  /** Largest request message accepted (default 4 MiB, as grpc-js and grpc-go). */
  maxReceiveMessageLength?: number;
  /** Largest response message sent (default unlimited). */
  maxSendMessageLength?: number;
}

/** The longest delay setTimeout keeps (2^31-1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Headers that are gRPC's or HTTP/2's own, not call metadata. */
const RESERVED_HEADERS = new Set(['content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'content-length']);

function metadataOf(headers: HeaderMap): CallMetadata {
  const md = new CallMetadata();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(':') || RESERVED_HEADERS.has(key)) continue;
    const values = Array.isArray(value) ? value : key.endsWith('-bin') ? value.split(',') : [value];
    for (const v of values) md.add(key, key.endsWith('-bin') ? Buffer.from(v, 'base64') : v);
  }
  return md;
}

/** What a request that did not decode becomes; the call then fails INVALID_ARGUMENT naming why. */
class Undecodable {
  constructor(readonly error: Error) {}
}

interface BoundMethod {
  name: string;
  path: string;
  decode(bytes: Buffer): unknown;
  encode(message: unknown): Buffer;
  /** Runs the handler through the interceptor; for a server stream, `stream` carries the messages. */
  invoke(request: unknown, call: Call, stream: ServerStream<unknown> | undefined): Promise<unknown>;
  responseStream: boolean;
  mapError: ErrorMapper;
}

/**
 * One call: its CallInfo (metadata and the AbortController made only when a handler reads them; most
 * never do) and its answer, sent at most once.
 */
class Call implements CallInfo {
  private md: CallMetadata | undefined;
  private controller: AbortController | undefined;
  private cancelReason: Error | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The handler finished; a later close of the stream is no cancellation. */
  done = false;
  /** The status was sent (or the stream is gone): nothing more goes out. */
  answered = false;
  headersSent = false;

  constructor(
    readonly path: string,
    readonly method: string,
    private readonly headers: HeaderMap,
    readonly stream: H2Stream,
    readonly deadline: number | undefined,
  ) {}

  get metadata(): CallMetadata {
    this.md ??= metadataOf(this.headers);
    return this.md;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.cancelReason) this.controller.abort(this.cancelReason);
      else if (this.deadline !== undefined && !this.done) this.armDeadline();
    }
    return this.controller.signal;
  }

  /**
   * The deadline timer runs only for a handler that listens (a handler that does not cannot stop early).
   * A deadline beyond what a node timer holds (~24.8 days; longer fires at once) gets no timer.
   */
  private armDeadline(): void {
    const ms = this.deadline! - Date.now();
    if (ms > MAX_TIMER_MS) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.cancel(new Error(`${this.method}: deadline exceeded`));
      sendStatus(this, status.DEADLINE_EXCEEDED, 'deadline exceeded');
    }, Math.max(0, ms));
    this.timer.unref();
  }

  cancel(reason: Error): void {
    if (this.done || this.cancelReason) return;
    this.cancelReason = reason;
    this.controller?.abort(reason);
    this.clearTimer();
  }

  finish(): void {
    this.done = true;
    this.clearTimer();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** The header blocks of every answer, HPACK-coded once. */
const RESPONSE_HEADERS = encodeHeaderBlock([
  [':status', '200'],
  ['content-type', 'application/grpc'],
  ['grpc-accept-encoding', 'identity'],
]);
const OK_TRAILERS = encodeHeaderBlock([['grpc-status', '0']]);
const METHOD_NOT_ALLOWED = encodeHeaderBlock([[':status', '405']]);
const UNSUPPORTED_MEDIA_TYPE = encodeHeaderBlock([[':status', '415']]);

function statusBlock(code: number, details: string | undefined): Buffer {
  const fields: [string, string][] = [['grpc-status', String(code)]];
  if (details) fields.push(['grpc-message', encodeGrpcMessage(details)]);
  return encodeHeaderBlock(fields);
}

/** Ends the call with `code`: trailers-only before any message, trailers after them. */
function sendStatus(call: Pick<Call, 'answered' | 'headersSent' | 'stream'>, code: number, details?: string): void {
  if (call.answered) return;
  call.answered = true;
  const stream = call.stream;
  if (stream.closed) return;
  const trailers = statusBlock(code, details);
  if (!call.headersSent) {
    call.headersSent = true;
    stream.respond(Buffer.concat([RESPONSE_HEADERS, trailers]), true);
    return;
  }
  stream.end(trailers);
}

/** Ends a call that never reached a handler (trailers-only). */
function refuse(stream: H2Stream, code: number, details: string): void {
  sendStatus({ answered: false, headersSent: false, stream }, code, details);
}

/** A header's value; the first one where the client sent several. */
function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export class GrpcServer {
  private readonly methods = new Map<string, BoundMethod>();
  private readonly connections = new Set<ServerConnection>();
  private readonly net: Server;
  private readonly maxReceive: number;
  private readonly maxSend: number;

  constructor(options: GrpcServerOptions = {}) {
    this.maxReceive = options.maxReceiveMessageLength ?? 4 * 1024 * 1024;
    this.maxSend = options.maxSendMessageLength ?? Number.MAX_SAFE_INTEGER;
    this.net = createServer((socket) => this.onConnection(socket));
  }

  private onConnection(socket: Socket): void {
    const conn: ServerConnection = new ServerConnection(socket, {
      onStream: (stream) => this.onStream(stream),
      onClose: () => this.connections.delete(conn),
    });
    this.connections.add(conn);
  }

  /** Methods are added before listen(). */
  addMethod(method: BoundMethod): void {
    this.methods.set(method.path, method);
  }

  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(path, () => {
        this.net.off('error', reject);
        resolve();
      });
    });
  }

  /** GOAWAY to every client, accept nothing new, call `done` once running calls have finished. */
  tryShutdown(done: () => void): void {
    this.net.close(() => done());
    for (const c of this.connections) c.goaway();
  }

  forceShutdown(): void {
    this.net.close();
    for (const c of this.connections) c.destroy();
  }

  private onStream(stream: H2Stream): void {
    const headers = stream.headers;
    const httpMethod = single(headers[':method']);
    const contentType = single(headers['content-type']);
    if (httpMethod !== 'POST' || contentType === undefined || !contentType.startsWith('application/grpc')) {
      stream.respond(httpMethod !== 'POST' ? METHOD_NOT_ALLOWED : UNSUPPORTED_MEDIA_TYPE, true);
      return;
    }
    const path = single(headers[':path']) ?? '';
    const method = this.methods.get(path);
    if (!method) return refuse(stream, status.UNIMPLEMENTED, `unknown method ${path}`);
    const encoding = single(headers['grpc-encoding']);
    if (encoding !== undefined && encoding !== 'identity') return refuse(stream, status.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported (identity only)`);
    let deadline: number | undefined;
    const timeout = single(headers['grpc-timeout']);
    if (timeout !== undefined) {
      const ms = parseGrpcTimeout(timeout);
      if (ms === undefined) return refuse(stream, status.INTERNAL, `malformed grpc-timeout "${timeout}"`);
      deadline = Date.now() + ms;
    }
    const call = new Call(path, method.name, headers, stream, deadline);
    const chunks: Buffer[] = [];
    let size = 0;
    let declared: number | undefined;
    let refused = false;
    let several = false;
    const data = (chunk: Buffer): void => {
      if (refused || several) return;
      chunks.push(chunk);
      size += chunk.length;
      declared ??= declaredLength(chunks);
      // A second message (a unary or server-streaming request has one) is refused at 'end'; hold no more of it.
      if (declared !== undefined && size > FRAME_HEADER + declared + FRAME_HEADER) {
        several = true;
        chunks.length = 0;
      }
      if (declared !== undefined && declared > this.maxReceive) {
        refused = true;
        chunks.length = 0;
        sendStatus(call, status.RESOURCE_EXHAUSTED, `request message larger than max (${declared} vs. ${this.maxReceive})`);
      }
    };
    const end = (): void => {
      if (refused || call.answered) return;
      if (several) return sendStatus(call, status.INTERNAL, 'more than one request message');
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      const msg = unframeSingle(body);
      if (msg.kind !== 'message') {
        const why = msg.kind === 'none' ? 'no request message' : msg.kind === 'several' ? 'more than one request message' : `request message cut short (${msg.have} of ${msg.declared} bytes)`;
        return sendStatus(call, status.INTERNAL, why);
      }
      if (msg.compressed) return sendStatus(call, status.UNIMPLEMENTED, 'compressed messages are not supported (grpc-encoding identity only)');
      this.dispatch(method, call, msg.payload);
    };
    stream.listener = {
      data,
      end,
      close: () => {
        call.answered = true;
        // Every stream closes, most after their answer: the Error (a stack capture) only for a real cancel.
        if (!call.done) call.cancel(new Error(`${method.name}: cancelled by client`));
      },
    };
  }

  private dispatch(method: BoundMethod, call: Call, payload: Buffer): void {
    const request = method.decode(payload);
    const stream = method.responseStream ? this.serverStream(method, call) : undefined;
    // try/catch in both callbacks rather than a .catch(): one promise less per call.
    method.invoke(request, call, stream).then(
      (response) => {
        try {
          this.answer(method, call, stream !== undefined, response);
        } catch {
          // Answering failed (a response that would not encode past the checks): reset the stream; the daemon lives on.
          call.stream.reset(ErrorCode.INTERNAL_ERROR);
        }
      },
      (err: unknown) => {
        try {
          call.finish();
          const st = method.mapError(err);
          sendStatus(call, st.code ?? status.UNKNOWN, st.details);
        } catch {
          // as above: the status could not be sent; reset the stream
          call.stream.reset(ErrorCode.INTERNAL_ERROR);
        }
      },
    );
  }

  private answer(method: BoundMethod, call: Call, streamed: boolean, response: unknown): void {
    call.finish();
    if (call.answered) return;
    if (call.deadline !== undefined && Date.now() > call.deadline) return sendStatus(call, status.DEADLINE_EXCEEDED, 'deadline exceeded');
    if (streamed) return sendStatus(call, status.OK);
    let frame: Buffer;
    try {
      frame = response instanceof Encoded ? response.frame() : frameMessage(method.encode(response));
    } catch (err) {
      const st = method.mapError(err);
      return sendStatus(call, st.code ?? status.INTERNAL, st.details);
    }
    const size = frame.length - FRAME_HEADER;
    if (size > this.maxSend) {
      return sendStatus(call, status.RESOURCE_EXHAUSTED, `response message larger than max (${size} vs. ${this.maxSend})`);
    }
    call.answered = true;
    call.headersSent = true;
    const s = call.stream;
    if (s.closed) return;
    s.respond(RESPONSE_HEADERS, false);
    s.write(frame);
    s.end(OK_TRAILERS);
  }

  private serverStream(method: BoundMethod, call: Call): ServerStream<unknown> {
    const s = call.stream;
    return {
      write: (message) => {
        if (call.answered || s.closed) return Promise.resolve();
        const frame = frameMessage(method.encode(message));
        if (frame.length - FRAME_HEADER > this.maxSend) return Promise.reject(new Error(`${method.name}: message larger than max (${frame.length - FRAME_HEADER} vs. ${this.maxSend})`));
        if (!call.headersSent) {
          call.headersSent = true;
          s.respond(RESPONSE_HEADERS, false);
        }
        if (s.write(frame)) return Promise.resolve();
        return s.drained();
      },
    };
  }
}

/** A deserializer that never throws: bad bytes become Undecodable (→ INVALID_ARGUMENT naming the field). */
function lenientDecoder(typeName: string, decode: (b: Buffer) => unknown): (b: Buffer) => unknown {
  return (b) => {
    try {
      return decode(b);
    } catch (err) {
      return new Undecodable(undecodableRequest(typeName, b, err));
    }
  };
}

export function bindService<M extends MethodTable<M>>(
  server: GrpcServer,
  serviceName: string,
  handlers: Handlers<M>,
  intercept: Interceptor,
  mapError: ErrorMapper,
): void {
  const service = lookupService(serviceName);
  for (const m of service.methodsArray) {
    if (m.requestStream) throw new Error(`${serviceName}/${m.name}: client streaming is not supported by this server`);
    const reqType = m.resolvedRequestType!.fullName.slice(1);
    const reqCodec = codecFor<unknown>(reqType);
    const resCodec = codecFor<unknown>(m.resolvedResponseType!.fullName.slice(1));
    const handler = (handlers as Record<string, unknown>)[m.name];
    if (typeof handler !== 'function') throw new Error(`${serviceName}/${m.name}: no handler bound`);
    const responseStream = Boolean(m.responseStream);
    server.addMethod({
      name: m.name,
      path: `/${serviceName}/${m.name}`,
      responseStream,
      decode: lenientDecoder(reqType, (b) => reqCodec.decode(b)),
      encode: (v) => resCodec.encode(v as Input<unknown>),
      mapError,
      invoke: (request, call, stream) =>
        intercept(call, request, () => {
          if (request instanceof Undecodable) return Promise.reject(request.error);
          return responseStream
            ? (handler as ServerStreamHandler<unknown, unknown>)(request, stream!, call)
            : (handler as UnaryHandler<unknown, unknown>)(request, call);
        }),
    });
  }
}

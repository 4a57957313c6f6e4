// Unary ttrpc client and server over one logical connection each (nri-protocol.md §3). NRI uses
// only unary calls: one Request frame (flags 0) answered by one Response frame on the same stream.
import type { Duplex } from 'node:stream';
import { status } from '../../common/grpc-types.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import type { Request as TtrpcRequest, Response as TtrpcResponse } from '../../gen/ttrpc.js';
import {
  TTRPC_MAX_PAYLOAD,
  TTRPC_TYPE_REQUEST,
  TTRPC_TYPE_RESPONSE,
  TtrpcChannel,
} from './ttrpc-channel.js';
import { TtrpcError, codeName } from './ttrpc-error.js';

export { TtrpcError, isTtrpcError, codeName, type TtrpcFailure } from './ttrpc-error.js';
export { TTRPC_HEADER_LEN, TTRPC_MAX_PAYLOAD, TTRPC_TYPE_REQUEST, TTRPC_TYPE_RESPONSE } from './ttrpc-channel.js';

const requestCodec = codecFor<TtrpcRequest>('ttrpc.Request');
const responseCodec = codecFor<TtrpcResponse>('ttrpc.Response');
const MAX_STREAM_ID = 0xffffffff;
/** setTimeout cannot wait longer than this. */
const MAX_TIMER_MS = 0x7fffffff;

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function oversize(what: string, length: number): TtrpcError {
  return new TtrpcError(
    'oversize',
    status.RESOURCE_EXHAUSTED,
    `${what}: message of ${length} bytes exceeds the ttrpc limit of ${TTRPC_MAX_PAYLOAD} bytes`,
  );
}

export interface TtrpcEndpointOptions {
  /** Shown in errors, e.g. "plugin 10-logger Plugin client". */
  name?: string;
}

interface PendingCall {
  what: string;
  resolve(payload: Buffer): void;
  reject(err: TtrpcError): void;
  timer: NodeJS.Timeout | undefined;
}

/** Calls methods of the peer's services; one per logical connection (stream ids are per connection). */
export class TtrpcClient {
  readonly name: string;
  private readonly channel: TtrpcChannel;
  private readonly pending = new Map<number, PendingCall>();
  private nextStreamId = 1;
  private readonly closeListeners: ((reason: Error) => void)[] = [];

  constructor(conn: Duplex, opts: TtrpcEndpointOptions = {}) {
    this.name = opts.name ?? 'ttrpc client';
    this.channel = new TtrpcChannel(conn, {
      name: this.name,
      receives: TTRPC_TYPE_RESPONSE,
      onFrame: (streamId, _flags, data) => this.onResponse(streamId, data),
      onClose: (reason) => this.onClosed(reason),
    });
  }

  get closed(): boolean {
    return this.channel.closed;
  }

  /**
   * Calls service/method with an encoded request message; resolves with the encoded response
   * message. `timeoutMs` (0 or omitted = none) bounds the wait and is sent as timeout_nano.
   * Rejects with a TtrpcError: 'status' when the peer answered with an error status, otherwise
   * 'timeout', 'closed', 'protocol' or 'oversize'.
   */
  call(service: string, method: string, payload: Uint8Array, timeoutMs = 0): Promise<Buffer> {
    const what = `${this.name}: /${service}/${method}`;
    const reason = this.channel.closeReason;
    if (reason) return Promise.reject(this.closedError(what, reason));
    if (this.nextStreamId > MAX_STREAM_ID) {
      return Promise.reject(new TtrpcError('closed', status.UNAVAILABLE, `${what}: stream ids exhausted on this connection`));
    }
    const request: Input<TtrpcRequest> = { service, method };
    if (payload.length > 0) request.payload = asBuffer(payload);
    if (timeoutMs > 0) request.timeoutNano = Math.round(timeoutMs * 1e6);
    const data = requestCodec.encode(request);
    if (data.length > TTRPC_MAX_PAYLOAD) return Promise.reject(oversize(what, data.length));

    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    return new Promise<Buffer>((resolve, reject) => {
      const call: PendingCall = { what, resolve, reject, timer: undefined };
      if (timeoutMs > 0) {
        call.timer = setTimeout(() => {
          if (this.pending.get(streamId) !== call) return;
          this.pending.delete(streamId);
          reject(new TtrpcError('timeout', status.DEADLINE_EXCEEDED, `${what}: no response within ${timeoutMs}ms`));
        }, Math.min(timeoutMs, MAX_TIMER_MS));
      }
      this.pending.set(streamId, call);
      this.channel.send(streamId, TTRPC_TYPE_REQUEST, data);
    });
  }

  /** Fails pending calls with 'closed' and closes the connection. */
  close(reason?: Error): void {
    this.channel.close(reason ?? new Error(`${this.name}: closed locally`));
  }

  onClose(listener: (reason: Error) => void): void {
    const reason = this.channel.closeReason;
    if (reason) queueMicrotask(() => listener(reason));
    else this.closeListeners.push(listener);
  }

  private closedError(what: string, reason: Error): TtrpcError {
    if (reason instanceof TtrpcError && reason.failure === 'protocol') {
      return new TtrpcError('protocol', reason.code, `${what}: ${reason.message}`, { cause: reason });
    }
    return new TtrpcError('closed', status.UNAVAILABLE, `${what}: connection closed: ${reason.message}`, { cause: reason });
  }

  private onResponse(streamId: number, data: Buffer): void {
    const call = this.pending.get(streamId);
    // A late answer to a timed-out call, or a stream we never opened: nothing waits for it.
    if (!call) return;
    this.pending.delete(streamId);
    if (call.timer) clearTimeout(call.timer);
    let response: TtrpcResponse;
    try {
      response = responseCodec.decode(data);
    } catch (err) {
      call.reject(new TtrpcError('protocol', status.INTERNAL, `${call.what}: undecodable response: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const st = response.status;
    if (st && st.code !== status.OK) {
      call.reject(
        new TtrpcError('status', st.code, `${call.what}: ${codeName(st.code)}: ${st.message}`, { details: st.message }),
      );
      return;
    }
    call.resolve(response.payload);
  }

  private onClosed(reason: Error): void {
    for (const [id, call] of this.pending) {
      this.pending.delete(id);
      if (call.timer) clearTimeout(call.timer);
      call.reject(this.closedError(call.what, reason));
    }
    for (const l of this.closeListeners.splice(0)) l(reason);
  }
}

export interface TtrpcCallContext {
  service: string;
  method: string;
  streamId: number;
  /** The caller's timeout in milliseconds (from timeout_nano); 0 = none. */
  timeoutMs: number;
  /** Aborted when the caller's timeout passes or the connection closes. */
  signal: AbortSignal;
}

/** Gets the encoded request message, returns the encoded response message. */
export type TtrpcHandler = (payload: Buffer, ctx: TtrpcCallContext) => Promise<Uint8Array>;

/**
 * The status a handler failure becomes: an explicit gRPC code (CrispError, TtrpcError, grpc-js style
 * errors) is kept; a failure after the deadline is DEADLINE_EXCEEDED; anything else is UNKNOWN.
 */
export function statusOfError(err: unknown, signal?: AbortSignal): { code: number; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Error) {
    const grpcCode = (err as { grpcCode?: unknown }).grpcCode;
    if (typeof grpcCode === 'number' && grpcCode > 0) return { code: grpcCode, message };
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number' && Number.isInteger(code) && code > 0 && code <= 16) return { code, message };
  }
  if (signal?.aborted && signal.reason instanceof TtrpcError) return { code: signal.reason.code, message };
  return { code: status.UNKNOWN, message };
}

/** Serves registered methods to the peer's client on one logical connection. */
export class TtrpcServer {
  readonly name: string;
  private readonly channel: TtrpcChannel;
  private readonly handlers = new Map<string, Map<string, TtrpcHandler>>();
  private readonly inflight = new Map<number, AbortController>();
  private lastStreamId = 0;
  private readonly closeListeners: ((reason: Error) => void)[] = [];

  constructor(conn: Duplex, opts: TtrpcEndpointOptions = {}) {
    this.name = opts.name ?? 'ttrpc server';
    this.channel = new TtrpcChannel(conn, {
      name: this.name,
      receives: TTRPC_TYPE_REQUEST,
      onFrame: (streamId, _flags, data) => this.onRequest(streamId, data),
      onClose: (reason) => this.onClosed(reason),
    });
  }

  get closed(): boolean {
    return this.channel.closed;
  }

  register(service: string, method: string, handler: TtrpcHandler): this {
    let methods = this.handlers.get(service);
    if (!methods) {
      methods = new Map();
      this.handlers.set(service, methods);
    }
    if (methods.has(method)) throw new Error(`${this.name}: /${service}/${method} is already registered`);
    methods.set(method, handler);
    return this;
  }

  close(reason?: Error): void {
    this.channel.close(reason ?? new Error(`${this.name}: closed locally`));
  }

  onClose(listener: (reason: Error) => void): void {
    const reason = this.channel.closeReason;
    if (reason) queueMicrotask(() => listener(reason));
    else this.closeListeners.push(listener);
  }

  private onRequest(streamId: number, data: Buffer): void {
    // Same checks and texts as the Go server; the connection stays usable.
    if (streamId % 2 !== 1) {
      this.reply(streamId, { code: status.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' });
      return;
    }
    if (streamId <= this.lastStreamId) {
      this.reply(streamId, { code: status.INVALID_ARGUMENT, message: 'StreamID cannot be re-used and must increment' });
      return;
    }
    this.lastStreamId = streamId;

    let request: TtrpcRequest;
    try {
      request = requestCodec.decode(data);
    } catch (err) {
      this.reply(streamId, { code: status.INVALID_ARGUMENT, message: `undecodable request: ${(err as Error).message}` });
      return;
    }
    const methods = this.handlers.get(request.service);
    if (!methods) {
      this.reply(streamId, { code: status.UNIMPLEMENTED, message: `service ${request.service}` });
      return;
    }
    const handler = methods.get(request.method);
    if (!handler) {
      this.reply(streamId, { code: status.UNIMPLEMENTED, message: `method ${request.method}` });
      return;
    }
    void this.run(streamId, request, handler);
  }

  private async run(streamId: number, request: TtrpcRequest, handler: TtrpcHandler): Promise<void> {
    const ac = new AbortController();
    this.inflight.set(streamId, ac);
    const timeoutMs = request.timeoutNano > 0 ? Math.ceil(request.timeoutNano / 1e6) : 0;
    const what = `${this.name}: /${request.service}/${request.method}`;
    const timer =
      timeoutMs > 0
        ? setTimeout(
            () => ac.abort(new TtrpcError('timeout', status.DEADLINE_EXCEEDED, `${what}: deadline of ${timeoutMs}ms passed`)),
            Math.min(timeoutMs, MAX_TIMER_MS),
          )
        : undefined;
    const ctx: TtrpcCallContext = {
      service: request.service,
      method: request.method,
      streamId,
      timeoutMs,
      signal: ac.signal,
    };
    try {
      const result = await handler(request.payload, ctx);
      this.reply(streamId, undefined, asBuffer(result), what);
    } catch (err) {
      this.reply(streamId, statusOfError(err, ac.signal));
    } finally {
      if (timer) clearTimeout(timer);
      this.inflight.delete(streamId);
    }
  }

  private reply(streamId: number, st: { code: number; message: string } | undefined, payload?: Buffer, what?: string): void {
    if (this.channel.closed) return;
    // Success leaves status out and an empty result out, as the Go server does (an Empty reply is 0 bytes).
    const response: Input<TtrpcResponse> = {};
    if (st) response.status = { code: st.code, message: st.message };
    else if (payload && payload.length > 0) response.payload = payload;
    let data = responseCodec.encode(response);
    if (data.length > TTRPC_MAX_PAYLOAD) {
      const err = oversize(what ?? this.name, data.length);
      data = responseCodec.encode({ status: { code: err.code, message: err.message } });
    }
    this.channel.send(streamId, TTRPC_TYPE_RESPONSE, data);
  }

  private onClosed(reason: Error): void {
    for (const [id, ac] of this.inflight) {
      this.inflight.delete(id);
      ac.abort(new TtrpcError('closed', status.CANCELLED, `${this.name}: connection closed: ${reason.message}`, { cause: reason }));
    }
    for (const l of this.closeListeners.splice(0)) l(reason);
  }
}

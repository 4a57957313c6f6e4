// A typed view of one gRPC service over a shared channel (common/grpc-channel.ts, on crisp's own HTTP/2): unary
// calls, server streams and bidirectional streams, with per-call metadata (containerd namespace, lease)
// and deadlines.
import { GrpcChannel, grpcCallError, type CallHandlers, type ChannelOptions, type ClientCall, type GrpcCallError } from './grpc-channel.js';
import { codecFor, lookupService, type Codec, type Input } from './proto-registry.js';
import { status, type MethodTable } from './grpc-types.js';
import { tracer } from './tracing.js';

export interface CallOptions {
  /** Milliseconds until the call's deadline; 0 = none. */
  timeoutMs?: number;
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ResponseStream<T> extends AsyncIterable<T> {
  cancel(): void;
}

export interface DuplexCall<Req, Res> {
  write(message: Input<Req>): Promise<void>;
  end(): void;
  cancel(): void;
  /** Next response; rejects if the stream fails, resolves undefined at its end. */
  read(): Promise<Res | undefined>;
}

/** The longest deadline a call gets (30 days); callers pass timeouts that come from requests. */
export const MAX_CALL_TIMEOUT_MS = 30 * 24 * 3600 * 1000;

interface MethodCodecs {
  path: string;
  req: Codec<unknown>;
  res: Codec<unknown>;
}

export class ServiceClient<M extends MethodTable<M>> {
  private readonly methods = new Map<string, MethodCodecs>();

  constructor(
    private readonly channel: GrpcChannel,
    readonly serviceName: string,
    private readonly defaults: () => { metadata: Record<string, string>; timeoutMs: number },
  ) {
    for (const m of lookupService(serviceName).methodsArray) {
      this.methods.set(m.name, {
        path: `/${serviceName}/${m.name}`,
        req: codecFor(m.resolvedRequestType!.fullName.slice(1)),
        res: codecFor(m.resolvedResponseType!.fullName.slice(1)),
      });
    }
  }

  private method(name: string): MethodCodecs {
    const m = this.methods.get(name);
    if (!m) throw new Error(`${this.serviceName} has no method ${name}`);
    return m;
  }

  private start(m: MethodCodecs, opts: CallOptions, streaming: boolean, handlers: CallHandlers): ClientCall {
    const d = this.defaults();
    const timeoutMs = Math.min(opts.timeoutMs ?? (streaming ? 0 : d.timeoutMs), MAX_CALL_TIMEOUT_MS);
    return this.channel.start({ path: m.path, metadata: { ...d.metadata, ...opts.metadata }, timeoutMs, signal: opts.signal }, handlers);
  }

  unary<K extends keyof M & string>(
    name: K,
    request: Input<M[K]['request']>,
    opts: CallOptions = {},
  ): Promise<M[K]['response']> {
    if (tracer) {
      const metadata = { ...opts.metadata };
      return tracer.grpcClient(this.serviceName, name, metadata, () => this.sendUnary(name, request, { ...opts, metadata }));
    }
    return this.sendUnary(name, request, opts);
  }

  private sendUnary<K extends keyof M & string>(name: K, request: Input<M[K]['request']>, opts: CallOptions): Promise<M[K]['response']> {
    const m = this.method(name);
    return new Promise((resolve, reject) => {
      const payload = encode(m, request);
      if (payload instanceof Error) return reject(payload);
      let response: unknown;
      let count = 0;
      const call = this.start(m, opts, false, {
        message: (bytes) => {
          count++;
          response = m.res.decode(bytes);
        },
        end: (err) => {
          if (err) reject(err);
          else if (count === 1) resolve(response as M[K]['response']);
          else reject(grpcCallError(status.UNIMPLEMENTED, `${count} response messages for a unary call`));
        },
      });
      call.send(payload, true);
    });
  }

  serverStream<K extends keyof M & string>(
    name: K,
    request: Input<M[K]['request']>,
    opts: CallOptions = {},
  ): ResponseStream<M[K]['response']> {
    const m = this.method(name);
    const responses = new Responses<M[K]['response']>(m);
    const payload = encode(m, request);
    const call = this.start(m, opts, true, responses);
    responses.readBy(call);
    if (payload instanceof Error) call.fail(payload.code, payload.details);
    else call.send(payload, true);
    const iterator: AsyncIterator<M[K]['response']> = {
      next: async () => {
        const value = await responses.read();
        return value === undefined ? { done: true, value: undefined } : { done: false, value };
      },
      return: async () => {
        call.cancel();
        return { done: true, value: undefined };
      },
    };
    return { cancel: () => call.cancel(), [Symbol.asyncIterator]: () => iterator };
  }

  duplex<K extends keyof M & string>(name: K, opts: CallOptions = {}): DuplexCall<M[K]['request'], M[K]['response']> {
    const m = this.method(name);
    const responses = new Responses<M[K]['response']>(m);
    const call = this.start(m, opts, true, responses);
    responses.readBy(call);
    return {
      write: (message) =>
        new Promise<void>((resolve, reject) => {
          const payload = encode(m, message);
          if (payload instanceof Error) return reject(payload);
          call.send(payload, false, (err) => (err ? reject(err) : resolve()));
        }),
      end: () => call.end(),
      cancel: () => call.cancel(),
      read: () => responses.read(),
    };
  }
}

/** The request's bytes, or the INTERNAL error grpc-js gives for a message that does not encode. */
function encode(m: MethodCodecs, request: unknown): Uint8Array | GrpcCallError {
  try {
    return m.req.encode(request as Input<unknown>);
  } catch (err) {
    return grpcCallError(status.INTERNAL, `Request message serialization failure: ${(err as Error).message}`);
  }
}

/**
 * Responses of a streaming call, queued until read; `read` resolves undefined after status OK. The call
 * is paced: the server may send a flow-control window ahead of what was read, no more.
 */
class Responses<T> implements CallHandlers {
  readonly paced = true;
  private readonly queue: { value: T; size: number }[] = [];
  private waiter: { resolve: (v: T | undefined) => void; reject: (e: unknown) => void } | undefined;
  private outcome: GrpcCallError | null | undefined;
  private call: ClientCall | undefined;

  constructor(private readonly m: MethodCodecs) {}

  /** The call whose messages these are (told what was read). */
  readBy(call: ClientCall): void {
    this.call = call;
  }

  message(bytes: Buffer): void {
    const value = this.m.res.decode(bytes) as T;
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      this.call?.consumed(bytes.length);
      w.resolve(value);
    } else this.queue.push({ value, size: bytes.length });
  }

  end(err: GrpcCallError | null): void {
    this.outcome = err;
    const w = this.waiter;
    this.waiter = undefined;
    if (w && err) w.reject(err);
    else w?.resolve(undefined);
  }

  read(): Promise<T | undefined> {
    const next = this.queue.shift();
    if (next) {
      this.call?.consumed(next.size);
      return Promise.resolve(next.value);
    }
    if (this.outcome) return Promise.reject(this.outcome);
    if (this.outcome === null) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }
}

/** A channel to a unix socket ("/run/x.sock", "unix:///run/x.sock" or "unix:x.sock"). */
export function unixChannel(address: string, options?: ChannelOptions): GrpcChannel {
  return new GrpcChannel(address, options);
}

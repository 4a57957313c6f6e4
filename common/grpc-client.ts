// A typed view of one gRPC service over a shared grpc-js channel: unary calls, server streams and
// bidirectional streams, with per-call metadata (containerd namespace, lease) and deadlines.
import * as grpc from '@grpc/grpc-js';
import { codecFor, lookupService, type Codec, type Input } from './proto-registry.js';
import type { MethodTable } from './grpc-types.js';
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

/** The longest deadline a call gets (30 days); grpc-js cannot express one beyond 10^8 hours. */
export const MAX_CALL_TIMEOUT_MS = 30 * 24 * 3600 * 1000;

interface MethodCodecs {
  path: string;
  req: Codec<unknown>;
  res: Codec<unknown>;
}

export class ServiceClient<M extends MethodTable<M>> {
  private readonly methods = new Map<string, MethodCodecs>();

  constructor(
    private readonly channel: grpc.Client,
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

  private prepare(opts: CallOptions, streaming: boolean): { metadata: grpc.Metadata; options: grpc.CallOptions } {
    const d = this.defaults();
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries({ ...d.metadata, ...opts.metadata })) metadata.set(k, v);
    // A deadline too far out makes grpc-js throw outside the call (an uncaught exception); callers pass
    // timeouts that come from requests (ExecSync, StopContainer), so cap rather than trust them.
    const timeoutMs = Math.min(opts.timeoutMs ?? (streaming ? 0 : d.timeoutMs), MAX_CALL_TIMEOUT_MS);
    const options: grpc.CallOptions = timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {};
    return { metadata, options };
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
    const { metadata, options } = this.prepare(opts, false);
    return new Promise((resolve, reject) => {
      const call = this.channel.makeUnaryRequest(
        m.path,
        (v: Input<unknown>) => m.req.encode(v),
        (b: Buffer) => m.res.decode(b),
        request,
        metadata,
        options,
        (err, value) => (err ? reject(err) : resolve(value as M[K]['response'])),
      );
      opts.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
  }

  serverStream<K extends keyof M & string>(
    name: K,
    request: Input<M[K]['request']>,
    opts: CallOptions = {},
  ): ResponseStream<M[K]['response']> {
    const m = this.method(name);
    const { metadata, options } = this.prepare(opts, true);
    const call = this.channel.makeServerStreamRequest(
      m.path,
      (v: Input<unknown>) => m.req.encode(v),
      (b: Buffer) => m.res.decode(b),
      request,
      metadata,
      options,
    );
    opts.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    return {
      cancel: () => call.cancel(),
      [Symbol.asyncIterator]: () => call[Symbol.asyncIterator]() as AsyncIterator<M[K]['response']>,
    };
  }

  duplex<K extends keyof M & string>(name: K, opts: CallOptions = {}): DuplexCall<M[K]['request'], M[K]['response']> {
    const m = this.method(name);
    const { metadata, options } = this.prepare(opts, true);
    const call = this.channel.makeBidiStreamRequest(
      m.path,
      (v: Input<unknown>) => m.req.encode(v),
      (b: Buffer) => m.res.decode(b),
      metadata,
      options,
    );
    opts.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    const queue: unknown[] = [];
    const waiters: { resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
    let failure: unknown;
    let ended = false;
    call.on('data', (msg: unknown) => {
      const w = waiters.shift();
      if (w) w.resolve(msg);
      else queue.push(msg);
    });
    call.on('error', (err: unknown) => {
      failure = err;
      for (const w of waiters.splice(0)) w.reject(err);
    });
    call.on('end', () => {
      ended = true;
      for (const w of waiters.splice(0)) w.resolve(undefined);
    });
    return {
      write: (message) =>
        new Promise<void>((resolve, reject) => {
          if (failure) return reject(failure);
          call.write(message, (err?: Error | null) => (err ? reject(err) : resolve()));
        }),
      end: () => call.end(),
      cancel: () => call.cancel(),
      read: () =>
        new Promise((resolve, reject) => {
          if (queue.length > 0) return resolve(queue.shift() as M[K]['response']);
          if (failure) return reject(failure);
          if (ended) return resolve(undefined);
          waiters.push({ resolve: resolve as (v: unknown) => void, reject });
        }),
    };
  }
}

/** A channel to a unix socket ("/run/x.sock" or "unix:///run/x.sock"). */
export function unixChannel(address: string): grpc.Client {
  const target = address.startsWith('unix:') ? address : `unix://${address}`;
  return new grpc.Client(target, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.initial_reconnect_backoff_ms': 100,
    'grpc.max_reconnect_backoff_ms': 2000,
  });
}

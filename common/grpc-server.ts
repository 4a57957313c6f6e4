// Binds typed handlers to a grpc-js server. Every call passes through one interceptor (the CRI
// instrument layer) so handlers stay free of logging, metrics and error mapping.
import * as grpc from '@grpc/grpc-js';
import { codecFor, lookupService, type Input } from './proto-registry.js';
import type { MethodTable } from './grpc-types.js';
import { undecodableRequest } from './undecodable-request.js';

export interface CallInfo {
  /** "/runtime.v1.RuntimeService/Version" */
  path: string;
  /** "Version" */
  method: string;
  metadata: grpc.Metadata;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
}

export interface ServerStream<Res> {
  /** Resolves once the message is handed to the transport (waits on back-pressure). */
  write(message: Input<Res>): Promise<void>;
}

export type UnaryHandler<Req, Res> = (request: Req, call: CallInfo) => Promise<Input<Res>>;
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
export type ErrorMapper = (err: unknown) => Partial<grpc.StatusObject>;

/**
 * The CallInfo of one call. grpc-js emits 'cancelled' when a call's stream closes, also after a normal
 * finish, so the abort (an Error with its stack) happens only while the handler still runs, and the
 * AbortController is made only when a handler asks for the signal (most never do).
 */
function callInfo(
  path: string,
  method: string,
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
): { info: CallInfo; finished: () => void } {
  let controller: AbortController | undefined;
  let cancelled = false;
  let done = false;
  const reason = () => new Error(`${method}: cancelled by client`);
  call.once('cancelled', () => {
    if (done) return;
    cancelled = true;
    controller?.abort(reason());
  });
  const info: CallInfo = {
    path,
    method,
    metadata: call.metadata,
    get signal() {
      if (!controller) {
        controller = new AbortController();
        if (cancelled) controller.abort(reason());
      }
      return controller.signal;
    },
  };
  return {
    info,
    finished: () => {
      done = true;
    },
  };
}

/** What a request that did not decode becomes; the call then fails INVALID_ARGUMENT naming why. */
class Undecodable {
  constructor(readonly error: Error) {}
}

/** A deserializer that never throws (grpc-js would answer a bare INTERNAL): bad bytes become Undecodable. */
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
  server: grpc.Server,
  serviceName: string,
  handlers: Handlers<M>,
  intercept: Interceptor,
  mapError: ErrorMapper,
): void {
  const service = lookupService(serviceName);
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const m of service.methodsArray) {
    if (m.requestStream) throw new Error(`${serviceName}/${m.name}: client streaming is not supported by this server`);
    const reqType = m.resolvedRequestType!.fullName.slice(1);
    const reqCodec = codecFor<unknown>(reqType);
    const resCodec = codecFor<unknown>(m.resolvedResponseType!.fullName.slice(1));
    const path = `/${serviceName}/${m.name}`;
    definition[m.name] = {
      path,
      requestStream: false,
      responseStream: Boolean(m.responseStream),
      requestSerialize: (v: Input<unknown>) => reqCodec.encode(v),
      requestDeserialize: lenientDecoder(reqType, (b: Buffer) => reqCodec.decode(b)),
      responseSerialize: (v: Input<unknown>) => resCodec.encode(v),
      responseDeserialize: (b: Buffer) => resCodec.decode(b),
    };
    const handler = (handlers as Record<string, unknown>)[m.name];
    if (typeof handler !== 'function') throw new Error(`${serviceName}/${m.name}: no handler bound`);
    if (m.responseStream) {
      const run = handler as ServerStreamHandler<unknown, unknown>;
      implementation[m.name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const { info, finished } = callInfo(path, m.name, call);
        const stream: ServerStream<unknown> = {
          write: (message) =>
            new Promise<void>((resolve) => {
              if (call.write(message)) resolve();
              else call.once('drain', () => resolve());
            }),
        };
        intercept(info, call.request, () => (call.request instanceof Undecodable ? Promise.reject(call.request.error) : run(call.request, stream, info))).then(
          () => {
            finished();
            call.end();
          },
          (err: unknown) => {
            finished();
            call.destroy(Object.assign(new Error('stream failed'), mapError(err)));
          },
        );
      };
    } else {
      const run = handler as UnaryHandler<unknown, unknown>;
      implementation[m.name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const { info, finished } = callInfo(path, m.name, call);
        intercept(info, call.request, () => (call.request instanceof Undecodable ? Promise.reject(call.request.error) : run(call.request, info))).then(
          (res) => {
            finished();
            callback(null, res);
          },
          (err: unknown) => {
            finished();
            callback(mapError(err));
          },
        );
      };
    }
  }
  server.addService(definition as grpc.ServiceDefinition, implementation);
}

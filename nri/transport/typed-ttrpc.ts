// Typed views over the byte-level ttrpc client and server, using the generated method tables
// (gen/<package>.ts) and the protobuf codecs from common/proto-registry.
import { codecFor, lookupService, type Codec, type Input } from '../../common/proto-registry.js';
import type { MethodTable } from '../../common/grpc-types.js';
import type { TtrpcCallContext, TtrpcClient, TtrpcServer } from './ttrpc.js';

interface MethodCodecs {
  req: Codec<unknown>;
  res: Codec<unknown>;
}

function methodCodecs(serviceName: string): Map<string, MethodCodecs> {
  const out = new Map<string, MethodCodecs>();
  for (const m of lookupService(serviceName).methodsArray) {
    if (m.requestStream || m.responseStream) throw new Error(`${serviceName}/${m.name}: ttrpc streaming is not supported`);
    out.set(m.name, {
      req: codecFor(m.resolvedRequestType!.fullName.slice(1)),
      res: codecFor(m.resolvedResponseType!.fullName.slice(1)),
    });
  }
  return out;
}

/** Calls one service of the peer with typed messages, e.g. TypedTtrpcClient<PluginMethods>. */
export class TypedTtrpcClient<M extends MethodTable<M>> {
  private readonly methods: Map<string, MethodCodecs>;

  constructor(
    readonly client: TtrpcClient,
    readonly serviceName: string,
  ) {
    this.methods = methodCodecs(serviceName);
  }

  async call<K extends keyof M & string>(
    method: K,
    request: Input<M[K]['request']>,
    timeoutMs = 0,
  ): Promise<M[K]['response']> {
    const m = this.methods.get(method);
    if (!m) throw new Error(`${this.serviceName} has no method ${method}`);
    const bytes = await this.client.call(this.serviceName, method, m.req.encode(request), timeoutMs);
    return m.res.decode(bytes) as M[K]['response'];
  }
}

export type TypedTtrpcHandler<Req, Res> = (request: Req, ctx: TtrpcCallContext) => Promise<Input<Res>>;

/** Any subset of a service's methods; the missing ones answer UNIMPLEMENTED "method <Name>". */
export type TypedTtrpcHandlers<M extends MethodTable<M>> = {
  [K in keyof M]?: TypedTtrpcHandler<M[K]['request'], M[K]['response']>;
};

/** Registers typed handlers for one service on a ttrpc server. */
export function registerTtrpcService<M extends MethodTable<M>>(
  server: TtrpcServer,
  serviceName: string,
  handlers: TypedTtrpcHandlers<M>,
): void {
  const methods = methodCodecs(serviceName);
  for (const [name, handler] of Object.entries(handlers) as [string, TypedTtrpcHandler<unknown, unknown> | undefined][]) {
    if (!handler) continue;
    const m = methods.get(name);
    if (!m) throw new Error(`${serviceName} has no method ${name}`);
    server.register(serviceName, name, async (payload, ctx) => m.res.encode(await handler(m.req.decode(payload), ctx)));
  }
}

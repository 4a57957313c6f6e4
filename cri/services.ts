// CRI RuntimeService and ImageService handler tables. Each RPC lives in its own module under
// runtime/ or image/; what is not built yet answers UNIMPLEMENTED, never a fake success.
import type { RuntimeServiceMethods, ImageServiceMethods } from '../gen/runtime.v1.js';
import { RuntimeServiceName, ImageServiceName } from '../gen/runtime.v1.js';
import type { Handlers } from '../common/grpc-server.js';
import { lookupService } from '../common/proto-registry.js';
import { unimplemented } from '../common/errors.js';
import type { NodeStatus } from '../sandbox/node-status.js';
import { version } from './runtime/version.js';
import { status } from './runtime/status.js';
import { runtimeConfig, updateRuntimeConfig } from './runtime/runtime-config.js';

export interface CriDeps {
  node: NodeStatus;
}

/** Every method of `serviceName` answering UNIMPLEMENTED, overlaid with the real handlers given. */
function withUnimplemented<H extends object>(serviceName: string, implemented: Partial<H>): H {
  const table: Record<string, unknown> = {};
  for (const m of lookupService(serviceName).methodsArray) {
    table[m.name] = async () => {
      throw unimplemented(`${m.name} is not implemented by crisp yet`);
    };
  }
  return { ...table, ...implemented } as H;
}

export function runtimeHandlers(deps: CriDeps): Handlers<RuntimeServiceMethods> {
  return withUnimplemented<Handlers<RuntimeServiceMethods>>(RuntimeServiceName, {
    Version: (req) => version(req),
    Status: (req) => status(deps.node, req),
    RuntimeConfig: () => runtimeConfig(deps.node),
    UpdateRuntimeConfig: (req) => updateRuntimeConfig(deps.node, req),
  });
}

export function imageHandlers(_deps: CriDeps): Handlers<ImageServiceMethods> {
  return withUnimplemented<Handlers<ImageServiceMethods>>(ImageServiceName, {});
}

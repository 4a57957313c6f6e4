// Shapes shared by the typed gRPC server and client wrappers.
import type { Input } from './proto-registry.js';

export interface MethodShape {
  request: unknown;
  response: unknown;
  requestStream: boolean;
  responseStream: boolean;
}
export type MethodTable<M> = { [K in keyof M]: MethodShape };

export type RequestOf<M extends MethodTable<M>, K extends keyof M> = M[K]['request'];
export type ResponseOf<M extends MethodTable<M>, K extends keyof M> = M[K]['response'];
export type { Input };

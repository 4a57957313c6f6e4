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

/**
 * gRPC status codes (grpc/grpc doc/statuscodes.md). Daemon code takes them from here so that it never
 * loads @grpc/grpc-js (the CLI and the tests still use it).
 */
export const status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusName = keyof typeof status;
export type StatusCode = (typeof status)[StatusName];

const STATUS_NAMES = Object.keys(status) as StatusName[];

/** "NOT_FOUND" for 5; undefined for a code outside 0–16. */
export function statusName(code: number): StatusName | undefined {
  return STATUS_NAMES[code];
}

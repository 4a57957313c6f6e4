// Typed errors that carry their gRPC status code, so every layer can say *what kind* of failure it
// hit and the CRI instrument layer maps it without parsing message text.
import { status, type StatusCode } from './grpc-types.js';

export type ErrorKind =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE'
  | 'UNIMPLEMENTED'
  | 'DEADLINE_EXCEEDED'
  | 'RESOURCE_EXHAUSTED'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'CANCELLED'
  | 'ABORTED'
  | 'INTERNAL';

export class CrispError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = `CrispError(${kind})`;
  }

  get grpcCode(): StatusCode {
    return status[this.kind];
  }
}

export const invalidArgument = (msg: string, cause?: unknown) => new CrispError('INVALID_ARGUMENT', msg, { cause });
export const notFound = (msg: string, cause?: unknown) => new CrispError('NOT_FOUND', msg, { cause });
export const alreadyExists = (msg: string, cause?: unknown) => new CrispError('ALREADY_EXISTS', msg, { cause });
export const failedPrecondition = (msg: string, cause?: unknown) =>
  new CrispError('FAILED_PRECONDITION', msg, { cause });
export const unavailable = (msg: string, cause?: unknown) => new CrispError('UNAVAILABLE', msg, { cause });
export const unimplemented = (msg: string) => new CrispError('UNIMPLEMENTED', msg);
export const internal = (msg: string, cause?: unknown) => new CrispError('INTERNAL', msg, { cause });

export function isCrispError(err: unknown, kind?: ErrorKind): err is CrispError {
  return err instanceof CrispError && (kind === undefined || err.kind === kind);
}

/** A gRPC error from a peer (containerd), as common/grpc-channel.ts (and grpc-js) deliver it. */
export interface GrpcServiceError extends Error {
  code: StatusCode;
  details: string;
}

export function isGrpcError(err: unknown, code?: number): err is GrpcServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<GrpcServiceError>).code === 'number' &&
    typeof (err as Partial<GrpcServiceError>).details === 'string' &&
    (code === undefined || (err as GrpcServiceError).code === code)
  );
}

export const isNotFound = (err: unknown): boolean =>
  isCrispError(err, 'NOT_FOUND') || isGrpcError(err, status.NOT_FOUND);
export const isAlreadyExists = (err: unknown): boolean =>
  isCrispError(err, 'ALREADY_EXISTS') || isGrpcError(err, status.ALREADY_EXISTS);

export function isErrno(err: unknown, code: string): err is NodeJS.ErrnoException {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
export const isENOENT = (err: unknown): boolean => isErrno(err, 'ENOENT');

/** Whether `err`, or an error it wraps (its `cause` chain), is a full disk or an exceeded quota. */
export function isOutOfSpace(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    if (isErrno(e, 'ENOSPC') || isErrno(e, 'EDQUOT')) return true;
  }
  return false;
}

/** The message of anything thrown, for logs and wrapped errors. */
export function errorMessage(err: unknown): string {
  if (isGrpcError(err)) return err.details || err.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Re-throw `err` with `context` prefixed ("pod 3f2a: CNI ADD: …"), keeping its kind; anything that is not
 * already typed becomes INTERNAL (or keeps the peer's gRPC code where it maps to one of ours).
 */
export function withContext(context: string, err: unknown): CrispError {
  if (err instanceof CrispError) return new CrispError(err.kind, `${context}: ${err.message}`, { cause: err });
  if (isGrpcError(err)) {
    const kind = (Object.keys(status) as (keyof typeof status)[]).find((k) => status[k] === err.code);
    const known: ErrorKind[] = ['NOT_FOUND', 'ALREADY_EXISTS', 'FAILED_PRECONDITION', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'CANCELLED'];
    const mapped = known.find((k) => k === kind) ?? 'INTERNAL';
    return new CrispError(mapped, `${context}: ${errorMessage(err)}`, { cause: err });
  }
  return new CrispError('INTERNAL', `${context}: ${errorMessage(err)}`, { cause: err });
}

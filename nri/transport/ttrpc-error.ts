// The one error type of the ttrpc layer. It carries a gRPC status code and, like a grpc-js error,
// a `details` string, so common/errors.ts isGrpcError()/withContext() understand it.
import { status } from '../../common/grpc-types.js';

/**
 * What went wrong:
 * - status: the peer answered with a non-zero status (e.g. 12 UNIMPLEMENTED, or a handler error)
 * - timeout: no answer before the call's timeout (code 4)
 * - closed: the connection closed before the answer (code 14)
 * - protocol: the peer broke framing or sent an undecodable message (code 13); the connection is dropped
 * - oversize: the request is larger than ttrpc allows and was not sent (code 8)
 */
export type TtrpcFailure = 'status' | 'timeout' | 'closed' | 'protocol' | 'oversize';

export class TtrpcError extends Error {
  /** The status message alone (the peer's text for 'status'). */
  readonly details: string;

  constructor(
    readonly failure: TtrpcFailure,
    readonly code: number,
    message: string,
    options?: { cause?: unknown; details?: string },
  ) {
    super(message, options);
    this.name = `TtrpcError(${failure})`;
    this.details = options?.details ?? message;
  }
}

export function isTtrpcError(err: unknown, failure?: TtrpcFailure): err is TtrpcError {
  return err instanceof TtrpcError && (failure === undefined || err.failure === failure);
}

/** "UNIMPLEMENTED" for 12, or the number for codes outside the gRPC set. */
export function codeName(code: number): string {
  const name = (Object.keys(status) as (keyof typeof status)[]).find((k) => status[k] === code);
  return name ?? String(code);
}

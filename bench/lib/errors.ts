// Failures in a benchmark name the runtime, the CRI call and the object, so a bug report can be written
// from the message alone.
import { status } from '@grpc/grpc-js';
import { isGrpcError } from '../../common/errors.js';

export class StepError extends Error {
  constructor(
    readonly runtime: string,
    readonly step: string,
    readonly failure: unknown,
  ) {
    super(`${runtime}: ${step}: ${describeError(failure)}`);
  }
}

export function describeError(err: unknown): string {
  if (isGrpcError(err)) return `${status[err.code] ?? err.code}: ${err.details || err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/** Run `fn`; on failure rethrow with the runtime and step in the message. */
export async function step<T>(runtime: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StepError) throw err;
    throw new StepError(runtime, what, err);
  }
}

// Content verification: a pass-through stream that checks the byte count and digest of what flows through.
import { Transform, type TransformCallback } from 'node:stream';
import type { Hash } from 'node:crypto';
import { CrispError } from '../../common/errors.js';
import { hasherFor, parseDigest } from './digest.js';

/** Content that does not match its descriptor: wrong digest, too short or too long. */
export class ContentMismatchError extends CrispError {
  constructor(
    readonly expectedDigest: string,
    message: string,
  ) {
    super('FAILED_PRECONDITION', message);
  }
}

export const isContentMismatch = (err: unknown): err is ContentMismatchError => err instanceof ContentMismatchError;

export interface VerifyOptions {
  /**
   * For a resumed download: the bytes before `offset` were already hashed into `hash` (a hash of the
   * digest's algorithm that has seen exactly `offset` bytes). The stream then carries bytes from `offset` on.
   */
  hash?: Hash;
  offset?: number;
}

/**
 * A Transform that passes data through unchanged and fails (with ContentMismatchError) if more than `size`
 * bytes arrive, if it ends short, or if the digest differs. `size` < 0 skips the length checks.
 */
export function verifyingStream(expectedDigest: string, size: number, options: VerifyOptions = {}): Transform {
  parseDigest(expectedDigest);
  const hash = options.hash ?? hasherFor(expectedDigest);
  let seen = options.offset ?? 0;
  const algorithm = expectedDigest.slice(0, expectedDigest.indexOf(':'));
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      seen += chunk.length;
      if (size >= 0 && seen > size) {
        cb(new ContentMismatchError(expectedDigest, `${expectedDigest}: more data than the expected ${size} bytes`));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (size >= 0 && seen !== size) {
        cb(new ContentMismatchError(expectedDigest, `${expectedDigest}: content ended after ${seen} of ${size} bytes`));
        return;
      }
      const got = `${algorithm}:${hash.digest('hex')}`;
      if (got !== expectedDigest) {
        cb(new ContentMismatchError(expectedDigest, `digest mismatch: expected ${expectedDigest}, got ${got}`));
        return;
      }
      cb();
    },
  });
}

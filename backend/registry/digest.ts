// Content digests ("sha256:<hex>"): parsing with the algorithms a registry may use, and hashing helpers.
import { createHash, type Hash } from 'node:crypto';
import { invalidArgument } from '../../common/errors.js';

/** Registered algorithms and the length of their lowercase-hex encoding. */
const ENCODED_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

export interface ParsedDigest {
  algorithm: 'sha256' | 'sha384' | 'sha512';
  encoded: string;
}

/** Why `s` is not a usable digest, or undefined when it is. */
export function digestProblem(s: string): string | undefined {
  const colon = s.indexOf(':');
  if (colon <= 0) return 'missing algorithm';
  const algorithm = s.slice(0, colon);
  const encoded = s.slice(colon + 1);
  const want = ENCODED_LENGTH[algorithm];
  if (want === undefined) return `unsupported digest algorithm "${algorithm}"`;
  if (encoded.length !== want) return `${algorithm} digest must have ${want} hex characters, got ${encoded.length}`;
  if (!/^[a-f0-9]+$/.test(encoded)) return 'digest must be lowercase hex';
  return undefined;
}

export function parseDigest(s: string): ParsedDigest {
  const problem = digestProblem(s);
  if (problem) throw invalidArgument(`invalid digest "${s}": ${problem}`);
  const colon = s.indexOf(':');
  return { algorithm: s.slice(0, colon) as ParsedDigest['algorithm'], encoded: s.slice(colon + 1) };
}

export const isDigest = (s: string): boolean => digestProblem(s) === undefined;

/** A fresh hash for the digest's algorithm. */
export function hasherFor(digest: string): Hash {
  return createHash(parseDigest(digest).algorithm);
}

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Digest of `data` in the same algorithm as `like` (so sha512 manifests verify too). */
export function digestOf(data: Buffer, like: string): string {
  const { algorithm } = parseDigest(like);
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

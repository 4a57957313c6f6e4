// Single-use tokens for streaming URLs: unguessable (32 random bytes, base64url), good for one request,
// and gone if not used within the TTL. The store is bounded so a flood of CRI calls cannot grow it
// without limit.
import { randomBytes } from 'node:crypto';
import { CrispError } from '../../common/errors.js';

export const DEFAULT_TOKEN_TTL_MS = 60_000;
export const DEFAULT_MAX_TOKENS = 1000;

export interface TokenStoreOptions {
  ttlMs?: number;
  maxTokens?: number;
  /** Milliseconds clock, replaceable in tests. */
  now?: () => number;
}

export class TokenStore<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();
  private readonly ttlMs: number;
  private readonly maxTokens: number;
  private readonly now: () => number;

  constructor(opts: TokenStoreOptions = {}) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
    this.maxTokens = opts.maxTokens ?? DEFAULT_MAX_TOKENS;
    this.now = opts.now ?? Date.now;
  }

  /** A new token for `value`. RESOURCE_EXHAUSTED when the store is full of live tokens. */
  insert(value: T): string {
    this.sweep();
    if (this.entries.size >= this.maxTokens) {
      throw new CrispError('RESOURCE_EXHAUSTED', `too many pending streaming requests (${this.maxTokens}); try again later`);
    }
    const token = randomBytes(32).toString('base64url');
    this.entries.set(token, { value, expires: this.now() + this.ttlMs });
    return token;
  }

  /** The value, once: a second call, an unknown or an expired token gives undefined. */
  consume(token: string): T | undefined {
    const e = this.entries.get(token);
    if (!e) return undefined;
    this.entries.delete(token);
    return e.expires > this.now() ? e.value : undefined;
  }

  /** The value without using the token up (undefined: unknown or expired). */
  peek(token: string): T | undefined {
    const e = this.entries.get(token);
    return e && e.expires > this.now() ? e.value : undefined;
  }

  get size(): number {
    this.sweep();
    return this.entries.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, e] of this.entries) if (e.expires <= now) this.entries.delete(token);
  }
}

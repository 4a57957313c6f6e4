// At most N reusable members (download processes or worker threads) for one pull: a job takes an idle
// member or starts one while fewer than N run, else waits; a member that ended by itself is dropped and
// replaced at the next acquire. close() ends them all, or hands them over (PoolKind.keep).
import { CrispError } from '../../common/errors.js';

export interface PoolKind<T> {
  /** Starts a member; `gone` is to be called when it ends by itself. */
  start(gone: () => void): T;
  alive(member: T): boolean;
  end(member: T): Promise<unknown>;
  /** At close: whether `member` was taken over (kept for a later pool) instead of being ended. */
  keep?(member: T): boolean;
}

export class ReusablePool<T> {
  private readonly members = new Set<T>();
  private readonly idle: T[] = [];
  private readonly waiting: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly size: number,
    private readonly kind: PoolKind<T>,
  ) {}

  /** Members running, busy or idle. */
  get count(): number {
    return this.members.size;
  }

  /** An idle member, or a new one while fewer than `size` run; throws once `signal` aborts or the pool closes. */
  async acquire(signal: AbortSignal | undefined, cancelled: () => Error, what: string): Promise<T> {
    for (;;) {
      if (signal?.aborted) throw cancelled();
      if (this.closed) throw new CrispError('CANCELLED', `${what}: the pull's downloads are closed`);
      const idle = this.idle.pop();
      if (idle !== undefined && this.kind.alive(idle)) return idle;
      if (idle !== undefined) {
        this.members.delete(idle);
        continue;
      }
      if (this.members.size < this.size) {
        const member: T = this.kind.start(() => this.gone(member));
        this.members.add(member);
        return member;
      }
      await new Promise<void>((wake) => this.waiting.push(wake));
    }
  }

  /** A job is done with `member`: kept for the next one when `reusable`, else ended. */
  release(member: T, reusable: boolean): void {
    if (!this.members.has(member)) return;
    if (reusable && !this.closed) {
      this.idle.push(member);
    } else {
      this.members.delete(member);
      void this.kind.end(member);
    }
    this.waiting.shift()?.();
  }

  /** Wakes the waiters (they throw), then ends every member once `inFlight` (the jobs running on them) settled. */
  async close(inFlight: Promise<unknown> = Promise.resolve()): Promise<void> {
    this.closed = true;
    this.waiting.splice(0).forEach((wake) => wake());
    await inFlight;
    const members = [...this.members];
    this.members.clear();
    this.idle.length = 0;
    await Promise.all(members.map((m) => (this.kind.keep?.(m) ? undefined : this.kind.end(m))));
  }

  private gone(member: T): void {
    if (!this.members.delete(member)) return;
    const i = this.idle.indexOf(member);
    if (i >= 0) this.idle.splice(i, 1);
    this.waiting.shift()?.();
  }
}

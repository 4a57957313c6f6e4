// How long to wait before restarting a child that died: doubling with each death in a row (500 ms,
// 1 s, 2 s, … up to a cap), so a child that cannot start does not spin; but a death after a long
// healthy run starts over at the shortest wait, so a node's sixth containerd crash in a month is not
// met with a 30 s outage.
export class RestartBackoff {
  private inARow = 0;
  private lastAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly baseMs = 250,
    private readonly maxMs = 30_000,
    /** A death this long after the previous restart counts as the first in a row again. */
    private readonly stableMs = 60_000,
  ) {}

  /** The wait before the restart for a death noticed at `now` (ms). */
  next(now: number): number {
    if (now - this.lastAt > this.stableMs) this.inARow = 0;
    this.inARow++;
    this.lastAt = now;
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.inARow, 7));
  }
}

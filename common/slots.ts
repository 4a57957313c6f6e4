// At most N tasks at once; the rest wait in order of arrival.

export class Slots {
  private free: number;
  private readonly queue: (() => void)[] = [];

  constructor(size: number) {
    this.free = Math.max(1, size);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await fn();
    } finally {
      // The slot passes straight to the next waiter, if any.
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    }
  }
}

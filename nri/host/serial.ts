// Runs async sections one at a time, in call order: NRI events reach plugins in the order crisp
// raised them, and a plugin's backlog is flushed between two events, never during one.

export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    // The next section waits for this one to settle, whatever its outcome.
    this.tail = result.catch(() => undefined);
    return result;
  }
}

// A set of synchronous event listeners: one that throws is reported and never stops the others or
// the emitter.

export class Listeners<E> {
  private readonly set = new Set<(event: E) => void>();

  constructor(private readonly onListenerError: (err: unknown) => void) {}

  /** Adds `listener`; the returned function removes it again. */
  add(listener: (event: E) => void): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }

  emit(event: E): void {
    for (const listener of this.set) {
      try {
        listener(event);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }

  get size(): number {
    return this.set.size;
  }
}

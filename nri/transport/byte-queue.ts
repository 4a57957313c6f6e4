// A FIFO of received bytes that hands out exact-length slices, so frame parsers can reassemble
// headers and payloads from arbitrary chunking without re-concatenating on every chunk.

export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Offset of the first unread byte inside chunks[0]. */
  private offset = 0;
  private size = 0;

  /** Number of unread bytes. */
  get length(): number {
    return this.size;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** Removes and returns the next n bytes (n must be <= length). Zero-copy when they sit in one chunk. */
  take(n: number): Buffer {
    if (n > this.size) throw new RangeError(`ByteQueue.take(${n}) with only ${this.size} bytes queued`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    const inFirst = first.length - this.offset;
    if (n <= inFirst) {
      const out = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0]!;
      const avail = head.length - this.offset;
      const step = Math.min(avail, n - filled);
      head.copy(out, filled, this.offset, this.offset + step);
      filled += step;
      this.advance(step);
    }
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.offset = 0;
    this.size = 0;
  }

  private advance(n: number): void {
    this.size -= n;
    this.offset += n;
    while (this.chunks.length > 0 && this.offset >= this.chunks[0]!.length) {
      this.offset -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}

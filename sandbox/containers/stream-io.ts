// What a streaming session (exec, attach) hands the runtime side: the client's streams, terminal sizes
// and a signal for "the client went away". Transport-neutral: the SPDY and WebSocket code in cri/
// adapts its streams to this.
import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { firstEvent } from '../../common/first-event.js';

export interface TerminalSize {
  width: number;
  height: number;
}

/** Terminal sizes as the client reports them; `latest` is the last one seen. */
export class TerminalSizes extends EventEmitter<{ size: [TerminalSize] }> {
  latest: TerminalSize | undefined;

  push(size: TerminalSize): void {
    if (!Number.isInteger(size.width) || !Number.isInteger(size.height) || size.width < 0 || size.height < 0) return;
    if (size.width > 0xffff || size.height > 0xffff) return;
    this.latest = size;
    this.emit('size', size);
  }

  /**
   * Apply the client's sizes with `apply`, newest last: one call in flight at a time, a size that
   * arrives meanwhile replaces any still waiting, and a size equal to the last applied one (`applied`:
   * the size the process started with) is skipped. Concurrent resize calls could reach the terminal
   * out of order and leave it at a stale size. Returns the unsubscribe.
   */
  follow(apply: (size: TerminalSize) => Promise<void>, applied?: TerminalSize): () => void {
    let last = applied;
    let busy = false;
    let waiting: TerminalSize | undefined;
    const same = (a: TerminalSize | undefined, b: TerminalSize) => a !== undefined && a.width === b.width && a.height === b.height;
    const run = async () => {
      busy = true;
      while (waiting) {
        const next = waiting;
        waiting = undefined;
        if (same(last, next)) continue;
        last = next;
        // `apply` reports its own failures; a failed resize must not stop the later ones.
        await apply(next).catch(() => undefined);
      }
      busy = false;
    };
    const onSize = (size: TerminalSize) => {
      waiting = size;
      if (!busy) void run();
    };
    if (this.latest) onSize(this.latest);
    this.on('size', onSize);
    return () => this.off('size', onSize);
  }

  /** The first size, if the client reports one within `timeoutMs`. */
  first(timeoutMs: number): Promise<TerminalSize | undefined> {
    if (this.latest) return Promise.resolve(this.latest);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.off('size', onSize);
        resolve(undefined);
      }, timeoutMs);
      const onSize = (s: TerminalSize) => {
        clearTimeout(timer);
        resolve(s);
      };
      this.once('size', onSize);
    });
  }
}

export interface StreamIO {
  /** The client's input; its end means the client closed stdin. */
  stdin?: Readable;
  stdout?: Writable;
  /** Absent with a tty (the terminal merges both). */
  stderr?: Writable;
  tty: boolean;
  sizes?: TerminalSizes;
  /** Aborts when the client disconnects or the session times out. */
  signal: AbortSignal;
}

/** Writes `data` and resolves once `out` can take more (or is gone). */
export function writeWithBackpressure(out: Writable, data: Buffer): Promise<void> {
  if (out.destroyed || out.writableEnded) return Promise.resolve();
  if (out.write(data)) return Promise.resolve();
  return firstEvent(out, ['drain', 'close']);
}

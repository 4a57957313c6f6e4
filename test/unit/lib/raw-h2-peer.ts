// A raw HTTP/2 peer for the connection tests: writes whatever frames a test builds and collects every
// frame the other side sends (after its client preface, when it is the server's end of the socket).
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { PREFACE } from '../../../common/h2/frames.js';

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Writes frames, collects every frame the other side sends. */
export class RawPeer {
  readonly frames: Frame[] = [];
  /** The client preface as received (readsPreface). */
  preface = Buffer.alloc(0);
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  /** Whether the client preface is still to be read off the socket (a server's end). */
  private prefaceLeft: number;

  constructor(
    readonly socket: Socket,
    opts: { readsPreface?: boolean } = {},
  ) {
    this.prefaceLeft = opts.readsPreface ? PREFACE.length : 0;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      if (this.prefaceLeft > 0) {
        const n = Math.min(this.prefaceLeft, this.buf.length);
        this.preface = Buffer.concat([this.preface, this.buf.subarray(0, n)]);
        this.buf = this.buf.subarray(n);
        this.prefaceLeft -= n;
      }
      while (this.buf.length >= 9) {
        const length = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + length) break;
        this.frames.push({ type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5), payload: this.buf.subarray(9, 9 + length) });
        this.buf = this.buf.subarray(9 + length);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {
      // the server may end the connection; 'close' records it
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs));
  }

  /** Waits until a frame matching `pick` arrived (or fails after 3 s). */
  async next(pick: (f: Frame) => boolean, what: string): Promise<Frame> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const i = this.frames.findIndex(pick);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      if (this.closed || Date.now() > deadline) throw new Error(`no ${what} frame (closed ${this.closed})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  async closedSocket(): Promise<void> {
    const deadline = Date.now() + 3000;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(this.closed, 'the other side ended the connection');
  }
}


// ttrpc framing over one byte stream (a mux logical connection): 10-byte header
// [length u32 BE][stream id u32 BE][type u8][flags u8], then `length` bytes (nri-protocol.md §3).
// One side of a connection only ever receives one message type (a client gets responses, a
// server gets requests); anything else, or a frame over 4 MiB, is a connection error.
import type { Duplex } from 'node:stream';
import { status } from '../../common/grpc-types.js';
import { ByteQueue } from './byte-queue.js';
import { TtrpcError } from './ttrpc-error.js';

export const TTRPC_HEADER_LEN = 10;
export const TTRPC_MAX_PAYLOAD = 4 * 1024 * 1024;
export const TTRPC_TYPE_REQUEST = 1;
export const TTRPC_TYPE_RESPONSE = 2;
export const TTRPC_TYPE_DATA = 3;

export interface TtrpcFrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export function decodeFrameHeader(buf: Buffer): TtrpcFrameHeader {
  return { length: buf.readUInt32BE(0), streamId: buf.readUInt32BE(4), type: buf.readUInt8(8), flags: buf.readUInt8(9) };
}

/** Header and data in one buffer, so the frame goes out as one mux write. */
export function encodeFrame(streamId: number, type: number, flags: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(TTRPC_HEADER_LEN + data.length);
  out.writeUInt32BE(data.length, 0);
  out.writeUInt32BE(streamId, 4);
  out.writeUInt8(type, 8);
  out.writeUInt8(flags, 9);
  out.set(data, TTRPC_HEADER_LEN);
  return out;
}

export interface TtrpcChannelOptions {
  /** Shown in errors, e.g. "plugin 10-logger conn 1 client". */
  name: string;
  /** The only frame type this side accepts (TTRPC_TYPE_RESPONSE for a client, REQUEST for a server). */
  receives: number;
  onFrame(streamId: number, flags: number, data: Buffer): void;
  /** Called once, with why the channel closed. */
  onClose(reason: Error): void;
}

export class TtrpcChannel {
  private readonly rx = new ByteQueue();
  private header: TtrpcFrameHeader | undefined;
  private reason: Error | undefined;

  constructor(
    private readonly conn: Duplex,
    private readonly opts: TtrpcChannelOptions,
  ) {
    conn.on('data', (chunk: Buffer) => this.receive(chunk));
    conn.on('error', (err: Error) => this.close(new Error(`${opts.name}: connection error: ${err.message}`, { cause: err })));
    conn.on('close', () => {
      const why = (conn as { closeReason?: Error }).closeReason;
      this.close(why ?? new Error(`${opts.name}: connection closed`));
    });
    if (conn.destroyed) queueMicrotask(() => this.close(new Error(`${opts.name}: connection already closed`)));
  }

  get closed(): boolean {
    return this.reason !== undefined;
  }

  get closeReason(): Error | undefined {
    return this.reason;
  }

  /**
   * Sends one frame; the caller checks the size first. On a closed channel this does nothing (the
   * close has already failed or will fail whatever waits for an answer).
   */
  send(streamId: number, type: number, data: Uint8Array): void {
    if (this.reason) return;
    if (this.conn.destroyed) {
      // Destroyed but its 'close' event is still queued: close now so callers learn at once.
      this.close((this.conn as { closeReason?: Error }).closeReason ?? new Error(`${this.opts.name}: connection closed`));
      return;
    }
    if (data.length > TTRPC_MAX_PAYLOAD) {
      throw new Error(`${this.opts.name}: refusing to send a ${data.length}-byte frame (limit ${TTRPC_MAX_PAYLOAD})`);
    }
    this.conn.write(encodeFrame(streamId, type, 0, data));
  }

  close(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.rx.clear();
    if (!this.conn.destroyed) this.conn.destroy();
    this.opts.onClose(reason);
  }

  private fail(message: string): void {
    this.close(new TtrpcError('protocol', status.INTERNAL, `${this.opts.name}: ${message}`));
  }

  private receive(chunk: Buffer): void {
    if (this.reason) return;
    this.rx.push(chunk);
    while (!this.reason) {
      if (!this.header) {
        if (this.rx.length < TTRPC_HEADER_LEN) return;
        const h = decodeFrameHeader(this.rx.take(TTRPC_HEADER_LEN));
        if (h.length > TTRPC_MAX_PAYLOAD) {
          return this.fail(`bad frame header: stream ${h.streamId} declares ${h.length} bytes, over the ${TTRPC_MAX_PAYLOAD}-byte limit`);
        }
        if (h.type !== this.opts.receives) {
          return this.fail(`bad frame header: stream ${h.streamId} has message type ${h.type}, expected ${this.opts.receives}`);
        }
        this.header = h;
      }
      if (this.rx.length < this.header.length) return;
      const { streamId, flags, length } = this.header;
      this.header = undefined;
      this.opts.onFrame(streamId, flags, this.rx.take(length));
    }
  }
}

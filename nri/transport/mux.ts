// NRI connection multiplexer: several logical byte streams over one plugin socket (the "trunk").
// Wire format (nri-protocol.md §2): [conn id u32 BE][length u32 BE][length bytes], no open/close
// control frames; frames for a conn id we have not opened are dropped.
import { Duplex } from 'node:stream';
import { ByteQueue } from './byte-queue.js';

export const MUX_HEADER_LEN = 8;
/** Largest frame payload a Go peer writes (ttrpc header + 4 MiB); bigger writes are split. */
export const MUX_MAX_PAYLOAD = 4 * 1024 * 1024 + 10;
/** Runtime calls the plugin's Plugin service on this conn. */
export const PLUGIN_SERVICE_CONN = 1;
/** Plugin calls the runtime's Runtime service on this conn. */
export const RUNTIME_SERVICE_CONN = 2;
/**
 * Go peers read each logical conn through a 4096-byte bufio.Reader and the mux hands over one whole
 * frame per Read, so the frame that starts a message must fit in 4096 bytes (fact sheet §3a).
 */
export const GO_PEER_FIRST_FRAME_LIMIT = 4096;

const MAX_CONN_ID = 0xffffffff;

export interface MuxOptions {
  /** Shown in errors, e.g. "plugin 10-logger". */
  name?: string;
  /**
   * Size of the first frame of each write when the write is larger (then the rest follows in one
   * more frame, split only at MUX_MAX_PAYLOAD). Default GO_PEER_FIRST_FRAME_LIMIT; 0 = one frame per
   * write up to MUX_MAX_PAYLOAD, the plain Go writer behaviour.
   */
  firstFrameLimit?: number;
}

/**
 * Frame sizes for one write of `length` bytes: the Go-peer rule (first frame at most
 * `firstFrameLimit`, the rest in one frame) with every frame capped at MUX_MAX_PAYLOAD.
 */
export function planFrames(length: number, firstFrameLimit: number): number[] {
  const sizes: number[] = [];
  let rest = length;
  if (firstFrameLimit > 0 && rest > firstFrameLimit) {
    sizes.push(firstFrameLimit);
    rest -= firstFrameLimit;
  }
  while (rest > 0) {
    const n = Math.min(rest, MUX_MAX_PAYLOAD);
    sizes.push(n);
    rest -= n;
  }
  return sizes;
}

export function encodeMuxHeader(connId: number, length: number): Buffer {
  const hdr = Buffer.allocUnsafe(MUX_HEADER_LEN);
  hdr.writeUInt32BE(connId, 0);
  hdr.writeUInt32BE(length, 4);
  return hdr;
}

/**
 * One logical connection. Each write() is treated as one upper-layer message (one ttrpc frame), so
 * the Go-peer framing rule applies per write; never split one message over several writes or merge
 * two messages into one write. Readable data arrives as frame payloads, with no message boundaries.
 */
export class MuxConnection extends Duplex {
  /** Why the connection closed (trunk error, peer hang-up, mux closed), once it has. */
  closeReason: Error | undefined;

  constructor(
    private readonly mux: Mux,
    readonly id: number,
  ) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    // Data is pushed as frames arrive; the upper layers consume eagerly.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.mux.writeFrames(this.id, chunk, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.closeReason ??= error ?? new Error(`${this.mux.name}: conn ${this.id} closed locally`);
    this.mux.forget(this);
    callback(error);
  }

  /** Called by the mux: one frame payload for this conn. */
  deliver(payload: Buffer): void {
    if (!this.destroyed) this.push(payload);
  }

  /** Called by the mux when the trunk goes away. */
  shutdown(reason: Error): void {
    this.closeReason ??= reason;
    if (!this.destroyed) {
      this.push(null);
      this.destroy();
    }
  }
}

export class Mux {
  readonly name: string;
  /** Frames received for conn ids that were not open (including reserved id 0). */
  droppedFrames = 0;
  private readonly firstFrameLimit: number;
  private readonly conns = new Map<number, MuxConnection>();
  private readonly rx = new ByteQueue();
  private pending: { connId: number; length: number } | undefined;
  private closeReason: Error | undefined;
  private isClosed = false;
  private readonly closeListeners: ((reason: Error | undefined) => void)[] = [];

  constructor(
    private readonly trunk: Duplex,
    opts: MuxOptions = {},
  ) {
    this.name = opts.name ?? 'nri mux';
    this.firstFrameLimit = opts.firstFrameLimit ?? GO_PEER_FIRST_FRAME_LIMIT;
    trunk.on('data', (chunk: Buffer) => this.receive(chunk));
    trunk.on('error', (err: Error) => this.close(new Error(`${this.name}: trunk error: ${err.message}`, { cause: err })));
    trunk.on('end', () => this.close(new Error(`${this.name}: peer closed the connection`)));
    trunk.on('close', () => this.close(new Error(`${this.name}: connection closed`)));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * The logical connection with this id (the same object on repeated calls). Frames that arrive
   * before their conn is opened are dropped, so open the conns in the same tick the mux is created.
   */
  open(connId: number): MuxConnection {
    if (!Number.isInteger(connId) || connId < 1 || connId > MAX_CONN_ID) {
      throw new RangeError(`${this.name}: conn id ${connId} is invalid (0 is reserved, max ${MAX_CONN_ID})`);
    }
    if (this.isClosed) throw new Error(`${this.name}: cannot open conn ${connId}: ${this.describeClose()}`);
    let conn = this.conns.get(connId);
    if (!conn) {
      conn = new MuxConnection(this, connId);
      this.conns.set(connId, conn);
    }
    return conn;
  }

  /** Called once when the mux closes; the reason is undefined for a plain local close(). */
  onClose(listener: (reason: Error | undefined) => void): void {
    if (this.isClosed) queueMicrotask(() => listener(this.closeReason));
    else this.closeListeners.push(listener);
  }

  /** Closes the trunk and every logical connection. Idempotent; the first reason wins. */
  close(reason?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason = reason;
    const connReason = reason ?? new Error(`${this.name}: closed`);
    for (const conn of [...this.conns.values()]) conn.shutdown(connReason);
    this.conns.clear();
    this.rx.clear();
    this.trunk.destroy();
    for (const l of this.closeListeners.splice(0)) l(reason);
  }

  /** @internal Frames one logical write onto the trunk. */
  writeFrames(connId: number, data: Buffer, callback: (error?: Error | null) => void): void {
    if (this.isClosed || this.trunk.destroyed) {
      callback(new Error(`${this.name}: write on conn ${connId} failed: ${this.describeClose()}`));
      return;
    }
    if (data.length === 0) {
      callback();
      return;
    }
    const sizes = planFrames(data.length, this.firstFrameLimit);
    // Frames from different conns must not interleave; cork keeps this write's frames contiguous and
    // lets the socket send them with one writev.
    this.trunk.cork();
    let offset = 0;
    sizes.forEach((size, i) => {
      this.trunk.write(encodeMuxHeader(connId, size));
      const last = i === sizes.length - 1;
      this.trunk.write(data.subarray(offset, offset + size), last ? (err) => callback(err ?? null) : undefined);
      offset += size;
    });
    this.trunk.uncork();
  }

  /** @internal A logical connection was destroyed locally: drop its later frames. */
  forget(conn: MuxConnection): void {
    if (this.conns.get(conn.id) === conn) this.conns.delete(conn.id);
  }

  private receive(chunk: Buffer): void {
    if (this.isClosed) return;
    this.rx.push(chunk);
    while (!this.isClosed) {
      if (!this.pending) {
        if (this.rx.length < MUX_HEADER_LEN) return;
        const hdr = this.rx.take(MUX_HEADER_LEN);
        const connId = hdr.readUInt32BE(0);
        const length = hdr.readUInt32BE(4);
        if (length > MUX_MAX_PAYLOAD) {
          this.close(new Error(`${this.name}: bad frame header: conn ${connId} frame of ${length} bytes exceeds the ${MUX_MAX_PAYLOAD}-byte limit`));
          return;
        }
        this.pending = { connId, length };
      }
      if (this.rx.length < this.pending.length) return;
      const { connId, length } = this.pending;
      this.pending = undefined;
      const payload = this.rx.take(length);
      const conn = this.conns.get(connId);
      if (!conn) this.droppedFrames++;
      else if (length > 0) conn.deliver(payload);
    }
  }

  private describeClose(): string {
    return this.closeReason ? this.closeReason.message : 'mux closed';
  }
}

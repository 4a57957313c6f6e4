// A SPDY/3.1 session over one socket: streams as Node Duplexes, ping, goaway and flow control.
//
// Flow control: this side keeps per-stream and session receive windows and sends WINDOW_UPDATE as the
// consumer reads, as the spec asks. On the send side it tracks the peer's windows but only waits on
// them once the peer has shown it takes part (it sent a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE
// setting): Go's spdystream, which kubectl and kubelet speak through, never sends WINDOW_UPDATE and
// never waits for one, so a strict sender would stall every stream after 64 KiB. For the same reason a
// peer overrunning our receive window is tolerated, not reset.
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  DEFAULT_WINDOW,
  FrameParser,
  GoAwayStatus,
  RstStatus,
  SettingId,
  SpdyProtocolError,
  encodeFrame,
  headerValue,
  type Frame,
  type HeaderMap,
} from './frames.js';
import { HeaderCompressor, HeaderDecompressor } from './header-compression.js';

/** Largest DATA payload this side sends in one frame. */
const MAX_DATA_CHUNK = 32 * 1024;
/** Consumed bytes after which a WINDOW_UPDATE goes out. */
const ACK_THRESHOLD = DEFAULT_WINDOW / 4;

export type SessionRole = 'server' | 'client';

export interface SpdySessionOptions {
  role: SessionRole;
  /** Bytes that arrived on the socket before the session took it over (after an HTTP upgrade). */
  head?: Buffer;
}

interface SessionEvents {
  stream: [SpdyStream];
  /** A DATA or SYN frame went either way: for idle timeouts. */
  activity: [];
  goaway: [{ lastGoodStreamId: number; status: number }];
  close: [Error | undefined];
}

export class SpdySession extends EventEmitter<SessionEvents> {
  readonly role: SessionRole;
  private readonly parser = new FrameParser();
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private outChain: Promise<void> = Promise.resolve();
  private inChain: Promise<void> = Promise.resolve();
  private nextStreamId: number;
  private nextPingId: number;
  private lastPeerStreamId = 0;
  private readonly pings = new Map<number, () => void>();
  private closedWith: { err: Error | undefined } | undefined;
  private goneAway = false;
  /** Whether the peer speaks flow control (see the file comment). */
  enforcePeerWindows = false;
  /** The peer's session-level window (SPDY/3.1) and per-stream initial window. */
  sendWindow = DEFAULT_WINDOW;
  peerInitialWindow = DEFAULT_WINDOW;
  private readonly windowWaiters = new Set<() => void>();

  constructor(
    readonly socket: Duplex,
    opts: SpdySessionOptions,
  ) {
    super();
    this.role = opts.role;
    this.nextStreamId = opts.role === 'client' ? 1 : 2;
    this.nextPingId = opts.role === 'client' ? 1 : 2;
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('error', (err: Error) => this.finish(err));
    socket.on('close', () => this.finish(undefined));
    socket.on('end', () => this.finish(undefined));
    if (opts.head && opts.head.length > 0) queueMicrotask(() => this.onBytes(opts.head!));
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Open a stream (client side use; a server may open even-numbered streams too). */
  async createStream(headers: HeaderMap, opts: { fin?: boolean } = {}): Promise<SpdyStream> {
    if (this.closed || this.goneAway) throw new Error('SPDY session is closing; cannot open a stream');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new SpdyStream(this, id, headers, true);
    this.streams.set(id, stream);
    await this.enqueue(async () =>
      encodeFrame({ type: 'syn_stream', streamId: id, associatedId: 0, priority: 0, fin: opts.fin ?? false, unidirectional: false, headerBlock: await this.compressor.compress(headers) }),
    );
    this.emit('activity');
    if (opts.fin) stream.markLocalFin();
    return stream;
  }

  /** Round trip time of a PING, in ms. */
  ping(timeoutMs = 10_000): Promise<number> {
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId + 2) % 0x1_0000_0000;
    const started = Date.now();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(new Error(`SPDY ping ${id} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pings.set(id, () => {
        clearTimeout(timer);
        resolve(Date.now() - started);
      });
      this.enqueue(() => encodeFrame({ type: 'ping', id })).catch((err: unknown) => {
        clearTimeout(timer);
        this.pings.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  /** Tell the peer no new streams will be accepted. */
  goAway(status: number = GoAwayStatus.OK): Promise<void> {
    this.goneAway = true;
    return this.enqueue(() => encodeFrame({ type: 'goaway', lastGoodStreamId: this.lastPeerStreamId, status })).catch(() => undefined);
  }

  /** Flush what is queued, then half-close the socket; the session ends when the peer closes too. */
  async end(): Promise<void> {
    await this.outChain;
    if (!this.closed) this.socket.end();
  }

  destroy(err?: Error): void {
    this.socket.destroy();
    this.finish(err);
  }

  // ---- output ----

  /** Queue a frame; frames go out in the order they were queued (header blocks are compressed in
   *  that order too). Resolves once written to the socket and, if it is full, drained. */
  enqueue(build: () => Buffer | Promise<Buffer>): Promise<void> {
    const run = this.outChain.then(async () => {
      if (this.closed) throw new Error('SPDY session closed');
      const buf = await build();
      if (!this.socket.write(buf)) await this.drained();
    });
    this.outChain = run.catch(() => undefined);
    return run;
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  compressHeaders(headers: HeaderMap): Promise<Buffer> {
    return this.compressor.compress(headers);
  }

  noteActivity(): void {
    this.emit('activity');
  }

  /** Resolves when a window may have grown (or the session closed). */
  waitForWindow(): Promise<void> {
    return new Promise<void>((resolve) => this.windowWaiters.add(resolve));
  }

  private wakeWindowWaiters(): void {
    const waiters = [...this.windowWaiters];
    this.windowWaiters.clear();
    for (const w of waiters) w();
  }

  removeStream(id: number): void {
    this.streams.delete(id);
  }

  // ---- input ----

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    let frames: Frame[];
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      this.protocolFailure(err);
      return;
    }
    for (const f of frames) {
      this.inChain = this.inChain.then(() => this.handle(f)).catch((err: unknown) => this.protocolFailure(err));
    }
  }

  private protocolFailure(err: unknown): void {
    if (this.closed) return;
    if (err instanceof SpdyProtocolError && err.streamId !== 0) {
      this.sendReset(err.streamId, RstStatus.PROTOCOL_ERROR);
      return;
    }
    const e = err instanceof Error ? err : new Error(String(err));
    void this.enqueue(() => encodeFrame({ type: 'goaway', lastGoodStreamId: this.lastPeerStreamId, status: GoAwayStatus.PROTOCOL_ERROR }))
      .catch(() => undefined)
      .finally(() => this.destroy(e));
  }

  sendReset(streamId: number, status: number): void {
    void this.enqueue(() => encodeFrame({ type: 'rst_stream', streamId, status })).catch(() => undefined);
  }

  private peerParity(id: number): boolean {
    // Clients open odd streams, servers even ones.
    return this.role === 'server' ? id % 2 === 1 : id % 2 === 0 && id !== 0;
  }

  private async handle(f: Frame): Promise<void> {
    if (this.closed) return;
    switch (f.type) {
      case 'syn_stream': {
        // Inflate first, even for a refused stream: the zlib stream is shared by every header block.
        const headers = await this.decompressor.decompress(f.headerBlock, f.streamId);
        if (!this.peerParity(f.streamId) || f.streamId <= this.lastPeerStreamId) {
          this.sendReset(f.streamId, RstStatus.PROTOCOL_ERROR);
          return;
        }
        this.lastPeerStreamId = f.streamId;
        if (this.goneAway) {
          this.sendReset(f.streamId, RstStatus.REFUSED_STREAM);
          return;
        }
        const stream = new SpdyStream(this, f.streamId, headers, false);
        this.streams.set(f.streamId, stream);
        if (f.fin || f.unidirectional) stream.onRemoteFin();
        this.emit('activity');
        this.emit('stream', stream);
        return;
      }
      case 'syn_reply': {
        const headers = await this.decompressor.decompress(f.headerBlock, f.streamId);
        const stream = this.streams.get(f.streamId);
        if (!stream) return;
        stream.onReply(headers);
        if (f.fin) stream.onRemoteFin();
        return;
      }
      case 'headers': {
        const headers = await this.decompressor.decompress(f.headerBlock, f.streamId);
        const stream = this.streams.get(f.streamId);
        if (!stream) return;
        stream.emit('headers', headers);
        if (f.fin) stream.onRemoteFin();
        return;
      }
      case 'data': {
        const stream = this.streams.get(f.streamId);
        if (!stream) return; // a stream already reset or closed: late frames are dropped
        if (f.data.length > 0) {
          this.emit('activity');
          stream.onData(f.data);
        }
        if (f.fin) stream.onRemoteFin();
        return;
      }
      case 'rst_stream':
        this.streams.get(f.streamId)?.onReset(f.status);
        return;
      case 'settings':
        for (const e of f.entries) {
          if (e.id !== SettingId.INITIAL_WINDOW_SIZE) continue;
          const delta = e.value - this.peerInitialWindow;
          this.peerInitialWindow = e.value;
          this.enforcePeerWindows = true;
          for (const s of this.streams.values()) s.sendWindow += delta;
          this.wakeWindowWaiters();
        }
        return;
      case 'ping': {
        const answered = this.pings.get(f.id);
        if (answered) {
          this.pings.delete(f.id);
          answered();
        } else if (this.peerParity(f.id)) {
          await this.enqueue(() => encodeFrame({ type: 'ping', id: f.id })).catch(() => undefined);
        }
        return;
      }
      case 'goaway':
        this.goneAway = true;
        this.emit('goaway', { lastGoodStreamId: f.lastGoodStreamId, status: f.status });
        return;
      case 'window_update':
        this.enforcePeerWindows = true;
        if (f.streamId === 0) this.sendWindow += f.delta;
        else {
          const s = this.streams.get(f.streamId);
          if (s) s.sendWindow += f.delta;
        }
        this.wakeWindowWaiters();
        return;
      case 'unknown':
        return;
    }
  }

  private finish(err: Error | undefined): void {
    if (this.closedWith) return;
    this.closedWith = { err };
    for (const s of [...this.streams.values()]) s.onSessionClosed();
    this.streams.clear();
    this.wakeWindowWaiters();
    this.compressor.close();
    this.decompressor.close();
    if (!this.socket.destroyed) this.socket.destroy();
    this.emit('close', err);
  }
}

/**
 * One SPDY stream. Readable side: the peer's DATA (ends on its FIN). Writable side: our DATA (`end()`
 * sends FIN). A stream the peer opened must be accepted with `reply()` before data flows back.
 * Events besides the stream ones: 'reply' (headers), 'headers' (headers), 'reset' (RST status).
 */
export class SpdyStream extends Duplex {
  /** Our view of the peer's window for this stream. */
  sendWindow: number;
  private unacked = 0;
  private replied: boolean;
  private replyPromise: Promise<void> | undefined;
  private remoteFin = false;
  private localFin = false;
  private wasReset = false;

  constructor(
    private readonly session: SpdySession,
    readonly id: number,
    readonly headers: HeaderMap,
    readonly initiatedLocally: boolean,
  ) {
    super({ allowHalfOpen: true, autoDestroy: false });
    this.sendWindow = session.peerInitialWindow;
    this.replied = initiatedLocally;
    // Writes on a dead session are dropped in _write; nothing here should crash the daemon.
    this.on('error', () => undefined);
  }

  header(name: string): string {
    return headerValue(this.headers, name);
  }

  get isReset(): boolean {
    return this.wasReset;
  }

  get remoteEnded(): boolean {
    return this.remoteFin;
  }

  /** Accept a stream the peer opened (SYN_REPLY). Idempotent. */
  reply(headers: HeaderMap = {}): Promise<void> {
    if (this.replied) return this.replyPromise ?? Promise.resolve();
    this.replied = true;
    this.replyPromise = this.session
      .enqueue(async () => encodeFrame({ type: 'syn_reply', streamId: this.id, fin: false, headerBlock: await this.session.compressHeaders(headers) }))
      .catch(() => undefined);
    return this.replyPromise;
  }

  /** Abort the stream both ways (RST_STREAM). */
  reset(status: number = RstStatus.CANCEL): void {
    if (this.wasReset) return;
    this.wasReset = true;
    if (!this.session.closed && !(this.localFin && this.remoteFin)) this.session.sendReset(this.id, status);
    this.session.removeStream(this.id);
    if (!this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
    }
    this.destroy();
  }

  markLocalFin(): void {
    this.localFin = true;
    this.maybeDone();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.sendData(chunk).then(
      () => cb(),
      () => cb(),
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.localFin || this.wasReset || this.session.closed) {
      cb();
      return;
    }
    this.localFin = true;
    void (async () => {
      if (!this.replied) await this.reply();
      await this.session.enqueue(() => encodeFrame({ type: 'data', streamId: this.id, fin: true, data: Buffer.alloc(0) })).catch(() => undefined);
      this.maybeDone();
      cb();
    })();
  }

  override _read(): void {
    this.ack(false);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.wasReset && !(this.localFin && this.remoteFin) && !this.session.closed) {
      this.wasReset = true;
      this.session.sendReset(this.id, RstStatus.CANCEL);
    }
    this.session.removeStream(this.id);
    cb(err);
  }

  private async sendData(chunk: Buffer): Promise<void> {
    if (!this.replied) await this.reply();
    let at = 0;
    while (at < chunk.length) {
      if (this.wasReset || this.session.closed || this.localFin) return;
      let room = MAX_DATA_CHUNK;
      if (this.session.enforcePeerWindows) {
        room = Math.min(room, this.sendWindow, this.session.sendWindow);
        if (room <= 0) {
          await this.session.waitForWindow();
          continue;
        }
      }
      const n = Math.min(room, chunk.length - at);
      const data = chunk.subarray(at, at + n);
      this.sendWindow -= n;
      this.session.sendWindow -= n;
      at += n;
      await this.session.enqueue(() => encodeFrame({ type: 'data', streamId: this.id, fin: false, data }));
      this.session.noteActivity();
    }
  }

  /** WINDOW_UPDATEs for what the consumer has taken, once enough has piled up (or `force`). */
  private ack(force: boolean): void {
    if (this.unacked === 0 || this.session.closed) return;
    if (!force && this.unacked < ACK_THRESHOLD) return;
    const delta = this.unacked;
    this.unacked = 0;
    if (!this.remoteFin && !this.wasReset) void this.session.enqueue(() => encodeFrame({ type: 'window_update', streamId: this.id, delta })).catch(() => undefined);
    void this.session.enqueue(() => encodeFrame({ type: 'window_update', streamId: 0, delta })).catch(() => undefined);
  }

  // ---- called by the session ----

  onReply(headers: HeaderMap): void {
    this.emit('reply', headers);
  }

  onData(data: Buffer): void {
    if (this.remoteFin || this.wasReset) return;
    this.unacked += data.length;
    if (this.push(data)) this.ack(false);
  }

  onRemoteFin(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    this.ack(true);
    this.push(null);
    this.maybeDone();
  }

  onReset(status: number): void {
    if (this.wasReset) return;
    this.wasReset = true;
    this.session.removeStream(this.id);
    this.emit('reset', status);
    if (!this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
    }
    this.destroy();
  }

  onSessionClosed(): void {
    if (!this.remoteFin) {
      this.remoteFin = true;
      this.push(null);
    }
    this.destroy();
  }

  private maybeDone(): void {
    if (this.localFin && this.remoteFin) this.session.removeStream(this.id);
  }
}

// What both ends of an HTTP/2 connection (RFC 9113) share: frames read off the socket, header blocks
// (HEADERS + CONTINUATION, HPACK-decoded), SETTINGS, PING, DATA with flow control both ways,
// WINDOW_UPDATE, RST_STREAM and GOAWAY, and the frames of one event-loop turn in one socket write.
// server-connection.ts and client-connection.ts add who opens streams and what a header block means.
// Neither side pushes (ENABLE_PUSH 0) nor prioritises (PRIORITY is read and ignored).
import type { Socket } from 'node:net';
import {
  ACK,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  FRAME_HEADER_SIZE,
  Flag,
  FrameType,
  MAX_FRAME_LIMIT,
  MAX_WINDOW,
  Setting,
  frame,
  goawayFrame,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
} from './frames.js';
import { CompressionError, HpackDecoder, type DecodedBlock } from './hpack.js';

/** Receive window this side opens for the connection and for each stream. */
const RECEIVE_WINDOW = 1 << 20;
/** Consumed octets that make this side send a WINDOW_UPDATE (a quarter of the window). */
const WINDOW_UPDATE_AT = RECEIVE_WINDOW / 4;
/** The largest header block (all its frames, HPACK-coded) and decoded header list accepted. */
export const MAX_HEADER_BLOCK = 1 << 20;
/** Above this many octets, queued frames go out through cork/uncork rather than one copied buffer. */
const CONCAT_LIMIT = 64 * 1024;

/** A protocol violation that ends the whole connection with GOAWAY. */
class ConnectionError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** What a stream tells its owner; `close` is called once, last. */
export interface StreamEvents {
  data(chunk: Buffer): void;
  close(): void;
}

/** What a stream asks of its connection (both sides' connections are one). */
export interface StreamConnection {
  // Method syntax: each side's connection takes its own kind of stream.
  flushStream(stream: H2Stream): void;
  resetStream(stream: H2Stream, code: ErrorCode): void;
}

/** One stream's state, as both sides keep it, and what either side does with its own stream. */
export class H2Stream<L extends StreamEvents = StreamEvents, C extends StreamConnection = StreamConnection> {
  listener: L | undefined;
  /** The peer sent END_STREAM. */
  remoteEnded = false;
  /** This side sent (or queued) END_STREAM. */
  localEnded = false;
  closed = false;
  /** The RST_STREAM code that closed the stream, when the peer reset it. */
  rstCode: ErrorCode | undefined;
  sendWindow: number;
  /** What the peer may still send on this stream before a WINDOW_UPDATE. */
  recvWindow = RECEIVE_WINDOW;
  /** Octets of the peer's body consumed and not yet given back by WINDOW_UPDATE. */
  unacked = 0;
  /**
   * Whether the owner says what it consumed (see ClientStream.consumed): the stream's window is then
   * given back as the owner reads, so a peer cannot send more than a window ahead of it. Otherwise
   * what arrives counts as consumed.
   */
  paced = false;
  /** DATA waiting for flow-control window. */
  queue: Buffer[] = [];
  private drainWaiters: (() => void)[] | undefined;

  constructor(
    protected readonly conn: C,
    readonly id: number,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  /** Queues a DATA payload; true when all queued data went out (no flow-control wait). */
  write(data: Buffer): boolean {
    if (this.closed || this.localEnded) return true;
    this.queue.push(data);
    this.conn.flushStream(this);
    return this.queue.length === 0;
  }

  /** Resets the stream (RST_STREAM) and closes it. */
  reset(code: ErrorCode = ErrorCode.CANCEL): void {
    this.conn.resetStream(this, code);
  }

  /** Resolves when the queued data went out, or the stream closed. */
  drained(): Promise<void> {
    if (this.queue.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /** The connection's part: queued data is gone or was sent. */
  notifyDrained(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = undefined;
    if (waiters) for (const w of waiters) w();
  }
}

export interface PendingBlock {
  stream: number;
  endStream: boolean;
  parts: Buffer[];
  size: number;
}

export abstract class Connection<S extends H2Stream> {
  protected readonly streams = new Map<number, S>();
  private readonly decoder = new HpackDecoder();
  private leftover: Buffer | undefined;
  /** Octets of the peer's preface still to be checked (the server reads the client's). */
  private prefaceLeft: Buffer | undefined;
  private settingsSeen = false;
  private pendingBlock: PendingBlock | undefined;
  /** Streams with data waiting for window. */
  private readonly blocked = new Set<S>();
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvWindow = RECEIVE_WINDOW;
  private connUnacked = 0;
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrame = DEFAULT_MAX_FRAME;
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  /** GOAWAY sent or received: no new streams; the socket ends when the last stream closes. */
  protected goingAway = false;
  protected ended = false;
  /** The socket closed (for whatever reason). */
  protected socketClosed = false;

  constructor(
    protected readonly socket: Socket,
    opts: { peerPreface?: Buffer; ownPreface?: Buffer; settings: readonly (readonly [Setting, number])[] },
  ) {
    this.prefaceLeft = opts.peerPreface;
    socket.setNoDelay?.(true);
    if (opts.ownPreface) this.send(opts.ownPreface);
    this.send(settingsFrame([[Setting.ENABLE_PUSH, 0], [Setting.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW], ...opts.settings]));
    this.send(windowUpdateFrame(0, RECEIVE_WINDOW - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.socketError(err));
    socket.on('close', () => this.closed());
  }

  /** The highest stream id the peer may have opened or that this side opened, for GOAWAY. */
  protected abstract lastStreamId(): number;
  /** Whether `id` names a stream not opened yet (frames on it are protocol errors). */
  protected abstract isIdle(id: number): boolean;
  /** A complete, decoded header block for stream `block.stream`. */
  protected abstract onHeaderBlock(block: PendingBlock, decoded: DecodedBlock): void;
  /** The peer sent END_STREAM on `stream` (with DATA or trailers). */
  protected abstract remoteEnd(stream: S): void;
  /** `stream`'s queue is sent: what ends this side (trailers, END_STREAM) goes now. */
  protected abstract queueSent(stream: S): void;
  /** GOAWAY from the peer: no stream above `last` was or will be processed. */
  protected abstract onGoaway(last: number, code: ErrorCode): void;
  /** The socket failed (a refused connect, a reset); 'close' follows. */
  protected socketError(_err: Error): void {
    // a broken connection: 'close' follows and closes its streams
  }
  /** The socket closed; every stream has been closed. */
  protected abstract onClosed(): void;

  /** Graceful end: GOAWAY, running streams finish, then the socket ends. */
  goaway(): void {
    if (this.goingAway || this.ended) return;
    this.goingAway = true;
    this.send(goawayFrame(this.lastStreamId(), ErrorCode.NO_ERROR));
    if (this.streams.size === 0) this.endSocket();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    let data = this.leftover ? Buffer.concat([this.leftover, chunk]) : chunk;
    this.leftover = undefined;
    try {
      if (this.prefaceLeft) {
        const want = this.prefaceLeft;
        const n = Math.min(want.length, data.length);
        if (!want.subarray(0, n).equals(data.subarray(0, n))) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 client preface');
        this.prefaceLeft = n === want.length ? undefined : want.subarray(n);
        data = data.subarray(n);
      }
      let pos = 0;
      while (data.length - pos >= FRAME_HEADER_SIZE && !this.ended) {
        const length = (data[pos]! << 16) | (data[pos + 1]! << 8) | data[pos + 2]!;
        if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} octets above SETTINGS_MAX_FRAME_SIZE`);
        if (data.length - pos < FRAME_HEADER_SIZE + length) break;
        const type = data[pos + 3]!;
        const flags = data[pos + 4]!;
        const stream = data.readUInt32BE(pos + 5) & 0x7fffffff;
        const payload = data.subarray(pos + FRAME_HEADER_SIZE, pos + FRAME_HEADER_SIZE + length);
        pos += FRAME_HEADER_SIZE + length;
        this.onFrame(type, flags, stream, payload);
      }
      if (pos < data.length && !this.ended) this.leftover = data.subarray(pos);
      this.giveBackWindow();
    } catch (err) {
      // A protocol violation ends this connection with its code; anything else (a fault in a stream's
      // owner) ends it too, as INTERNAL_ERROR: one connection is lost, never the process.
      if (err instanceof ConnectionError) this.fail(err.code, err.message);
      else this.fail(ErrorCode.INTERNAL_ERROR, 'internal error');
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the preface must end with SETTINGS');
    if (this.pendingBlock && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    switch (type) {
      case FrameType.DATA:
        return this.onData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.onHeaders(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) return this.resetId(streamId, ErrorCode.FRAME_SIZE_ERROR);
        return;
      case FrameType.RST_STREAM:
        return this.onReset(streamId, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE with push disabled');
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING payload is not 8 octets');
        if ((flags & ACK) === 0) this.send(frame(FrameType.PING, ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'GOAWAY payload shorter than 8 octets');
        return this.onGoaway(payload.readUInt32BE(0) & 0x7fffffff, payload.readUInt32BE(4) as ErrorCode);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, streamId, payload);
      default:
        // unknown frame types are ignored (RFC 9113, 4.1)
        return;
    }
  }

  /** The payload without its padding (PADDED flag); `extra` octets of other fields follow the pad length. */
  private unpad(flags: number, payload: Buffer, extra: number): Buffer {
    if ((flags & Flag.PADDED) === 0) return payload.subarray(extra);
    if (payload.length < 1 + extra) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'padded frame too short');
    const pad = payload[0]!;
    if (pad > payload.length - 1 - extra) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'padding longer than the frame');
    return payload.subarray(1 + extra, payload.length - pad);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    if (this.isIdle(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
    // Flow control counts the whole payload, padding included.
    this.connRecvWindow -= payload.length;
    this.connUnacked += payload.length;
    if (this.connRecvWindow < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    const body = this.unpad(flags, payload, 0);
    const stream = this.streams.get(streamId);
    // A stream already closed: the peer's data in flight is dropped.
    if (!stream) return;
    if (stream.remoteEnded) return this.resetStream(stream, ErrorCode.STREAM_CLOSED);
    stream.recvWindow -= payload.length;
    if (stream.recvWindow < 0) return this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR);
    // A paced owner gives back the body as it reads it; padding counts as consumed at once.
    stream.unacked += stream.paced ? payload.length - body.length : payload.length;
    if (body.length > 0) stream.listener?.data(body);
    if (flags & Flag.END_STREAM && !stream.closed) {
      stream.remoteEnded = true;
      this.remoteEnd(stream);
    }
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'HEADERS on stream 0');
    const fragment = this.unpad(flags, payload, flags & Flag.PRIORITY ? 5 : 0);
    const block: PendingBlock = { stream: streamId, endStream: (flags & Flag.END_STREAM) !== 0, parts: [fragment], size: fragment.length };
    if (flags & Flag.END_HEADERS) this.onBlock(block);
    else this.pendingBlock = block;
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.pendingBlock;
    if (!block || block.stream !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without its HEADERS');
    block.parts.push(payload);
    block.size += payload.length;
    if (block.size > MAX_HEADER_BLOCK) throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, 'header block too large');
    if (flags & Flag.END_HEADERS) {
      this.pendingBlock = undefined;
      this.onBlock(block);
    }
  }

  private onBlock(block: PendingBlock): void {
    let decoded;
    try {
      // Every block is decoded, even one for a stream that is gone: the HPACK table is shared.
      decoded = this.decoder.decode(block.parts.length === 1 ? block.parts[0]! : Buffer.concat(block.parts));
    } catch (err) {
      if (err instanceof CompressionError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    this.onHeaderBlock(block, decoded);
  }

  private onReset(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM payload is not 4 octets');
    if (this.isIdle(streamId)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    const stream = this.streams.get(streamId);
    if (!stream) return;
    stream.rstCode = payload.readUInt32BE(0) as ErrorCode;
    this.closeStream(stream);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS payload not a multiple of 6');
    this.settingsSeen = true;
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === Setting.ENABLE_PUSH && value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH not 0 or 1');
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'stream window above 2^31-1');
        }
      }
      if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_LIMIT) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE: this side's encoder never indexes; MAX_HEADER_LIST_SIZE: its header blocks
      // are a few short fields; MAX_CONCURRENT_STREAMS: see the client. Unknown settings are ignored.
      this.onSetting(id, value);
    }
    this.send(frame(FrameType.SETTINGS, ACK, 0));
    this.flushBlocked();
    this.settingsReceived();
  }

  /** A setting the subclass may care about (after the shared ones were applied). */
  protected onSetting(_id: number, _value: number): void {
    // the shared settings are all this side needs unless a subclass says otherwise
  }

  /** The peer's SETTINGS were applied (and acknowledged). */
  protected settingsReceived(): void {
    // nothing to do unless a subclass waits for them
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE payload is not 4 octets');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.connSendWindow += increment;
      if (this.connSendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      return this.flushBlocked();
    }
    const stream = this.streams.get(streamId);
    if (!stream) return;
    if (increment === 0) return this.resetStream(stream, ErrorCode.PROTOCOL_ERROR);
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR);
    this.flushStream(stream);
  }

  /** WINDOW_UPDATEs for what was consumed, once a quarter of a window is used. */
  protected giveBackWindow(): void {
    if (this.connUnacked >= WINDOW_UPDATE_AT) {
      this.send(windowUpdateFrame(0, this.connUnacked));
      this.connRecvWindow += this.connUnacked;
      this.connUnacked = 0;
    }
    for (const s of this.streams.values()) {
      if (s.unacked >= WINDOW_UPDATE_AT && !s.remoteEnded) {
        this.send(windowUpdateFrame(s.id, s.unacked));
        s.recvWindow += s.unacked;
        s.unacked = 0;
      }
    }
  }

  /** A header block as HEADERS (+ CONTINUATION) frames of at most the peer's frame size. */
  protected sendBlock(streamId: number, block: Buffer, endStream: boolean): void {
    let rest = block;
    let type = FrameType.HEADERS;
    const endFlag = endStream ? Flag.END_STREAM : 0;
    for (;;) {
      const piece = rest.subarray(0, this.peerMaxFrame);
      rest = rest.subarray(piece.length);
      const last = rest.length === 0;
      this.send(frame(type, (type === FrameType.HEADERS ? endFlag : 0) | (last ? Flag.END_HEADERS : 0), streamId, piece));
      if (last) break;
      type = FrameType.CONTINUATION;
    }
  }

  /** Sends what the windows allow of `stream`'s queue; once it is empty, what ends this side. */
  flushStream(stream: S): void {
    while (stream.queue.length > 0 && !stream.closed) {
      const head = stream.queue[0]!;
      const n = Math.min(head.length, this.connSendWindow, stream.sendWindow, this.peerMaxFrame);
      if (n <= 0 && head.length > 0) {
        this.blocked.add(stream);
        return;
      }
      const header = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
      writeFrameHeader(header, 0, n, FrameType.DATA, 0, stream.id);
      this.send(header);
      if (n > 0) this.send(n === head.length ? head : head.subarray(0, n));
      this.connSendWindow -= n;
      stream.sendWindow -= n;
      if (n === head.length) stream.queue.shift();
      else stream.queue[0] = head.subarray(n);
    }
    this.blocked.delete(stream);
    if (stream.closed) return;
    this.queueSent(stream);
    stream.notifyDrained();
  }

  private flushBlocked(): void {
    for (const s of [...this.blocked]) {
      if (this.connSendWindow <= 0) return;
      this.flushStream(s);
    }
  }

  resetStream(stream: S, code: ErrorCode): void {
    if (stream.closed) return;
    this.send(rstStreamFrame(stream.id, code));
    this.closeStream(stream);
  }

  protected resetId(id: number, code: ErrorCode): void {
    const stream = this.streams.get(id);
    if (stream) return this.resetStream(stream, code);
    this.send(rstStreamFrame(id, code));
  }

  protected closeStream(stream: S): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.queue.length = 0;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    stream.notifyDrained();
    stream.listener?.close();
    if (this.goingAway && this.streams.size === 0) this.endSocket();
  }

  /** A connection error: GOAWAY with its code, then the socket ends. */
  protected fail(code: ErrorCode, message: string): void {
    if (this.ended) return;
    this.send(goawayFrame(this.lastStreamId(), code, message));
    this.goingAway = true;
    this.endSocket();
  }

  protected endSocket(): void {
    if (this.ended) return;
    this.ended = true;
    this.flush();
    this.socket.end();
  }

  private closed(): void {
    this.socketClosed = true;
    this.ended = true;
    for (const s of [...this.streams.values()]) this.closeStream(s);
    this.onClosed();
  }

  protected send(buf: Buffer): void {
    if (this.socket.destroyed) return;
    this.out.push(buf);
    this.outBytes += buf.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushNow);
    }
  }

  private readonly flushNow = (): void => this.flush();

  /** Writes what is queued; then drops the connection if the peer leaves more than `maxUnread` unread. */
  private flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    if (out.length === 0 || this.socket.destroyed || this.socket.writableEnded) {
      this.out = [];
      this.outBytes = 0;
      return;
    }
    if (out.length === 1) this.socket.write(out[0]!);
    else if (this.outBytes <= CONCAT_LIMIT) this.socket.write(Buffer.concat(out, this.outBytes));
    else {
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
    this.out = [];
    this.outBytes = 0;
    if (this.socket.writableLength > this.maxUnread()) this.socket.destroy();
  }

  /** Octets written and not taken by the peer after which the connection is dropped. */
  protected maxUnread(): number {
    return Number.POSITIVE_INFINITY;
  }
}

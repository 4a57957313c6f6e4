// The server side of one HTTP/2 connection (RFC 9113) for a gRPC server: the client preface and
// SETTINGS, request header blocks (HEADERS + CONTINUATION, HPACK), DATA with flow control both ways,
// PING, RST_STREAM, WINDOW_UPDATE and GOAWAY. Streams are opened by the client only (no server push,
// no priorities: PRIORITY is read and ignored). Each stream hands its request to a StreamListener and
// sends its answer as a header block, DATA and a trailer block; frames a connection sends within one
// turn of the event loop go out in one socket write.
import type { Socket } from 'node:net';
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ACK,
  ErrorCode,
  FRAME_HEADER_SIZE,
  Flag,
  FrameType,
  MAX_FRAME_LIMIT,
  MAX_WINDOW,
  PREFACE,
  Setting,
  frame,
  goawayFrame,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
  writeFrameHeader,
} from './frames.js';
import { CompressionError, HpackDecoder, type HeaderMap } from './hpack.js';

/** What a stream tells its owner. Each is called at most once, `close` last. */
export interface StreamListener {
  /** A piece of the request body. */
  data(chunk: Buffer): void;
  /** The client sent END_STREAM: the request is complete. */
  end(): void;
  /** The stream is gone: answered, reset by the client, or its connection ended. */
  close(): void;
}

/** Receive window this side opens for the connection and for each stream. */
const RECEIVE_WINDOW = 1 << 20;
/** Consumed octets that make this side send a WINDOW_UPDATE (a quarter of the window). */
const WINDOW_UPDATE_AT = RECEIVE_WINDOW / 4;
/** The largest header block (all its frames, HPACK-coded) and decoded header list a request may have. */
const MAX_HEADER_BLOCK = 1 << 20;
/** Open streams one connection may hold; more are refused (REFUSED_STREAM). */
const MAX_OPEN_STREAMS = 10_000;
/**
 * Octets written and not yet taken by the client after which the connection is dropped: a client that
 * sends (PINGs, requests) without reading the answers would otherwise grow crispd's memory without end.
 * Flow control bounds what one answer queues; this bounds the rest.
 */
const MAX_UNREAD = 64 * 1024 * 1024;
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

export class ServerStream {
  listener: StreamListener | undefined;
  /** The client sent END_STREAM. */
  remoteEnded = false;
  /** This side sent (or queued) END_STREAM. */
  localEnded = false;
  closed = false;
  sendWindow: number;
  /** Octets of the request body received and not yet given back by WINDOW_UPDATE. */
  unacked = 0;
  /** DATA waiting for flow-control window, then the trailer block that ends the stream. */
  queue: Buffer[] = [];
  trailers: Buffer | undefined;
  private drainWaiters: (() => void)[] | undefined;

  constructor(
    private readonly conn: ServerConnection,
    readonly id: number,
    readonly headers: HeaderMap,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  /** Response headers; `endStream` makes them a trailers-only answer. */
  respond(block: Buffer, endStream: boolean): void {
    if (this.closed || this.localEnded) return;
    this.conn.sendHeaders(this, block, endStream);
  }

  /** Queues a DATA payload; true when all queued data went out (no flow-control wait). */
  write(data: Buffer): boolean {
    if (this.closed || this.localEnded) return true;
    this.queue.push(data);
    this.conn.flushStream(this);
    return this.queue.length === 0;
  }

  /** Resolves when the queued data went out, or the stream closed. */
  drained(): Promise<void> {
    if (this.queue.length === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /** Ends the answer with `trailers`, after the data still queued. */
  end(trailers: Buffer): void {
    if (this.closed || this.localEnded) return;
    if (this.queue.length === 0) this.conn.sendHeaders(this, trailers, true);
    else {
      this.trailers = trailers;
      this.localEnded = true;
    }
  }

  /** Resets the stream (RST_STREAM) and closes it. */
  reset(code: ErrorCode = ErrorCode.CANCEL): void {
    this.conn.resetStream(this, code);
  }

  /** The connection's part: queued data is gone or was sent. */
  notifyDrained(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = undefined;
    if (waiters) for (const w of waiters) w();
  }
}

export interface ServerConnectionOptions {
  onStream(stream: ServerStream): void;
  /** Unread octets that end the connection (default 64 MiB). */
  maxUnread?: number;
  /** The socket closed; every stream has been closed before. */
  onClose(): void;
}

interface PendingBlock {
  stream: number;
  endStream: boolean;
  parts: Buffer[];
  size: number;
}

export class ServerConnection {
  private readonly streams = new Map<number, ServerStream>();
  private readonly decoder = new HpackDecoder();
  private leftover: Buffer | undefined;
  private prefaceSeen = false;
  private settingsSeen = false;
  private lastStream = 0;
  private pendingBlock: PendingBlock | undefined;
  /** Streams with data waiting for window. */
  private readonly blocked = new Set<ServerStream>();
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvWindow = RECEIVE_WINDOW;
  private connUnacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  /** GOAWAY sent: no new streams; the socket ends when the last stream closes. */
  private goingAway = false;
  private ended = false;

  constructor(
    private readonly socket: Socket,
    private readonly options: ServerConnectionOptions,
  ) {
    socket.setNoDelay?.(true);
    this.send(
      settingsFrame([
        [Setting.ENABLE_PUSH, 0],
        [Setting.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW],
        [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK],
      ]),
    );
    this.send(windowUpdateFrame(0, RECEIVE_WINDOW - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => {
      // a broken connection: 'close' follows and closes its streams
    });
    socket.on('close', () => this.closed());
  }

  /** Graceful end: GOAWAY, running streams finish, then the socket ends. */
  goaway(): void {
    if (this.goingAway || this.ended) return;
    this.goingAway = true;
    this.send(goawayFrame(this.lastStream, ErrorCode.NO_ERROR));
    if (this.streams.size === 0) this.endSocket();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    let data = this.leftover ? Buffer.concat([this.leftover, chunk]) : chunk;
    this.leftover = undefined;
    try {
      if (!this.prefaceSeen) {
        if (data.length < PREFACE.length) {
          if (!PREFACE.subarray(0, data.length).equals(data)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 client preface');
          this.leftover = data;
          return;
        }
        if (!PREFACE.equals(data.subarray(0, PREFACE.length))) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 client preface');
        this.prefaceSeen = true;
        data = data.subarray(PREFACE.length);
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
      // owner) ends it too, as INTERNAL_ERROR: one connection is lost, never the daemon.
      if (err instanceof ConnectionError) this.fail(err.code, err.message);
      else this.fail(ErrorCode.INTERNAL_ERROR, 'internal error');
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the client preface must end with SETTINGS');
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
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING payload is not 8 octets');
        if ((flags & ACK) === 0) this.send(frame(FrameType.PING, ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        // The client leaves: it ends the socket itself; streams it started still get their answers.
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
        return;
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
    if (streamId > this.lastStream) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
    // Flow control counts the whole payload, padding included.
    this.connRecvWindow -= payload.length;
    this.connUnacked += payload.length;
    if (this.connRecvWindow < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    const body = this.unpad(flags, payload, 0);
    const stream = this.streams.get(streamId);
    // A stream already answered and closed: the client's data in flight is dropped.
    if (!stream) return;
    if (stream.remoteEnded) return this.resetStream(stream, ErrorCode.STREAM_CLOSED);
    stream.unacked += payload.length;
    if (stream.unacked > RECEIVE_WINDOW) return this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR);
    if (body.length > 0) stream.listener?.data(body);
    if (flags & Flag.END_STREAM) this.remoteEnd(stream);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
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
    const id = block.stream;
    const existing = this.streams.get(id);
    if (existing) {
      // Trailers from the client: they end its side of the stream.
      if (!block.endStream || existing.remoteEnded) return this.resetStream(existing, ErrorCode.PROTOCOL_ERROR);
      return this.remoteEnd(existing);
    }
    if (id <= this.lastStream) return; // a stream already closed: nothing to open
    this.lastStream = id;
    if (this.goingAway) return this.resetId(id, ErrorCode.REFUSED_STREAM);
    if (this.streams.size >= MAX_OPEN_STREAMS) return this.resetId(id, ErrorCode.REFUSED_STREAM);
    if (decoded.listSize > MAX_HEADER_BLOCK) return this.resetId(id, ErrorCode.ENHANCE_YOUR_CALM);
    const stream = new ServerStream(this, id, decoded.headers, this.peerInitialWindow);
    this.streams.set(id, stream);
    this.options.onStream(stream);
    if (block.endStream && !stream.closed) this.remoteEnd(stream);
  }

  private onReset(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM payload is not 4 octets');
    if (streamId > this.lastStream) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    const stream = this.streams.get(streamId);
    if (stream) this.closeStream(stream);
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
      // HEADER_TABLE_SIZE: this side's encoder never indexes; MAX_CONCURRENT_STREAMS: it opens none;
      // MAX_HEADER_LIST_SIZE: its header blocks are a few short fields. Unknown settings are ignored.
    }
    this.send(frame(FrameType.SETTINGS, ACK, 0));
    this.flushBlocked();
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
  private giveBackWindow(): void {
    if (this.connUnacked >= WINDOW_UPDATE_AT) {
      this.send(windowUpdateFrame(0, this.connUnacked));
      this.connRecvWindow += this.connUnacked;
      this.connUnacked = 0;
    }
    for (const s of this.streams.values()) {
      if (s.unacked >= WINDOW_UPDATE_AT && !s.remoteEnded) {
        this.send(windowUpdateFrame(s.id, s.unacked));
        s.unacked = 0;
      }
    }
  }

  private remoteEnd(stream: ServerStream): void {
    stream.remoteEnded = true;
    stream.listener?.end();
    if (stream.localEnded && stream.queue.length === 0 && !stream.trailers) this.closeStream(stream);
  }

  sendHeaders(stream: ServerStream, block: Buffer, endStream: boolean): void {
    let rest = block;
    let type = FrameType.HEADERS;
    const endFlag = endStream ? Flag.END_STREAM : 0;
    for (;;) {
      const piece = rest.subarray(0, this.peerMaxFrame);
      rest = rest.subarray(piece.length);
      const last = rest.length === 0;
      this.send(frame(type, (type === FrameType.HEADERS ? endFlag : 0) | (last ? Flag.END_HEADERS : 0), stream.id, piece));
      if (last) break;
      type = FrameType.CONTINUATION;
    }
    if (!endStream) return;
    stream.localEnded = true;
    stream.trailers = undefined;
    if (stream.remoteEnded) return this.closeStream(stream);
    // Answered before the request was complete: the client need not send the rest.
    this.send(rstStreamFrame(stream.id, ErrorCode.NO_ERROR));
    this.closeStream(stream);
  }

  flushStream(stream: ServerStream): void {
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
    if (stream.trailers) this.sendHeaders(stream, stream.trailers, true);
    stream.notifyDrained();
  }

  private flushBlocked(): void {
    for (const s of [...this.blocked]) {
      if (this.connSendWindow <= 0) return;
      this.flushStream(s);
    }
  }

  resetStream(stream: ServerStream, code: ErrorCode): void {
    if (stream.closed) return;
    this.send(rstStreamFrame(stream.id, code));
    this.closeStream(stream);
  }

  private resetId(id: number, code: ErrorCode): void {
    const stream = this.streams.get(id);
    if (stream) return this.resetStream(stream, code);
    this.send(rstStreamFrame(id, code));
  }

  private closeStream(stream: ServerStream): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.queue.length = 0;
    stream.trailers = undefined;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    stream.notifyDrained();
    stream.listener?.close();
    if (this.goingAway && this.streams.size === 0) this.endSocket();
  }

  /** A connection error: GOAWAY with its code, then the socket ends. */
  private fail(code: ErrorCode, message: string): void {
    if (this.ended) return;
    this.send(goawayFrame(this.lastStream, code, message));
    this.goingAway = true;
    this.endSocket();
  }

  private endSocket(): void {
    if (this.ended) return;
    this.ended = true;
    this.flush();
    this.socket.end();
  }

  private closed(): void {
    this.ended = true;
    for (const s of [...this.streams.values()]) this.closeStream(s);
    this.options.onClose();
  }

  private send(buf: Buffer): void {
    if (this.socket.destroyed) return;
    this.out.push(buf);
    this.outBytes += buf.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushNow);
    }
  }

  private readonly flushNow = (): void => this.flush();

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
    if (this.socket.writableLength > (this.options.maxUnread ?? MAX_UNREAD)) this.socket.destroy();
  }
}

// The server side of one HTTP/2 connection (RFC 9113) for a gRPC server: the client preface and
// SETTINGS, request header blocks (HEADERS + CONTINUATION, HPACK), DATA with flow control both ways,
// PING, RST_STREAM, WINDOW_UPDATE and GOAWAY. Streams are opened by the client only (no server push,
// no priorities: PRIORITY is read and ignored). Each stream hands its request to a StreamListener and
// sends its answer as a header block, DATA and a trailer block; frames a connection sends within one
// turn of the event loop go out in one socket write.
import type { Socket } from 'node:net';
import { ErrorCode, PREFACE, Setting, rstStreamFrame } from './frames.js';
import type { DecodedBlock, HeaderMap } from './hpack.js';
import { Connection, H2Stream, MAX_HEADER_BLOCK, type PendingBlock } from './connection.js';

/** What a stream tells its owner. Each is called at most once, `close` last. */
export interface StreamListener {
  /** A piece of the request body. */
  data(chunk: Buffer): void;
  /** The client sent END_STREAM: the request is complete. */
  end(): void;
  /** The stream is gone: answered, reset by the client, or its connection ended. */
  close(): void;
}

/** Open streams one connection may hold; more are refused (REFUSED_STREAM). */
const MAX_OPEN_STREAMS = 10_000;
/**
 * Octets written and not yet taken by the client after which the connection is dropped: a client that
 * sends (PINGs, requests) without reading the answers would otherwise grow crispd's memory without end.
 * Flow control bounds what one answer queues; this bounds the rest.
 */
const MAX_UNREAD = 64 * 1024 * 1024;

export class ServerStream extends H2Stream<StreamListener, ServerConnection> {
  /** The trailer block that ends the answer once the queued data is sent. */
  trailers: Buffer | undefined;

  constructor(
    conn: ServerConnection,
    id: number,
    readonly headers: HeaderMap,
    sendWindow: number,
  ) {
    super(conn, id, sendWindow);
  }

  /** Response headers; `endStream` makes them a trailers-only answer. */
  respond(block: Buffer, endStream: boolean): void {
    if (this.closed || this.localEnded) return;
    this.conn.sendHeaders(this, block, endStream);
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
}

export interface ServerConnectionOptions {
  onStream(stream: ServerStream): void;
  /** Unread octets that end the connection (default 64 MiB). */
  maxUnread?: number;
  /** The socket closed; every stream has been closed before. */
  onClose(): void;
}

export class ServerConnection extends Connection<ServerStream> {
  private lastStream = 0;

  constructor(
    socket: Socket,
    private readonly options: ServerConnectionOptions,
  ) {
    super(socket, { peerPreface: PREFACE, settings: [[Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK]] });
  }

  protected lastStreamId(): number {
    return this.lastStream;
  }

  protected isIdle(id: number): boolean {
    return id > this.lastStream;
  }

  protected onHeaderBlock(block: PendingBlock, decoded: DecodedBlock): void {
    const id = block.stream;
    if (id % 2 === 0) return this.fail(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${id}`);
    const existing = this.streams.get(id);
    if (existing) {
      // Trailers from the client: they end its side of the stream.
      if (!block.endStream || existing.remoteEnded) return this.resetStream(existing, ErrorCode.PROTOCOL_ERROR);
      existing.remoteEnded = true;
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
    if (block.endStream && !stream.closed) {
      stream.remoteEnded = true;
      this.remoteEnd(stream);
    }
  }

  protected onGoaway(): void {
    // The client leaves: it ends the socket itself; streams it started still get their answers.
  }

  protected onClosed(): void {
    this.options.onClose();
  }

  protected override maxUnread(): number {
    return this.options.maxUnread ?? MAX_UNREAD;
  }

  protected remoteEnd(stream: ServerStream): void {
    stream.listener?.end();
    if (stream.localEnded && stream.queue.length === 0 && !stream.trailers) this.closeStream(stream);
  }

  protected queueSent(stream: ServerStream): void {
    if (stream.trailers) this.sendHeaders(stream, stream.trailers, true);
  }

  sendHeaders(stream: ServerStream, block: Buffer, endStream: boolean): void {
    this.sendBlock(stream.id, block, endStream);
    if (!endStream) return;
    stream.localEnded = true;
    stream.trailers = undefined;
    if (stream.remoteEnded) return this.closeStream(stream);
    // Answered before the request was complete: the client need not send the rest.
    this.send(rstStreamFrame(stream.id, ErrorCode.NO_ERROR));
    this.closeStream(stream);
  }

  protected override closeStream(stream: ServerStream): void {
    stream.trailers = undefined;
    super.closeStream(stream);
  }
}

// The client side of one HTTP/2 connection (RFC 9113) for a gRPC client (common/grpc-channel.ts): the
// preface and SETTINGS, requests as header blocks (HPACK, literal fields) and DATA, answers as a header
// block, DATA and a trailer block (or one trailers-only block). Streams are opened by this side only, odd
// ids from 1; frame handling and flow control are the shared ones (connection.ts).
import type { Socket } from 'node:net';
import { ErrorCode, Flag, FrameType, PREFACE, Setting, frame } from './frames.js';
import type { DecodedBlock, HeaderMap } from './hpack.js';
import { Connection, H2Stream, type PendingBlock } from './connection.js';

/** What a request's stream tells its owner: headers (response, then trailers), data, close last. */
export interface ResponseListener {
  /** A header block of the answer: the response headers first, then the trailers (`end` set). */
  headers(headers: HeaderMap, end: boolean): void;
  data(chunk: Buffer): void;
  /** The stream is gone: answered, reset (rstCode), or its connection ended. */
  close(): void;
}

/** The most stream ids one connection hands out (2^31 - 1 is the last odd id); then it goes away. */
const LAST_STREAM_ID = 2 ** 31 - 1;

export class ClientStream extends H2Stream<ResponseListener, ClientConnection> {
  /** END_STREAM goes out once the queued data is sent. */
  endAfterQueue = false;
  /** The request's header block until it is sent: set while it waits for the peer's stream limit. */
  opening: { block: Buffer; endStream: boolean } | undefined;

  /** Its HEADERS wait for the peer's stream limit. */
  get held(): boolean {
    return this.opening !== undefined;
  }

  /** Half-close: END_STREAM after the data still queued. */
  end(): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    this.endAfterQueue = true;
    this.conn.flushStream(this);
  }

  /** A paced stream's owner read `n` octets of the body: the peer may send that much more. */
  consumed(n: number): void {
    if (this.closed || n <= 0) return;
    this.unacked += n;
    this.conn.windowConsumed();
  }
}

export interface ClientConnectionOptions {
  /** The peer's SETTINGS arrived: the connection is up. */
  onReady?(): void;
  /** GOAWAY from the peer: no new stream will be taken. */
  onGoaway?(code: ErrorCode): void;
  /** The socket failed (a refused connect, a reset). */
  onError?(err: Error): void;
  /** The socket closed; every stream has been closed before. */
  onClose(): void;
}

export class ClientConnection extends Connection<ClientStream> {
  /** What broke the socket, if something did (a refused connect, a reset). */
  error: Error | undefined;
  private nextId = 1;
  private ready = false;
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS; requests above it wait (none: no limit). */
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  /** Requests whose HEADERS wait for the peer's stream limit, oldest first. */
  private readonly waiting: ClientStream[] = [];

  constructor(
    socket: Socket,
    private readonly options: ClientConnectionOptions,
  ) {
    super(socket, { ownPreface: PREFACE, settings: [] });
  }

  /** Whether new requests can go on this connection. */
  get usable(): boolean {
    return !this.goingAway && !this.ended && this.nextId <= LAST_STREAM_ID;
  }

  /**
   * Opens a stream with the request's header block (`endStream`: a request without body; `paced`: the
   * owner says what of the answer it consumed, see H2Stream.paced). Above the
   * peer's stream limit the HEADERS wait for a stream to close; the stream exists (and can be reset) at once.
   */
  request(block: Buffer, endStream: boolean, listener: ResponseListener, paced = false): ClientStream {
    if (!this.usable) throw new Error('the connection is closing');
    const id = this.nextId;
    this.nextId += 2;
    const stream = new ClientStream(this, id, this.peerInitialWindow);
    stream.listener = listener;
    stream.paced = paced;
    if (endStream) stream.localEnded = true;
    // In id order: nothing overtakes a held request. (Counted before the stream joins the open ones.)
    const room = this.waiting.length === 0 && (this.peerMaxStreams === Number.POSITIVE_INFINITY || this.openCount() < this.peerMaxStreams);
    stream.opening = { block, endStream };
    this.streams.set(id, stream);
    if (room) this.open(stream);
    else this.waiting.push(stream);
    return stream;
  }

  /** Sends a stream's HEADERS (and what it queued meanwhile). */
  private open(stream: ClientStream): void {
    const opening = stream.opening;
    stream.opening = undefined;
    if (!opening || stream.closed) return;
    this.sendBlock(stream.id, opening.block, opening.endStream);
    this.flushStream(stream);
  }

  /** Held requests go, as far as the peer's stream limit allows. */
  private openHeld(): void {
    while (this.waiting.length > 0 && this.openCount() < this.peerMaxStreams) {
      this.open(this.waiting.shift()!);
    }
  }

  /** Streams the peer counts as open (not those whose HEADERS wait). */
  private openCount(): number {
    let n = 0;
    for (const s of this.streams.values()) if (!s.held) n++;
    return n;
  }

  protected lastStreamId(): number {
    // GOAWAY from a client names the last stream the server opened: a client opens none.
    return 0;
  }

  protected isIdle(id: number): boolean {
    return id % 2 === 1 && id >= this.nextId;
  }

  protected onHeaderBlock(block: PendingBlock, decoded: DecodedBlock): void {
    if (block.stream % 2 === 0 || this.isIdle(block.stream)) return this.fail(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${block.stream}`);
    const stream = this.streams.get(block.stream);
    if (!stream) return; // a stream already closed (this side reset it): its answer is dropped
    if (stream.remoteEnded) return this.resetStream(stream, ErrorCode.STREAM_CLOSED);
    // An informational (1xx) block comes before the real response headers; gRPC has none to tell.
    const status = decoded.headers[':status'];
    if (typeof status === 'string' && status.startsWith('1') && !block.endStream) return;
    stream.listener?.headers(decoded.headers, block.endStream);
    if (block.endStream && !stream.closed) {
      stream.remoteEnded = true;
      this.remoteEnd(stream);
    }
  }

  protected remoteEnd(stream: ClientStream): void {
    // The answer is complete. A request body not yet sent in full is not needed any more.
    if (!stream.localEnded || stream.queue.length > 0) return this.resetStream(stream, ErrorCode.NO_ERROR);
    this.closeStream(stream);
  }

  protected queueSent(stream: ClientStream): void {
    if (!stream.endAfterQueue || stream.held) return;
    stream.endAfterQueue = false;
    this.send(frame(FrameType.DATA, Flag.END_STREAM, stream.id));
    if (stream.remoteEnded) this.closeStream(stream);
  }

  protected override onSetting(id: number, value: number): void {
    if (id !== Setting.MAX_CONCURRENT_STREAMS) return;
    this.peerMaxStreams = value;
    this.openHeld();
  }

  /** A paced stream's body was read: a WINDOW_UPDATE goes once a quarter of its window is. */
  windowConsumed(): void {
    this.giveBackWindow();
  }

  protected onGoaway(last: number, code: ErrorCode): void {
    this.goingAway = true;
    // Streams above `last` were not processed: they end as refused (the caller may retry them).
    for (const s of [...this.streams.values()]) {
      if (s.id > last) {
        s.rstCode = ErrorCode.REFUSED_STREAM;
        this.closeStream(s);
      }
    }
    this.options.onGoaway?.(code);
    if (this.streams.size === 0) this.endSocket();
  }

  protected override socketError(err: Error): void {
    this.error ??= err;
    this.options.onError?.(err);
  }

  /** Whether the socket is gone: streams still open then were dropped, not answered. */
  get dropped(): boolean {
    return this.socketClosed;
  }

  protected onClosed(): void {
    this.options.onClose();
  }

  protected override closeStream(stream: ClientStream): void {
    if (stream.closed) return;
    if (stream.held) this.waiting.splice(this.waiting.indexOf(stream), 1);
    super.closeStream(stream);
    // A stream closed: a held request may go now.
    this.openHeld();
  }

  /** A stream whose HEADERS never went closes quietly: the server never saw it (a reset would be a protocol error). */
  override resetStream(stream: ClientStream, code: ErrorCode): void {
    if (stream.held) return this.closeStream(stream);
    super.resetStream(stream, code);
  }

  override flushStream(stream: ClientStream): void {
    // Nothing of a held request goes before its HEADERS.
    if (stream.held) return;
    super.flushStream(stream);
  }

  /** The peer's first SETTINGS arrived. */
  protected override settingsReceived(): void {
    if (this.ready) return;
    this.ready = true;
    this.options.onReady?.();
  }

  /** Let the streams in flight finish, then end the socket; new requests are refused. */
  close(): void {
    if (this.goingAway || this.ended) return;
    this.goingAway = true;
    if (this.streams.size === 0) this.endSocket();
  }

  /** Whether the socket keeps the process alive. */
  setRef(ref: boolean): void {
    if (ref) this.socket.ref();
    else this.socket.unref();
  }
}

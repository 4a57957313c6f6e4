// The WebSocket front end: the Kubernetes channel subprotocols (see ws-channels.ts) for exec, attach
// and port-forward, on top of the `ws` package.
import type { IncomingMessage } from 'node:http';
import { Duplex, PassThrough, Writable } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { TerminalSizes, type StreamingRuntime } from '../../sandbox/streaming.js';
import { ResizeDecoder } from './resize.js';
import { encodeStatus } from './status.js';
import { runRemoteCommand, type RemoteCommandTarget } from './remote-command.js';
import {
  Channel,
  ChannelFrameError,
  PORT_FORWARD_WS_PROTOCOLS,
  REMOTE_COMMAND_WS_PROTOCOLS,
  decodeChannelMessage,
  encodeChannelMessage,
  parseProtocolHeader,
  pickWsProtocol,
  portPrefix,
  type ChannelProtocol,
} from './ws-channels.js';
import type { LiveSession, SessionLimits } from './spdy-handlers.js';

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? '').toLowerCase() === 'websocket' && /(^|,)\s*upgrade\s*(,|$)/i.test(req.headers.connection ?? '');
}

function httpReply(socket: Duplex, status: number, reason: string, body: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** One WebSocket carrying numbered channels: inputs as Readables, outputs as Writables. */
export class WsChannelConnection {
  private readonly inputs = new Map<number, PassThrough>();
  private readonly abort = new AbortController();
  private readonly idle: NodeJS.Timeout | undefined;

  constructor(
    readonly ws: WebSocket,
    readonly protocol: ChannelProtocol,
    idleTimeoutMs: number,
    private readonly log: Logger,
  ) {
    if (idleTimeoutMs > 0) {
      this.idle = setTimeout(() => {
        log.info({ idleTimeoutMs }, 'streaming session idle for too long; closing it');
        ws.terminate();
      }, idleTimeoutMs);
      this.idle.unref();
    }
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(toBuffer(data), !isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', () => undefined);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  private touch(): void {
    this.idle?.refresh();
  }

  /** The stream of what the client sends on `channel`. */
  input(channel: number): PassThrough {
    let p = this.inputs.get(channel);
    if (!p) {
      p = new PassThrough();
      this.inputs.set(channel, p);
    }
    return p;
  }

  /** A Writable whose writes go out on `channel` (in order, each write acknowledged once sent). */
  output(channel: number): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.send(channel, chunk).then(() => cb(), () => cb());
      },
    });
  }

  send(channel: number, data: Buffer): Promise<void> {
    if (this.ws.readyState !== this.ws.OPEN) return Promise.resolve();
    this.touch();
    return new Promise((resolve) => this.ws.send(encodeChannelMessage(channel, data, this.protocol.base64), () => resolve()));
  }

  private onMessage(message: Buffer, isText: boolean): void {
    if (message.length === 0) return;
    let frame: { channel: number; data: Buffer };
    try {
      frame = decodeChannelMessage(message, isText, this.protocol.base64);
    } catch (err) {
      this.log.debug({ err: err instanceof ChannelFrameError ? err.message : errorMessage(err) }, 'bad WebSocket channel message dropped');
      return;
    }
    this.touch();
    if (frame.channel === Channel.CLOSE && this.protocol.closeSignal) {
      // v5: the client finished writing the channel named in the payload.
      const which = frame.data[0];
      if (which !== undefined) this.inputs.get(which)?.end();
      return;
    }
    const input = this.inputs.get(frame.channel);
    if (input && !input.writableEnded) input.write(frame.data);
  }

  private onClose(): void {
    if (this.idle) clearTimeout(this.idle);
    for (const p of this.inputs.values()) if (!p.writableEnded) p.end();
    this.abort.abort();
  }

  /** A normal close (1000): clients read it as the end of every stream. */
  close(): Promise<void> {
    if (this.ws.readyState === this.ws.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
      setTimeout(() => this.ws.terminate(), 10_000).unref();
    });
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Upgrades to a WebSocket with the subprotocol chosen from `known`; undefined after an error reply. */
export async function acceptWebSocket(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  known: readonly ChannelProtocol[],
): Promise<{ ws: WebSocket; protocol: ChannelProtocol } | undefined> {
  const offered = parseProtocolHeader(req.headers['sec-websocket-protocol']);
  const protocol = pickWsProtocol(offered, known);
  if (!protocol) {
    httpReply(socket, 403, 'Forbidden', `requested protocol(s) are not supported: [${offered.join(' ')}]; supports [${known.map((p) => p.name).filter(Boolean).join(' ')}]\n`);
    return undefined;
  }
  chosen.set(req, protocol.name);
  const ws = await new Promise<WebSocket>((resolve) => wss.handleUpgrade(req, socket, head, resolve));
  return { ws, protocol };
}

const chosen = new WeakMap<IncomingMessage, string>();

export function createWsServer(): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 16 * 1024 * 1024,
    // The subprotocol was picked (and refused when none fits) before the upgrade.
    handleProtocols: (_offered, req) => chosen.get(req) || false,
  });
}

/** Exec or attach over WebSocket. */
export async function serveWsRemoteCommand(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: RemoteCommandTarget,
  runtime: StreamingRuntime,
  limits: SessionLimits,
  log: Logger,
): Promise<LiveSession | undefined> {
  const accepted = await acceptWebSocket(wss, req, socket, head, REMOTE_COMMAND_WS_PROTOCOLS);
  if (!accepted) return undefined;
  const conn = new WsChannelConnection(accepted.ws, accepted.protocol, limits.idleTimeoutMs, log);
  const stdout = target.stdout ? conn.output(Channel.STDOUT) : undefined;
  const stderr = target.stderr && !target.tty ? conn.output(Channel.STDERR) : undefined;
  // An empty first message on the lowest writable channel tells the client the session is up.
  void conn.send(stdout ? Channel.STDOUT : stderr ? Channel.STDERR : Channel.ERROR, Buffer.alloc(0));
  let sizes: TerminalSizes | undefined;
  if (target.tty) {
    sizes = new TerminalSizes();
    const decoder = new ResizeDecoder();
    const s = sizes;
    conn.input(Channel.RESIZE).on('data', (c: Buffer) => decoder.push(c).forEach((sz) => s.push(sz)));
  }
  const done = runRemoteCommand(
    runtime,
    target,
    {
      ...(target.stdin ? { stdin: conn.input(Channel.STDIN) } : {}),
      ...(stdout ? { stdout } : {}),
      ...(stderr ? { stderr } : {}),
      ...(sizes ? { sizes } : {}),
      signal: conn.signal,
      writeStatus: async (status) => {
        const bytes = encodeStatus(status, accepted.protocol.jsonStatus);
        if (bytes.length > 0) await conn.send(Channel.ERROR, bytes);
      },
      finish: () => conn.close(),
    },
    log,
  ).catch((err: unknown) => {
    log.warn({ err: errorMessage(err) }, 'WebSocket streaming session failed');
    accepted.ws.terminate();
  });
  return { destroy: () => accepted.ws.terminate(), done };
}

/** The ports of a WebSocket port-forward: the PortForward request's, else the `port` query values. */
export function wsPortForwardPorts(requested: number[], url: URL): number[] | string {
  if (requested.length > 0) return requested;
  const ports: number[] = [];
  for (const value of url.searchParams.getAll('port')) {
    for (const p of value.split(',')) {
      if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) return `invalid port "${p}"`;
      ports.push(Number(p));
    }
  }
  return ports.length > 0 ? ports : 'query parameter "port" is required';
}

/** Port-forward over WebSocket: one connection per port for the session, data on channel 2i and
 *  errors on 2i+1, each channel starting with the port number (uint16, little endian). */
export async function serveWsPortForward(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: { podId: string; ports: number[] },
  runtime: StreamingRuntime,
  limits: SessionLimits,
  log: Logger,
): Promise<LiveSession | undefined> {
  const url = new URL(req.url ?? '/', 'http://streaming.invalid');
  const ports = wsPortForwardPorts(target.ports, url);
  if (typeof ports === 'string') {
    httpReply(socket, 400, 'Bad Request', `${ports}\n`);
    return undefined;
  }
  const accepted = await acceptWebSocket(wss, req, socket, head, PORT_FORWARD_WS_PROTOCOLS);
  if (!accepted) return undefined;
  const conn = new WsChannelConnection(accepted.ws, accepted.protocol, limits.idleTimeoutMs, log);
  const done = (async () => {
    await Promise.all(
      ports.map(async (port, i) => {
        const dataCh = 2 * i;
        const errCh = 2 * i + 1;
        await conn.send(dataCh, portPrefix(port));
        await conn.send(errCh, portPrefix(port));
        const input = conn.input(dataCh);
        const output = conn.output(dataCh);
        // This channel protocol has no half-close: once the pod's side is done, so is the client's,
        // which lets the relay finish.
        output.once('finish', () => input.end());
        const stream = Duplex.from({ readable: input, writable: output });
        try {
          await runtime.portForward(target.podId, port, stream, conn.signal);
        } catch (err) {
          await conn.send(errCh, Buffer.from(`error forwarding port ${port} to pod ${target.podId}: ${errorMessage(err)}`));
        }
      }),
    );
    await conn.close();
  })().catch((err: unknown) => {
    log.warn({ err: errorMessage(err) }, 'WebSocket port-forward session failed');
    accepted.ws.terminate();
  });
  return { destroy: () => accepted.ws.terminate(), done };
}

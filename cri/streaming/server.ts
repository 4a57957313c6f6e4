// The streaming server behind CRI Exec, Attach and PortForward: those calls only hand out a URL
// (http[s]://ADDR:PORT/{exec|attach|portforward}/<token>); the client then connects here and upgrades
// to SPDY/3.1 or WebSocket. A token is good for one connection within its TTL; a bad, expired or
// reused one gets a bare 404. Sessions close after an idle period and when the server stops.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocketServer } from 'ws';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import type { StreamingRuntime } from '../../sandbox/streaming.js';
import { TokenStore, DEFAULT_TOKEN_TTL_MS } from './tokens.js';
import type { AttachTarget, ExecTarget } from './remote-command.js';
import type { LiveSession, SessionLimits } from './spdy-handlers.js';
import { trackStreamingSession } from '../../common/operation-metrics.js';

export interface PortForwardTarget {
  kind: 'portforward';
  podId: string;
  /** Ports the PortForward request named; empty = any (the client names them per stream). */
  ports: number[];
}

export type StreamingTarget = ExecTarget | AttachTarget | PortForwardTarget;

export interface StreamingServerOptions {
  address: string;
  /** 0 = a free port. */
  port: number;
  /** PEM certificate and key: serve https and hand out https URLs. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  idleTimeoutMs: number;
  tokenTtlMs?: number;
  streamCreationTimeoutMs?: number;
  runtime: StreamingRuntime;
  log: Logger;
}

const ROUTE = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]{1,128})\/?$/;

export class StreamingServer {
  private readonly tokens: TokenStore<StreamingTarget>;
  private readonly server: Server;
  /** Created with the first WebSocket session. */
  private wss: WebSocketServer | undefined;
  private readonly sessions = new Set<LiveSession>();
  private readonly limits: SessionLimits;
  private base = '';

  constructor(private readonly opts: StreamingServerOptions) {
    this.tokens = new TokenStore({ ttlMs: opts.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS });
    this.limits = { idleTimeoutMs: opts.idleTimeoutMs, streamCreationTimeoutMs: opts.streamCreationTimeoutMs ?? 30_000 };
    const onRequest = (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res);
    this.server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : createHttpServer(onRequest);
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.onUpgrade(req, socket, head).catch((err: unknown) => {
        opts.log.warn({ err: errorMessage(err) }, 'streaming upgrade failed');
        socket.destroy();
      });
    });
    this.server.on('clientError', (_err, socket: Duplex) => socket.destroy());
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.address, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
    this.base = `${this.opts.tls ? 'https' : 'http'}://${host}:${addr.port}`;
    this.opts.log.info({ url: this.base }, 'streaming server listening');
  }

  /** scheme://host:port of the server (after start). */
  get baseUrl(): string {
    return this.base;
  }

  /** A single-use URL for `target`. */
  urlFor(target: StreamingTarget): string {
    if (!this.base) throw new Error('the streaming server is not started');
    return `${this.base}/${target.kind}/${this.tokens.insert(target)}`;
  }

  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Stop listening and end every session (their processes are killed by the session code). */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.destroy();
    this.server.closeAllConnections();
    await Promise.race([Promise.all([...this.sessions].map((s) => s.done)), new Promise((r) => setTimeout(r, 5000).unref())]);
    this.wss?.close();
    await closed;
  }

  /**
   * The target a path's token stands for; undefined: answer 404. Only an upgrade (`consume`) uses the
   * token up: a plain request (a probe, a client without upgrade headers) leaves it for the real one.
   */
  private take(req: IncomingMessage, consume: boolean): StreamingTarget | undefined {
    if (req.method !== 'GET' && req.method !== 'POST') return undefined;
    const path = (req.url ?? '').split('?')[0] ?? '';
    const m = ROUTE.exec(path);
    if (!m) return undefined;
    const target = consume ? this.tokens.consume(m[2]!) : this.tokens.peek(m[2]!);
    return target && target.kind === m[1] ? target : undefined;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const target = this.take(req, false);
    if (!target) {
      res.writeHead(404, { 'Content-Length': '0' }).end();
      return;
    }
    res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' }).end('unable to upgrade: missing upgrade headers in request\n');
  }

  private async onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => undefined);
    const target = this.take(req, true);
    if (!target) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const { runtime, log } = this.opts;
    // The session code (SPDY framing, the ws package) loads with the first session: an idle crispd
    // serves none.
    const [spdy, wsh] = await Promise.all([import('./spdy-handlers.js'), import('./ws-handlers.js')]);
    const ws = wsh.isWebSocketUpgrade(req);
    const slog = log.child({ session: target.kind, transport: ws ? 'websocket' : 'spdy' });
    let live: LiveSession | undefined;
    if (target.kind === 'portforward') {
      live = ws
        ? await wsh.serveWsPortForward((this.wss ??= wsh.createWsServer()), req, socket, head, target, runtime, this.limits, slog)
        : spdy.serveSpdyPortForward(req, socket, head, target, runtime, this.limits, slog);
    } else {
      live = ws
        ? await wsh.serveWsRemoteCommand((this.wss ??= wsh.createWsServer()), req, socket, head, target, runtime, this.limits, slog)
        : spdy.serveSpdyRemoteCommand(req, socket, head, target, runtime, this.limits, slog);
    }
    if (!live) return;
    const session = live;
    this.sessions.add(session);
    trackStreamingSession(target.kind, session.done);
    void session.done.finally(() => this.sessions.delete(session));
  }
}

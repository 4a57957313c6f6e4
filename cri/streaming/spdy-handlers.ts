// The SPDY/3.1 front end, as kubectl and the API server speak it to a kubelet streaming server: an HTTP
// Upgrade with X-Stream-Protocol-Version negotiation, then one SPDY stream per channel, named by its
// `streamType` header (exec/attach) or by `streamType` + `port` + `requestID` (port-forward).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { TerminalSizes, type StreamingRuntime } from '../../sandbox/streaming.js';
import { SpdySession, type SpdyStream } from './spdy/session.js';
import { GoAwayStatus, RstStatus } from './spdy/frames.js';
import { ResizeDecoder } from './resize.js';
import { encodeStatus } from './status.js';
import { runRemoteCommand, type RemoteCommandTarget } from './remote-command.js';

export const REMOTE_COMMAND_SPDY_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];
export const PORT_FORWARD_SPDY_PROTOCOLS = ['portforward.k8s.io'];

export interface SessionLimits {
  /** Close a session after this long without data either way. */
  idleTimeoutMs: number;
  /** How long the client has to open the streams a session needs. */
  streamCreationTimeoutMs: number;
  /** How long a finished session waits for the client to close the connection. */
  closeGraceMs?: number;
}

/** A live session the server can end on shutdown. */
export interface LiveSession {
  destroy(): void;
  done: Promise<void>;
}

function httpReply(socket: Duplex, status: number, reason: string, body: string, headers: Record<string, string[]> = {}): void {
  const lines = [`HTTP/1.1 ${status} ${reason}`, 'Content-Type: text/plain; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
  for (const [k, vs] of Object.entries(headers)) for (const v of vs) lines.push(`${k}: ${v}`);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

/** Comma-separated values of a header that may appear several times. */
function headerValues(req: IncomingMessage, name: string): string[] {
  const raw = req.headersDistinct[name.toLowerCase()] ?? [];
  return raw.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

export function isSpdyUpgrade(req: IncomingMessage): boolean {
  const connection = (req.headers.connection ?? '').toLowerCase();
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  return connection.includes('upgrade') && upgrade.includes('spdy/3.1');
}

/**
 * Negotiates the subprotocol (the first of the client's, in its order, that the server knows) and
 * switches the connection to SPDY. undefined when it answered with an error instead.
 */
export function upgradeToSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, supported: string[]): { protocol: string; session: SpdySession } | undefined {
  if (!isSpdyUpgrade(req)) {
    httpReply(socket, 400, 'Bad Request', 'unable to upgrade: missing upgrade headers in request\n');
    return undefined;
  }
  const offered = headerValues(req, 'x-stream-protocol-version');
  if (offered.length === 0) {
    httpReply(socket, 400, 'Bad Request', 'unable to upgrade: X-Stream-Protocol-Version is required\n');
    return undefined;
  }
  const protocol = offered.find((p) => supported.includes(p));
  if (!protocol) {
    httpReply(socket, 403, 'Forbidden', `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(' ')}], server accepts [${supported.join(' ')}]\n`, {
      'X-Accepted-Stream-Protocol-Versions': supported,
    });
    return undefined;
  }
  socket.write(['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', `X-Stream-Protocol-Version: ${protocol}`, '', ''].join('\r\n'));
  if ('setNoDelay' in socket && typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
  return { protocol, session: new SpdySession(socket, { role: 'server', head }) };
}

/** Closes the session after an idle period (no DATA either way); the timer restarts on activity. */
function watchIdle(session: SpdySession, idleTimeoutMs: number, log: Logger): void {
  if (idleTimeoutMs <= 0) return;
  const timer = setTimeout(() => {
    log.info({ idleTimeoutMs }, 'streaming session idle for too long; closing it');
    session.destroy();
  }, idleTimeoutMs);
  timer.unref();
  session.on('activity', () => timer.refresh());
  session.on('close', () => clearTimeout(timer));
}

/** Ends a finished session: GOAWAY, then wait for the client to hang up (it reads the last frames
 *  first), and cut it off after the grace period. */
async function closeGracefully(session: SpdySession, graceMs: number): Promise<void> {
  if (session.closed) return;
  await session.goAway(GoAwayStatus.OK);
  const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
  const timer = setTimeout(() => session.destroy(), graceMs);
  timer.unref();
  await closed;
  clearTimeout(timer);
}

function sessionDone(session: SpdySession): Promise<void> {
  return session.closed ? Promise.resolve() : new Promise((resolve) => session.once('close', () => resolve()));
}

/** Exec or attach over SPDY. */
export function serveSpdyRemoteCommand(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: RemoteCommandTarget,
  runtime: StreamingRuntime,
  limits: SessionLimits,
  log: Logger,
): LiveSession | undefined {
  const up = upgradeToSpdy(req, socket, head, REMOTE_COMMAND_SPDY_PROTOCOLS);
  if (!up) return undefined;
  const { protocol, session } = up;
  const version = protocol === 'channel.k8s.io' ? 1 : Number(protocol.slice(1, 2));
  const wantResize = target.tty && version >= 3;
  const expected = 1 + Number(target.stdin) + Number(target.stdout) + Number(target.stderr && !target.tty) + Number(wantResize);
  const abort = new AbortController();
  session.on('close', () => abort.abort());
  watchIdle(session, limits.idleTimeoutMs, log);

  const streams: Partial<Record<'error' | 'stdin' | 'stdout' | 'stderr' | 'resize', SpdyStream>> = {};
  let received = 0;
  const ready = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), limits.streamCreationTimeoutMs);
    timer.unref();
    session.on('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
    session.on('stream', (s) => {
      const type = s.header('streamtype') as keyof typeof streams;
      const wanted =
        (type === 'error') ||
        (type === 'stdin' && target.stdin) ||
        (type === 'stdout' && target.stdout) ||
        (type === 'stderr' && target.stderr && !target.tty) ||
        (type === 'resize' && wantResize);
      if (!wanted || streams[type]) {
        log.debug({ streamType: type }, 'unexpected SPDY stream refused');
        s.reset(RstStatus.REFUSED_STREAM);
        return;
      }
      streams[type] = s;
      void s.reply().then(() => {
        received++;
        if (received === expected) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
  });

  const done = (async () => {
    if (!(await ready)) {
      if (!session.closed) log.info({ expected, received }, 'timed out waiting for the client to create streams');
      session.destroy();
      return;
    }
    const sizes = wantResize ? new TerminalSizes() : undefined;
    if (sizes && streams.resize) {
      const decoder = new ResizeDecoder();
      streams.resize.on('data', (c: Buffer) => decoder.push(c).forEach((sz) => sizes.push(sz)));
    }
    const errorStream = streams.error!;
    await runRemoteCommand(
      runtime,
      target,
      {
        ...(streams.stdin ? { stdin: streams.stdin } : {}),
        ...(streams.stdout ? { stdout: streams.stdout } : {}),
        ...(streams.stderr ? { stderr: streams.stderr } : {}),
        ...(sizes ? { sizes } : {}),
        signal: abort.signal,
        writeStatus: async (status) => {
          const bytes = encodeStatus(status, version >= 4);
          if (bytes.length > 0) errorStream.write(bytes);
        },
        finish: async () => {
          // FIN on every stream still open our way: the client's readers (the status, and the
          // stdin stream it watches for the server's close) all end.
          for (const s of Object.values(streams)) if (s && !s.writableEnded) s.end();
          await closeGracefully(session, limits.closeGraceMs ?? 10_000);
        },
      },
      log,
    );
  })().catch((err: unknown) => {
    log.warn({ err: errorMessage(err) }, 'SPDY streaming session failed');
    session.destroy();
  });
  return { destroy: () => session.destroy(), done: done.then(() => sessionDone(session)) };
}

interface StreamPair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** Port-forward over SPDY: each forwarded connection is a (data, error) stream pair with one requestID. */
export function serveSpdyPortForward(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: { podId: string; ports: number[] },
  runtime: StreamingRuntime,
  limits: SessionLimits,
  log: Logger,
): LiveSession | undefined {
  const up = upgradeToSpdy(req, socket, head, PORT_FORWARD_SPDY_PROTOCOLS);
  if (!up) return undefined;
  const { session } = up;
  const abort = new AbortController();
  session.on('close', () => abort.abort());
  watchIdle(session, limits.idleTimeoutMs, log);
  const pairs = new Map<string, StreamPair>();

  const forward = async (requestId: string, port: number, data: SpdyStream, error: SpdyStream) => {
    const relay = runtime.portForward(target.podId, port, data, abort.signal).then(
      () => undefined,
      (err: unknown) => err,
    );
    // Once the pod's side is done, the error stream ends too (after a moment for a failure to show):
    // client-go only closes its local connection, and so its half of the data stream, after that.
    const podDone = new Promise<void>((resolve) => {
      data.once('finish', () => resolve());
      data.once('close', () => resolve());
    });
    const outcome = await Promise.race([relay, podDone.then(() => Promise.race([relay, sleep(300).then(() => 'pending' as const)]))]);
    if (outcome !== undefined && outcome !== 'pending') {
      const msg = `error forwarding port ${port} to pod ${target.podId}: ${errorMessage(outcome)}`;
      log.debug({ requestId, port }, msg);
      if (!error.writableEnded && !error.destroyed) error.write(msg);
    }
    if (!data.writableEnded && !data.destroyed) data.end();
    if (!error.writableEnded && !error.destroyed) error.end();
    await relay;
  };

  session.on('stream', (s) => {
    const portText = s.header('port');
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    const type = s.header('streamtype');
    if (!(port >= 1 && port <= 65535) || (type !== 'data' && type !== 'error')) {
      log.debug({ port: portText, streamType: type }, 'port-forward stream refused: bad port or stream type');
      s.reset(RstStatus.REFUSED_STREAM);
      return;
    }
    if (target.ports.length > 0 && !target.ports.includes(port)) {
      log.debug({ port }, 'port-forward stream refused: port not in the PortForward request');
      s.reset(RstStatus.REFUSED_STREAM);
      return;
    }
    // Old clients send no requestID: their error and data streams of one connection have
    // consecutive ids, so the error stream's id names the pair.
    const requestId = s.header('requestid') || String(type === 'error' ? s.id : s.id - 2);
    let pair = pairs.get(requestId);
    if (!pair) {
      const timer = setTimeout(() => {
        const p = pairs.get(requestId);
        pairs.delete(requestId);
        if (p?.error) p.error.end(`timed out waiting for the data and error streams of request ${requestId}`);
        p?.data?.reset();
      }, limits.streamCreationTimeoutMs);
      timer.unref();
      pair = { timer };
      pairs.set(requestId, pair);
    }
    if (pair[type]) {
      s.reset(RstStatus.PROTOCOL_ERROR);
      return;
    }
    pair[type] = s;
    void s.reply();
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      pairs.delete(requestId);
      void forward(requestId, port, pair.data, pair.error);
    }
  });
  session.on('close', () => {
    for (const p of pairs.values()) clearTimeout(p.timer);
    pairs.clear();
  });
  return { destroy: () => session.destroy(), done: sessionDone(session) };
}

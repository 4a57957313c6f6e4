// HTTP(S) requests for the registry client on node:http/node:https: keep-alive agents per TLS setting,
// connect / response / idle timeouts, abort signals, and errors that say which host failed and how.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { ClientCertificate } from './hosts.js';

export interface TlsSettings {
  caFiles: readonly string[];
  clientCertificates: readonly ClientCertificate[];
  skipVerify: boolean;
}

export interface Timeouts {
  /** TCP (+TLS) connect. */
  connectMs: number;
  /** From sending the request to the response headers. */
  responseMs: number;
  /** Longest silence while a body streams. */
  idleMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 30_000, responseMs: 60_000, idleMs: 60_000 };

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  url: URL;
  headers: Record<string, string>;
  body?: Buffer | string;
  tls?: TlsSettings;
  timeouts: Timeouts;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  url: URL;
}

/** A request that never produced a response: connection refused, DNS, TLS, timeout, reset. */
export class TransportError extends Error {
  constructor(
    readonly host: string,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransportError';
  }

  /** The peer answered a TLS hello with something else: most likely a plain-HTTP server. */
  get notTls(): boolean {
    return /wrong version number|packet length too long|http request|unknown protocol|record layer failure/i.test(this.message) ||
      this.code === 'ERR_SSL_WRONG_VERSION_NUMBER';
  }
}

export class HttpTransport {
  private readonly agents = new Map<string, http.Agent>();
  private readonly pending = new Map<string, Promise<http.Agent>>();

  constructor(readonly userAgent: string) {}

  async request(req: HttpRequest): Promise<HttpResponse> {
    const agent = await this.agentFor(req.url.protocol, req.tls);
    const mod = req.url.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { 'user-agent': this.userAgent, ...req.headers };
    if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
    const host = req.url.host;
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      const timers: NodeJS.Timeout[] = [];
      const clear = () => timers.splice(0).forEach((t) => clearTimeout(t));
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clear();
        req.signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const cr = mod.request(req.url, { method: req.method, headers, agent });
      const onAbort = () => {
        cr.destroy();
        fail(new TransportError(host, 'ABORT_ERR', 'request aborted'));
      };
      if (req.signal?.aborted) return onAbort();
      req.signal?.addEventListener('abort', onAbort, { once: true });

      timers.push(
        setTimeout(() => {
          cr.destroy();
          fail(new TransportError(host, 'ETIMEDOUT', `no response within ${req.timeouts.responseMs} ms`));
        }, req.timeouts.responseMs),
      );
      cr.on('socket', (socket: Socket) => {
        if (!socket.connecting) return;
        const t = setTimeout(() => {
          cr.destroy();
          fail(new TransportError(host, 'ETIMEDOUT', `connect timed out after ${req.timeouts.connectMs} ms`));
        }, req.timeouts.connectMs);
        timers.push(t);
        socket.once(req.url.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(t));
      });
      // Socket inactivity, which also covers a body that stalls after the headers arrived.
      cr.setTimeout(req.timeouts.idleMs, () => {
        const err = new TransportError(host, 'ETIMEDOUT', `connection idle for ${req.timeouts.idleMs} ms`);
        cr.destroy(err);
        fail(err);
      });
      cr.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof TransportError) return fail(err);
        fail(new TransportError(host, err.code ?? 'EIO', describe(err), { cause: err }));
      });
      cr.on('response', (res) => {
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        clear();
        const detach = () => req.signal?.removeEventListener('abort', onAbort);
        res.once('end', detach);
        res.once('close', detach);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url: req.url });
      });
      cr.end(req.body);
    });
  }

  /** Close idle keep-alive sockets; in-flight requests finish. */
  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }

  private async agentFor(protocol: string, tls: TlsSettings | undefined): Promise<http.Agent> {
    const key = protocol === 'https:' ? `https|${JSON.stringify(tls ?? null)}` : 'http';
    const have = this.agents.get(key);
    if (have) return have;
    let p = this.pending.get(key);
    if (!p) {
      p = this.createAgent(protocol, tls).then((a) => {
        this.agents.set(key, a);
        this.pending.delete(key);
        return a;
      });
      p.catch(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async createAgent(protocol: string, tls: TlsSettings | undefined): Promise<http.Agent> {
    const common = { keepAlive: true, maxSockets: 32, maxFreeSockets: 8, scheduling: 'lifo' as const };
    if (protocol !== 'https:') return new http.Agent(common);
    const options: https.AgentOptions = { ...common };
    if (tls?.skipVerify) options.rejectUnauthorized = false;
    if (tls && tls.caFiles.length > 0) {
      // Node replaces the default roots when `ca` is set; keep them, as containerd adds to the system pool.
      const extra = await Promise.all(tls.caFiles.map((f) => readFile(f, 'utf8')));
      options.ca = [...rootCertificates, ...extra];
    }
    if (tls && tls.clientCertificates.length > 0) {
      const certs: string[] = [];
      const keys: string[] = [];
      for (const c of tls.clientCertificates) {
        const cert = await readFile(c.cert, 'utf8');
        certs.push(cert);
        keys.push(c.key ? await readFile(c.key, 'utf8') : cert);
      }
      options.cert = certs;
      options.key = keys;
    }
    return new https.Agent(options);
  }
}

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function describe(err: NodeJS.ErrnoException): string {
  if (err.code && TLS_VERIFY_CODES.has(err.code)) return `TLS: ${err.message} (add the registry CA with hosts.toml "ca", or skip_verify)`;
  return err.message;
}

/** Read a whole (small) body, failing past `limit` bytes. */
export async function readBody(res: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res) {
    const b = chunk as Buffer;
    total += b.length;
    if (total > limit) {
      res.destroy();
      throw new Error(`response body larger than ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Throw away a body we do not need so the socket can be reused (or destroy it if it is large). */
export function discardBody(res: IncomingMessage): void {
  const len = Number(res.headers['content-length'] ?? NaN);
  if (Number.isFinite(len) && len <= 64 * 1024) res.resume();
  else res.destroy();
}

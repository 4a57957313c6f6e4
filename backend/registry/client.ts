// OCI distribution client: resolve a reference to a manifest, fetch manifests and blobs (ranged, for
// resume), over the endpoints hosts.toml lists (mirrors first, then the server), with Basic/bearer auth.
// It knows nothing about containerd: callers stream blobs into whatever store they have.
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { CrispError, errorMessage, failedPrecondition, notFound, unavailable, unimplemented } from '../../common/errors.js';
import { Authorizer, authFailed, credentialsFrom, pullScope, type Credentials, type RegistryAuth, type TokenHttp } from './auth.js';
import { digestOf, parseDigest, sha256Digest } from './digest.js';
import { endpointsFor, loadEndpoints, type HostCapability, type HostsOptions, type RegistryEndpoint } from './hosts.js';
import {
  MANIFEST_ACCEPT,
  MediaType,
  isIndexMediaType,
  isManifestMediaType,
  isSchema1MediaType,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from './oci.js';
import { hostPlatform, pickPlatform } from './platform.js';
import { manifestObject, parseImageReference, referenceString, type ImageReference } from './reference.js';
import { DEFAULT_TIMEOUTS, HttpTransport, TransportError, discardBody, readBody, type HttpResponse, type Timeouts, type TlsSettings } from './transport.js';
import { ContentMismatchError } from './verify.js';

/** Manifests and configs are small; a bigger answer is a broken or hostile registry. */
const MANIFEST_LIMIT = 4 * 1024 * 1024;
const CONFIG_LIMIT = 16 * 1024 * 1024;
const ERROR_BODY_LIMIT = 64 * 1024;

export interface RegistryLogger {
  debug(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

export interface RegistryClientOptions {
  hosts?: HostsOptions;
  timeouts?: Partial<Timeouts>;
  userAgent?: string;
  logger?: RegistryLogger;
  /** Redirects followed for one request (blob downloads are often redirected to a CDN). */
  maxRedirects?: number;
}

export interface RequestOptions {
  /** Credentials for this pull (CRI PullImageRequest.auth); anonymous when absent. */
  auth?: RegistryAuth | null;
  signal?: AbortSignal;
}

export interface BlobRequestOptions extends RequestOptions {
  /** Start at this byte (resume); the returned stream then carries bytes offset..size-1. */
  offset?: number;
}

export interface ResolvedDescriptor {
  reference: ImageReference;
  /** What the tag (or digest) points at: an index or a manifest. */
  descriptor: Descriptor;
  /** host that answered, for logs. */
  endpoint: string;
}

export interface ResolvedManifest extends ResolvedDescriptor {
  bytes: Buffer;
}

export type ParsedManifest = { kind: 'index'; index: ImageIndex } | { kind: 'manifest'; manifest: ImageManifest };

export interface FetchedManifest {
  descriptor: Descriptor;
  bytes: Buffer;
  parsed: ParsedManifest;
  endpoint: string;
}

export interface BlobStream {
  /** Bytes from `offset` to the end of the blob. */
  stream: Readable;
  offset: number;
  size: number;
  endpoint: string;
}

export interface ResolvedImage {
  reference: ImageReference;
  /** The descriptor the reference resolved to (index or manifest) and its bytes. */
  target: Descriptor;
  targetBytes: Buffer;
  index?: ImageIndex;
  /** The platform manifest (equal to `target` for a single-platform image). */
  manifestDescriptor: Descriptor;
  manifestBytes: Buffer;
  manifest: ImageManifest;
  configDescriptor: Descriptor;
  configBytes: Buffer;
  config: ImageConfig;
}

/** See RegistryClient.blobRequest. Holds a credential: never log it whole. */
export interface PreparedBlobRequest {
  url: string;
  /** Everything but the Authorization header (the endpoint's configured headers, Range, User-Agent). */
  headers: Record<string, string>;
  /** Sent to `url`'s origin only, never after a redirect to another origin. */
  authorization?: string;
  tls: TlsSettings;
  timeouts: Timeouts;
  maxRedirects: number;
  /** The endpoint's host, for messages. */
  endpoint: string;
}

/** Per-call context: the reference, its parsed credentials, the auth scope. */
interface CallContext {
  ref: ImageReference;
  creds: Credentials | undefined;
  /** CRI server_address: when set, credentials go only to that registry, never to other endpoints. */
  serverAddress?: string;
  scopes: string[];
  signal?: AbortSignal;
}

export class RegistryClient {
  private readonly transport: HttpTransport;
  private readonly authorizer: Authorizer;
  private readonly timeouts: Timeouts;
  private readonly maxRedirects: number;
  /** Hosts found to speak plain HTTP behind an httpFallback endpoint. */
  private readonly plainHttp = new Set<string>();
  /** Endpoint hosts that have given an HTTP answer (any status): blobRequest skips the others. */
  private readonly answered = new Set<string>();

  constructor(private readonly options: RegistryClientOptions = {}) {
    this.transport = new HttpTransport(options.userAgent ?? 'crisp/0.1');
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.maxRedirects = options.maxRedirects ?? 5;
    this.authorizer = new Authorizer(this.tokenHttp);
  }

  /** Close idle connections. */
  close(): void {
    this.transport.close();
  }

  /** The endpoints a namespace resolves to (hosts.toml), for diagnostics. */
  endpoints(namespace: string): Promise<RegistryEndpoint[]> {
    return loadEndpoints(namespace, this.options.hosts);
  }

  /** HEAD the reference: its descriptor without downloading the manifest (GET only if HEAD says too little). */
  async resolveDescriptor(reference: string | ImageReference, opts: RequestOptions = {}): Promise<ResolvedDescriptor> {
    const ctx = this.context(reference, opts);
    const op: HostCapability = ctx.ref.digest ? 'pull' : 'resolve';
    return this.tryEndpoints(ctx, op, `image "${referenceString(ctx.ref)}"`, async (ep) => {
      const head = await this.headManifest(ep, ctx);
      if (head) return { reference: ctx.ref, descriptor: head, endpoint: ep.host };
      const got = await this.getManifest(ep, ctx, manifestObject(ctx.ref), ctx.ref.digest, undefined);
      return { reference: ctx.ref, descriptor: got.descriptor, endpoint: ep.host };
    });
  }

  /** Resolve the reference to its descriptor and manifest bytes (HEAD, then GET by digest; digest verified). */
  async resolve(reference: string | ImageReference, opts: RequestOptions = {}): Promise<ResolvedManifest> {
    const ctx = this.context(reference, opts);
    const op: HostCapability = ctx.ref.digest ? 'pull' : 'resolve';
    return this.tryEndpoints(ctx, op, `image "${referenceString(ctx.ref)}"`, async (ep) => {
      const head = await this.headManifest(ep, ctx);
      const object = head?.digest ?? manifestObject(ctx.ref);
      const got = await this.getManifest(ep, ctx, object, head?.digest ?? ctx.ref.digest, head?.size);
      return { reference: ctx.ref, descriptor: got.descriptor, bytes: got.bytes, endpoint: ep.host };
    });
  }

  /** Fetch a manifest or index by descriptor (digest and size verified) and parse it. */
  async fetchManifest(reference: string | ImageReference, desc: Descriptor, opts: RequestOptions = {}): Promise<FetchedManifest> {
    const ctx = this.context(reference, opts);
    parseDigest(desc.digest);
    return this.tryEndpoints(ctx, 'pull', `manifest ${desc.digest} of "${referenceString(ctx.ref)}"`, async (ep) => {
      const got = await this.getManifest(ep, ctx, desc.digest, desc.digest, desc.size > 0 ? desc.size : undefined);
      const descriptor = { ...desc, mediaType: desc.mediaType || got.descriptor.mediaType };
      return { descriptor, bytes: got.bytes, parsed: parseManifest(got.bytes, descriptor.mediaType, desc.digest), endpoint: ep.host };
    });
  }

  /**
   * Open a blob for reading from `offset` (resume): a Range request, or, where the server ignores Range,
   * a full download with the first `offset` bytes skipped. The stream is not verified here: pipe it through
   * verifyingStream() (or let the content store verify on commit).
   */
  async fetchBlob(reference: string | ImageReference, desc: Descriptor, opts: BlobRequestOptions = {}): Promise<BlobStream> {
    const ctx = this.context(reference, opts);
    parseDigest(desc.digest);
    const offset = opts.offset ?? 0;
    if (offset < 0 || (desc.size >= 0 && offset > desc.size)) {
      throw failedPrecondition(`blob ${desc.digest}: resume offset ${offset} outside 0..${desc.size}`);
    }
    if (desc.size >= 0 && offset === desc.size) {
      const empty = new PassThrough();
      empty.end();
      return { stream: empty, offset, size: desc.size, endpoint: '' };
    }
    return this.tryEndpoints(ctx, 'pull', `blob ${desc.digest} of "${referenceString(ctx.ref)}"`, async (ep) => {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const res = await this.send(ep, ctx, 'GET', `blobs/${desc.digest}`, headers);
      if (res.status === 206) {
        const start = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
        if (!start || Number(start[1]) !== offset) {
          res.body.destroy();
          throw new CrispError('UNAVAILABLE', `${ep.host}: blob ${desc.digest}: range answer does not start at ${offset}`);
        }
        return { stream: res.body, offset, size: desc.size, endpoint: ep.host };
      }
      if (res.status !== 200) throw await statusError(res, ep.host, `blob ${desc.digest}`);
      const stream: Readable = offset > 0 ? res.body.pipe(skipBytes(offset, res.body)) : res.body;
      return { stream, offset, size: desc.size, endpoint: ep.host };
    });
  }

  /**
   * A blob GET ready to be sent by someone else (a download worker): the first endpoint allowed to pull
   * that has answered this client before (the pull's manifest and config requests went first; a mirror
   * that never answers is left to fetchBlob, so the worker does not wait out its timeouts), with the
   * Authorization header this client would send now (a cached token or Basic credentials; none
   * before the registry's first challenge), the TLS settings and timeouts. Anything the sender cannot
   * handle by itself (401, 403, an error status, no answer) is for fetchBlob to redo: it knows the
   * challenges, the mirrors and the error classes. Redirects are the sender's to follow, sending
   * `authorization` only to `url`'s origin.
   */
  async blobRequest(reference: string | ImageReference, desc: Descriptor, opts: BlobRequestOptions = {}): Promise<PreparedBlobRequest | undefined> {
    const ctx = this.context(reference, opts);
    parseDigest(desc.digest);
    const offset = opts.offset ?? 0;
    if (offset < 0 || offset >= desc.size) return undefined;
    const ep = endpointsFor('pull', await loadEndpoints(ctx.ref.domain, this.options.hosts)).find((e) => this.answered.has(e.host));
    if (!ep) return undefined;
    const scheme = ep.httpFallback && this.plainHttp.has(ep.host) ? 'http' : ep.scheme;
    const query = ep.mirror ? `?ns=${encodeURIComponent(ctx.ref.domain)}` : '';
    const headers: Record<string, string> = { 'user-agent': this.transport.userAgent };
    for (const [k, v] of Object.entries(ep.header)) headers[k.toLowerCase()] = v.join(', ');
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const authorization = await this.authorizer.authorization(ep.host, ctx.scopes, credentialsForEndpoint(ctx, ep));
    return {
      url: `${scheme}://${ep.host}${ep.path}/${ctx.ref.path}/blobs/${desc.digest}${query}`,
      headers,
      ...(authorization ? { authorization } : {}),
      tls: { caFiles: ep.caFiles, clientCertificates: ep.clientCertificates, skipVerify: ep.skipVerify },
      timeouts: this.timeoutsFor(ep),
      maxRedirects: this.maxRedirects,
      endpoint: ep.host,
    };
  }

  /** A small blob (an image config) read whole and verified. */
  async fetchBlobBytes(reference: string | ImageReference, desc: Descriptor, opts: RequestOptions = {}, limit = CONFIG_LIMIT): Promise<Buffer> {
    if (desc.size > limit) throw failedPrecondition(`blob ${desc.digest}: ${desc.size} bytes is over the ${limit}-byte limit for in-memory reads`);
    const { stream } = await this.fetchBlob(reference, desc, opts);
    let body: Buffer;
    try {
      body = await readBody(stream, limit);
    } catch (err) {
      throw unavailable(`blob ${desc.digest}: ${errorMessage(err)}`, err);
    }
    verifyBytes(body, desc);
    return body;
  }

  /**
   * Everything up to the layers: resolve, pick this host's (or `platform`'s) manifest from an index, fetch
   * the manifest and the image config. Layers are left to the caller.
   */
  async resolveImage(reference: string | ImageReference, opts: RequestOptions & { platform?: Platform } = {}): Promise<ResolvedImage> {
    const ref = typeof reference === 'string' ? parseImageReference(reference) : reference;
    const platform = opts.platform ?? hostPlatform();
    const top = await this.resolve(ref, opts);
    let parsed = parseManifest(top.bytes, top.descriptor.mediaType, top.descriptor.digest);
    let index: ImageIndex | undefined;
    let manifestDescriptor = top.descriptor;
    let manifestBytes = top.bytes;
    // Nested indexes exist (an index of indexes); follow a few levels, not forever.
    for (let depth = 0; parsed.kind === 'index'; depth++) {
      if (depth >= 3) throw failedPrecondition(`image "${referenceString(ref)}": indexes nested too deep`);
      index ??= parsed.index;
      const chosen = pickPlatform(parsed.index, platform, `image "${referenceString(ref)}"`);
      const fetched = await this.fetchManifest(ref, chosen, opts);
      manifestDescriptor = fetched.descriptor;
      manifestBytes = fetched.bytes;
      parsed = fetched.parsed;
    }
    const manifest = parsed.manifest;
    const configBytes = await this.fetchBlobBytes(ref, manifest.config, opts);
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    } catch (err) {
      throw failedPrecondition(`image "${referenceString(ref)}": config ${manifest.config.digest} is not JSON`, err);
    }
    if (!config.rootfs || !Array.isArray(config.rootfs.diff_ids) || config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw failedPrecondition(`image "${referenceString(ref)}": config ${manifest.config.digest} lists ${config.rootfs?.diff_ids?.length ?? 0} diff_ids for ${manifest.layers.length} layers`);
    }
    return {
      reference: ref,
      target: top.descriptor,
      targetBytes: top.bytes,
      ...(index ? { index } : {}),
      manifestDescriptor,
      manifestBytes,
      manifest,
      configDescriptor: manifest.config,
      configBytes,
      config,
    };
  }

  // ---- internals ----

  private context(reference: string | ImageReference, opts: RequestOptions): CallContext {
    const ref = typeof reference === 'string' ? parseImageReference(reference) : reference;
    return {
      ref,
      creds: credentialsFrom(opts.auth),
      ...(opts.auth?.serverAddress ? { serverAddress: opts.auth.serverAddress } : {}),
      scopes: [pullScope(ref.path)],
      ...(opts.signal ? { signal: opts.signal } : {}),
    };
  }

  /**
   * Run `attempt` against each endpoint allowed to do `op`, in order, until one succeeds. Every failure
   * moves on (containerd does the same); the error reported is the last endpoint's — the server's, which is
   * authoritative — with what the mirrors said appended.
   */
  private async tryEndpoints<T>(ctx: CallContext, op: HostCapability, what: string, attempt: (ep: RegistryEndpoint) => Promise<T>): Promise<T> {
    const all = await loadEndpoints(ctx.ref.domain, this.options.hosts);
    const endpoints = endpointsFor(op, all);
    if (endpoints.length === 0) throw failedPrecondition(`${what}: no endpoint of ${ctx.ref.domain} may ${op} (check hosts.toml capabilities)`);
    const failures: { host: string; err: unknown }[] = [];
    for (const ep of endpoints) {
      if (ctx.signal?.aborted) throw new CrispError('CANCELLED', `${what}: cancelled`);
      try {
        return await attempt(ep);
      } catch (err) {
        const classified = classify(err, ep.host, what, ctx.ref);
        if (classified.kind === 'CANCELLED') throw classified;
        failures.push({ host: ep.host, err: classified });
        this.options.logger?.debug({ host: ep.host, op, error: classified.message }, 'registry endpoint failed, trying next');
      }
    }
    const last = failures[failures.length - 1]!.err as CrispError;
    if (failures.length === 1) throw last;
    // Every message already names its host.
    const earlier = failures.slice(0, -1).map((f) => errorMessage(f.err)).join('; ');
    throw new CrispError(last.kind, `${last.message} (also tried: ${earlier})`, { cause: last });
  }

  /** HEAD manifests/<object>: a descriptor when the answer says enough, undefined to fall back to GET. */
  private async headManifest(ep: RegistryEndpoint, ctx: CallContext): Promise<Descriptor | undefined> {
    const object = manifestObject(ctx.ref);
    const res = await this.send(ep, ctx, 'HEAD', `manifests/${object}`, { accept: MANIFEST_ACCEPT.join(', ') });
    res.body.resume();
    if (res.status === 404) throw notFoundFor(ctx.ref, ep.host);
    if (res.status !== 200) {
      // Some registries do not implement HEAD (405) or answer it oddly; GET decides then.
      if (res.status >= 500 || res.status === 429) throw await statusError(res, ep.host, `manifest ${object}`);
      return undefined;
    }
    const digest = headerString(res, 'docker-content-digest') ?? ctx.ref.digest;
    const mediaType = mediaTypeOf(headerString(res, 'content-type'));
    const size = Number(headerString(res, 'content-length') ?? NaN);
    if (!digest || !mediaType || !Number.isFinite(size) || size <= 0) return undefined;
    if (ctx.ref.digest && digest !== ctx.ref.digest) {
      throw new ContentMismatchError(ctx.ref.digest, `${ep.host}: asked for ${ctx.ref.digest}, registry answered ${digest}`);
    }
    if (isSchema1MediaType(mediaType)) throw schema1(ctx.ref);
    return { mediaType, digest, size };
  }

  private async getManifest(
    ep: RegistryEndpoint,
    ctx: CallContext,
    object: string,
    expectDigest: string | undefined,
    expectSize: number | undefined,
  ): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const res = await this.send(ep, ctx, 'GET', `manifests/${object}`, { accept: MANIFEST_ACCEPT.join(', ') });
    if (res.status === 404) {
      discardBody(res.body);
      throw ctx.ref.digest || object !== manifestObject(ctx.ref) ? notFound(`manifest ${object} of "${referenceString(ctx.ref)}" not found at ${ep.host}`) : notFoundFor(ctx.ref, ep.host);
    }
    if (res.status !== 200) throw await statusError(res, ep.host, `manifest ${object}`);
    let bytes: Buffer;
    try {
      bytes = await readBody(res.body, MANIFEST_LIMIT);
    } catch (err) {
      throw unavailable(`${ep.host}: manifest ${object}: ${errorMessage(err)}`, err);
    }
    const headerDigest = headerString(res, 'docker-content-digest');
    const want = expectDigest ?? headerDigest;
    const digest = want ? digestOf(bytes, want) : sha256Digest(bytes);
    if (want && digest !== want) {
      throw new ContentMismatchError(want, `${ep.host}: manifest ${object}: digest mismatch: expected ${want}, got ${digest}`);
    }
    if (expectSize !== undefined && bytes.length !== expectSize) {
      throw new ContentMismatchError(digest, `${ep.host}: manifest ${object}: ${bytes.length} bytes, descriptor says ${expectSize}`);
    }
    let mediaType = mediaTypeOf(headerString(res, 'content-type'));
    if (!mediaType || (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType) && !isSchema1MediaType(mediaType))) {
      mediaType = sniffMediaType(bytes) ?? mediaType;
    }
    if (!mediaType) throw failedPrecondition(`${ep.host}: manifest ${object}: unknown media type`);
    if (isSchema1MediaType(mediaType)) throw schema1(ctx.ref);
    return { descriptor: { mediaType, digest, size: bytes.length }, bytes };
  }

  /**
   * One request to an endpoint with auth (401 → challenge → retry once), redirects and the plain-HTTP
   * fallback. Returns any final status; throws for 401/403 (auth) and transport failures.
   */
  private async send(ep: RegistryEndpoint, ctx: CallContext, method: 'GET' | 'HEAD', suffix: string, extra: Record<string, string>): Promise<HttpResponse> {
    const base = `${ep.path}/${ctx.ref.path}/${suffix}`;
    const query = ep.mirror ? `?ns=${encodeURIComponent(ctx.ref.domain)}` : '';
    const headers: Record<string, string> = { ...extra };
    for (const [k, v] of Object.entries(ep.header)) headers[k.toLowerCase()] = v.join(', ');
    const creds = credentialsForEndpoint(ctx, ep);
    let authorization = await this.authorizer.authorization(ep.host, ctx.scopes, creds);
    let res = await this.sendTo(ep, base + query, method, withAuth(headers, authorization), ctx.signal);
    if (res.status === 401) {
      discardBody(res.body);
      authorization = await this.authorizer.onUnauthorized(ep.host, res.headers['www-authenticate'], ctx.scopes, creds, authorization);
      res = await this.sendTo(ep, base + query, method, withAuth(headers, authorization), ctx.signal);
      if (res.status === 401) {
        discardBody(res.body);
        throw authFailed(ep.host, creds ? 'credentials rejected' : 'registry requires credentials (or the repository does not exist)');
      }
    }
    if (res.status === 403) {
      const detail = await errorDetail(res);
      throw authFailed(ep.host, `access to ${ctx.ref.path} denied${detail ? ` (${detail})` : ''}`, 'PERMISSION_DENIED');
    }
    // Redirects (blob storage on a CDN): the Authorization header never leaves the registry's origin.
    for (let hops = 0; res.status >= 300 && res.status < 400 && res.status !== 304; hops++) {
      const location = headerString(res, 'location');
      if (!location) break;
      discardBody(res.body);
      if (hops >= this.maxRedirects) throw unavailable(`${ep.host}: more than ${this.maxRedirects} redirects for ${suffix}`);
      const next = new URL(location, res.url);
      const sameOrigin = next.origin === res.url.origin;
      const h = sameOrigin ? withAuth(headers, authorization) : { ...extra };
      res = await this.transport.request({
        method,
        url: next,
        headers: h,
        ...(sameOrigin ? { tls: ep } : {}),
        timeouts: this.timeoutsFor(ep),
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
    }
    return res;
  }

  private async sendTo(ep: RegistryEndpoint, pathAndQuery: string, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal | undefined): Promise<HttpResponse> {
    const scheme = ep.httpFallback && this.plainHttp.has(ep.host) ? 'http' : ep.scheme;
    const request = (s: string) =>
      this.transport.request({
        method,
        url: new URL(`${s}://${ep.host}${pathAndQuery}`),
        headers,
        tls: ep,
        timeouts: this.timeoutsFor(ep),
        ...(signal ? { signal } : {}),
      });
    try {
      const res = await request(scheme);
      this.answered.add(ep.host);
      return res;
    } catch (err) {
      if (scheme === 'https' && ep.httpFallback && err instanceof TransportError && err.notTls) {
        this.options.logger?.debug({ host: ep.host }, 'registry does not speak TLS; using plain HTTP');
        this.plainHttp.add(ep.host);
        const res = await request('http');
        this.answered.add(ep.host);
        return res;
      }
      throw err;
    }
  }

  private timeoutsFor(ep: RegistryEndpoint): Timeouts {
    return ep.dialTimeoutMs !== undefined ? { ...this.timeouts, connectMs: ep.dialTimeoutMs } : this.timeouts;
  }

  /** Token endpoint requests ride the same transport (system roots; the realm is a separate service). */
  private readonly tokenHttp: TokenHttp = async (req) => {
    const res = await this.transport.request({
      method: req.method,
      url: new URL(req.url),
      headers: req.headers,
      ...(req.body !== undefined ? { body: req.body } : {}),
      timeouts: this.timeouts,
    });
    const body = await readBody(res.body, 1024 * 1024);
    return { status: res.status, body };
  };
}

// ---- helpers ----

const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

function hostOfServerAddress(address: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `https://${address}`;
  try {
    return new URL(withScheme).host;
  } catch {
    return address;
  }
}

/**
 * The credentials one endpoint may see. Without server_address they go to every endpoint (as containerd
 * does); with it, only to an endpoint that is that registry (or the reference's own registry), so a mirror
 * never receives secrets meant for the upstream. Docker Hub's several host names count as one.
 */
export function credentialsForEndpoint(ctx: { ref: ImageReference; creds: Credentials | undefined; serverAddress?: string }, ep: RegistryEndpoint): Credentials | undefined {
  if (!ctx.creds || !ctx.serverAddress) return ctx.creds;
  const same = (a: string, b: string) => a === b || (DOCKER_HUB_HOSTS.has(a) && DOCKER_HUB_HOSTS.has(b));
  const target = hostOfServerAddress(ctx.serverAddress);
  if (same(target, ep.host)) return ctx.creds;
  if (!ep.mirror && same(target, ctx.ref.domain)) return ctx.creds;
  return undefined;
}

function withAuth(headers: Record<string, string>, authorization: string | undefined): Record<string, string> {
  return authorization ? { ...headers, authorization } : headers;
}

function headerString(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function mediaTypeOf(contentType: string | undefined): string | undefined {
  const mt = contentType?.split(';')[0]?.trim();
  return mt ? mt : undefined;
}

/** Media type from the JSON itself when the Content-Type is missing or generic. */
function sniffMediaType(bytes: Buffer): string | undefined {
  let o: unknown;
  try {
    o = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const m = o as Record<string, unknown>;
  if (typeof m.mediaType === 'string' && m.mediaType) return m.mediaType;
  if (m.schemaVersion === 1) return MediaType.dockerManifestSchema1;
  if (Array.isArray(m.manifests)) return MediaType.ociIndex;
  if (typeof m.config === 'object' && Array.isArray(m.layers)) return MediaType.ociManifest;
  return undefined;
}

/** Parse and sanity-check a manifest or index. */
export function parseManifest(bytes: Buffer, mediaType: string, digest: string): ParsedManifest {
  let o: unknown;
  try {
    o = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw failedPrecondition(`manifest ${digest} is not JSON`, err);
  }
  if (typeof o !== 'object' || o === null) throw failedPrecondition(`manifest ${digest} is not a JSON object`);
  const m = o as Record<string, unknown>;
  if (m.schemaVersion === 1 || isSchema1MediaType(mediaType)) throw unimplemented(`manifest ${digest}: docker schema1 manifests are not supported`);
  const isDesc = (d: unknown): d is Descriptor =>
    typeof d === 'object' && d !== null && typeof (d as Descriptor).digest === 'string' && typeof (d as Descriptor).size === 'number' && typeof (d as Descriptor).mediaType === 'string';
  if (isIndexMediaType(mediaType) || (!isManifestMediaType(mediaType) && Array.isArray(m.manifests))) {
    if (!Array.isArray(m.manifests) || !m.manifests.every(isDesc)) throw failedPrecondition(`index ${digest}: "manifests" must be a list of descriptors`);
    return { kind: 'index', index: o as ImageIndex };
  }
  if (isManifestMediaType(mediaType) || typeof m.config === 'object') {
    if (!isDesc(m.config)) throw failedPrecondition(`manifest ${digest}: missing config descriptor`);
    if (!Array.isArray(m.layers) || !m.layers.every(isDesc)) throw failedPrecondition(`manifest ${digest}: "layers" must be a list of descriptors`);
    return { kind: 'manifest', manifest: o as ImageManifest };
  }
  throw failedPrecondition(`manifest ${digest}: unsupported media type ${mediaType}`);
}

function verifyBytes(body: Buffer, desc: Descriptor): void {
  if (desc.size >= 0 && body.length !== desc.size) {
    throw new ContentMismatchError(desc.digest, `${desc.digest}: got ${body.length} bytes, expected ${desc.size}`);
  }
  const got = digestOf(body, desc.digest);
  if (got !== desc.digest) throw new ContentMismatchError(desc.digest, `digest mismatch: expected ${desc.digest}, got ${got}`);
}

const notFoundFor = (ref: ImageReference, host: string) => notFound(`image "${referenceString(ref)}" not found at ${host}`);
const schema1 = (ref: ImageReference) => unimplemented(`image "${referenceString(ref)}": docker schema1 manifests are not supported`);

/** The registry's error codes from a JSON error body ("MANIFEST_UNKNOWN: manifest unknown"). */
async function errorDetail(res: HttpResponse): Promise<string> {
  let body: Buffer;
  try {
    body = await readBody(res.body, ERROR_BODY_LIMIT);
  } catch {
    return '';
  }
  try {
    const o = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    return (o.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
  } catch {
    return '';
  }
}

async function statusError(res: HttpResponse, host: string, what: string): Promise<CrispError> {
  const detail = await errorDetail(res);
  const msg = `${host}: ${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}`;
  if (res.status === 404) return notFound(msg);
  if (res.status === 416) return failedPrecondition(msg);
  return unavailable(msg);
}

/** Any failure from one endpoint as a typed error that names the host. */
function classify(err: unknown, host: string, what: string, ref: ImageReference): CrispError {
  if (err instanceof CrispError) return err;
  if (err instanceof TransportError) {
    if (err.code === 'ABORT_ERR') return new CrispError('CANCELLED', `${what}: cancelled`, { cause: err });
    return unavailable(`registry ${host} unreachable: ${err.message}`, err);
  }
  return unavailable(`registry ${host}: ${what} of "${referenceString(ref)}": ${errorMessage(err)}`, err);
}

/** Drop the first `n` bytes of a stream (a server that ignored our Range header). */
function skipBytes(n: number, source: IncomingMessage): Transform {
  let left = n;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (left >= chunk.length) {
        left -= chunk.length;
        cb();
        return;
      }
      const out = left > 0 ? chunk.subarray(left) : chunk;
      left = 0;
      cb(null, out);
    },
  });
  source.on('error', (e) => t.destroy(e));
  return t;
}

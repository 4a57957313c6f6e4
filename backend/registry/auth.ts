// Registry authentication: CRI-style credentials, WWW-Authenticate challenges, Basic auth and the bearer
// token flow (GET <realm>?service=…&scope=… with Basic credentials, or an OAuth2 refresh-token POST for an
// identity token), with tokens cached per realm, service, scope and credentials until they expire.
// Secrets never appear in errors or logs: messages name the host and the status only.
import { createHash } from 'node:crypto';
import { CrispError, invalidArgument, unavailable } from '../../common/errors.js';

/** Credentials as CRI's AuthConfig carries them (a runtime.v1.AuthConfig is assignable to this). */
export interface RegistryAuth {
  username?: string;
  password?: string;
  /** base64("username:password"), as in a docker config.json. */
  auth?: string;
  serverAddress?: string;
  /** An OAuth2 refresh token, exchanged at the token realm. */
  identityToken?: string;
  /** A bearer token sent to the registry as is. */
  registryToken?: string;
}

export type Credentials =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'refresh'; username: string; refreshToken: string }
  | { kind: 'bearer'; token: string };

/** Normalise CRI credentials; undefined for anonymous. Throws INVALID_ARGUMENT for a malformed `auth`. */
export function credentialsFrom(a: RegistryAuth | null | undefined): Credentials | undefined {
  if (!a) return undefined;
  if (a.registryToken) return { kind: 'bearer', token: a.registryToken };
  let username = a.username ?? '';
  let password = a.password ?? '';
  if (a.auth) {
    const decoded = Buffer.from(a.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw invalidArgument('registry auth: "auth" is not base64 of "username:password"');
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (a.identityToken) return { kind: 'refresh', username, refreshToken: a.identityToken };
  if (username || password) return { kind: 'basic', username, password };
  return undefined;
}

export interface Challenge {
  /** Lower-cased auth scheme: "bearer", "basic", … */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parse WWW-Authenticate values (RFC 7235): one or more `scheme k=v, k="quoted, v"` challenges, several per
 * header or over several headers. Parameter names are lower-cased; quoted-pair escapes are undone.
 */
export function parseWwwAuthenticate(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const out: Challenge[] = [];
  for (const s of typeof header === 'string' ? [header] : header) {
    let i = 0;
    const isTokenChar = (c: string | undefined) => c !== undefined && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(c);
    const skipWs = () => {
      while (s[i] === ' ' || s[i] === '\t') i++;
    };
    let current: Challenge | undefined;
    while (i < s.length) {
      skipWs();
      if (!isTokenChar(s[i])) {
        i++; // a comma between items, or a stray character we do not understand
        continue;
      }
      const start = i;
      while (isTokenChar(s[i])) i++;
      const name = s.slice(start, i);
      skipWs();
      if (s[i] !== '=' || current === undefined) {
        current = { scheme: name.toLowerCase(), params: {} };
        out.push(current);
        continue;
      }
      i++; // '='
      skipWs();
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++; // closing quote
      } else {
        const vstart = i;
        while (i < s.length && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') i++;
        value = s.slice(vstart, i);
      }
      current.params[name.toLowerCase()] = value;
    }
  }
  return out;
}

/** The repository scope a pull needs. */
export const pullScope = (repositoryPath: string): string => `repository:${repositoryPath}:pull`;

/** What the token endpoint answered, parsed. */
export interface TokenResponse {
  token: string;
  expiresInSeconds: number;
  issuedAt?: Date;
}

/** One HTTP exchange with a token realm; the client supplies it so auth.ts stays transport-free. */
export interface TokenHttpRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  body?: string;
}
export interface TokenHttpResponse {
  status: number;
  body: Buffer;
}
export type TokenHttp = (req: TokenHttpRequest) => Promise<TokenHttpResponse>;

export function authFailed(host: string, detail: string, kind: 'UNAUTHENTICATED' | 'PERMISSION_DENIED' = 'UNAUTHENTICATED'): CrispError {
  return new CrispError(kind, `authentication failed for ${host}: ${detail}`);
}

export const isAuthError = (err: unknown): boolean =>
  err instanceof CrispError && (err.kind === 'UNAUTHENTICATED' || err.kind === 'PERMISSION_DENIED');

const MIN_TOKEN_LIFETIME_S = 60; // the token spec's default when expires_in is absent or smaller
const EXPIRY_MARGIN_MS = 5_000;
const CLIENT_ID = 'crisp';

export function parseTokenResponse(body: Buffer): TokenResponse | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null) return undefined;
  const o = json as Record<string, unknown>;
  const token = typeof o.token === 'string' && o.token ? o.token : typeof o.access_token === 'string' ? o.access_token : '';
  if (!token) return undefined;
  const expiresIn = typeof o.expires_in === 'number' && o.expires_in > 0 ? o.expires_in : MIN_TOKEN_LIFETIME_S;
  const issued = typeof o.issued_at === 'string' ? new Date(o.issued_at) : undefined;
  return {
    token,
    expiresInSeconds: Math.max(expiresIn, MIN_TOKEN_LIFETIME_S),
    ...(issued && !Number.isNaN(issued.getTime()) ? { issuedAt: issued } : {}),
  };
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/**
 * Turns challenges into Authorization headers. One instance per client: it remembers which scheme each
 * host asked for (so later requests authorize up front) and caches bearer tokens.
 */
export class Authorizer {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly http: TokenHttp,
    private readonly now: () => number = Date.now,
  ) {}

  /** Bearer tokens held (expired ones go when a new token is fetched). */
  cachedTokens(): number {
    return this.tokens.size;
  }

  /** The header to send up front for `host`, if a previous challenge (or a registry token) tells us. */
  async authorization(host: string, scopes: readonly string[], creds: Credentials | undefined): Promise<string | undefined> {
    if (creds?.kind === 'bearer') return `Bearer ${creds.token}`;
    const ch = this.challenges.get(host);
    if (!ch) return undefined;
    return this.headerFor(host, ch, scopes, creds);
  }

  /**
   * A request to `host` got 401 with these WWW-Authenticate values: learn the challenge and return the
   * header to retry with. `previous` is the header that was rejected: if we would send the same again the
   * credentials are wrong, and this throws "authentication failed".
   */
  async onUnauthorized(
    host: string,
    wwwAuthenticate: string | readonly string[] | undefined,
    scopes: readonly string[],
    creds: Credentials | undefined,
    previous: string | undefined,
  ): Promise<string> {
    if (creds?.kind === 'bearer') throw authFailed(host, 'registry token rejected');
    const all = parseWwwAuthenticate(wwwAuthenticate);
    const ch = all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic');
    if (!ch) throw authFailed(host, all.length ? `unsupported auth scheme ${all.map((c) => c.scheme).join(', ')}` : 'no WWW-Authenticate challenge');
    this.challenges.set(host, ch);
    if (ch.scheme === 'bearer' && previous !== undefined) {
      // A cached token may have been revoked or expired early: drop it and fetch once more.
      this.dropToken(ch, scopes, creds);
    }
    const header = await this.headerFor(host, ch, scopes, creds, challengeScopes(ch));
    if (previous !== undefined && header === previous) {
      throw authFailed(host, creds ? 'credentials rejected' : 'registry requires credentials (or the repository does not exist)');
    }
    return header;
  }

  private async headerFor(
    host: string,
    ch: Challenge,
    scopes: readonly string[],
    creds: Credentials | undefined,
    extraScopes: readonly string[] = [],
  ): Promise<string> {
    if (ch.scheme === 'basic') {
      if (creds?.kind !== 'basic') throw authFailed(host, 'registry requires username and password');
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    const token = await this.bearerToken(host, ch, scopes, creds, extraScopes);
    return `Bearer ${token}`;
  }

  private cacheKey(ch: Challenge, scopes: readonly string[], creds: Credentials | undefined): string {
    // Credentials only enter the key as a hash, so the map never holds secrets in readable form.
    const who = creds ? createHash('sha256').update(JSON.stringify(creds)).digest('hex') : 'anonymous';
    return [ch.params.realm ?? '', ch.params.service ?? '', [...scopes].sort().join(' '), who].join('|');
  }

  private dropToken(ch: Challenge, scopes: readonly string[], creds: Credentials | undefined): void {
    this.tokens.delete(this.cacheKey(ch, scopes, creds));
  }

  private async bearerToken(
    host: string,
    ch: Challenge,
    scopes: readonly string[],
    creds: Credentials | undefined,
    extraScopes: readonly string[],
  ): Promise<string> {
    const key = this.cacheKey(ch, scopes, creds);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > this.now()) return cached.token;
    const running = this.inflight.get(key);
    if (running) return running;
    const wanted = [...new Set([...scopes, ...extraScopes])];
    const p = this.fetchToken(host, ch, wanted, creds)
      .then((res) => {
        const now = this.now();
        const issued = res.issuedAt?.getTime() ?? now;
        // Expired tokens go as new ones come: one per repository and credentials ever pulled otherwise.
        for (const [k, t] of this.tokens) if (t.expiresAt <= now) this.tokens.delete(k);
        this.tokens.set(key, { token: res.token, expiresAt: issued + res.expiresInSeconds * 1000 - EXPIRY_MARGIN_MS });
        return res.token;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async fetchToken(host: string, ch: Challenge, scopes: readonly string[], creds: Credentials | undefined): Promise<TokenResponse> {
    const realm = ch.params.realm;
    if (!realm) throw authFailed(host, 'bearer challenge without realm');
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw authFailed(host, 'bearer challenge with an invalid realm');
    }
    if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') throw authFailed(host, 'bearer realm must be http(s)');
    const service = ch.params.service;
    let req: TokenHttpRequest;
    if (creds?.kind === 'refresh') {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.refreshToken, client_id: CLIENT_ID });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      req = { method: 'POST', url: realmUrl.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() };
    } else {
      const url = new URL(realmUrl);
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (creds?.kind === 'basic') {
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
        url.searchParams.set('account', creds.username);
      }
      url.searchParams.set('client_id', CLIENT_ID);
      req = { method: 'GET', url: url.toString(), headers };
    }
    let res: TokenHttpResponse;
    try {
      res = await this.http(req);
    } catch (err) {
      if (err instanceof CrispError) throw err;
      throw unavailable(`token server ${realmUrl.host} for ${host} unreachable`, err);
    }
    if (res.status === 401) throw authFailed(host, creds ? 'credentials rejected by token server' : 'token server requires credentials');
    if (res.status === 403) throw authFailed(host, 'token server denied access', 'PERMISSION_DENIED');
    if (res.status < 200 || res.status > 299) throw unavailable(`token server ${realmUrl.host} for ${host} answered HTTP ${res.status}`);
    const parsed = parseTokenResponse(res.body);
    if (!parsed) throw authFailed(host, `token server ${realmUrl.host} returned no token`);
    return parsed;
  }
}

function challengeScopes(ch: Challenge): string[] {
  const s = ch.params.scope;
  return s ? s.split(' ').filter((x) => x.length > 0) : [];
}

// Per-registry endpoint configuration in containerd's hosts.toml layout:
//   <config_path>/<host>_<port>_/hosts.toml, <config_path>/<host:port>/hosts.toml, <config_path>/_default/hosts.toml
// A namespace resolves to an ordered endpoint list: the [host."…"] entries in file order (mirrors), then
// the server. Without hosts.toml a directory's Docker-style certificate files (*.crt, *.cert + *.key) apply
// to the default server. Relative paths in hosts.toml are relative to its directory.
import { readFile, readdir, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { parse as parseToml, type TomlTable, type TomlValue } from 'smol-toml';
import { failedPrecondition, isENOENT, errorMessage } from '../../common/errors.js';
import { DEFAULT_DOMAIN } from './reference.js';

export type HostCapability = 'pull' | 'resolve' | 'push';
const ALL_CAPABILITIES: readonly HostCapability[] = ['pull', 'resolve', 'push'];

export interface ClientCertificate {
  cert: string;
  /** Key file; undefined when the key lives in the cert file. */
  key?: string;
}

export interface RegistryEndpoint {
  scheme: 'http' | 'https';
  /** host[:port] to connect to. */
  host: string;
  /** API root path, normally "/v2". */
  path: string;
  capabilities: readonly HostCapability[];
  /** CA bundles added to the system roots for this endpoint. */
  caFiles: string[];
  clientCertificates: ClientCertificate[];
  skipVerify: boolean;
  header: Record<string, string[]>;
  /** Connect timeout from `dial_timeout`; the client default applies when unset. */
  dialTimeoutMs?: number;
  /** A [host] entry rather than the server: requests carry ?ns=<namespace> as containerd's do. */
  mirror: boolean;
  /** A defaulted localhost endpoint: try TLS (unverified) and fall back to plain HTTP if the peer does not speak it. */
  httpFallback: boolean;
}

export interface HostsOptions {
  /** containerd's registry config_path: one directory or several (a ':'-separated string is split too). */
  configPath?: string | readonly string[];
  /**
   * Hosts whose defaulted server endpoint speaks plain HTTP: "host:port", "host:*" or "*". Only applies where
   * hosts.toml does not name a server. For tests and labs; hosts.toml `server = "http://…"` is the real knob.
   */
  plainHttpHosts?: readonly string[];
}

/** The directory names searched for a namespace, in containerd's order. */
export function hostDirectoryNames(namespace: string): string[] {
  const names: string[] = [];
  const colon = namespace.lastIndexOf(':');
  if (colon > 0 && !namespace.endsWith(']')) names.push(`${namespace.slice(0, colon)}_${namespace.slice(colon + 1)}_`);
  names.push(namespace, '_default');
  return names;
}

export function configRoots(configPath: HostsOptions['configPath']): string[] {
  if (configPath === undefined) return [];
  const list = typeof configPath === 'string' ? configPath.split(':') : [...configPath];
  return list.filter((p) => p.length > 0);
}

/** First existing host directory for `namespace` under the config roots, or undefined. */
export async function findHostDirectory(namespace: string, roots: readonly string[]): Promise<string | undefined> {
  for (const root of roots) {
    for (const name of hostDirectoryNames(namespace)) {
      const dir = join(root, name);
      try {
        if ((await stat(dir)).isDirectory()) return dir;
      } catch (err) {
        if (!isENOENT(err)) throw failedPrecondition(`registry hosts config ${dir}: ${errorMessage(err)}`, err);
      }
    }
  }
  return undefined;
}

/** The ordered endpoints to try for a registry namespace ("docker.io", "127.0.0.1:5000", …). */
export async function loadEndpoints(namespace: string, options: HostsOptions = {}): Promise<RegistryEndpoint[]> {
  const dir = await findHostDirectory(namespace, configRoots(options.configPath));
  if (dir === undefined) return [defaultServer(namespace, options)];
  const file = join(dir, 'hosts.toml');
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!isENOENT(err)) throw failedPrecondition(`registry hosts config ${file}: ${errorMessage(err)}`, err);
  }
  if (text === undefined || text.trim().length === 0) {
    const server = defaultServer(namespace, options);
    return [{ ...server, ...(await dockerCertFiles(dir)) }];
  }
  return parseHostsToml(text, namespace, dir, options);
}

/** Parse one hosts.toml (its text, the namespace it configures, its directory for relative paths). */
export function parseHostsToml(text: string, namespace: string, baseDir: string, options: HostsOptions = {}): RegistryEndpoint[] {
  const where = `${join(baseDir, 'hosts.toml')}`;
  let doc: TomlTable;
  try {
    doc = parseToml(text);
  } catch (err) {
    throw failedPrecondition(`registry hosts config ${where}: ${errorMessage(err)}`, err);
  }
  const fail = (msg: string) => failedPrecondition(`registry hosts config ${where}: ${msg}`);
  const endpoints: RegistryEndpoint[] = [];
  const hosts = doc.host;
  if (hosts !== undefined) {
    if (!isTable(hosts)) throw fail('"host" must be a table of [host."<url>"] entries');
    for (const [url, entry] of Object.entries(hosts)) {
      if (!isTable(entry)) throw fail(`host "${url}" must be a table`);
      const ep = endpointFromUrl(url, entry, baseDir, fail);
      endpoints.push({ ...ep, mirror: ep.host !== namespace });
    }
  }
  const server = doc.server;
  if (server !== undefined && typeof server !== 'string') throw fail('"server" must be a string');
  if (server) {
    endpoints.push({ ...endpointFromUrl(server, doc, baseDir, fail), mirror: false });
  } else {
    // Root-level settings (ca, skip_verify, …) still apply to the defaulted server.
    const fallback = defaultServer(namespace, options);
    const s = hostSettings(doc, baseDir, fail);
    endpoints.push({
      ...fallback,
      capabilities: s.capabilities,
      caFiles: s.caFiles,
      clientCertificates: s.clientCertificates,
      skipVerify: doc.skip_verify === undefined ? fallback.skipVerify : s.skipVerify,
      header: s.header,
      ...(s.dialTimeoutMs !== undefined ? { dialTimeoutMs: s.dialTimeoutMs } : {}),
    });
  }
  return endpoints;
}

/** The server a namespace uses when nothing configures one. */
export function defaultServer(namespace: string, options: HostsOptions = {}): RegistryEndpoint {
  const base: RegistryEndpoint = {
    scheme: 'https',
    host: namespace,
    path: '/v2',
    capabilities: ALL_CAPABILITIES,
    caFiles: [],
    clientCertificates: [],
    skipVerify: false,
    header: {},
    mirror: false,
    httpFallback: false,
  };
  if (namespace === DEFAULT_DOMAIN) return { ...base, host: 'registry-1.docker.io' };
  if (matchesPlainHttp(namespace, options.plainHttpHosts ?? [])) return { ...base, scheme: 'http' };
  if (isLocalhost(namespace)) {
    const port = splitHostPort(namespace).port;
    if (port === '' || port === '443') return base;
    if (port === '80') return { ...base, scheme: 'http' };
    return { ...base, skipVerify: true, httpFallback: true };
  }
  return base;
}

type Fail = (msg: string) => Error;

function endpointFromUrl(raw: string, table: TomlTable, baseDir: string, fail: Fail): Omit<RegistryEndpoint, 'mirror'> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) && !/^https?:\/\//i.test(raw)) throw fail(`"${raw}": scheme must be http or https`);
  const withScheme = /^https?:\/\//i.test(raw) ? raw : `https://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw fail(`"${raw}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw fail(`"${raw}": scheme must be http or https`);
  const settings = hostSettings(table, baseDir, fail);
  let path = url.pathname.replace(/\/+$/, '').replace(/\/{2,}/g, '/');
  if (!settings.overridePath && !path.endsWith('/v2')) path = `${path}/v2`;
  return {
    scheme: url.protocol === 'http:' ? 'http' : 'https',
    host: url.host,
    path,
    capabilities: settings.capabilities,
    caFiles: settings.caFiles,
    clientCertificates: settings.clientCertificates,
    skipVerify: settings.skipVerify,
    header: settings.header,
    ...(settings.dialTimeoutMs !== undefined ? { dialTimeoutMs: settings.dialTimeoutMs } : {}),
    httpFallback: false,
  };
}

interface HostSettings {
  capabilities: readonly HostCapability[];
  caFiles: string[];
  clientCertificates: ClientCertificate[];
  skipVerify: boolean;
  header: Record<string, string[]>;
  overridePath: boolean;
  dialTimeoutMs?: number;
}

function hostSettings(t: TomlTable, baseDir: string, fail: Fail): HostSettings {
  const abs = (p: string) => (isAbsolute(p) ? p : join(baseDir, p));
  const capabilities: HostCapability[] = [];
  if (t.capabilities !== undefined) {
    for (const c of stringList(t.capabilities, 'capabilities', fail)) {
      const lc = c.toLowerCase();
      if (lc !== 'pull' && lc !== 'resolve' && lc !== 'push') throw fail(`unknown capability "${c}"`);
      if (!capabilities.includes(lc)) capabilities.push(lc);
    }
  }
  const caFiles = t.ca === undefined ? [] : stringList(t.ca, 'ca', fail).map(abs);
  const clientCertificates: ClientCertificate[] = [];
  if (t.client !== undefined) {
    const items = typeof t.client === 'string' ? [t.client] : t.client;
    if (!Array.isArray(items)) throw fail('"client" must be a path, a list of paths or a list of [cert, key] pairs');
    for (const item of items) {
      if (typeof item === 'string') clientCertificates.push({ cert: abs(item) });
      else if (Array.isArray(item) && item.length === 2 && item.every((x) => typeof x === 'string')) {
        const [cert, key] = item as [string, string];
        clientCertificates.push(key ? { cert: abs(cert), key: abs(key) } : { cert: abs(cert) });
      } else throw fail('"client" pairs must be [cert, key] paths');
    }
  }
  if (t.skip_verify !== undefined && typeof t.skip_verify !== 'boolean') throw fail('"skip_verify" must be a boolean');
  if (t.override_path !== undefined && typeof t.override_path !== 'boolean') throw fail('"override_path" must be a boolean');
  const header: Record<string, string[]> = {};
  if (t.header !== undefined) {
    if (!isTable(t.header)) throw fail('"header" must be a table');
    for (const [k, v] of Object.entries(t.header)) header[k] = stringList(v, `header ${k}`, fail);
  }
  let dialTimeoutMs: number | undefined;
  if (t.dial_timeout !== undefined) {
    if (typeof t.dial_timeout !== 'string') throw fail('"dial_timeout" must be a duration string like "1s"');
    dialTimeoutMs = parseGoDuration(t.dial_timeout);
    if (dialTimeoutMs === undefined) throw fail(`bad dial_timeout "${t.dial_timeout}"`);
  }
  return {
    capabilities: capabilities.length > 0 ? capabilities : ALL_CAPABILITIES,
    caFiles,
    clientCertificates,
    skipVerify: t.skip_verify === true,
    header,
    overridePath: t.override_path === true,
    ...(dialTimeoutMs !== undefined ? { dialTimeoutMs } : {}),
  };
}

/** Docker's certs.d layout: *.crt are CAs, *.cert with a same-named *.key are client pairs. */
async function dockerCertFiles(dir: string): Promise<Pick<RegistryEndpoint, 'caFiles' | 'clientCertificates'>> {
  const names = (await readdir(dir)).sort();
  const caFiles = names.filter((n) => n.endsWith('.crt')).map((n) => join(dir, n));
  const clientCertificates: ClientCertificate[] = [];
  for (const n of names.filter((x) => x.endsWith('.cert'))) {
    const key = `${n.slice(0, -'.cert'.length)}.key`;
    if (!names.includes(key)) throw failedPrecondition(`registry certs ${dir}: client certificate ${n} has no ${key}`);
    clientCertificates.push({ cert: join(dir, n), key: join(dir, key) });
  }
  return { caFiles, clientCertificates };
}

/** Endpoints allowed to do `op`, in order. Resolving a tag needs "resolve"; fetching by digest needs "pull". */
export function endpointsFor(op: HostCapability, endpoints: readonly RegistryEndpoint[]): RegistryEndpoint[] {
  return endpoints.filter((e) => e.capabilities.includes(op));
}

export function splitHostPort(hostport: string): { host: string; port: string } {
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    const rest = hostport.slice(end + 1);
    return { host: hostport.slice(1, end), port: rest.startsWith(':') ? rest.slice(1) : '' };
  }
  const colon = hostport.lastIndexOf(':');
  return colon < 0 ? { host: hostport, port: '' } : { host: hostport.slice(0, colon), port: hostport.slice(colon + 1) };
}

export function isLocalhost(hostport: string): boolean {
  const { host } = splitHostPort(hostport);
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function matchesPlainHttp(namespace: string, patterns: readonly string[]): boolean {
  const { host } = splitHostPort(namespace);
  return patterns.some((p) => p === '*' || p === namespace || (p.endsWith(':*') && p.slice(0, -2) === host));
}

/** Go's time.ParseDuration subset hosts.toml uses ("300ms", "1s", "1m30s"); undefined when malformed. */
export function parseGoDuration(s: string): number | undefined {
  const unitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  if (s === '0') return 0;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (unitMs[m[2]!] ?? 0);
    pos = re.lastIndex;
  }
  return pos === s.length && pos > 0 ? total : undefined;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function stringList(v: TomlValue, what: string, fail: Fail): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw fail(`"${what}" must be a string or a list of strings`);
}

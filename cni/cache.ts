// The attachment cache: per (network, container, interface), the exact config list, runtime args and
// final result of an ADD. DEL and CHECK use it instead of the conf dir, so they work after a daemon
// restart even when the conf dir has changed or emptied since.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, internal, isENOENT } from '../common/errors.js';
import { isAtomicTempFile, writeFileAtomic } from '../common/atomic-file.js';
import { validateNetworkConfig } from './config.js';
import { isJsonObject, type JsonObject, type JsonValue, type NetworkConfigList } from './types.js';

export const DEFAULT_CACHE_DIR = '/var/lib/crisp/cni/results';
const CACHE_KIND = 'crisp.cni.cache/v1';

export interface CacheEntry {
  containerId: string;
  ifName: string;
  networkName: string;
  netnsPath: string;
  /** The conf file the config came from (for humans; DEL never re-reads it). */
  confFile: string;
  cniArgs: string;
  capabilityArgs: JsonObject;
  config: NetworkConfigList;
  /** The final ADD result; absent while an ADD is in flight or after one that failed part-way. */
  result?: JsonObject;
}

export function cacheFileName(networkName: string, containerId: string, ifName: string): string {
  return `${networkName}-${containerId}-${ifName}.json`;
}

export function cachePath(dir: string, e: Pick<CacheEntry, 'networkName' | 'containerId' | 'ifName'>): string {
  return join(dir, cacheFileName(e.networkName, e.containerId, e.ifName));
}

export async function writeCacheEntry(dir: string, entry: CacheEntry): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = cachePath(dir, entry);
  const body: JsonObject = { kind: CACHE_KIND, ...toJson(entry), updatedAt: new Date().toISOString() };
  // Atomic, not fsynced (libcni's own cache is a plain write): after a power cut DEL runs from the
  // network config when the result is gone, and CNI plugins must accept a DEL without prevResult.
  await writeFileAtomic(path, JSON.stringify(body, null, 2) + '\n', 0o600, { durable: false });
  return path;
}

function toJson(e: CacheEntry): JsonObject {
  const o: JsonObject = {
    containerId: e.containerId,
    ifName: e.ifName,
    networkName: e.networkName,
    netnsPath: e.netnsPath,
    confFile: e.confFile,
    cniArgs: e.cniArgs,
    capabilityArgs: e.capabilityArgs,
    config: e.config as JsonObject,
  };
  if (e.result) o.result = e.result;
  return o;
}

function cachedConfig(path: string, v: JsonValue | undefined): NetworkConfigList {
  if (!isJsonObject(v) || !Array.isArray(v.plugins)) throw internal(`${path}: field "config" must be a network config list`);
  // Re-validated so a hand-edited or truncated cache cannot feed garbage to plugins.
  return validateNetworkConfig(`${path} (config)`, v);
}

/** Parse a cache file's text; throws with the path on anything unexpected. */
export function parseCacheEntry(path: string, text: string): CacheEntry {
  let v: JsonValue;
  try {
    v = JSON.parse(text) as JsonValue;
  } catch (err) {
    throw internal(`${path}: invalid JSON: ${errorMessage(err)}`);
  }
  if (!isJsonObject(v) || v.kind !== CACHE_KIND) throw internal(`${path}: not a ${CACHE_KIND} file`);
  const strField = (k: string): string => {
    const f = v[k];
    if (typeof f !== 'string') throw internal(`${path}: field "${k}" must be a string`);
    return f;
  };
  const capabilityArgs = v.capabilityArgs;
  if (!isJsonObject(capabilityArgs)) throw internal(`${path}: field "capabilityArgs" must be an object`);
  const result = v.result;
  if (result !== undefined && !isJsonObject(result)) throw internal(`${path}: field "result" must be an object`);
  const entry: CacheEntry = {
    containerId: strField('containerId'),
    ifName: strField('ifName'),
    networkName: strField('networkName'),
    netnsPath: strField('netnsPath'),
    confFile: strField('confFile'),
    cniArgs: strField('cniArgs'),
    capabilityArgs,
    config: cachedConfig(path, v.config),
  };
  if (result) entry.result = result;
  return entry;
}

export async function readCacheEntry(dir: string, networkName: string, containerId: string, ifName: string): Promise<CacheEntry | undefined> {
  const path = join(dir, cacheFileName(networkName, containerId, ifName));
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw err;
  }
  return parseCacheEntry(path, text);
}

export interface CacheLookup {
  entries: CacheEntry[];
  /** Files that matched by name but could not be used, with why. */
  broken: { path: string; reason: string }[];
}

/**
 * Every cached attachment of (containerId, ifName), whatever network it was made on: the network's
 * name may have changed since. Names are matched by suffix and confirmed by content, since network
 * names and ids may both contain '-'.
 */
export async function findCacheEntries(dir: string, containerId: string, ifName: string): Promise<CacheLookup> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isENOENT(err)) return { entries: [], broken: [] };
    throw err;
  }
  const suffix = `-${containerId}-${ifName}.json`;
  const out: CacheLookup = { entries: [], broken: [] };
  for (const name of names.sort()) {
    if (isAtomicTempFile(name) || !name.endsWith(suffix)) continue;
    const path = join(dir, name);
    try {
      const e = parseCacheEntry(path, await readFile(path, 'utf8'));
      if (e.containerId === containerId && e.ifName === ifName) out.entries.push(e);
    } catch (err) {
      if (!isENOENT(err)) out.broken.push({ path, reason: errorMessage(err) });
    }
  }
  return out;
}

export async function removeCacheEntry(dir: string, e: Pick<CacheEntry, 'networkName' | 'containerId' | 'ifName'>): Promise<void> {
  await rm(cachePath(dir, e), { force: true });
}

// The CNI API the sandbox calls: attach a pod's netns to the network (ADD), verify it (CHECK), detach it
// (DEL), and report whether networking is usable at all (STATUS). Stateless between calls apart from
// the on-disk cache, so a restarted daemon can detach what an earlier one attached.
import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { CrispError, errorMessage, failedPrecondition, invalidArgument, isENOENT, notFound, withContext } from '../common/errors.js';
import { buildCapabilityArgs } from './capabilities.js';
import { isIdlePluginRun } from './idle-plugins.js';
import { DEFAULT_CACHE_DIR, findCacheEntries, removeCacheEntry, writeCacheEntry, type CacheEntry } from './cache.js';
import { compareCniVersions, DEFAULT_CONF_DIR, discoverNetwork, notReadyMessage, SUPPORTED_CNI_VERSIONS } from './config.js';
import {
  buildPluginConfig,
  CNI_ERR_CONTAINER_UNKNOWN,
  DEFAULT_BIN_DIRS,
  DEFAULT_TIMEOUT_MS,
  execPlugin,
  findPlugin,
  isCniPluginError,
  podCniArgs,
  type CniCommand,
  type ExecOptions,
} from './exec.js';
import { parseCniResult, podIps } from './result.js';
import type { CniResult, JsonObject, NetworkConfigList, PodAttachment, PodDetachment, PodIp, SkippedConfig } from './types.js';
import { timeNetworkOperation } from '../common/operation-metrics.js';

export interface CniOptions {
  /** Where conflists live; default /etc/cni/net.d. */
  confDir?: string;
  /** Plugin search path, first hit wins; default /opt/cni/bin, /usr/lib/cni. */
  binDirs?: readonly string[];
  /** Attachment cache; default /var/lib/crisp/cni/results. */
  cacheDir?: string;
  /** Per plugin call; default 60 s. */
  timeoutMs?: number;
  logger?: Logger;
}

export interface CniAddResult {
  network: string;
  confFile: string;
  result: CniResult;
  /** The result's addresses on the pod interface, IPv4 first. */
  podIps: PodIp[];
}

export interface CniStatus {
  ready: boolean;
  /** Set when not ready; the CRI NetworkReady condition's reason. */
  reason?: 'NetworkPluginNotReady';
  message?: string;
  network?: string;
  confFile?: string;
  /** Config files that were passed over, with why (also useful when ready). */
  skipped: SkippedConfig[];
}

export interface CniPluginVersion {
  type: string;
  path?: string;
  supportedVersions?: string[];
  error?: string;
}

export interface CniVersionReport {
  /** Spec versions crisp accepts in a config. */
  supportedVersions: readonly string[];
  network?: { name: string; cniVersion: string; confFile: string };
  plugins: CniPluginVersion[];
}

export const NETWORK_NOT_READY = 'NetworkPluginNotReady';
const DEFAULT_IFNAME = 'eth0';
const NSFS_MAGIC = 0x6e736673;

interface Resolved {
  confDir: string;
  cacheDir: string;
  exec: ExecOptions;
  logger?: Logger;
}

function resolve(o: CniOptions): Resolved {
  const exec: ExecOptions = { binDirs: o.binDirs ?? DEFAULT_BIN_DIRS, timeoutMs: o.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  if (o.logger) exec.logger = o.logger;
  const r: Resolved = { confDir: o.confDir ?? DEFAULT_CONF_DIR, cacheDir: o.cacheDir ?? DEFAULT_CACHE_DIR, exec };
  if (o.logger) r.logger = o.logger;
  return r;
}

// The spec's rules for container ids and interface names; they also keep cache file names safe.
function checkIds(step: string, containerId: string, ifName: string | undefined): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(containerId)) {
    throw invalidArgument(`pod ${JSON.stringify(containerId)}: CNI ${step}: container id must be letters, digits, _ . -`);
  }
  const name = ifName ?? DEFAULT_IFNAME;
  if (name.length === 0 || name.length > 15 || name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw invalidArgument(`pod ${containerId}: CNI ${step}: invalid interface name ${JSON.stringify(name)}`);
  }
  return name;
}

const atLeast040 = (list: NetworkConfigList): boolean => compareCniVersions(list.cniVersion, '0.4.0') >= 0;

/**
 * The netns path to hand a DEL: the path if it still is a namespace, else empty. A gone or unmounted
 * netns makes plugins fail on "not a namespace", while an empty CNI_NETNS makes them clean up only
 * what lives outside the pod (IPAM, iptables), which is exactly what is left to do.
 */
async function netnsForDel(path: string | undefined): Promise<string> {
  if (!path) return '';
  try {
    return (await statfs(path)).type === NSFS_MAGIC ? path : '';
  } catch (err) {
    if (isENOENT(err)) return '';
    throw err;
  }
}

/** DEL failures that mean "already gone", which is the goal of a DEL. */
export function isAlreadyGone(err: unknown): boolean {
  if (isCniPluginError(err)) {
    if (err.notInstalled) return false;
    if (err.cniCode === CNI_ERR_CONTAINER_UNKNOWN) return true;
  }
  return /not found|no such (file|device|process)|does not exist|doesn't exist|cannot find/i.test(errorMessage(err));
}

/** Whether this plugin run would do nothing (cni/idle-plugins.ts) and is left out; says so in the debug log. */
function leftOut(o: Resolved, command: CniCommand, config: JsonObject, containerId: string): boolean {
  if (!isIdlePluginRun(command, config)) return false;
  o.logger?.debug({ plugin: config.type, command, containerId }, 'cni plugin left out: nothing to do for this pod');
  return true;
}

/** DEL plugins[from..0] in reverse; returns the failures that matter (already-gone ones are logged). */
async function delChain(o: Resolved, e: CacheEntry, netns: string, from: number, prevResult: JsonObject | undefined): Promise<string[]> {
  const failures: string[] = [];
  const prev = atLeast040(e.config) ? prevResult : undefined;
  for (let j = from; j >= 0; j--) {
    const plugin = e.config.plugins[j];
    if (!plugin) continue;
    const config = buildPluginConfig(e.config, plugin, e.capabilityArgs, prev);
    if (leftOut(o, 'DEL', config, e.containerId)) continue;
    try {
      await execPlugin(
        {
          command: 'DEL',
          type: plugin.type,
          config,
          containerId: e.containerId,
          netns,
          ifName: e.ifName,
          cniArgs: e.cniArgs,
        },
        o.exec,
      );
    } catch (err) {
      if (isAlreadyGone(err)) {
        o.logger?.debug({ containerId: e.containerId, plugin: plugin.type, err: errorMessage(err) }, 'cni DEL: already gone');
        continue;
      }
      failures.push(errorMessage(err));
    }
  }
  return failures;
}

/** CNI_ARGS and capability args from what the caller knows; bad input is the caller's error, with context. */
function runtimeArgs(ctx: string, step: string, att: PodDetachment): { cniArgs: string; capabilityArgs: JsonObject } {
  try {
    return { cniArgs: podCniArgs(att), capabilityArgs: buildCapabilityArgs(att) as JsonObject };
  } catch (err) {
    throw withContext(`${ctx}: CNI ${step}`, err);
  }
}

/** Attach the pod: ADD through the chain in order. On failure everything added so far is deleted again. */
export async function cniAdd(att: PodAttachment, options: CniOptions = {}): Promise<CniAddResult> {
  const o = resolve(options);
  const ifName = checkIds('ADD', att.containerId, att.ifName);
  const ctx = `pod ${att.containerId}`;
  if (!att.netnsPath) throw invalidArgument(`${ctx}: CNI ADD: netns path is empty`);
  const { cniArgs, capabilityArgs } = runtimeArgs(ctx, 'ADD', att);
  const discovery = await discoverNetwork(o.confDir);
  if (!discovery.network) throw failedPrecondition(`${ctx}: CNI ADD: ${notReadyMessage(discovery)}`);
  const { list, file } = discovery.network;
  const entry: CacheEntry = {
    containerId: att.containerId,
    ifName,
    networkName: list.name,
    netnsPath: att.netnsPath,
    confFile: file,
    cniArgs,
    capabilityArgs,
    config: list,
  };
  // Cached before any plugin runs: if the daemon dies mid-ADD, DEL still knows which config to undo.
  await writeCacheEntry(o.cacheDir, entry).catch((err: unknown) => {
    throw withContext(`${ctx}: CNI ADD: writing the attachment cache`, err);
  });

  let prev: JsonObject | undefined;
  let step = 0;
  try {
    for (const [i, plugin] of list.plugins.entries()) {
      step = i;
      const config = buildPluginConfig(list, plugin, entry.capabilityArgs, prev);
      if (leftOut(o, 'ADD', config, att.containerId)) continue;
      const out = await execPlugin(
        {
          command: 'ADD',
          type: plugin.type,
          config,
          containerId: att.containerId,
          netns: att.netnsPath,
          ifName,
          cniArgs: entry.cniArgs,
        },
        o.exec,
      );
      // A plugin that prints nothing passes the previous result through.
      if (out) prev = out;
    }
    step = list.plugins.length - 1;
    const result = parseCniResult(`CNI ADD ${list.name}`, prev ?? {});
    if (prev) entry.result = prev;
    await writeCacheEntry(o.cacheDir, entry);
    o.logger?.debug({ containerId: att.containerId, network: list.name, ips: result.ips.map((i) => i.address) }, 'cni ADD done');
    return { network: list.name, confFile: file, result, podIps: podIps(result, ifName) };
  } catch (err) {
    throw await undoAdd(o, entry, step, prev, err);
  }
}

/** DEL plugins[failed..0] after a failed ADD; returns the error to throw, saying whether the undo worked. */
async function undoAdd(o: Resolved, entry: CacheEntry, failed: number, prev: JsonObject | undefined, cause: unknown): Promise<CrispError> {
  const ctx = `pod ${entry.containerId}: network ${entry.networkName}`;
  // The failing plugin is included: it may have done part of its work before failing.
  const failures = await delChain(o, entry, await netnsForDel(entry.netnsPath), failed, prev);
  const kind = cause instanceof CrispError ? cause.kind : 'INTERNAL';
  if (failures.length === 0) {
    await removeCacheEntry(o.cacheDir, entry).catch((err: unknown) => o.logger?.warn({ containerId: entry.containerId, err: errorMessage(err) }, 'cni cache entry not removed'));
    return new CrispError(kind, `${ctx}: ${errorMessage(cause)}`, { cause });
  }
  // Keep the cache so a later DEL (kubelet's StopPodSandbox) can finish the cleanup.
  if (prev) entry.result = prev;
  await writeCacheEntry(o.cacheDir, entry).catch(() => undefined);
  o.logger?.warn({ containerId: entry.containerId, failures }, 'cni ADD undo incomplete');
  return new CrispError(kind, `${ctx}: ${errorMessage(cause)} (undo incomplete: ${failures.join('; ')})`, { cause });
}

/**
 * Detach the pod: DEL through the chain in reverse with the config and result cached at ADD time. Without
 * a cache entry the current config is used (best effort); without either there is nothing to undo.
 * Already-gone failures are ignored; other failures keep the cache entry and throw, so a retry can finish.
 */
export async function cniDel(det: PodDetachment, options: CniOptions = {}): Promise<void> {
  const o = resolve(options);
  const ifName = checkIds('DEL', det.containerId, det.ifName);
  const ctx = `pod ${det.containerId}`;
  const lookup = await findCacheEntries(o.cacheDir, det.containerId, ifName);
  for (const b of lookup.broken) o.logger?.warn({ containerId: det.containerId, path: b.path, reason: b.reason }, 'cni cache entry unusable');

  let entries = lookup.entries;
  let fromCache = true;
  if (entries.length === 0) {
    const discovery = await discoverNetwork(o.confDir);
    if (!discovery.network) {
      o.logger?.info({ containerId: det.containerId }, 'cni DEL: no cached attachment and no network config; nothing to undo');
      return;
    }
    fromCache = false;
    const { cniArgs, capabilityArgs } = runtimeArgs(ctx, 'DEL', det);
    entries = [
      {
        containerId: det.containerId,
        ifName,
        networkName: discovery.network.list.name,
        netnsPath: det.netnsPath ?? '',
        confFile: discovery.network.file,
        cniArgs,
        capabilityArgs,
        config: discovery.network.list,
      },
    ];
  }

  const failures: string[] = [];
  for (const e of entries) {
    const netns = await netnsForDel(det.netnsPath ?? e.netnsPath);
    const f = await delChain(o, e, netns, e.config.plugins.length - 1, e.result);
    if (f.length > 0) {
      failures.push(`network ${e.networkName}: ${f.join('; ')}`);
      continue;
    }
    if (fromCache) await removeCacheEntry(o.cacheDir, e);
  }
  // Unreadable entries are left alone: their name alone cannot prove they belong to this pod.
  if (failures.length > 0) throw new CrispError('INTERNAL', `${ctx}: CNI DEL: ${failures.join('; ')}`);
}

/** CHECK the attachment against what ADD cached. Skipped where the spec has no CHECK (< 0.4.0) or the list disables it. */
export async function cniCheck(att: Pick<PodAttachment, 'containerId' | 'netnsPath' | 'ifName'>, options: CniOptions = {}): Promise<void> {
  const o = resolve(options);
  const ifName = checkIds('CHECK', att.containerId, att.ifName);
  const ctx = `pod ${att.containerId}`;
  const { entries } = await findCacheEntries(o.cacheDir, att.containerId, ifName);
  if (entries.length === 0) throw notFound(`${ctx}: CNI CHECK: no cached attachment on ${ifName}`);
  for (const e of entries) {
    if (!atLeast040(e.config) || e.config.disableCheck === true) continue;
    if (!e.result) throw failedPrecondition(`${ctx}: CNI CHECK: network ${e.networkName}: ADD never completed`);
    for (const plugin of e.config.plugins) {
      const config = buildPluginConfig(e.config, plugin, e.capabilityArgs, e.result);
      if (leftOut(o, 'CHECK', config, e.containerId)) continue;
      try {
        await execPlugin(
          {
            command: 'CHECK',
            type: plugin.type,
            config,
            containerId: e.containerId,
            netns: att.netnsPath || e.netnsPath,
            ifName,
            cniArgs: e.cniArgs,
          },
          o.exec,
        );
      } catch (err) {
        const kind = err instanceof CrispError ? err.kind : 'INTERNAL';
        throw new CrispError(kind, `${ctx}: network ${e.networkName}: ${errorMessage(err)}`, { cause: err });
      }
    }
  }
}

async function pluginVersions(o: Resolved, type: string, cniVersion: string): Promise<string[]> {
  const out = await execPlugin({ command: 'VERSION', type, config: { cniVersion } }, o.exec);
  const v = out?.supportedVersions;
  if (!Array.isArray(v)) throw new CrispError('INTERNAL', `CNI VERSION ${type}: no supportedVersions in output`);
  return v.filter((x): x is string => typeof x === 'string');
}

/**
 * Whether pod networking can work: a valid config, its plugins installed, and (for 1.1.0 configs) every
 * plugin that implements STATUS saying it is ready. Never throws for "not ready"; that is the answer.
 */
export async function cniStatus(options: CniOptions = {}): Promise<CniStatus> {
  const o = resolve(options);
  const d = await discoverNetwork(o.confDir);
  if (!d.network) return { ready: false, reason: NETWORK_NOT_READY, message: notReadyMessage(d), skipped: d.skipped };
  const { list, file } = d.network;
  const base = { network: list.name, confFile: file, skipped: d.skipped };
  const notReady = (message: string): CniStatus => ({ ready: false, reason: NETWORK_NOT_READY, message: `network ${list.name} (${file}): ${message}`, ...base });

  const missing: string[] = [];
  for (const p of list.plugins) if (!(await findPlugin(p.type, o.exec.binDirs))) missing.push(p.type);
  if (missing.length > 0) return notReady(`plugin ${missing.join(', ')} not found in ${o.exec.binDirs.join(':')}`);

  if (compareCniVersions(list.cniVersion, '1.1.0') >= 0) {
    for (const p of list.plugins) {
      try {
        const versions = await pluginVersions(o, p.type, list.cniVersion);
        if (!versions.includes(list.cniVersion)) {
          return notReady(`plugin ${p.type} does not speak CNI ${list.cniVersion} (it speaks ${versions.join(', ')})`);
        }
        await execPlugin({ command: 'STATUS', type: p.type, config: buildPluginConfig(list, p, {}) }, o.exec);
      } catch (err) {
        return notReady(errorMessage(err));
      }
    }
  }
  return { ready: true, ...base };
}

/** Spec versions crisp accepts, and what each plugin of the current network says it speaks. */
export async function cniVersion(options: CniOptions = {}): Promise<CniVersionReport> {
  const o = resolve(options);
  const d = await discoverNetwork(o.confDir);
  const report: CniVersionReport = { supportedVersions: SUPPORTED_CNI_VERSIONS, plugins: [] };
  if (!d.network) return report;
  const { list, file } = d.network;
  report.network = { name: list.name, cniVersion: list.cniVersion, confFile: file };
  for (const p of list.plugins) {
    const entry: CniPluginVersion = { type: p.type };
    const path = await findPlugin(p.type, o.exec.binDirs);
    if (path) entry.path = path;
    try {
      entry.supportedVersions = await pluginVersions(o, p.type, list.cniVersion);
    } catch (err) {
      entry.error = errorMessage(err);
    }
    report.plugins.push(entry);
  }
  return report;
}

/**
 * Bring `lo` up inside a pod netns with the loopback plugin, outside any conflist (every pod needs it,
 * whatever network the conf dir names).
 */
export async function cniLoopbackUp(netnsPath: string, options: CniOptions & { containerId?: string } = {}): Promise<void> {
  const o = resolve(options);
  const containerId = options.containerId ?? 'crisp-loopback';
  checkIds('ADD loopback', containerId, 'lo');
  if (!netnsPath) throw invalidArgument(`pod ${containerId}: CNI ADD loopback: netns path is empty`);
  try {
    await execPlugin(
      {
        command: 'ADD',
        type: 'loopback',
        config: { cniVersion: '1.0.0', name: 'crisp-loopback', type: 'loopback' },
        containerId,
        netns: netnsPath,
        ifName: 'lo',
      },
      o.exec,
    );
  } catch (err) {
    const kind = err instanceof CrispError ? err.kind : 'INTERNAL';
    throw new CrispError(kind, `pod ${containerId}: ${errorMessage(err)}`, { cause: err });
  }
}

/** The same API bound to one set of options, as one object (easy to fake in sandbox tests). */
export interface PodNetwork {
  add(att: PodAttachment): Promise<CniAddResult>;
  check(att: Pick<PodAttachment, 'containerId' | 'netnsPath' | 'ifName'>): Promise<void>;
  del(det: PodDetachment): Promise<void>;
  status(): Promise<CniStatus>;
  version(): Promise<CniVersionReport>;
  loopbackUp(netnsPath: string, containerId?: string): Promise<void>;
}

export function createPodNetwork(options: CniOptions = {}): PodNetwork {
  return {
    add: (att) => timeNetworkOperation('ADD', () => cniAdd(att, options)),
    check: (att) => cniCheck(att, options),
    del: (det) => timeNetworkOperation('DEL', () => cniDel(det, options)),
    status: () => cniStatus(options),
    version: () => cniVersion(options),
    loopbackUp: (netnsPath, containerId) => cniLoopbackUp(netnsPath, containerId === undefined ? options : { ...options, containerId }),
  };
}

// Running one CNI plugin binary: locating it, building its stdin and environment, and turning its exit
// into a result object or a typed error that says which plugin failed and what it said.
import { performance } from 'node:perf_hooks';
import { findExecutable, runCommand, succeeded } from '../native/spawner.js';
import type { Logger } from 'pino';
import { CrispError, type ErrorKind, errorMessage } from '../common/errors.js';
import { traced } from '../common/tracing.js';
import { filterRuntimeConfig, type CapabilityArgs } from './capabilities.js';
import { isJsonObject, type JsonObject, type JsonValue, type NetworkConfigList, type PluginConf } from './types.js';

export const DEFAULT_BIN_DIRS: readonly string[] = ['/opt/cni/bin', '/usr/lib/cni'];
export const DEFAULT_TIMEOUT_MS = 60_000;

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

/** The spec's well-known error codes that change how crisp reacts. */
export const CNI_ERR_INCOMPATIBLE_VERSION = 1;
export const CNI_ERR_CONTAINER_UNKNOWN = 3;
export const CNI_ERR_TRY_AGAIN_LATER = 11;
export const CNI_ERR_PLUGIN_NOT_AVAILABLE = 50;
export const CNI_ERR_PLUGIN_LIMITED = 51;

export interface ExecOptions {
  binDirs: readonly string[];
  timeoutMs: number;
  logger?: Logger;
}

export interface PluginInvocation {
  command: CniCommand;
  /** Plugin type = binary name. */
  type: string;
  /** What goes to stdin. */
  config: JsonObject;
  containerId?: string;
  netns?: string;
  ifName?: string;
  /** Already joined "K=V;K=V". */
  cniArgs?: string;
}

/** The error object a plugin prints on stdout when it fails. */
export interface PluginErrorBody {
  code?: number;
  msg: string;
  details?: string;
}

export interface CniPluginErrorInfo {
  plugin: string;
  command: CniCommand;
  /** The plugin's CNI error code, when it printed an error object. */
  cniCode?: number;
  cniDetails?: string;
  stderr?: string;
  /** The binary was not found in any bin dir (so nothing ran). */
  notInstalled?: boolean;
}

/**
 * A plugin call that failed, with what the plugin said. (Not `code`/`details`: common/errors.ts would
 * take an error with those for a gRPC error.)
 */
export class CniPluginError extends CrispError {
  readonly plugin: string;
  readonly command: CniCommand;
  readonly cniCode?: number;
  readonly cniDetails?: string;
  readonly stderr?: string;
  readonly notInstalled: boolean;

  constructor(kind: ErrorKind, message: string, info: CniPluginErrorInfo) {
    super(kind, message);
    this.name = 'CniPluginError';
    this.plugin = info.plugin;
    this.command = info.command;
    if (info.cniCode !== undefined) this.cniCode = info.cniCode;
    if (info.cniDetails !== undefined) this.cniDetails = info.cniDetails;
    if (info.stderr) this.stderr = info.stderr;
    this.notInstalled = info.notInstalled ?? false;
  }
}

export function isCniPluginError(err: unknown): err is CniPluginError {
  return err instanceof CniPluginError;
}

/** First bin dir holding an executable file named `type`. */
export function findPlugin(type: string, binDirs: readonly string[]): Promise<string | undefined> {
  return findExecutable(type, binDirs);
}

/** "K=V;K=V" from pairs. Values with ';' or '=' would be misparsed by every plugin, so they are refused. */
export function joinCniArgs(pairs: readonly (readonly [string, string])[]): string {
  for (const [k, v] of pairs) {
    if (/[;=]/.test(k) || /[;=]/.test(v)) throw new CrispError('INVALID_ARGUMENT', `CNI_ARGS ${k}=${v}: ';' and '=' are not allowed`);
  }
  return pairs.map(([k, v]) => `${k}=${v}`).join(';');
}

/** The CNI_ARGS Kubernetes runtimes pass; IgnoreUnknown lets plugins that do not know the keys accept them. */
export function podCniArgs(pod: { podNamespace?: string; podName?: string; containerId: string; podUid?: string }): string {
  const pairs: [string, string][] = [['IgnoreUnknown', '1']];
  if (pod.podNamespace) pairs.push(['K8S_POD_NAMESPACE', pod.podNamespace]);
  if (pod.podName) pairs.push(['K8S_POD_NAME', pod.podName]);
  pairs.push(['K8S_POD_INFRA_CONTAINER_ID', pod.containerId]);
  if (pod.podUid) pairs.push(['K8S_POD_UID', pod.podUid]);
  return joinCniArgs(pairs);
}

/**
 * The plugin's environment: ours minus any stray CNI_* (a plugin must see only this call's values),
 * plus the CNI_* of this call. PATH stays: plugins shell out to iptables and friends.
 */
export function pluginEnv(inv: PluginInvocation, binDirs: readonly string[], base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) {
    if (v !== undefined && !k.startsWith('CNI_')) env[k] = v;
  }
  env.CNI_COMMAND = inv.command;
  if (inv.containerId !== undefined) env.CNI_CONTAINERID = inv.containerId;
  if (inv.netns !== undefined) env.CNI_NETNS = inv.netns;
  if (inv.ifName !== undefined) env.CNI_IFNAME = inv.ifName;
  if (inv.cniArgs !== undefined) env.CNI_ARGS = inv.cniArgs;
  env.CNI_PATH = binDirs.join(':');
  return env;
}

/**
 * One plugin's stdin: its own config plus the list's name and cniVersion, the runtimeConfig keys it
 * declared, and the previous result when chaining.
 */
export function buildPluginConfig(
  list: Pick<NetworkConfigList, 'name' | 'cniVersion'>,
  plugin: PluginConf,
  capabilityArgs: CapabilityArgs | JsonObject,
  prevResult?: JsonObject,
): JsonObject {
  const conf: JsonObject = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const rc = filterRuntimeConfig(plugin.capabilities, capabilityArgs);
  if (rc) conf.runtimeConfig = rc;
  else delete conf.runtimeConfig;
  if (prevResult) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return conf;
}

/** The error object from a failed plugin's stdout, if it printed one. */
export function parsePluginError(stdout: string): PluginErrorBody | undefined {
  const text = stdout.trim();
  if (!text.startsWith('{')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isJsonObject(v) || typeof v.msg !== 'string') return undefined;
  const body: PluginErrorBody = { msg: v.msg };
  if (typeof v.code === 'number') body.code = v.code;
  if (typeof v.details === 'string' && v.details !== '') body.details = v.details;
  return body;
}

function kindForCode(code: number | undefined): ErrorKind {
  if (code === CNI_ERR_CONTAINER_UNKNOWN) return 'NOT_FOUND';
  if (code === CNI_ERR_TRY_AGAIN_LATER || code === CNI_ERR_PLUGIN_NOT_AVAILABLE || code === CNI_ERR_PLUGIN_LIMITED) {
    return 'UNAVAILABLE';
  }
  if (code !== undefined && code >= 1 && code <= 7) return 'FAILED_PRECONDITION';
  return 'INTERNAL';
}

function lastLines(s: string, n = 5): string {
  return s.trim().split('\n').slice(-n).join(' | ');
}

/** Turn a failed run into a CniPluginError; exported so unit tests can check the wording. */
export function pluginFailure(
  inv: Pick<PluginInvocation, 'command' | 'type'>,
  run: { stdout: string; stderr: string; exitCode?: number; signal?: string; timedOut?: boolean; timeoutMs?: number },
): CniPluginError {
  const head = `CNI ${inv.command} ${inv.type}`;
  const who = { plugin: inv.type, command: inv.command };
  if (run.timedOut) {
    return new CniPluginError('DEADLINE_EXCEEDED', `${head}: timed out after ${run.timeoutMs ?? '?'} ms`, { ...who, stderr: run.stderr });
  }
  const body = parsePluginError(run.stdout);
  if (body) {
    const code = body.code !== undefined ? ` (code ${body.code})` : '';
    const details = body.details ? `: ${body.details}` : '';
    return new CniPluginError(kindForCode(body.code), `${head}: ${body.msg}${details}${code}`, { ...who, cniCode: body.code, cniDetails: body.details, stderr: run.stderr });
  }
  // No error object: say what we have, stderr first since that is where non-conforming plugins write.
  const how = run.signal ? `killed by ${run.signal}` : `exit code ${run.exitCode ?? '?'}`;
  const said = lastLines(run.stderr) || lastLines(run.stdout);
  return new CniPluginError('INTERNAL', `${head}: ${how}${said ? `: ${said}` : ''}`, { ...who, stderr: run.stderr });
}

/**
 * Run one plugin. Resolves to its JSON output (undefined when it printed nothing, as DEL usually does);
 * rejects with a CniPluginError.
 */
export function execPlugin(inv: PluginInvocation, opts: ExecOptions): Promise<JsonObject | undefined> {
  return traced(`cni.${inv.command.toLowerCase()}`, { 'cni.plugin': inv.type, 'cni.command': inv.command, 'cri.pod_sandbox_id': inv.containerId ?? '' }, () => runPlugin(inv, opts));
}

async function runPlugin(inv: PluginInvocation, opts: ExecOptions): Promise<JsonObject | undefined> {
  const who = { plugin: inv.type, command: inv.command };
  const path = await findPlugin(inv.type, opts.binDirs);
  if (!path) {
    throw new CniPluginError('FAILED_PRECONDITION', `CNI ${inv.command} ${inv.type}: plugin not found in ${opts.binDirs.join(':')}`, {
      ...who,
      notInstalled: true,
    });
  }
  const started = performance.now();
  const run = await runCommand(path, [], {
    input: JSON.stringify(inv.config),
    env: pluginEnv(inv, opts.binDirs),
    cwd: '/',
    timeoutMs: opts.timeoutMs,
    killAfterMs: 2000,
  });
  const ms = Math.round(performance.now() - started);
  if (!succeeded(run)) {
    const err = run.startError
      ? new CniPluginError('INTERNAL', `CNI ${inv.command} ${inv.type}: cannot run ${path}: ${errorMessage(run.startError)}`, who)
      : pluginFailure(inv, { ...run, timeoutMs: opts.timeoutMs });
    opts.logger?.debug({ plugin: inv.type, command: inv.command, containerId: inv.containerId, ms, err: err.message }, 'cni plugin failed');
    throw err;
  }
  opts.logger?.debug({ plugin: inv.type, command: inv.command, containerId: inv.containerId, ms }, 'cni plugin done');
  const text = run.stdout.trim();
  if (text === '') return undefined;
  let out: JsonValue;
  try {
    out = JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new CniPluginError('INTERNAL', `CNI ${inv.command} ${inv.type}: output is not JSON: ${errorMessage(err)}`, who);
  }
  if (!isJsonObject(out)) throw new CniPluginError('INTERNAL', `CNI ${inv.command} ${inv.type}: output is not a JSON object`, who);
  return out;
}

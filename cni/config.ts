// Network config discovery: the lowest-sorted valid file in the conf dir wins, the way libcni users
// pick their default network. Invalid files are skipped but reported, so Status can say why the
// network is not ready instead of just "no config".
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, invalidArgument, isENOENT } from '../common/errors.js';
import { isJsonObject, type JsonValue, type LoadedNetwork, type NetworkConfigList, type PluginConf, type SkippedConfig } from './types.js';

export const DEFAULT_CONF_DIR = '/etc/cni/net.d';

/** CNI spec versions a config may declare. 1.1.0 is accepted so STATUS can be used where plugins speak it. */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

const CONF_EXTENSIONS = ['.conflist', '.conf', '.json'];

// The spec's rule for network names; it also keeps names safe inside cache file names.
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
// A plugin type is a file name in a bin dir: no slashes, no dot-dot tricks.
const PLUGIN_TYPE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface NetworkDiscovery {
  confDir: string;
  network?: LoadedNetwork;
  skipped: SkippedConfig[];
}

/** Compare two "a.b.c" versions numerically: <0, 0, >0. */
export function compareCniVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function fail(file: string, what: string): never {
  throw invalidArgument(`${file}: ${what}`);
}

function checkVersion(file: string, field: string, v: unknown): string {
  if (v === undefined || v === '') fail(file, `field "${field}" is missing`);
  if (typeof v !== 'string') fail(file, `field "${field}" must be a string`);
  if (!SUPPORTED_CNI_VERSIONS.includes(v)) {
    fail(file, `field "${field}": version "${v}" is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  return v;
}

function checkName(file: string, field: string, v: unknown): string {
  if (v === undefined || v === '') fail(file, `field "${field}" is missing`);
  if (typeof v !== 'string' || !NETWORK_NAME.test(v)) {
    fail(file, `field "${field}": ${JSON.stringify(v)} is not a valid network name (letters, digits, _ . -)`);
  }
  return v;
}

function checkPlugin(file: string, field: string, v: unknown): PluginConf {
  if (!isJsonObject(v)) fail(file, `field "${field}" must be an object`);
  const type = v.type;
  if (type === undefined || type === '') fail(file, `field "${field}.type" is missing`);
  if (typeof type !== 'string' || !PLUGIN_TYPE.test(type)) {
    fail(file, `field "${field}.type": ${JSON.stringify(type)} is not a valid plugin name`);
  }
  const caps = v.capabilities;
  if (caps !== undefined) {
    if (!isJsonObject(caps) || Object.values(caps).some((c) => typeof c !== 'boolean')) {
      fail(file, `field "${field}.capabilities" must be an object of booleans`);
    }
  }
  return { ...v, type };
}

/**
 * Validate a parsed config. `.conflist` files must be lists; `.conf`/`.json` files hold one plugin and are
 * wrapped into a list (a `.conf` that is really a list is accepted as one, a common mix-up).
 */
export function validateNetworkConfig(file: string, value: unknown): NetworkConfigList {
  if (!isJsonObject(value)) fail(file, 'top level must be a JSON object');
  const isList = file.endsWith('.conflist') || value.plugins !== undefined;
  const cniVersion = checkVersion(file, 'cniVersion', value.cniVersion);
  const name = checkName(file, 'name', value.name);
  if (!isList) {
    const plugin = checkPlugin(file, '(top level)', value);
    return { cniVersion, name, plugins: [plugin] };
  }
  const plugins = value.plugins;
  if (!Array.isArray(plugins) || plugins.length === 0) fail(file, 'field "plugins" must be a non-empty array');
  const disableCheck = value.disableCheck;
  if (disableCheck !== undefined && typeof disableCheck !== 'boolean') fail(file, 'field "disableCheck" must be a boolean');
  const list: NetworkConfigList = { ...value, cniVersion, name, plugins: plugins.map((p, i) => checkPlugin(file, `plugins[${i}]`, p)) };
  return list;
}

/** Parse and validate one config file's text. Errors name the file and the field. */
export function parseNetworkConfig(file: string, text: string): NetworkConfigList {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (err) {
    fail(file, `invalid JSON: ${errorMessage(err)}`);
  }
  return validateNetworkConfig(file, value);
}

/** Candidate config files in `confDir`, sorted by name (byte order, like Go's sort.Strings). */
export async function listConfigFiles(confDir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(confDir, { withFileTypes: true });
  } catch (err) {
    if (isENOENT(err)) return [];
    throw err;
  }
  return entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && CONF_EXTENSIONS.some((x) => e.name.endsWith(x)))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((n) => join(confDir, n));
}

/** Pick the network: the lowest-sorted valid file; every invalid file before it is listed with its reason. */
export async function discoverNetwork(confDir: string = DEFAULT_CONF_DIR): Promise<NetworkDiscovery> {
  const skipped: SkippedConfig[] = [];
  for (const file of await listConfigFiles(confDir)) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      skipped.push({ file, reason: `${file}: cannot read: ${errorMessage(err)}` });
      continue;
    }
    try {
      return { confDir, network: { file, list: parseNetworkConfig(file, text) }, skipped };
    } catch (err) {
      skipped.push({ file, reason: errorMessage(err) });
    }
  }
  return { confDir, skipped };
}

/** The NetworkReady=false message for a discovery that found nothing usable. */
export function notReadyMessage(d: NetworkDiscovery): string {
  const base = `cni config uninitialized: no valid network config in ${d.confDir}`;
  if (d.skipped.length === 0) return base;
  return `${base} (skipped: ${d.skipped.map((s) => s.reason).join('; ')})`;
}

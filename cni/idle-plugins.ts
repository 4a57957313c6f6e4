// Plugin runs whose outcome is known without running them. portmap returns at once from ADD, CHECK and
// DEL when its runtimeConfig holds no port mappings (ADD prints the previous result unchanged), in every
// upstream release; only a hostPort gives a pod a mapping, so on most nodes it does nothing for almost
// every pod. Not running it saves a Go process start per pod start and per pod stop.
import type { CniCommand } from './exec.js';
import { isJsonObject, type JsonObject } from './types.js';

/**
 * Whether `command` of the plugin whose stdin is `config` would change nothing and may be left out of
 * the chain. ADD qualifies only with a previous result (portmap refuses to run first in a chain).
 */
export function isIdlePluginRun(command: CniCommand, config: JsonObject): boolean {
  if (config.type !== 'portmap') return false;
  if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK') return false;
  if (command !== 'DEL' && config.prevResult === undefined) return false;
  const rc = config.runtimeConfig;
  const mappings = isJsonObject(rc) ? rc.portMappings : undefined;
  return !(Array.isArray(mappings) && mappings.length > 0);
}

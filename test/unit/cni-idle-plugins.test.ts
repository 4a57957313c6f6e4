import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCapabilityArgs } from '../../cni/capabilities.js';
import { buildPluginConfig } from '../../cni/exec.js';
import { isIdlePluginRun } from '../../cni/idle-plugins.js';
import type { JsonObject, NetworkConfigList, PluginConf, PortMapping } from '../../cni/types.js';

const list: Pick<NetworkConfigList, 'name' | 'cniVersion'> = { name: 'n', cniVersion: '1.0.0' };
const portmap: PluginConf = { type: 'portmap', capabilities: { portMappings: true }, snat: true };
const prev: JsonObject = { cniVersion: '1.0.0', ips: [{ address: '10.1.0.2/24' }] };
const stdin = (portMappings: PortMapping[] | undefined, prevResult?: JsonObject, plugin: PluginConf = portmap) =>
  buildPluginConfig(list, plugin, buildCapabilityArgs({ containerId: 'c', ...(portMappings ? { portMappings } : {}) }), prevResult);

test('portmap is left out of ADD, CHECK and DEL for a pod without port mappings', () => {
  for (const command of ['ADD', 'CHECK', 'DEL'] as const) {
    assert.equal(isIdlePluginRun(command, stdin(undefined, prev)), true, command);
    assert.equal(isIdlePluginRun(command, stdin([], prev)), true, `${command}, empty list`);
  }
  // DEL needs no previous result to be a no-op (CNI < 0.4.0 has none there).
  assert.equal(isIdlePluginRun('DEL', stdin(undefined)), true);
  // A portmap that does not declare the capability never gets mappings: idle as well.
  assert.equal(isIdlePluginRun('ADD', stdin([{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], prev, { type: 'portmap' })), true);
});

test('portmap runs whenever it has something to do or to refuse, and no other plugin is ever left out', () => {
  const mapped: PortMapping[] = [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }];
  for (const command of ['ADD', 'CHECK', 'DEL'] as const) assert.equal(isIdlePluginRun(command, stdin(mapped, prev)), false, command);
  // First in a chain, portmap's ADD and CHECK fail ("must be called as chained plugin"): that error stays.
  assert.equal(isIdlePluginRun('ADD', stdin(undefined)), false);
  assert.equal(isIdlePluginRun('CHECK', stdin(undefined)), false);
  for (const command of ['VERSION', 'STATUS', 'GC'] as const) assert.equal(isIdlePluginRun(command, stdin(undefined, prev)), false, command);
  for (const type of ['bridge', 'bandwidth', 'firewall', 'tuning', 'portmap-custom']) {
    assert.equal(isIdlePluginRun('ADD', stdin(undefined, prev, { type, capabilities: { portMappings: true } })), false, type);
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCapabilityArgs, filterRuntimeConfig } from '../../cni/capabilities.js';
import {
  buildPluginConfig,
  CniPluginError,
  execPlugin,
  findPlugin,
  joinCniArgs,
  parsePluginError,
  pluginEnv,
  pluginFailure,
  podCniArgs,
} from '../../cni/exec.js';
import { parseCniResult, podIps } from '../../cni/result.js';
import type { NetworkConfigList } from '../../cni/types.js';
import { errorMessage } from '../../common/errors.js';

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A fake plugin: records stdin and CNI_* env, then prints/exits as told for the command. */
function writeFake(binDir: string, logDir: string, name: string, on: Record<string, { stdout?: string; stderr?: string; exit?: number; sleep?: number }>): void {
  const cases = Object.entries(on)
    .map(([cmd, b]) => `  ${cmd}) ${b.sleep ? `exec sleep ${b.sleep}` : `printf %s ${shq(b.stdout ?? '')}; printf %s ${shq(b.stderr ?? '')} >&2; exit ${b.exit ?? 0}`} ;;`)
    .join('\n');
  const script = `#!/bin/sh
input=$(cat)
printf '%s\\n' "$CNI_COMMAND ${name}" >> ${logDir}/calls.log
printf '%s' "$input" > ${logDir}/${name}-$CNI_COMMAND.json
env | grep '^CNI_' | sort > ${logDir}/${name}-$CNI_COMMAND.env
case "$CNI_COMMAND" in
${cases}
esac
exit 0
`;
  const path = join(binDir, name);
  writeFileSync(path, script);
  chmodSync(path, 0o755);
}

function setup(): { root: string; bin1: string; bin2: string; log: string } {
  const root = mkdtempSync(join(tmpdir(), 'crisp-unit-cni-exec-'));
  const dirs = { root, bin1: join(root, 'bin1'), bin2: join(root, 'bin2'), log: join(root, 'log') };
  for (const d of [dirs.bin1, dirs.bin2, dirs.log]) mkdirSync(d);
  return dirs;
}

const list: NetworkConfigList = { cniVersion: '1.0.0', name: 'net1', plugins: [] };

test('runtimeConfig carries only the capabilities a plugin declared true', () => {
  const args = buildCapabilityArgs({
    containerId: 'c1',
    portMappings: [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' },
      { hostPort: 0, containerPort: 81, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'UDP' as 'udp', hostIP: '' },
    ],
    bandwidth: { ingressRate: 1_000_000, egressRate: 0 },
    dns: { servers: ['10.96.0.10'], searches: [], options: ['ndots:5'] },
    podCidr: '10.210.1.0/24, fd00:1::/64',
  });
  assert.deepEqual(args, {
    portMappings: [
      { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp' },
    ],
    bandwidth: { ingressRate: 1_000_000, ingressBurst: 2 ** 31 - 1 },
    ipRanges: [[{ subnet: '10.210.1.0/24' }], [{ subnet: 'fd00:1::/64' }]],
    dns: { servers: ['10.96.0.10'], options: ['ndots:5'] },
  });
  assert.deepEqual(buildCapabilityArgs({ containerId: 'c1', portMappings: [], dns: {} }), {});
  assert.throws(() => buildCapabilityArgs({ containerId: 'c1', portMappings: [{ hostPort: 70000, containerPort: 1, protocol: 'tcp' }] }), /^CrispError\(INVALID_ARGUMENT\): port mapping 70000->1: ports must be 1-65535$/);
  assert.throws(() => buildCapabilityArgs({ containerId: 'c1', podCidr: 'not-a-cidr' }), /pod CIDR "not-a-cidr" is not a CIDR/);

  assert.deepEqual(filterRuntimeConfig({ portMappings: true, bandwidth: false, ips: true }, args), { portMappings: args.portMappings });
  assert.equal(filterRuntimeConfig(undefined, args), undefined);
  assert.equal(filterRuntimeConfig({ mac: true }, args), undefined);

  const portmap = buildPluginConfig(list, { type: 'portmap', capabilities: { portMappings: true }, runtimeConfig: { stale: 1 }, snat: true }, args);
  assert.deepEqual(portmap, { type: 'portmap', capabilities: { portMappings: true }, snat: true, name: 'net1', cniVersion: '1.0.0', runtimeConfig: { portMappings: args.portMappings } });
  const prev = { cniVersion: '1.0.0', ips: [] };
  const bridge = buildPluginConfig({ ...list, cniVersion: '0.4.0' }, { type: 'bridge', cniVersion: '0.3.1', name: 'other' }, args, prev);
  assert.deepEqual(bridge, { type: 'bridge', name: 'net1', cniVersion: '0.4.0', prevResult: prev });
});

test('CNI_ARGS and environment', () => {
  assert.equal(
    podCniArgs({ podNamespace: 'default', podName: 'web-0', containerId: 'abc123', podUid: '9f0c-11' }),
    'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=9f0c-11',
  );
  assert.equal(podCniArgs({ containerId: 'abc' }), 'IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=abc');
  assert.throws(() => joinCniArgs([['K8S_POD_NAME', 'a;b']]), /';' and '=' are not allowed/);

  const env = pluginEnv(
    { command: 'ADD', type: 'bridge', config: {}, containerId: 'abc', netns: '/run/ns/x', ifName: 'eth0', cniArgs: 'IgnoreUnknown=1' },
    ['/opt/cni/bin', '/usr/lib/cni'],
    { PATH: '/usr/bin', CNI_ARGS: 'stale', CNI_EXTRA: 'x', HOME: '/root' },
  );
  assert.deepEqual(env, {
    PATH: '/usr/bin',
    HOME: '/root',
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'abc',
    CNI_NETNS: '/run/ns/x',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'IgnoreUnknown=1',
    CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
  });
  assert.deepEqual(pluginEnv({ command: 'VERSION', type: 'x', config: {} }, ['/b'], {}), { CNI_COMMAND: 'VERSION', CNI_PATH: '/b' });
});

test('plugin errors: the JSON error object, or stderr when there is none', () => {
  assert.deepEqual(parsePluginError('{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no bridge"}\n'), { code: 7, msg: 'bad config', details: 'no bridge' });
  assert.equal(parsePluginError('panic: oops'), undefined);
  assert.equal(parsePluginError('{"code":7}'), undefined);

  const e1 = pluginFailure({ command: 'ADD', type: 'bridge' }, { stdout: '{"code":11,"msg":"busy","details":"try later"}', stderr: '', exitCode: 1 });
  assert.equal(e1.message, 'CNI ADD bridge: busy: try later (code 11)');
  assert.equal(e1.kind, 'UNAVAILABLE');
  assert.equal(e1.cniCode, 11);
  assert.equal(e1.plugin, 'bridge');
  const e2 = pluginFailure({ command: 'DEL', type: 'portmap' }, { stdout: '', stderr: 'line1\nfatal: iptables missing\n', exitCode: 2 });
  assert.equal(e2.message, 'CNI DEL portmap: exit code 2: line1 | fatal: iptables missing');
  assert.equal(e2.kind, 'INTERNAL');
  const e3 = pluginFailure({ command: 'CHECK', type: 'x' }, { stdout: '{"code":3,"msg":"no such container"}', stderr: '' });
  assert.equal(e3.kind, 'NOT_FOUND');
  const e4 = pluginFailure({ command: 'ADD', type: 'x' }, { stdout: '', stderr: '', timedOut: true, timeoutMs: 250 });
  assert.equal(e4.message, 'CNI ADD x: timed out after 250 ms');
  assert.equal(e4.kind, 'DEADLINE_EXCEEDED');
});

test('execPlugin: first bin dir wins; the plugin sees our stdin and env', async () => {
  const d = setup();
  try {
    writeFake(d.bin1, d.log, 'p', { ADD: { stdout: '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}]}' } });
    writeFake(d.bin2, d.log, 'p', { ADD: { stdout: '{"never":true}' } });
    writeFake(d.bin2, d.log, 'q', { VERSION: { stdout: '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' } });
    // Not executable: skipped like PATH lookup would.
    writeFileSync(join(d.bin1, 'q'), '#!/bin/sh\necho wrong\n');
    const binDirs = [d.bin1, d.bin2];
    assert.equal(await findPlugin('p', binDirs), join(d.bin1, 'p'));
    assert.equal(await findPlugin('q', binDirs), join(d.bin2, 'q'));
    assert.equal(await findPlugin('none', binDirs), undefined);

    const config = { cniVersion: '1.0.0', name: 'n', type: 'p' };
    const out = await execPlugin({ command: 'ADD', type: 'p', config, containerId: 'c1', netns: '/x/ns', ifName: 'eth0', cniArgs: 'IgnoreUnknown=1' }, { binDirs, timeoutMs: 5000 });
    assert.deepEqual(out, { cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1' }] });
    assert.deepEqual(JSON.parse(readFileSync(join(d.log, 'p-ADD.json'), 'utf8')), config);
    assert.equal(
      readFileSync(join(d.log, 'p-ADD.env'), 'utf8'),
      `CNI_ARGS=IgnoreUnknown=1\nCNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\nCNI_NETNS=/x/ns\nCNI_PATH=${d.bin1}:${d.bin2}\n`,
    );
    assert.deepEqual(await execPlugin({ command: 'VERSION', type: 'q', config: { cniVersion: '1.0.0' } }, { binDirs, timeoutMs: 5000 }), {
      cniVersion: '1.0.0',
      supportedVersions: ['1.0.0'],
    });
    // DEL printing nothing is success with no output.
    writeFake(d.bin1, d.log, 'quiet', { DEL: {} });
    assert.equal(await execPlugin({ command: 'DEL', type: 'quiet', config }, { binDirs, timeoutMs: 5000 }), undefined);
  } finally {
    rmSync(d.root, { recursive: true, force: true });
  }
});

test('execPlugin: failures become CniPluginErrors naming the plugin and what it said', async () => {
  const d = setup();
  const opts = { binDirs: [d.bin1], timeoutMs: 5000 };
  try {
    writeFake(d.bin1, d.log, 'bad', {
      ADD: { stdout: '{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"bridge name too long"}', exit: 1 },
      DEL: { stderr: 'segfault somewhere', exit: 139 },
      CHECK: { stdout: 'not json at all' },
    });
    await assert.rejects(execPlugin({ command: 'ADD', type: 'bad', config: {} }, opts), (err: unknown) => {
      assert.ok(err instanceof CniPluginError);
      assert.equal(err.message, 'CNI ADD bad: invalid config: bridge name too long (code 7)');
      assert.equal(err.kind, 'FAILED_PRECONDITION');
      assert.equal(err.cniDetails, 'bridge name too long');
      assert.equal(errorMessage(err), err.message);
      return true;
    });
    await assert.rejects(execPlugin({ command: 'DEL', type: 'bad', config: {} }, opts), /^CniPluginError: CNI DEL bad: exit code 139: segfault somewhere$/);
    await assert.rejects(execPlugin({ command: 'CHECK', type: 'bad', config: {} }, opts), /CNI CHECK bad: output is not JSON/);
    await assert.rejects(execPlugin({ command: 'ADD', type: 'absent', config: {} }, opts), (err: unknown) => {
      assert.ok(err instanceof CniPluginError);
      assert.equal(err.notInstalled, true);
      assert.equal(err.message, `CNI ADD absent: plugin not found in ${d.bin1}`);
      return true;
    });
    writeFake(d.bin1, d.log, 'slow', { ADD: { sleep: 5 } });
    const t0 = Date.now();
    await assert.rejects(execPlugin({ command: 'ADD', type: 'slow', config: {} }, { ...opts, timeoutMs: 300 }), (err: unknown) => {
      assert.ok(err instanceof CniPluginError);
      assert.equal(err.kind, 'DEADLINE_EXCEEDED');
      assert.equal(err.message, 'CNI ADD slow: timed out after 300 ms');
      return true;
    });
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    rmSync(d.root, { recursive: true, force: true });
  }
});

test('results parse across versions; pod IPs are the pod interface ones, IPv4 first', () => {
  const r = parseCniResult('t', {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'cni0', mac: 'aa' }, { name: 'veth1' }, { name: 'eth0', mac: 'bb', sandbox: '/run/ns/x' }],
    ips: [
      { address: 'fd00::5/64', gateway: 'fd00::1', interface: 2 },
      { address: '10.1.0.5/24', gateway: '10.1.0.1', interface: 2 },
      { address: '10.9.9.9/32', interface: 0 },
    ],
    routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd00::1' }],
    dns: { nameservers: ['1.1.1.1'] },
  });
  assert.deepEqual(r.routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd00::1' }]);
  assert.deepEqual(r.dns, { nameservers: ['1.1.1.1'], search: [], options: [] });
  assert.deepEqual(podIps(r), [
    { ip: '10.1.0.5', prefixLength: 24, family: 4, gateway: '10.1.0.1' },
    { ip: 'fd00::5', prefixLength: 64, family: 6, gateway: 'fd00::1' },
  ]);
  // 0.3.x results carry "version" per IP; it is accepted and the family is read from the address.
  const old = parseCniResult('t', { cniVersion: '0.3.1', ips: [{ version: '4', address: '10.2.0.2/16' }] });
  assert.deepEqual(old.ips, [{ address: '10.2.0.2/16', family: 4 }]);
  assert.throws(() => parseCniResult('CNI ADD x', { ips: [{ address: '10.0.0.1' }] }), /CNI ADD x: result field "ips\[0\]\.address" must be a CIDR/);
  assert.throws(() => parseCniResult('CNI ADD x', []), /not a JSON object/);
});

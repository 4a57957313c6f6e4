import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cniAdd, cniCheck, cniDel, cniLoopbackUp, cniStatus, cniVersion, createPodNetwork, type CniOptions } from '../../cni/network.js';
import { isCrispError } from '../../common/errors.js';
import type { PodAttachment } from '../../cni/types.js';

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

type Behaviour = Record<string, { stdout?: string; stderr?: string; exit?: number }>;

/** A fake plugin: records each call (order, stdin, CNI_* env), then prints/exits as told. */
function writeFake(binDir: string, logDir: string, name: string, on: Behaviour): void {
  const cases = Object.entries(on)
    .map(([cmd, b]) => `  ${cmd}) printf %s ${shq(b.stdout ?? '')}; printf %s ${shq(b.stderr ?? '')} >&2; exit ${b.exit ?? 0} ;;`)
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
  writeFileSync(join(binDir, name), script);
  chmodSync(join(binDir, name), 0o755);
}

const RESULT_A = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'cni0' }, { name: 'eth0', sandbox: '/x/ns' }],
  ips: [{ address: '10.77.0.9/24', gateway: '10.77.0.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};
const RESULT_B = { ...RESULT_A, dns: { nameservers: ['10.96.0.10'] } };
const VERSION = { stdout: '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' };

interface Env {
  root: string;
  bin: string;
  log: string;
  conf: string;
  opts: CniOptions;
  calls(): string[];
  stdin(plugin: string, cmd: string): Record<string, unknown>;
  env(plugin: string, cmd: string): string;
  writeList(plugins: object[], over?: object): void;
  done(): void;
}

function setup(): Env {
  const root = mkdtempSync(join(tmpdir(), 'crisp-unit-cni-network-'));
  const bin = join(root, 'bin');
  const log = join(root, 'log');
  const conf = join(root, 'net.d');
  for (const d of [bin, log, conf]) mkdirSync(d);
  const opts: CniOptions = { confDir: conf, binDirs: [bin], cacheDir: join(root, 'cache'), timeoutMs: 5000 };
  return {
    root,
    bin,
    log,
    conf,
    opts,
    calls: () => (existsSync(join(log, 'calls.log')) ? readFileSync(join(log, 'calls.log'), 'utf8').trim().split('\n') : []),
    stdin: (p, c) => JSON.parse(readFileSync(join(log, `${p}-${c}.json`), 'utf8')) as Record<string, unknown>,
    env: (p, c) => readFileSync(join(log, `${p}-${c}.env`), 'utf8'),
    writeList: (plugins, over = {}) =>
      writeFileSync(join(conf, '10-test.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'testnet', plugins, ...over })),
    done: () => rmSync(root, { recursive: true, force: true }),
  };
}

const pod: PodAttachment = {
  containerId: 'pod1',
  netnsPath: '/x/ns',
  podName: 'web',
  podNamespace: 'default',
  podUid: 'uid-1',
  portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
  podCidr: '10.77.0.0/24',
};

test('ADD runs the chain in order, chains prevResult, caches config and result', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { ADD: { stdout: JSON.stringify(RESULT_A) } });
    writeFake(t.bin, t.log, 'b', { ADD: { stdout: JSON.stringify(RESULT_B) } });
    writeFake(t.bin, t.log, 'quiet', { ADD: {} });
    t.writeList([{ type: 'a', capabilities: { ipRanges: true } }, { type: 'quiet' }, { type: 'b', capabilities: { portMappings: true } }]);

    const res = await cniAdd(pod, t.opts);
    assert.deepEqual(t.calls(), ['ADD a', 'ADD quiet', 'ADD b']);
    assert.equal(res.network, 'testnet');
    assert.equal(res.confFile, join(t.conf, '10-test.conflist'));
    assert.deepEqual(res.podIps, [{ ip: '10.77.0.9', prefixLength: 24, family: 4, gateway: '10.77.0.1' }]);
    assert.deepEqual(res.result.dns.nameservers, ['10.96.0.10']);

    assert.deepEqual(t.stdin('a', 'ADD'), { type: 'a', capabilities: { ipRanges: true }, name: 'testnet', cniVersion: '1.0.0', runtimeConfig: { ipRanges: [[{ subnet: '10.77.0.0/24' }]] } });
    assert.deepEqual(t.stdin('quiet', 'ADD').prevResult, RESULT_A);
    // "quiet" printed nothing, so b gets a's result.
    assert.deepEqual(t.stdin('b', 'ADD').prevResult, RESULT_A);
    assert.deepEqual(t.stdin('b', 'ADD').runtimeConfig, { portMappings: pod.portMappings });
    assert.match(t.env('b', 'ADD'), /CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=uid-1\n/);
    assert.match(t.env('b', 'ADD'), /CNI_IFNAME=eth0\nCNI_NETNS=\/x\/ns\n/);

    const cached = JSON.parse(readFileSync(join(t.opts.cacheDir!, 'testnet-pod1-eth0.json'), 'utf8'));
    assert.deepEqual(cached.result, RESULT_B);
    assert.equal(cached.config.plugins.length, 3);
  } finally {
    t.done();
  }
});

test('a failing plugin undoes the earlier ones (and itself) in reverse, then throws naming it', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { ADD: { stdout: JSON.stringify(RESULT_A) }, DEL: {} });
    writeFake(t.bin, t.log, 'b', { ADD: { stdout: JSON.stringify(RESULT_B) }, DEL: {} });
    writeFake(t.bin, t.log, 'boom', { ADD: { stdout: '{"code":7,"msg":"cannot","details":"nope"}', exit: 1 }, DEL: {} });
    writeFake(t.bin, t.log, 'never', { ADD: {}, DEL: {} });
    t.writeList([{ type: 'a' }, { type: 'b' }, { type: 'boom' }, { type: 'never' }]);

    await assert.rejects(cniAdd(pod, t.opts), (err: unknown) => {
      assert.ok(isCrispError(err, 'FAILED_PRECONDITION'));
      assert.equal(err.message, 'pod pod1: network testnet: CNI ADD boom: cannot: nope (code 7)');
      return true;
    });
    assert.deepEqual(t.calls(), ['ADD a', 'ADD b', 'ADD boom', 'DEL boom', 'DEL b', 'DEL a']);
    assert.deepEqual(t.stdin('a', 'DEL').prevResult, RESULT_B);
    // /x/ns is no namespace: DEL gets an empty CNI_NETNS so plugins only clean up outside the pod.
    assert.match(t.env('a', 'DEL'), /CNI_NETNS=\n/);
    assert.deepEqual(readdirSync(t.opts.cacheDir!), []);
  } finally {
    t.done();
  }
});

test('an incomplete undo keeps the cache so a later DEL can finish', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { ADD: { stdout: JSON.stringify(RESULT_A) }, DEL: { stdout: '{"code":5,"msg":"io error"}', exit: 1 } });
    writeFake(t.bin, t.log, 'boom', { ADD: { stdout: '{"code":11,"msg":"busy"}', exit: 1 }, DEL: {} });
    t.writeList([{ type: 'a' }, { type: 'boom' }]);
    await assert.rejects(cniAdd(pod, t.opts), /^CrispError\(UNAVAILABLE\): pod pod1: network testnet: CNI ADD boom: busy \(code 11\) \(undo incomplete: CNI DEL a: io error \(code 5\)\)$/);
    assert.deepEqual(readdirSync(t.opts.cacheDir!), ['testnet-pod1-eth0.json']);

    writeFake(t.bin, t.log, 'a', { DEL: {} });
    await cniDel({ containerId: 'pod1' }, t.opts);
    assert.deepEqual(readdirSync(t.opts.cacheDir!), []);
  } finally {
    t.done();
  }
});

test('DEL after a restart uses only the cache: reverse order, cached args, even with the conf dir gone', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { ADD: { stdout: JSON.stringify(RESULT_A) }, DEL: {} });
    writeFake(t.bin, t.log, 'b', { ADD: { stdout: JSON.stringify(RESULT_B) }, DEL: { stdout: '{"code":3,"msg":"container unknown"}', exit: 1 } });
    writeFake(t.bin, t.log, 'c', { ADD: {}, DEL: { stderr: 'failed to find chain: no such file or directory', exit: 1 } });
    t.writeList([{ type: 'a' }, { type: 'b', capabilities: { portMappings: true } }, { type: 'c' }]);
    await createPodNetwork(t.opts).add(pod);
    rmSync(t.conf, { recursive: true });

    // A "new daemon": fresh options object, no conf dir, only the cache.
    const again = createPodNetwork({ ...t.opts });
    assert.equal((await again.status()).ready, false);
    await again.del({ containerId: 'pod1', netnsPath: '' });
    assert.deepEqual(t.calls().slice(3), ['DEL c', 'DEL b', 'DEL a']);
    assert.deepEqual(t.stdin('b', 'DEL').runtimeConfig, { portMappings: pod.portMappings });
    assert.deepEqual(t.stdin('b', 'DEL').prevResult, RESULT_B);
    assert.match(t.env('a', 'DEL'), /K8S_POD_NAME=web/);
    assert.deepEqual(readdirSync(t.opts.cacheDir!), []);

    // Nothing cached and no config: nothing to do, no plugin runs.
    await again.del({ containerId: 'pod1' });
    assert.equal(t.calls().length, 6);
  } finally {
    t.done();
  }
});

test('DEL with a real failure keeps going, keeps the cache and throws; without a cache it uses the current config', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { ADD: { stdout: JSON.stringify(RESULT_A) }, DEL: {} });
    writeFake(t.bin, t.log, 'b', { ADD: {}, DEL: { stdout: '{"code":5,"msg":"iptables: resource busy"}', exit: 1 } });
    t.writeList([{ type: 'a' }, { type: 'b' }], { cniVersion: '0.3.1' });
    await cniAdd(pod, t.opts);
    await assert.rejects(cniDel({ containerId: 'pod1' }, t.opts), /^CrispError\(INTERNAL\): pod pod1: CNI DEL: network testnet: CNI DEL b: iptables: resource busy \(code 5\)$/);
    assert.deepEqual(t.calls(), ['ADD a', 'ADD b', 'DEL b', 'DEL a']);
    // 0.3.x has no prevResult on DEL.
    assert.equal(t.stdin('a', 'DEL').prevResult, undefined);
    assert.deepEqual(readdirSync(t.opts.cacheDir!), ['testnet-pod1-eth0.json']);

    rmSync(t.opts.cacheDir!, { recursive: true });
    writeFake(t.bin, t.log, 'b', { DEL: {} });
    await cniDel({ containerId: 'pod1', podName: 'web', podNamespace: 'default', portMappings: pod.portMappings }, t.opts);
    assert.deepEqual(t.calls().slice(4), ['DEL b', 'DEL a']);
    assert.match(t.env('a', 'DEL'), /CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod1\n/);
  } finally {
    t.done();
  }
});

test('CHECK uses the cached result; skipped below 0.4.0 and with disableCheck', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { ADD: { stdout: JSON.stringify(RESULT_A) }, CHECK: {} });
    writeFake(t.bin, t.log, 'b', { ADD: {}, CHECK: { stdout: '{"code":999,"msg":"veth gone"}', exit: 1 } });
    await assert.rejects(cniCheck(pod, t.opts), (err: unknown) => isCrispError(err, 'NOT_FOUND') && /no cached attachment on eth0/.test(err.message));
    t.writeList([{ type: 'a' }, { type: 'b' }]);
    await cniAdd(pod, t.opts);
    await assert.rejects(cniCheck(pod, t.opts), /pod pod1: network testnet: CNI CHECK b: veth gone \(code 999\)/);
    assert.deepEqual(t.stdin('a', 'CHECK').prevResult, RESULT_A);
    assert.equal(t.stdin('a', 'CHECK').cniVersion, '1.0.0');

    t.writeList([{ type: 'a' }, { type: 'b' }], { disableCheck: true });
    await cniAdd({ ...pod, containerId: 'pod2' }, t.opts);
    await cniCheck({ ...pod, containerId: 'pod2' }, t.opts);
    t.writeList([{ type: 'a' }, { type: 'b' }], { cniVersion: '0.3.1' });
    await cniAdd({ ...pod, containerId: 'pod3' }, t.opts);
    await cniCheck({ ...pod, containerId: 'pod3' }, t.opts);
    assert.equal(t.calls().filter((c) => c.startsWith('CHECK')).length, 2);
  } finally {
    t.done();
  }
});

test('STATUS: not ready without config or with a missing plugin; STATUS command only for 1.1.0 plugins that speak it', async () => {
  const t = setup();
  try {
    const none = await cniStatus(t.opts);
    assert.equal(none.ready, false);
    assert.equal(none.reason, 'NetworkPluginNotReady');
    assert.match(none.message!, /cni config uninitialized: no valid network config in/);
    await assert.rejects(cniAdd(pod, t.opts), (err: unknown) => isCrispError(err, 'FAILED_PRECONDITION') && /pod pod1: CNI ADD: cni config uninitialized/.test(err.message));

    writeFileSync(join(t.conf, '00-bad.conflist'), '{}');
    t.writeList([{ type: 'a' }, { type: 'missing' }]);
    writeFake(t.bin, t.log, 'a', { VERSION, STATUS: {} });
    const miss = await cniStatus(t.opts);
    assert.equal(miss.ready, false);
    assert.match(miss.message!, /^network testnet \(.*10-test\.conflist\): plugin missing not found in /);
    assert.equal(miss.skipped.length, 1);

    t.writeList([{ type: 'a' }]);
    const ok = await cniStatus(t.opts);
    assert.deepEqual({ ...ok, skipped: ok.skipped.length }, { ready: true, network: 'testnet', confFile: join(t.conf, '10-test.conflist'), skipped: 1 });
    assert.deepEqual(t.calls(), []);

    // 1.1.0 config: VERSION is asked, and a plugin not speaking 1.1.0 makes the network not ready.
    t.writeList([{ type: 'a' }], { cniVersion: '1.1.0' });
    const old = await cniStatus(t.opts);
    assert.equal(old.ready, false);
    assert.match(old.message!, /plugin a does not speak CNI 1\.1\.0 \(it speaks 0\.3\.1, 0\.4\.0, 1\.0\.0\)/);
    writeFake(t.bin, t.log, 'a', {
      VERSION: { stdout: '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' },
      STATUS: { stdout: '{"code":50,"msg":"no leases yet"}', exit: 1 },
    });
    const st = await cniStatus(t.opts);
    assert.equal(st.ready, false);
    assert.match(st.message!, /CNI STATUS a: no leases yet \(code 50\)/);
    writeFake(t.bin, t.log, 'a', { VERSION: { stdout: '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' }, STATUS: {} });
    assert.equal((await cniStatus(t.opts)).ready, true);
    assert.equal(t.stdin('a', 'STATUS').name, 'testnet');
  } finally {
    t.done();
  }
});

test('VERSION reports what each plugin speaks; loopback runs without a conflist', async () => {
  const t = setup();
  try {
    writeFake(t.bin, t.log, 'a', { VERSION });
    writeFake(t.bin, t.log, 'loopback', { ADD: { stdout: '{"cniVersion":"1.0.0"}' } });
    t.writeList([{ type: 'a' }, { type: 'gone' }]);
    const v = await cniVersion(t.opts);
    assert.deepEqual(v.supportedVersions, ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    assert.deepEqual(v.network, { name: 'testnet', cniVersion: '1.0.0', confFile: join(t.conf, '10-test.conflist') });
    assert.deepEqual(v.plugins[0], { type: 'a', path: join(t.bin, 'a'), supportedVersions: ['0.3.1', '0.4.0', '1.0.0'] });
    assert.match(v.plugins[1]!.error!, /CNI VERSION gone: plugin not found/);

    await cniLoopbackUp('/x/ns', { ...t.opts, containerId: 'pod9' });
    assert.deepEqual(t.stdin('loopback', 'ADD'), { cniVersion: '1.0.0', name: 'crisp-loopback', type: 'loopback' });
    assert.match(t.env('loopback', 'ADD'), /CNI_CONTAINERID=pod9\nCNI_IFNAME=lo\nCNI_NETNS=\/x\/ns\n/);
  } finally {
    t.done();
  }
});

test('ids and interface names are checked before anything runs', async () => {
  const t = setup();
  try {
    await assert.rejects(cniAdd({ ...pod, containerId: '../etc' }, t.opts), /container id must be/);
    await assert.rejects(cniAdd({ ...pod, ifName: 'a/b' }, t.opts), /invalid interface name "a\/b"/);
    await assert.rejects(cniAdd({ ...pod, ifName: 'sixteen-chars-xx' }, t.opts), /invalid interface name/);
    await assert.rejects(cniAdd({ ...pod, netnsPath: '' }, t.opts), /pod pod1: CNI ADD: netns path is empty/);
    await assert.rejects(cniDel({ containerId: 'a b' }, t.opts), /container id must be/);
    await assert.rejects(cniAdd({ ...pod, podName: 'x;y' }, t.opts), /^CrispError\(INVALID_ARGUMENT\): pod pod1: CNI ADD: CNI_ARGS K8S_POD_NAME=x;y: ';' and '=' are not allowed$/);
    await assert.rejects(cniAdd({ ...pod, podCidr: '10.0.0.0' }, t.opts), /^CrispError\(INVALID_ARGUMENT\): pod pod1: CNI ADD: pod CIDR "10\.0\.0\.0" is not a CIDR$/);
  } finally {
    t.done();
  }
});

// Pauseless pod sandboxes against the real stack: pinned namespaces, real CNI plugins, pod files,
// sysctls, port mappings, state across crispd restarts, and no leaks over many cycles.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { TestCrispd, mountsBelow, uniqueId } from './lib/crispd.js';
import { writeTestNetwork, inNetns, type TestNetwork } from './lib/network.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { NamespaceMode, PodSandboxState, Protocol, type PodSandboxConfig } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import { cgroupExists } from '../../sandbox/cgroups.js';

interface PodInfo {
  pinnedNamespaces: { net?: string; ipc?: string; uts?: string };
  cgroup: { path: string; created: boolean };
  shm: string | null;
  files: { hostname: string; hosts: string; resolvConf: string };
}

describe('pod sandboxes without a pause container', () => {
  const d = new TestCrispd();
  let net: TestNetwork;
  const run = uniqueId();
  const podConfig = (name: string, extra: Input<PodSandboxConfig> = {}): Input<PodSandboxConfig> => ({
    metadata: { name, uid: `${name}-${run}`, namespace: 'e2e', attempt: 0 },
    hostname: name,
    logDirectory: join(d.podLogRoot, `e2e_${name}_${run}`),
    labels: { run, app: name },
    annotations: { 'crisp.e2e/test': 'yes' },
    ...extra,
  });
  const runPod = async (name: string, extra: Input<PodSandboxConfig> = {}) =>
    (await d.client.runtime.unary('RunPodSandbox', { config: podConfig(name, extra) })).podSandboxId;
  const info = async (id: string): Promise<PodInfo> =>
    JSON.parse((await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id, verbose: true })).info.info!) as PodInfo;
  const cleanupPod = async (id: string) => {
    await d.client.runtime.unary('StopPodSandbox', { podSandboxId: id });
    await d.client.runtime.unary('RemovePodSandbox', { podSandboxId: id });
  };

  before(async () => {
    net = writeTestNetwork(d.cniConfDir, d.dir);
    await d.start();
  });
  after(async () => {
    try {
      const left = await d.client.runtime.unary('ListPodSandbox', {}).catch(() => ({ items: [] }));
      for (const p of left.items) await cleanupPod(p.id).catch(() => undefined);
    } finally {
      await d.cleanup();
      const rules = net.teardown();
      assert.deepEqual(rules, [], 'no iptables rules left for the test subnet');
    }
  });

  test('NetworkReady is true with the test network', async () => {
    const s = await d.client.runtime.unary('Status', {});
    assert.equal(s.status?.conditions.find((c) => c.type === 'NetworkReady')?.status, true);
  });

  test('a pod gets an IP from CNI, reaches its gateway, and has no process of its own', async () => {
    const id = await runPod('net1');
    const st = await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id });
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
    const ip = st.status?.network?.ip ?? '';
    assert.ok(ip.startsWith(net.gateway.replace(/\.1$/, '.')), `pod IP ${ip} is in ${net.subnet}`);
    const i = await info(id);
    const ping = inNetns(i.pinnedNamespaces.net!, ['busybox', 'ping', '-c1', '-W2', net.gateway]);
    assert.equal(ping.code, 0, ping.out);
    // No process lives in the pod's namespaces: the pins alone keep them.
    const netIno = statSync(i.pinnedNamespaces.net!).ino;
    const holders = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return statSync(`/proc/${p}/ns/net`).ino === netIno;
      } catch {
        return false;
      }
    });
    assert.deepEqual(holders, [], 'no process holds the pod network namespace');
    await cleanupPod(id);
  });

  test('two pods reach each other', async () => {
    const a = await runPod('peer-a');
    const b = await runPod('peer-b');
    const ipB = (await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: b })).status?.network?.ip ?? '';
    const ping = inNetns((await info(a)).pinnedNamespaces.net!, ['busybox', 'ping', '-c1', '-W2', ipB]);
    assert.equal(ping.code, 0, ping.out);
    await cleanupPod(a);
    await cleanupPod(b);
  });

  test('hostname, /etc/hosts and resolv.conf are the pod\'s own', async () => {
    const id = await runPod('files', {
      hostname: 'files-host',
      dnsConfig: { servers: ['10.96.0.10'], searches: ['e2e.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5', 'edns0'] },
    });
    const i = await info(id);
    const ip = (await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id })).status?.network?.ip;
    assert.equal(readFileSync(i.files.hostname, 'utf8'), 'files-host\n');
    assert.match(readFileSync(i.files.hosts, 'utf8'), new RegExp(`${ip}\\tfiles-host`));
    assert.equal(
      readFileSync(i.files.resolvConf, 'utf8'),
      'search e2e.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5 edns0\n',
    );
    const uts = spawnSync('nsenter', [`--uts=${i.pinnedNamespaces.uts}`, 'hostname'], { encoding: 'utf8' });
    assert.equal(uts.stdout.trim(), 'files-host');
    assert.ok(existsSync(join(d.podLogRoot, `e2e_files_${run}`)), 'log directory created');
    await cleanupPod(id);
  });

  test('namespaced sysctls apply inside the pod only', async () => {
    const hostValue = readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim();
    const id = await runPod('sysctl', { linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '81', 'kernel.shmmni': '1234' } } });
    const i = await info(id);
    const inside = inNetns(i.pinnedNamespaces.net!, ['cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start']);
    assert.equal(inside.out.trim(), '81');
    const ipc = spawnSync('nsenter', [`--ipc=${i.pinnedNamespaces.ipc}`, 'cat', '/proc/sys/kernel/shmmni'], { encoding: 'utf8' });
    assert.equal(ipc.stdout.trim(), '1234');
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim(), hostValue);
    await cleanupPod(id);
  });

  test('a host port mapping forwards loopback traffic into the pod', async () => {
    const hostPort = 20000 + Math.floor(Math.random() * 20000);
    const id = await runPod('ports', { portMappings: [{ protocol: Protocol.TCP, containerPort: 8080, hostPort, hostIp: '127.0.0.1' }] });
    const i = await info(id);
    const server = spawn('nsenter', [`--net=${i.pinnedNamespaces.net}`, 'busybox', 'nc', '-l', '-p', '8080'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let got = '';
      server.stdout!.on('data', (b: Buffer) => (got += b.toString()));
      await sleep(300);
      await new Promise<void>((resolve, reject) => {
        const sock = createConnection({ host: '127.0.0.1', port: hostPort }, () => sock.end('hello through portmap\n'));
        sock.on('error', reject);
        sock.on('close', () => resolve());
      });
      for (let t = 0; t < 50 && !got; t++) await sleep(50);
      assert.equal(got, 'hello through portmap\n');
    } finally {
      server.kill('SIGKILL');
      await cleanupPod(id);
    }
  });

  test('a hostNetwork pod uses the host network and pins only IPC', async () => {
    const id = await runPod('hostnet', { linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD } } } });
    const i = await info(id);
    assert.equal(i.pinnedNamespaces.net, undefined);
    assert.equal(i.pinnedNamespaces.uts, undefined);
    assert.ok(i.pinnedNamespaces.ipc);
    const st = await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id });
    assert.equal(st.status?.network?.ip, '');
    assert.equal(st.status?.linux?.namespaces?.options?.network, NamespaceMode.NODE);
    await cleanupPod(id);
  });

  test('ListPodSandbox filters by id, state and labels', async () => {
    const a = await runPod('list-a');
    const b = await runPod('list-b');
    await d.client.runtime.unary('StopPodSandbox', { podSandboxId: b });
    const byLabel = await d.client.runtime.unary('ListPodSandbox', { filter: { labelSelector: { run, app: 'list-a' } } });
    assert.deepEqual(byLabel.items.map((p) => p.id), [a]);
    const ready = await d.client.runtime.unary('ListPodSandbox', { filter: { state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: { run } } });
    assert.ok(ready.items.some((p) => p.id === a) && !ready.items.some((p) => p.id === b));
    const byId = await d.client.runtime.unary('ListPodSandbox', { filter: { id: b.slice(0, 12) } });
    assert.deepEqual(byId.items.map((p) => p.id), [b]);
    assert.equal(byId.items[0]!.annotations['crisp.e2e/test'], 'yes');
    await cleanupPod(a);
    await cleanupPod(b);
  });

  test('bad requests get INVALID_ARGUMENT naming the field, and leave nothing behind', async () => {
    const cases: [Input<PodSandboxConfig>, string, RegExp][] = [
      [{ ...podConfig('bad1'), metadata: null }, '', /config\.metadata is required/],
      [{ ...podConfig('bad2'), metadata: { name: 'x', uid: '', namespace: 'e2e' } }, '', /config\.metadata\.uid is required/],
      [podConfig('bad3', { linux: { sysctls: { 'kernel.panic': '1' } } }), '', /config\.linux\.sysctls\["kernel\.panic"\]: not a namespaced sysctl/],
      [podConfig('bad4'), 'no-such-handler', /runtime_handler: "no-such-handler" is not configured/],
      [podConfig('bad5', { dnsConfig: { servers: ['10.0.0.1'], options: ['ndots 5'] } }), '', /config\.dns_config\.options\[0\]/],
      [podConfig('bad6', { dnsConfig: { servers: ['not-an-ip'] } }), '', /config\.dns_config\.servers\[0\]/],
      [podConfig('bad7', { logDirectory: 'relative/logs' }), '', /config\.log_directory: "relative\/logs" must be an absolute path/],
      [podConfig('bad8', { hostname: 'h'.repeat(65) }), '', /config\.hostname: .* is 65 bytes; the kernel allows at most 64/],
      [podConfig('bad9', { hostname: 'two words' }), '', /config\.hostname: .* contains whitespace or control characters/],
    ];
    for (const [config, handler, message] of cases) {
      await assert.rejects(d.client.runtime.unary('RunPodSandbox', { config, runtimeHandler: handler }), (err: unknown) => {
        assert.ok(isGrpcError(err, grpc.status.INVALID_ARGUMENT), `INVALID_ARGUMENT for ${message}: ${String(err)}`);
        assert.match(err.details, message);
        return true;
      });
    }
    const list = await d.client.runtime.unary('ListPodSandbox', { filter: { labelSelector: { run } } });
    assert.deepEqual(list.items, []);
  });

  test('unknown pod: Status is NOT_FOUND; Stop and Remove succeed', async () => {
    await assert.rejects(d.client.runtime.unary('PodSandboxStatus', { podSandboxId: 'f'.repeat(64) }), (err: unknown) =>
      isGrpcError(err, grpc.status.NOT_FOUND),
    );
    await d.client.runtime.unary('StopPodSandbox', { podSandboxId: 'f'.repeat(64) });
    await d.client.runtime.unary('RemovePodSandbox', { podSandboxId: 'f'.repeat(64) });
  });

  test('concurrent RunPodSandbox with the same metadata yields one pod; a retry gets it too', async () => {
    const config = podConfig('twice');
    const [a, b] = await Promise.all([
      d.client.runtime.unary('RunPodSandbox', { config }),
      d.client.runtime.unary('RunPodSandbox', { config }),
    ]);
    assert.equal(a.podSandboxId, b.podSandboxId);
    const again = await d.client.runtime.unary('RunPodSandbox', { config });
    assert.equal(again.podSandboxId, a.podSandboxId);
    const list = await d.client.runtime.unary('ListPodSandbox', { filter: { labelSelector: { run, app: 'twice' } } });
    assert.equal(list.items.length, 1);
    await cleanupPod(a.podSandboxId);
  });

  test('a failing CNI plugin fails the call naming it, and undoes everything', async () => {
    const conf = join(d.cniConfDir, '10-e2e.conflist');
    const good = readFileSync(conf, 'utf8');
    const broken = JSON.parse(good) as { plugins: object[] };
    broken.plugins.push({ type: 'crisp-no-such-plugin' });
    writeFileSync(conf, JSON.stringify(broken));
    try {
      await assert.rejects(d.client.runtime.unary('RunPodSandbox', { config: podConfig('cnifail') }), (err: unknown) => {
        assert.ok(isGrpcError(err));
        assert.match(err.details, /CNI ADD.*crisp-no-such-plugin/);
        return true;
      });
    } finally {
      writeFileSync(conf, good);
    }
    const list = await d.client.runtime.unary('ListPodSandbox', { filter: { labelSelector: { run, app: 'cnifail' } } });
    assert.deepEqual(list.items, []);
    assert.deepEqual(mountsBelow(join(d.state, 'pods')), [], 'no pinned namespace or shm left');
    const ipamFiles = existsSync(join(net.dataDir, net.name)) ? readdirSync(join(net.dataDir, net.name)).filter((f) => /^\d/.test(f)) : [];
    assert.deepEqual(ipamFiles, [], 'no IP left allocated');
  });

  test('pods survive a crispd kill -9: same state and IP, and remove still releases everything', async () => {
    const id = await runPod('restart');
    const before = await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id });
    await d.kill9();
    await d.start();
    const after = await d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id });
    assert.equal(after.status?.state, PodSandboxState.SANDBOX_READY);
    assert.equal(after.status?.network?.ip, before.status?.network?.ip);
    assert.equal(after.status?.createdAt, before.status?.createdAt);
    const i = await info(id);
    assert.equal(inNetns(i.pinnedNamespaces.net!, ['busybox', 'ping', '-c1', '-W2', net.gateway]).code, 0);
    await cleanupPod(id);
  });

  test('50 run/stop/remove cycles leak no IP, pin, mount, cgroup or record', async () => {
    const cgroups: string[] = [];
    for (let n = 0; n < 50; n++) {
      const id = await runPod(`cycle-${n}`);
      cgroups.push((await info(id)).cgroup.path);
      await cleanupPod(id);
    }
    assert.deepEqual(mountsBelow(join(d.state, 'pods')), []);
    assert.deepEqual(existsSync(join(d.state, 'pods')) ? readdirSync(join(d.state, 'pods')) : [], []);
    assert.deepEqual(readdirSync(join(d.root, 'pods')), []);
    const ipamFiles = readdirSync(join(net.dataDir, net.name)).filter((f) => /^\d/.test(f));
    assert.deepEqual(ipamFiles, [], 'every IP returned to host-local');
    for (const c of cgroups) assert.equal(await cgroupExists(c), false, `cgroup ${c} removed`);
    const list = await d.client.runtime.unary('ListPodSandbox', { filter: { labelSelector: { run } } });
    assert.deepEqual(list.items, []);
  });
});

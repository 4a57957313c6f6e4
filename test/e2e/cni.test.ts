// Real plugins from /usr/lib/cni against real network namespaces. Everything is named per run (bridge,
// subnet, network name, netns files, temp dirs) so it can share the machine with other tests, and
// everything is torn down in `after`, including the iptables rules portmap and ipMasq create.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { cniAdd, cniCheck, cniDel, cniLoopbackUp, cniStatus, createPodNetwork, type CniOptions } from '../../cni/network.js';
import { defaultConflist, writeConflist } from '../../cni/default-conflist.js';
import type { PodAttachment } from '../../cni/types.js';

const isRoot = process.getuid?.() === 0;
const hex = randomBytes(3).toString('hex');
const bridge = `cni${hex}`;
const network = `crisp-e2e-${hex}`;
let subnet = '';
let prefix = ''; // "10.A.B." for greps
let root = '';
let opts: CniOptions;
const netnsFiles: string[] = [];
const children: ChildProcess[] = [];

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.exitCode}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

async function iptablesLines(): Promise<string[]> {
  const out = await run('iptables-save', []);
  return out.split('\n').filter((l) => (prefix !== '' && l.includes(prefix)) || l.includes(network) || l.includes(`e2e${hex}`));
}

/** A pinned network namespace: a file with the netns bind-mounted on it (no /run/netns involved). */
async function makeNetns(name: string): Promise<string> {
  const file = join(root, 'ns', name);
  writeFileSync(file, '');
  netnsFiles.push(file);
  await run('unshare', [`--net=${file}`, 'true']);
  return file;
}

function inNetns(ns: string, cmd: string, args: string[]): Promise<string> {
  return run('nsenter', [`--net=${ns}`, cmd, ...args]);
}

function pod(name: string, netnsPath: string, extra: Partial<PodAttachment> = {}): PodAttachment {
  return {
    containerId: `e2e${hex}${name}`,
    netnsPath,
    podName: name,
    podNamespace: 'crisp-e2e',
    podUid: `uid-${hex}-${name}`,
    podCidr: subnet,
    ...extra,
  };
}

function allocatedIps(): string[] {
  const dir = join(root, 'ipam', network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.startsWith(prefix));
}

function fetchFrom(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let data = '';
    s.setTimeout(2000, () => s.destroy(new Error('timeout')));
    s.on('data', (d) => (data += d.toString()));
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
}

async function pickSubnet(): Promise<void> {
  const used = await run('ip', ['-4', 'route', 'show']);
  for (let i = 0; i < 50; i++) {
    const p = `10.${randomInt(200, 251)}.${randomInt(0, 256)}.`;
    if (!used.includes(p)) {
      prefix = p;
      subnet = `${p}0/24`;
      return;
    }
  }
  throw new Error('no free 10.200-250.x.0/24 subnet');
}

before(async () => {
  if (!isRoot) return;
  root = mkdtempSync(join(tmpdir(), `crisp-e2e-cni-${hex}-`));
  for (const d of ['net.d', 'ns', 'cache', 'ipam', 'fakebin']) mkdirSync(join(root, d));
  await pickSubnet();
  // No static subnet: the pod CIDR reaches host-local through the ipRanges capability at ADD time.
  await writeConflist(join(root, 'net.d', '10-crisp.conflist'), defaultConflist({ name: network, bridge, dataDir: join(root, 'ipam') }));
  opts = { confDir: join(root, 'net.d'), cacheDir: join(root, 'cache'), binDirs: ['/opt/cni/bin', '/usr/lib/cni'], timeoutMs: 20_000 };
});

after(async () => {
  if (!isRoot) return;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // Best-effort DEL of anything a failed test left attached, so the plugins remove their own rules.
  const cached = existsSync(join(root, 'cache')) ? readdirSync(join(root, 'cache')) : [];
  for (const f of cached) {
    const m = /-(e2e[0-9a-f]+\w+)-eth0\.json$/.exec(f);
    if (m?.[1]) await cniDel({ containerId: m[1] }, { ...opts, binDirs: [join(root, 'fakebin'), '/usr/lib/cni'] }).catch(() => undefined);
  }
  for (const f of netnsFiles) await execa('umount', [f], { reject: false });
  await execa('ip', ['link', 'del', bridge], { reject: false });
  // Whatever is still there (a crash mid-test): delete rule by rule, then flush/delete our chains.
  const leftovers = (await iptablesLines()).filter((l) => l.startsWith('-A '));
  const chains = new Set(leftovers.flatMap((l) => [...l.matchAll(/-j (CNI-(?!HOSTPORT)[\w-]+)/g)].map((m) => m[1]!)));
  for (const line of leftovers) await execa('sh', ['-c', `iptables -t nat -D ${line.slice(3)}`], { reject: false });
  for (const c of chains) {
    await execa('iptables', ['-t', 'nat', '-F', c], { reject: false });
    await execa('iptables', ['-t', 'nat', '-X', c], { reject: false });
  }
  const left = await iptablesLines();
  rmSync(root, { recursive: true, force: true });
  assert.deepEqual(left, [], `iptables rules for ${subnet} / ${network} left behind`);
  assert.equal(existsSync(`/sys/class/net/${bridge}`), false);
});

test('ADD attaches a pod: IP from the pod CIDR, gateway answers, lo is up', { skip: !isRoot && 'needs root' }, async () => {
  const nsA = await makeNetns('a');
  await cniLoopbackUp(nsA, { ...opts, containerId: `e2e${hex}a` });
  assert.match(await inNetns(nsA, 'ip', ['-br', 'link', 'show', 'lo']), /\bUP\b/);

  const res = await cniAdd(pod('a', nsA), opts);
  assert.equal(res.network, network);
  assert.equal(res.podIps.length, 1);
  const ip = res.podIps[0]!;
  assert.ok(ip.ip.startsWith(prefix), `${ip.ip} in ${subnet}`);
  assert.equal(ip.prefixLength, 24);
  assert.equal(ip.gateway, `${prefix}1`);
  assert.ok(res.result.interfaces.some((i) => i.name === bridge));
  assert.ok(res.result.interfaces.some((i) => i.name === 'eth0' && i.sandbox === nsA));
  assert.match(await inNetns(nsA, 'ip', ['-4', '-br', 'addr', 'show', 'eth0']), new RegExp(`${ip.ip.replace(/\./g, '\\.')}/24`));
  await inNetns(nsA, '/bin/busybox', ['ping', '-c1', '-W2', ip.gateway!]);
  assert.deepEqual(allocatedIps(), [ip.ip]);
  await cniCheck(pod('a', nsA), opts);
  assert.equal((await cniStatus(opts)).ready, true);
});

test('two pods reach each other across the bridge', { skip: !isRoot && 'needs root' }, async () => {
  const nsB = await makeNetns('b');
  const b = await cniAdd(pod('b', nsB), opts);
  const aIp = (await run('nsenter', [`--net=${netnsFiles[0]}`, 'ip', '-4', '-o', 'addr', 'show', 'eth0'])).match(/inet (\S+)\//)?.[1];
  assert.ok(aIp);
  await inNetns(nsB, '/bin/busybox', ['ping', '-c1', '-W2', aIp]);
  await inNetns(netnsFiles[0]!, '/bin/busybox', ['ping', '-c1', '-W2', b.podIps[0]!.ip]);
  assert.equal(allocatedIps().length, 2);
});

test('portmap forwards 127.0.0.1:hostPort to a listener in the pod', { skip: !isRoot && 'needs root' }, async () => {
  const nsP = await makeNetns('p');
  const hostPort = randomInt(30000, 40000);
  const att = pod('p', nsP, { portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp', hostIP: '127.0.0.1' }] });
  await cniAdd(att, opts);
  assert.ok((await iptablesLines()).some((l) => l.includes(`--dport ${hostPort}`)), 'portmap DNAT rule present');

  const listener = spawn('nsenter', [`--net=${nsP}`, process.execPath, '-e', `require('net').createServer((c) => c.end('hello from ${hex}\\n')).listen(8080, () => console.log('listening'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(listener);
  await new Promise<void>((resolve, reject) => {
    listener.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    listener.on('exit', (code) => reject(new Error(`listener exited ${code}`)));
  });
  assert.equal(await fetchFrom(hostPort), `hello from ${hex}\n`);
  // portmap 1.1.1's CHECK always looks for its IPv6 chain, which an IPv4-only pod never gets (upstream
  // bug). Pinned here so the day the plugins are fixed this assertion says so.
  await assert.rejects(cniCheck(att, opts), /CNI CHECK portmap: could not check ipv6 dnat: chain CNI-DN-\w+ not found/);
  listener.kill('SIGTERM');
});

test('portmap runs only for a pod with port mappings (it has nothing to do for the others)', { skip: !isRoot && 'needs root' }, async () => {
  // A portmap that records each run and then is the real one.
  const bin = join(root, `recbin${hex}`);
  mkdirSync(bin);
  const runs = join(root, `portmap-runs-${hex}`);
  writeFileSync(join(bin, 'portmap'), `#!/bin/sh\necho "$CNI_COMMAND $CNI_CONTAINERID" >>${runs}\nexec /usr/lib/cni/portmap\n`, { mode: 0o755 });
  const o = { ...opts, binDirs: [bin, '/usr/lib/cni'] };
  const recorded = () => (existsSync(runs) ? readFileSync(runs, 'utf8').trim().split('\n') : []);

  const nsQ = await makeNetns('q');
  const q = await cniAdd(pod('q', nsQ), o);
  assert.ok(q.podIps[0]?.ip.startsWith(prefix), 'the chain without portmap still attaches the pod');
  await inNetns(nsQ, '/bin/busybox', ['ping', '-c1', '-W2', q.podIps[0]!.gateway!]);
  await cniCheck(pod('q', nsQ), o);
  await cniDel(pod('q', nsQ), o);
  assert.deepEqual(recorded(), []);

  const nsR = await makeNetns('r');
  const hostPort = randomInt(50001, 60000);
  const r = pod('r', nsR, { portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }] });
  await cniAdd(r, o);
  assert.ok((await iptablesLines()).some((l) => l.includes(`--dport ${hostPort}`)), 'portmap DNAT rule present');
  await cniDel(r, o);
  assert.deepEqual(recorded(), [`ADD e2e${hex}r`, `DEL e2e${hex}r`]);
  assert.equal((await iptablesLines()).some((l) => l.includes(`--dport ${hostPort}`)), false, 'portmap DNAT rule removed');
  assert.equal(allocatedIps().length, 3, 'q and r released their addresses (a, b and p keep theirs)');
});

test('DEL after a restart works from the cache alone and releases everything', { skip: !isRoot && 'needs root' }, async () => {
  // "Restart": a new instance whose conf dir has no config at all.
  rmSync(join(root, 'net.d', '10-crisp.conflist'));
  const fresh = createPodNetwork({ ...opts });
  assert.equal((await fresh.status()).ready, false);
  for (const name of ['a', 'b', 'p']) await fresh.del({ containerId: `e2e${hex}${name}` });
  assert.deepEqual(allocatedIps(), []);
  assert.deepEqual(readdirSync(join(root, 'cache')), []);
  assert.deepEqual(await iptablesLines(), []);
  assert.doesNotMatch(await inNetns(netnsFiles[0]!, 'ip', ['-br', 'link']), /eth0/);
  // A second DEL is harmless.
  await fresh.del({ containerId: `e2e${hex}a`, netnsPath: netnsFiles[0]! });
});

test('a failing plugin in the chain: bridge and portmap are undone before ADD throws', { skip: !isRoot && 'needs root' }, async () => {
  const fake = join(root, 'fakebin', `fail${hex}`);
  writeFileSync(
    fake,
    `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","code":7,"msg":"refusing on purpose","details":"e2e ${hex}"}'; exit 1; fi\nexit 0\n`,
  );
  chmodSync(fake, 0o755);
  const list = defaultConflist({ name: network, bridge, dataDir: join(root, 'ipam') });
  list.plugins.push({ type: `fail${hex}` });
  await writeConflist(join(root, 'net.d', '10-crisp.conflist'), list);
  const o = { ...opts, binDirs: [join(root, 'fakebin'), '/usr/lib/cni'] };

  const nsF = await makeNetns('f');
  await assert.rejects(
    cniAdd(pod('f', nsF, { portMappings: [{ hostPort: randomInt(40001, 50000), containerPort: 80, protocol: 'tcp' }] }), o),
    new RegExp(`^CrispError\\(FAILED_PRECONDITION\\): pod e2e${hex}f: network ${network}: CNI ADD fail${hex}: refusing on purpose: e2e ${hex} \\(code 7\\)$`),
  );
  assert.deepEqual(allocatedIps(), []);
  assert.deepEqual(readdirSync(join(root, 'cache')), []);
  assert.deepEqual(await iptablesLines(), []);
  assert.doesNotMatch(await inNetns(nsF, 'ip', ['-br', 'link']), /eth0/);
  assert.equal((await run('ip', ['-br', 'link', 'show', 'master', bridge])).trim(), '');
});

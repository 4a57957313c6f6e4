// crisp-nshelper against the real kernel (root): pinning, user namespace ownership, sysctls inside
// pinned namespaces, idmapped mounts and the idmap probe. Every run uses its own temp dir and cleans up.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync, chownSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  applySysctls,
  idmapMount,
  isNsHelperError,
  nshelperPath,
  pinNamespaces,
  probeIdmap,
  unpinNamespaces,
  type IdMapping,
} from '../../native/nshelper.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root';

let base = '';
let n = 0;
/** A fresh empty dir for one test, inside this run's base dir. */
function freshDir(): string {
  const d = join(base, `t${n++}`);
  mkdirSync(d);
  return d;
}

const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));

async function sh(cmd: string, ...args: string[]): Promise<string> {
  return (await run(cmd, args, { encoding: 'utf8' })).stdout.trim();
}

/** Starts `nsenter <nsArgs> sleep 60` and waits until it runs inside the namespaces (comm = sleep). */
async function startIn(nsArgs: string[]): Promise<ChildProcess & { pid: number }> {
  const child = spawn('nsenter', [...nsArgs, 'sleep', '60'], { stdio: 'ignore' });
  const pid = child.pid;
  if (pid === undefined) throw new Error('nsenter did not start');
  for (let i = 0; i < 200; i++) {
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep') return child as ChildProcess & { pid: number };
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGKILL');
  throw new Error('nsenter never exec-ed sleep');
}

const nsInode = (path: string) => statSync(path).ino;
const randomHostBase = () => 100000 + randomInt(1, 1000) * 65536;
const mapping = (hostId: number): IdMapping[] => [{ containerId: 0, hostId, length: 65536 }];

before(async () => {
  if (!isRoot) return;
  // build (or confirm) the helper the wrapper will use
  const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'native');
  if (existsSync(join(nativeDir, 'Makefile'))) await run('make', ['-s', '-C', nativeDir]);
  assert.ok(existsSync(nshelperPath()), `helper missing at ${nshelperPath()}`);
  base = `/tmp/crisp-e2e-native-${randomBytes(4).toString('hex')}`;
  mkdirSync(base, { mode: 0o755 });
  chmodSync(base, 0o755); // user-namespace roots must be able to walk into it
});

after(async () => {
  if (!base) return;
  for (const d of readdirSync(base)) {
    const dir = join(base, d);
    // detach whatever a failed test left mounted, deepest first, then remove the tree
    for (const line of mountsUnder(dir).reverse()) await run('umount', ['-l', line.split(' ')[4]]).catch(() => {});
    await unpinNamespaces(dir).catch(() => {});
  }
  assert.deepEqual(mountsUnder(base), [], 'mounts left behind');
  rmSync(base, { recursive: true, force: true });
});

test('pin net+ipc+uts with hostname, then unpin leaves nothing', { skip }, async () => {
  const dir = freshDir();
  const hostname = `crisp-${randomBytes(3).toString('hex')}`;
  const pinned = await pinNamespaces({ dir, net: true, ipc: true, uts: true, hostname });
  try {
    assert.deepEqual(pinned, { net: join(dir, 'net'), ipc: join(dir, 'ipc'), uts: join(dir, 'uts') });
    assert.equal(mountsUnder(dir).length, 3);
    const links = (await sh('nsenter', `--net=${pinned.net}`, 'ip', '-o', 'link', 'show'))
      .split('\n')
      .map((l) => l.split(':')[1]?.trim());
    assert.deepEqual(links, ['lo']);
    assert.equal(await sh('nsenter', `--uts=${pinned.uts}`, 'hostname'), hostname);
    assert.notEqual(await sh('hostname'), hostname);
    assert.notEqual(readlinkSync('/proc/self/ns/ipc'), `ipc:[${nsInode(join(dir, 'ipc'))}]`);

    // pinning again over live pins is refused and changes nothing
    await assert.rejects(pinNamespaces({ dir, net: true }), (err: unknown) => isNsHelperError(err) && err.kind === 'ALREADY_EXISTS');
    assert.equal(mountsUnder(dir).length, 3);
  } finally {
    await unpinNamespaces(dir);
  }
  assert.deepEqual(mountsUnder(dir), []);
  assert.deepEqual(readdirSync(dir), []);
  await unpinNamespaces(dir); // idempotent
});

test('pin --shm: the pod /dev/shm tmpfs comes with the pins, a retry keeps it, a failed pin takes it down', { skip }, async () => {
  const dir = freshDir();
  const shm = join(dir, 'shm');
  const nsDir = join(dir, 'ns');
  mkdirSync(nsDir);
  await pinNamespaces({ dir: nsDir, ipc: true, shm: { path: shm, sizeBytes: 8 * 1024 * 1024 } });
  try {
    const line = mountsUnder(dir).find((l) => l.split(' ')[4] === shm);
    assert.ok(line, 'tmpfs mounted on the shm path');
    assert.match(line, / - tmpfs shm /);
    assert.match(line, /\bnosuid\b/);
    assert.match(line, /\bnodev\b/);
    assert.match(line, /\bnoexec\b/);
    assert.match(line, /size=8192k/);
    assert.equal(statSync(shm).mode & 0o7777, 0o1777);
    // a pin that fails (ipc already pinned) after the shm step leaves the existing tmpfs alone
    await assert.rejects(pinNamespaces({ dir: nsDir, ipc: true, shm: { path: shm, sizeBytes: 8 * 1024 * 1024 } }), (err: unknown) => isNsHelperError(err) && err.kind === 'ALREADY_EXISTS');
    assert.equal(mountsUnder(dir).filter((l) => l.split(' ')[4] === shm).length, 1, 'still one tmpfs, not stacked');
  } finally {
    await run('umount', ['-l', shm]);
    await unpinNamespaces(nsDir);
  }
  // a failing pin removes the tmpfs and the dir it made: the net pin target is a directory, which bind refuses
  const shm2 = join(dir, 'shm2');
  const nsDir2 = join(dir, 'ns2');
  mkdirSync(join(nsDir2, 'net'), { recursive: true });
  await assert.rejects(pinNamespaces({ dir: nsDir2, net: true, shm: { path: shm2, sizeBytes: 1024 * 1024 } }), isNsHelperError);
  assert.deepEqual(mountsUnder(dir), []);
  assert.equal(existsSync(shm2), false, 'the shm dir it made is gone');
});

test('pin --lo-up: lo is up in the new net namespace (also when a user namespace owns it), down without it', { skip }, async () => {
  // "<LOOPBACK,UP,LOWER_UP>" once up, "<LOOPBACK>" while down
  const loState = async (netns: string) => /<[^>]*\bUP\b[^>]*>/.test(await sh('nsenter', `--net=${netns}`, 'ip', '-o', 'link', 'show', 'lo'));
  for (const user of [undefined, { uidMappings: mapping(randomHostBase()), gidMappings: mapping(randomHostBase()) }]) {
    const dir = freshDir();
    const pinned = await pinNamespaces({ dir, net: true, loopbackUp: true, ...(user ? { user } : {}) });
    try {
      assert.equal(await loState(pinned.net!), true, `lo up ${user ? 'with' : 'without'} a user namespace`);
      assert.match(await sh('nsenter', `--net=${pinned.net}`, 'ip', '-o', 'addr', 'show', 'lo'), /inet 127\.0\.0\.1\/8/);
    } finally {
      await unpinNamespaces(dir);
    }
  }
  const dir = freshDir();
  const pinned = await pinNamespaces({ dir, net: true });
  try {
    assert.equal(await loState(pinned.net!), false, 'lo stays down without --lo-up');
  } finally {
    await unpinNamespaces(dir);
  }
});

test('user namespace is pinned with its maps and owns the other namespaces', { skip }, async () => {
  const dir = freshDir();
  const hostId = randomHostBase();
  const gidHost = hostId + 65536; // a different gid range proves the two maps are kept apart
  const pinned = await pinNamespaces({
    dir,
    net: true,
    ipc: true,
    uts: true,
    user: { uidMappings: mapping(hostId), gidMappings: mapping(gidHost) },
  });
  let proc: (ChildProcess & { pid: number }) | undefined;
  try {
    assert.equal(pinned.user, join(dir, 'user'));
    proc = await startIn([`--user=${pinned.user}`, `--net=${pinned.net}`]);
    const fields = (f: string) => readFileSync(`/proc/${proc!.pid}/${f}`, 'utf8').trim().split(/\s+/).map(Number);
    assert.deepEqual(fields('uid_map'), [0, hostId, 65536]);
    assert.deepEqual(fields('gid_map'), [0, gidHost, 65536]);
    // gid_map written by a root parent needs no setgroups=deny, so containers keep setgroups(2)
    assert.equal(readFileSync(`/proc/${proc.pid}/setgroups`, 'utf8').trim(), 'allow');
    const userIno = nsInode(pinned.user!);
    assert.equal(readlinkSync(`/proc/${proc.pid}/ns/user`), `user:[${userIno}]`);
    assert.equal(readlinkSync(`/proc/${proc.pid}/ns/net`), `net:[${nsInode(pinned.net!)}]`);

    // owner namespace of the pinned net ns, as the kernel reports it (NS_GET_USERNS behind lsns ONS)
    const lsns = JSON.parse(await sh('lsns', '-J', '-p', String(proc.pid), '-o', 'NS,TYPE,ONS')) as {
      namespaces: { ns: number | string; type: string; ons: number | string }[];
    };
    const net = lsns.namespaces.find((x) => x.type === 'net');
    assert.equal(Number(net?.ons), userIno);
    // net sysctl files of a netns owned by the user ns belong to its root, i.e. host uid hostId
    assert.equal(await sh('nsenter', `--net=${pinned.net}`, 'stat', '-c', '%u', '/proc/sys/net/ipv4/ip_forward'), String(hostId));
    assert.equal(await sh('nsenter', `--ipc=${pinned.ipc}`, 'stat', '-c', '%u', '/proc/sys/kernel/shmmax'), String(hostId));
  } finally {
    proc?.kill('SIGKILL');
    await unpinNamespaces(dir);
  }
  assert.deepEqual(mountsUnder(dir), []);
});

test('a failed pin undoes its files and mounts', { skip }, async () => {
  const dir = freshDir();
  // overlapping ranges: the kernel refuses the uid_map write after the namespaces exist
  const bad: IdMapping[] = [
    { containerId: 0, hostId: 100000, length: 10 },
    { containerId: 5, hostId: 200000, length: 10 },
  ];
  await assert.rejects(
    pinNamespaces({ dir, net: true, uts: true, user: { uidMappings: bad, gidMappings: mapping(100000) } }),
    (err: unknown) => isNsHelperError(err) && err.kind === 'INTERNAL' && err.step.startsWith('write uid_map'),
  );
  assert.deepEqual(readdirSync(dir), []);
  assert.deepEqual(mountsUnder(dir), []);
});

for (const withUser of [false, true]) {
  test(`sysctls land in the pinned namespaces, not on the host (${withUser ? 'userns-owned' : 'plain'})`, { skip }, async () => {
    const dir = freshDir();
    const hostId = randomHostBase();
    const pinned = await pinNamespaces({
      dir,
      net: true,
      ipc: true,
      uts: true,
      ...(withUser ? { user: { uidMappings: mapping(hostId), gidMappings: mapping(hostId) } } : {}),
    });
    const read = (key: string) => readFileSync(`/proc/sys/${key.replaceAll('.', '/')}`, 'utf8').trim();
    const hostBefore = { fwd: read('net.ipv4.ip_forward'), ttl: read('net.ipv4.ip_default_ttl'), shm: read('kernel.shmmax') };
    const hostHostname = await sh('hostname');
    const ttl = String(randomInt(2, 250));
    const shmmax = String(1_000_000 + randomInt(1, 1_000_000));
    const domain = `crisp-${randomBytes(3).toString('hex')}`;
    try {
      await applySysctls(
        { netns: pinned.net, ipcns: pinned.ipc, utsns: pinned.uts },
        {
          'net.ipv4.ip_forward': '1',
          'net.ipv4.ip_default_ttl': ttl,
          'kernel.shmmax': shmmax,
          'fs.mqueue.msg_max': '20',
          'kernel.domainname': domain,
        },
      );
      const inNs = (flag: string, key: string) => sh('nsenter', flag, 'cat', `/proc/sys/${key.replaceAll('.', '/')}`);
      assert.equal(await inNs(`--net=${pinned.net}`, 'net.ipv4.ip_forward'), '1');
      assert.equal(await inNs(`--net=${pinned.net}`, 'net.ipv4.ip_default_ttl'), ttl);
      assert.equal(await inNs(`--ipc=${pinned.ipc}`, 'kernel.shmmax'), shmmax);
      assert.equal(await inNs(`--ipc=${pinned.ipc}`, 'fs.mqueue.msg_max'), '20');
      assert.equal(await inNs(`--uts=${pinned.uts}`, 'kernel.domainname'), domain);

      assert.equal(read('net.ipv4.ip_forward'), hostBefore.fwd);
      assert.notEqual(read('net.ipv4.ip_default_ttl'), ttl);
      assert.equal(read('kernel.shmmax'), hostBefore.shm);
      assert.notEqual(read('kernel.domainname'), domain);
      assert.equal(await sh('hostname'), hostHostname);

      // keys that are not namespaced, or whose namespace was not given, never reach the kernel
      const refused = (err: unknown) => isNsHelperError(err) && err.kind === 'INVALID_ARGUMENT';
      await assert.rejects(applySysctls({ netns: pinned.net }, { 'vm.swappiness': '1' }), refused);
      await assert.rejects(applySysctls({ netns: pinned.net }, { 'kernel.shmmax': '1' }), refused);
      assert.equal(read('kernel.shmmax'), hostBefore.shm);
    } finally {
      await unpinNamespaces(dir);
    }
  });
}

test('idmapped mount: on-disk uid 0 shows as the mapped host uid', { skip }, async () => {
  const dir = freshDir();
  chmodSync(dir, 0o755);
  const hostId = randomHostBase();
  const pinned = await pinNamespaces({ dir, user: { uidMappings: mapping(hostId), gidMappings: mapping(hostId) } });
  const src = join(dir, 'src');
  const dst = join(dir, 'dst');
  mkdirSync(src, { mode: 0o755 });
  mkdirSync(dst);
  writeFileSync(join(src, 'root-file'), 'x');
  writeFileSync(join(src, 'user-file'), 'x');
  chownSync(join(src, 'user-file'), 1000, 1000);
  writeFileSync(join(src, 'unmapped-file'), 'x');
  chownSync(join(src, 'unmapped-file'), 70000, 70000);
  let mounted = false;
  try {
    await idmapMount({ userns: pinned.user!, src, dst });
    mounted = true;
    // Kernel direction: on-disk id N is read as id N *inside* the user namespace, so the host sees the
    // host id N maps to (0 -> hostId); ids outside the mapping show as the overflow id 65534.
    const owner = (p: string) => `${statSync(p).uid}:${statSync(p).gid}`;
    assert.equal(owner(join(dst, 'root-file')), `${hostId}:${hostId}`);
    assert.equal(owner(join(dst, 'user-file')), `${hostId + 1000}:${hostId + 1000}`);
    assert.equal(owner(join(dst, 'unmapped-file')), '65534:65534');
    assert.equal(owner(join(src, 'root-file')), '0:0', 'the source is untouched');
    // and inside the user namespace the image's root files are root's again
    assert.equal(await sh('nsenter', `--user=${pinned.user}`, 'stat', '-c', '%u:%g', join(dst, 'root-file')), '0:0');
    // a file created through the mount by the namespace's root lands on disk as uid 0
    await sh('nsenter', `--user=${pinned.user}`, 'touch', join(dst, 'made-inside'));
    assert.equal(owner(join(src, 'made-inside')), '0:0');

    // dst must exist; bad user namespace files are refused by the kernel
    await assert.rejects(idmapMount({ userns: pinned.user!, src, dst: join(dir, 'absent') }), isNsHelperError);
    await assert.rejects(
      idmapMount({ userns: '/proc/self/ns/user', src, dst }),
      (err: unknown) => isNsHelperError(err) && err.step.startsWith('mount_setattr'),
    );
  } finally {
    if (mounted) await run('umount', ['-l', dst]);
    await unpinNamespaces(dir);
  }
  assert.deepEqual(mountsUnder(dir), []);
});

test('recursive idmapped mount carries submounts', { skip }, async () => {
  const dir = freshDir();
  const hostId = randomHostBase();
  const pinned = await pinNamespaces({ dir, user: { uidMappings: mapping(hostId), gidMappings: mapping(hostId) } });
  const src = join(dir, 'src');
  const sub = join(src, 'sub');
  const inner = join(dir, 'inner');
  const dst = join(dir, 'dst');
  for (const d of [src, sub, inner, dst]) mkdirSync(d);
  writeFileSync(join(inner, 'f'), 'x');
  const cleanup: string[] = [];
  try {
    await run('mount', ['--bind', inner, sub]);
    cleanup.push(sub);
    await idmapMount({ userns: pinned.user!, src, dst, recursive: true });
    cleanup.unshift(dst);
    assert.equal(statSync(join(dst, 'sub', 'f')).uid, hostId);
  } finally {
    for (const m of cleanup) await run('umount', ['-l', m]);
    await unpinNamespaces(dir);
  }
});

test('probe-idmap: this kernel supports idmap and overlay over it, and the probe cleans up', { skip }, async () => {
  const dir = freshDir();
  assert.deepEqual(await probeIdmap(dir), { idmap: true, overlayOverIdmap: true, reason: '' });
  assert.deepEqual(readdirSync(dir), []);
  assert.deepEqual(mountsUnder(dir), []);
});

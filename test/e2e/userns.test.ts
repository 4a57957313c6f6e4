// User-namespace pods against the real stack: root inside is a high host uid outside, image files,
// pod files, /dev/shm and hostPath volumes look root-owned inside without any chown of the image
// (idmapped mounts), writes land where and as whom they should, two pods with different mappings are
// apart, Status says user_namespaces, nothing stays mounted after removal (also across a kill -9 of
// crispd), and bad userns_options are refused naming the field. Plus the chown fallback: on a real
// overlay, and through crispd on a node whose probe finds no idmapped mounts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { TestCrispd, mountsBelow } from './lib/crispd.js';
import { writeTestNetwork } from './lib/network.js';
import { startRegistry } from './fixtures/registry.js';
import { busyboxImage } from './fixtures/images.js';
import { isGrpcError } from '../../common/errors.js';
import { NamespaceMode, type IDMapping } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodSandboxConfig } from '../../gen/runtime.v1.js';
import { chownRootfs } from '../../sandbox/userns/fallback.js';

const RANGE = 65536;

/** Two distinct random host id bases, ≥ 100000 and aligned to 65536. */
function randomBases(): [number, number] {
  const a = 2 + Math.floor(Math.random() * 30000);
  let b = 2 + Math.floor(Math.random() * 30000);
  if (b === a) b = a + 1;
  return [a * RANGE, b * RANGE];
}

const mapping = (hostId: number, over: Partial<IDMapping> = {}): IDMapping => ({ hostId, containerId: 0, length: RANGE, ...over });

function usernsPod(uidBase: number, gidBase = uidBase, over: { uids?: IDMapping[]; gids?: IDMapping[] } = {}): Input<PodSandboxConfig> {
  return {
    linux: {
      securityContext: {
        namespaceOptions: {
          usernsOptions: { mode: NamespaceMode.POD, uids: over.uids ?? [mapping(uidBase)], gids: over.gids ?? [mapping(gidBase)] },
        },
      },
    },
  };
}

/** The Uid:/Gid: lines of /proc/<pid>/status: real, effective, saved, fs. */
function procIds(pid: number): { uid: number[]; gid: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const ids = (key: string) => /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(status.split('\n').find((l) => l.startsWith(`${key}:`))!.slice(key.length + 1))!.slice(1).map(Number);
  return { uid: ids('Uid'), gid: ids('Gid') };
}

/** Super options of the overlay mounted as a container's rootfs (the bundle's rootfs dir). */
function rootfsOverlay(containerId: string): Record<string, string> {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4]?.endsWith(`/${containerId}/rootfs`) && l.includes(' - overlay '));
  assert.ok(line, `no rootfs overlay for ${containerId}`);
  const superOpts = line.split(' - ')[1]!.split(' ')[2]!;
  return Object.fromEntries(superOpts.split(',').map((o) => [o.split('=')[0]!, o.split('=').slice(1).join('=')]));
}

describe('user-namespace pods', () => {
  let s: Stack;
  const [baseA, baseB] = randomBases();
  const gidA = baseA + RANGE * 3;
  const hostDir = mkdtempSync('/tmp/crisp-e2e-userns-vol-');
  let podA: string;
  let podB: string;
  let ctrA: string;

  before(async () => {
    s = await startStack();
    // runc reaches the bundle's rootfs as the pod's root: the harness's private temp dir must let it pass
    // (crispd opens its own state dirs the same way).
    chmodSync(s.d.dir, 0o711);
    // Host root owns everything in the volume; the dir is open so a non-root container user can write.
    chmodSync(hostDir, 0o777);
    writeFileSync(join(hostDir, 'root-owned.txt'), 'from the host\n', { mode: 0o644 });
    mkdirSync(join(hostDir, 'sub'));
  });
  after(async () => {
    const rules = await s?.teardown();
    rmSync(hostDir, { recursive: true, force: true });
    assert.deepEqual(rules ?? [], []);
  });

  const exec = async (id: string, cmd: string[], timeout = 10) => {
    const r = await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd, timeout });
    return { out: r.stdout.toString().trim(), err: r.stderr.toString().trim(), code: r.exitCode };
  };
  const sh = async (id: string, script: string) => exec(id, ['sh', '-c', script]);
  const pidOf = async (id: string) => JSON.parse((await s.d.client.runtime.unary('ContainerStatus', { containerId: id, verbose: true })).info.info!).pid as number;

  test('Status reports user_namespaces for every runtime handler', async () => {
    const st = await s.d.client.runtime.unary('Status', { verbose: true });
    assert.ok(st.runtimeHandlers.length > 0);
    for (const h of st.runtimeHandlers) assert.equal(h.features?.userNamespaces, true, `handler "${h.name}"`);
    const info = JSON.parse(st.info.config!);
    assert.equal(info.userNamespaces.rootfs, 'idmap');
  });

  test('inside the pod, root is uid 0 with the pod mapping; outside, the process runs as the mapped ids', async () => {
    podA = await s.runPod('userns-a', usernsPod(baseA, gidA));
    ctrA = await s.runContainer(podA, 'main', ['sleep', '3600'], { mounts: [{ containerPath: '/vol', hostPath: hostDir }] });
    assert.deepEqual(await exec(ctrA, ['id', '-u']), { out: '0', err: '', code: 0 });
    assert.equal((await exec(ctrA, ['id', '-g'])).out, '0');
    assert.deepEqual((await exec(ctrA, ['cat', '/proc/self/uid_map'])).out.split(/\s+/).map(Number), [0, baseA, RANGE]);
    assert.deepEqual((await exec(ctrA, ['cat', '/proc/self/gid_map'])).out.split(/\s+/).map(Number), [0, gidA, RANGE]);
    const ids = procIds(await pidOf(ctrA));
    assert.deepEqual(ids.uid, [baseA, baseA, baseA, baseA]);
    assert.deepEqual(ids.gid, [gidA, gidA, gidA, gidA]);

    const verbose = JSON.parse((await s.d.client.runtime.unary('PodSandboxStatus', { podSandboxId: podA, verbose: true })).info.info!);
    assert.deepEqual(verbose.userNamespace.uids, [{ containerId: 0, hostId: baseA, length: RANGE }]);
    assert.deepEqual(verbose.userNamespace.gids, [{ containerId: 0, hostId: gidA, length: RANGE }]);
    assert.equal(verbose.userNamespace.mounts.rootfs, 'idmap');
  });

  test('image files, pod files and /dev/shm are root-owned inside; the image on disk is not chowned', async () => {
    const owners = await sh(ctrA, 'stat -c "%u:%g %n" /bin/busybox /etc/passwd / /etc/hosts /etc/hostname /etc/resolv.conf /dev/shm /home/app');
    assert.equal(owners.code, 0, owners.err);
    assert.deepEqual(owners.out.split('\n'), ['0:0 /bin/busybox', '0:0 /etc/passwd', '0:0 /', '0:0 /etc/hosts', '0:0 /etc/hostname', '0:0 /etc/resolv.conf', '0:0 /dev/shm', '1000:1000 /home/app']);
    // The lower layers on disk keep their ids (no chown); the overlay sees them through one idmapped,
    // read-only mount of the snapshots dir below the container's state dir.
    const ovl = rootfsOverlay(ctrA);
    const idmapped = join(s.d.state, 'containers', ctrA, 'idmap', '0');
    const lowers = ovl.lowerdir!.split(':').map((l) => (l.startsWith('/') ? l : join(idmapped, l)));
    assert.ok(lowers.length >= 3, ovl.lowerdir);
    for (const l of lowers) assert.ok(l.startsWith(`${idmapped}/`), `lower ${l} is inside the idmapped mount`);
    const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((x) => x.split(' ')[4] === idmapped);
    assert.ok(line, `${idmapped} is a mount`);
    assert.match(line, /\bro,.*idmapped/, 'read-only and idmapped');
    assert.equal(statSync(join(lowers.at(-1)!, 'bin', 'busybox')).uid, baseA, 'seen through the idmap from the host');
    const snapshotsBusybox = spawnSync('sh', ['-c', `ls -d ${s.d.root}/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/bin/busybox`], { encoding: 'utf8' }).stdout.trim().split('\n');
    assert.ok(snapshotsBusybox.length >= 1 && snapshotsBusybox[0] !== '');
    for (const p of snapshotsBusybox) assert.equal(statSync(p).uid, 0, `${p} keeps its on-disk owner`);
    // /dev/shm, /tmp and the pod files are writable by the pod's root.
    assert.equal((await sh(ctrA, 'echo x > /dev/shm/f && echo y > /tmp/f && echo 10.9.9.9 extra >> /etc/hosts && echo ok')).out, 'ok');
  });

  test('a file written in the rootfs lands in the upper dir as the mapped ids', async () => {
    assert.equal((await sh(ctrA, 'echo written > /written.txt && echo more >> /etc/passwd && mkdir -p /newdir && echo ok')).out, 'ok');
    const upper = rootfsOverlay(ctrA).upperdir!;
    for (const f of ['written.txt', 'etc/passwd', 'newdir']) {
      const st = lstatSync(join(upper, f));
      assert.deepEqual([st.uid, st.gid], [baseA, gidA], f);
    }
    assert.equal(readFileSync(join(upper, 'written.txt'), 'utf8'), 'written\n');
    // A non-root user of the pod writes as its own mapped uid.
    assert.equal((await exec(ctrA, ['su', 'app', '-s', '/bin/sh', '-c', 'echo app > /tmp/by-app && echo ok'])).out, 'ok');
    assert.equal(lstatSync(join(upper, 'tmp', 'by-app')).uid, baseA + 1000);
  });

  test('root in the pod cannot reach the host: network, clock, devices, hostname stay the host\'s', async () => {
    const caps = await s.runContainer(podA, 'caps', ['sleep', '3600'], {
      linux: { securityContext: { capabilities: { addCapabilities: ['NET_ADMIN', 'SYS_ADMIN', 'SYS_TIME', 'MKNOD'], dropCapabilities: [], addAmbientCapabilities: [] } } },
    });
    const link = `crisp${Math.random().toString(36).slice(2, 8)}`;
    // Links it makes exist only in the pod's network namespace, and host interfaces are not there.
    await sh(caps, `ip link add ${link} type bridge`);
    assert.equal(spawnSync('ip', ['link', 'show', link]).status !== 0, true, 'the link is not on the host');
    const hostLinks = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
    const hostOnly = hostLinks.split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).find((n) => n && n !== 'lo');
    if (hostOnly) assert.notEqual((await exec(caps, ['ip', 'link', 'show', hostOnly])).code, 0, `host link ${hostOnly} is not visible`);
    // Capabilities count only inside the user namespace: the clock and device nodes are the host's.
    // (busybox date reports the failed settimeofday on stderr but exits 0)
    const date = await exec(caps, ['date', '-s', '2001-01-01']);
    assert.match(date.err, /can't set date: Operation not permitted/i);
    assert.ok(new Date().getFullYear() > 2001, 'the host clock is untouched');
    const mknod = await exec(caps, ['mknod', '/tmp/sda', 'b', '8', '0']);
    assert.notEqual(mknod.code, 0);
    // hostname changes the pod's uts namespace only.
    const before = osHostname();
    assert.equal((await sh(caps, 'hostname crisp-renamed && hostname')).out, 'crisp-renamed');
    assert.equal(osHostname(), before);
    await s.d.client.runtime.unary('RemoveContainer', { containerId: caps });
  });

  test('hostPath volume: host-root files are root inside; writes keep the ids the container sees', async () => {
    const inside = await sh(ctrA, 'stat -c "%u:%g" /vol/root-owned.txt /vol/sub /vol && cat /vol/root-owned.txt');
    assert.deepEqual(inside.out.split('\n'), ['0:0', '0:0', '0:0', 'from the host']);
    assert.equal((await sh(ctrA, 'echo hi > /vol/by-root.txt && echo more >> /vol/root-owned.txt && echo ok')).out, 'ok');
    assert.equal((await exec(ctrA, ['su', 'app', '-s', '/bin/sh', '-c', 'echo app > /vol/by-app.txt && echo ok'])).out, 'ok');
    // Through an idmapped mount the container's ids are written as they are: root as 0, app as 1000.
    assert.equal(statSync(join(hostDir, 'by-root.txt')).uid, 0);
    assert.equal(statSync(join(hostDir, 'by-app.txt')).uid, 1000);
    assert.equal(readFileSync(join(hostDir, 'root-owned.txt'), 'utf8'), 'from the host\nmore\n');
    // Seen through the idmapped view crisp made, the same files show the pod's host ids.
    const view = join(s.d.state, 'containers', ctrA, 'volumes', '0');
    assert.equal(statSync(join(view, 'by-root.txt')).uid, baseA);
    assert.equal(statSync(join(view, 'by-app.txt')).uid, baseA + 1000);
  });

  test('two pods with different mappings are apart', async () => {
    podB = await s.runPod('userns-b', usernsPod(baseB));
    const ctrB = await s.runContainer(podB, 'main', ['sleep', '3600']);
    const mapA = (await exec(ctrA, ['cat', '/proc/self/uid_map'])).out.split(/\s+/).map(Number);
    const mapB = (await exec(ctrB, ['cat', '/proc/self/uid_map'])).out.split(/\s+/).map(Number);
    assert.deepEqual(mapB, [0, baseB, RANGE]);
    assert.notDeepEqual(mapA, mapB);
    assert.deepEqual(procIds(await pidOf(ctrB)).uid, [baseB, baseB, baseB, baseB]);
    // The same image, seen as root by each pod through its own idmap.
    assert.equal((await exec(ctrB, ['stat', '-c', '%u', '/bin/busybox'])).out, '0');
    assert.equal((await sh(ctrB, 'echo b > /b.txt && echo ok')).out, 'ok');
    assert.equal(lstatSync(join(rootfsOverlay(ctrB).upperdir!, 'b.txt')).uid, baseB);
    // Pod A's files on the shared hostPath are not pod B's root's: B has no such volume, and its
    // processes are outside A's id range altogether.
    assert.ok(baseB >= baseA + RANGE || baseB + RANGE <= baseA);
  });

  test('bad userns_options are refused with INVALID_ARGUMENT naming the field: only what the kernel and runc refuse', async () => {
    const cases: [Input<PodSandboxConfig>, RegExp][] = [
      [usernsPod(baseA, baseA, { uids: [mapping(baseA, { containerId: 1 })] }), /userns_options\.uids: container id 0 must be mapped/],
      [usernsPod(baseA, baseA, { gids: [mapping(baseA, { length: 0 })] }), /userns_options\.gids\[0\]\.length/],
      [usernsPod(baseA, baseA, { uids: [mapping(2 ** 32 - 10)] }), /userns_options\.uids\[0\]: host_id \+ length exceeds/],
      [usernsPod(baseA, baseA, { uids: [mapping(baseA), mapping(baseA + 10, { containerId: RANGE })] }), /userns_options\.uids: the host_id ranges of two mappings overlap/],
      [usernsPod(baseA, baseA, { uids: [] }), /userns_options\.uids: between 1 and 340/],
    ];
    for (const [i, [extra, field]] of cases.entries()) {
      await assert.rejects(
        s.d.client.runtime.unary('RunPodSandbox', { config: s.podConfig(`bad-userns-${i}`, extra) }),
        (err: unknown) => isGrpcError(err, grpc.status.INVALID_ARGUMENT) && field.test(err.details),
      );
    }
  });

  test('mappings kubelet or critest choose are accepted: host id 1000 (critest), two extents', async () => {
    // critest's NamespaceMode_POD spec maps container 0 to host 1000 with length 100000.
    const pod = await s.runPod('userns-critest', usernsPod(1000, 1000, { uids: [mapping(1000, { length: 100000 })], gids: [mapping(1000, { length: 100000 })] }));
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600']);
    assert.deepEqual((await exec(ctr, ['cat', '/proc/self/uid_map'])).out.split(/\s+/).map(Number), [0, 1000, 100000]);
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
    const split = await s.runPod('userns-split', usernsPod(baseB, baseB, { uids: [mapping(baseB, { length: 1000 }), mapping(baseB + 1000, { containerId: 1000, length: RANGE - 1000 })] }));
    const ctr2 = await s.runContainer(split, 'main', ['sleep', '3600']);
    assert.equal((await exec(ctr2, ['id', '-u'])).out, '0');
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: split });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: split });
  });

  test("kubelet's volume mounts carry the pod's own mappings: bound through crisp's idmapped view, no runc idmap needed", async () => {
    // kubelet ≥ 1.30 sets every mount's uid/gid mappings to the pod's; on runc 1.1 (no idmapped mounts in
    // the spec) crisp refused them, and kubelet's hostUsers: false pods never started.
    const vol = join(hostDir, 'kubelet-vol');
    mkdirSync(vol, { mode: 0o755 });
    const pod = await s.runPod('userns-kubelet', usernsPod(baseB));
    const mount = { hostPath: vol, containerPath: '/data', uidMappings: [mapping(baseB)], gidMappings: [mapping(baseB)] };
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600'], { mounts: [mount] });
    assert.equal((await sh(ctr, 'echo hi > /data/f && stat -c %u:%g /data /data/f')).out, '0:0\n0:0');
    assert.equal(statSync(join(vol, 'f')).uid, 0, 'written through the idmapped view: on disk as the container sees it');
    // Mappings other than the pod's would need idmapped mounts from the OCI runtime.
    await assert.rejects(
      s.runContainer(pod, 'other', ['true'], { mounts: [{ ...mount, uidMappings: [mapping(baseA)], gidMappings: [mapping(baseA)] }] }),
      /mounts\[0\] \(\/data\): idmapped mounts in the spec are not supported by this runtime/,
    );
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
  });

  test('after kill -9 of crispd the mounts are found again, and removal leaves nothing mounted', async () => {
    const exited = await s.runContainer(podA, 'exits', ['sh', '-c', 'stat -c %u /bin/busybox']);
    assert.deepEqual(await s.waitExited(exited), { exitCode: 0, reason: 'Completed' });
    // The task is deleted after the exit; so are the container's idmapped mounts.
    for (let i = 0; i < 50 && mountsBelow(join(s.d.state, 'containers', exited)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(mountsBelow(join(s.d.state, 'containers', exited)), []);

    await s.d.kill9();
    await s.d.start();
    assert.equal((await exec(ctrA, ['id', '-u'])).out, '0', 'the container survived');
    assert.ok(mountsBelow(join(s.d.state, 'containers', ctrA)).length > 0);
    for (const pod of [podA, podB]) {
      await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
      await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
    }
    assert.deepEqual(mountsBelow(join(s.d.state, 'containers')), []);
    assert.deepEqual(mountsBelow(join(s.d.state, 'pods')), []);
    // What is left below the state dir is crispd's own (containerd state, the read-only layer views).
    const left = mountsBelow(s.d.state).filter((p) => !p.startsWith(join(s.d.state, 'userns', 'ro')) && !p.startsWith(join(s.d.state, 'containerd')));
    assert.deepEqual(left, []);
    assert.equal(readFileSync(join(hostDir, 'root-owned.txt'), 'utf8'), 'from the host\nmore\n', 'the volume is untouched by cleanup');
  });
});

describe('chown fallback (no idmapped layers)', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  test('metacopy copy-up makes the merged view owned by the mapped ids without touching the layers', async () => {
    const dir = mkdtempSync('/tmp/crisp-e2e-userns-chown-');
    try {
      const [lower1, lower2, upper, work, state, merged] = ['l1', 'l2', 'upper', 'work', 'state', 'merged'].map((d) => join(dir, d));
      for (const d of [lower1, lower2, upper, work, state, merged]) mkdirSync(d, { recursive: true });
      mkdirSync(join(lower1, 'bin'));
      writeFileSync(join(lower1, 'bin', 'tool'), 'x'.repeat(1 << 20), { mode: 0o4755 });
      mkdirSync(join(lower2, 'home', 'app'), { recursive: true });
      chownSync(join(lower2, 'home', 'app'), 1000, 1000);
      const base = randomBases()[0];
      const maps = [{ containerId: 0, hostId: base, length: RANGE }];
      const options = ['index=off', `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${lower2}:${lower1}`];
      const r = await chownRootfs({ dir: state, mounts: [{ type: 'overlay', source: 'overlay', target: '', options }], uids: maps, gids: maps, metacopy: true });
      assert.ok(r.stats && r.stats.entries >= 5, JSON.stringify(r.stats));
      assert.ok(r.mounts[0]!.options.includes('metacopy=on'));
      // The layers keep their owners; the upper holds metadata-only copies.
      assert.equal(statSync(join(lower1, 'bin', 'tool')).uid, 0);
      const copied = statSync(join(upper, 'bin', 'tool'));
      assert.ok(copied.blocks * 512 < copied.size, `metacopy: no data copied up (${copied.blocks} blocks)`);
      const again = await chownRootfs({ dir: state, mounts: [{ type: 'overlay', source: 'overlay', target: '', options }], uids: maps, gids: maps, metacopy: true });
      assert.equal(again.stats, undefined, 'a finished run is not repeated');
      const mount = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', r.mounts[0]!.options.join(','), merged], { encoding: 'utf8' });
      assert.equal(mount.status, 0, mount.stderr);
      try {
        const tool = statSync(join(merged, 'bin', 'tool'));
        assert.deepEqual([tool.uid, tool.gid, tool.mode & 0o7777, tool.size], [base, base, 0o4755, 1 << 20]);
        assert.equal(statSync(join(merged, 'home', 'app')).uid, base + 1000);
        assert.equal(statSync(merged).uid, base);
      } finally {
        spawnSync('umount', [merged]);
      }
      await r.cleanup();
      assert.deepEqual(mountsBelow(dir), []);
    } finally {
      spawnSync('umount', ['-l', join(dir, 'merged')]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a node without idmapped mounts', () => {
  test('userns containers are refused with FAILED_PRECONDITION; with userns_chown_fallback they run on a chowned rootfs', async () => {
    const d = new TestCrispd();
    const net = writeTestNetwork(d.cniConfDir, d.dir);
    const registry = await startRegistry({});
    // crispd probes idmapped mounts in <state>/userns-probe: a ramfs there (it cannot be idmapped) makes
    // this node look like one whose kernel or filesystem has no idmap support.
    const probeDir = join(d.state, 'userns-probe');
    mkdirSync(probeDir, { recursive: true });
    assert.equal(spawnSync('mount', ['-t', 'ramfs', 'ramfs', probeDir]).status, 0);
    chmodSync(d.dir, 0o711);
    const base = randomBases()[0];
    try {
      await registry.push(busyboxImage({ config: { Env: ['PATH=/bin'] } }), 'e2e/busybox', 'v1');
      const image = `${registry.host}/e2e/busybox:v1`;
      const run = Math.random().toString(36).slice(2, 8);
      const podConfig = (name: string): Input<PodSandboxConfig> => ({
        metadata: { name, uid: `${name}-${run}`, namespace: 'e2e', attempt: 0 },
        hostname: name,
        logDirectory: join(d.podLogRoot, `e2e_${name}_${run}`),
        ...usernsPod(base),
      });
      const container = { metadata: { name: 'main', attempt: 0 }, image: { image }, command: ['sleep', '3600'], logPath: 'main/0.log' };

      await d.start();
      await d.client.image.unary('PullImage', { image: { image } });
      const off = await d.client.runtime.unary('Status', { verbose: true });
      for (const h of off.runtimeHandlers) assert.equal(h.features?.userNamespaces, false, `handler "${h.name}"`);
      assert.match(JSON.parse(off.info.config!).userNamespaces.reason, /mount_setattr idmap/);
      const pod = (await d.client.runtime.unary('RunPodSandbox', { config: podConfig('nofallback') })).podSandboxId;
      await assert.rejects(
        d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config: container }),
        (err: unknown) => isGrpcError(err, grpc.status.FAILED_PRECONDITION) && /userns_chown_fallback = true/.test(err.details) && /mount_setattr idmap/.test(err.details),
      );
      await d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
      await d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
      await d.stop();

      d.writeConfig({ userns_chown_fallback: true });
      await d.start();
      const on = await d.client.runtime.unary('Status', { verbose: true });
      for (const h of on.runtimeHandlers) assert.equal(h.features?.userNamespaces, true);
      assert.equal(JSON.parse(on.info.config!).userNamespaces.rootfs, 'chown');
      const pod2 = (await d.client.runtime.unary('RunPodSandbox', { config: podConfig('fallback') })).podSandboxId;
      const { containerId } = await d.client.runtime.unary('CreateContainer', { podSandboxId: pod2, config: container });
      await d.client.runtime.unary('StartContainer', { containerId });
      const exec = async (cmd: string[]) => (await d.client.runtime.unary('ExecSync', { containerId, cmd, timeout: 10 })).stdout.toString().trim();
      assert.equal(await exec(['id', '-u']), '0');
      assert.deepEqual((await exec(['stat', '-c', '%u:%g', '/bin/busybox', '/', '/etc/hosts', '/dev/shm'])).split('\n'), ['0:0', '0:0', '0:0', '0:0']);
      assert.equal(await exec(['sh', '-c', 'echo x > /written && echo ok']), 'ok');
      const ovl = rootfsOverlay(containerId);
      assert.equal(ovl.metacopy, 'on');
      assert.equal(lstatSync(join(ovl.upperdir!, 'written')).uid, base);
      assert.equal(lstatSync(join(ovl.upperdir!, 'bin', 'busybox')).uid, base, 'a metadata-only copy, owned by the mapped root');
      assert.match(d.logs, /userns rootfs made by chown/);
      await d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod2 });
      await d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod2 });
      assert.deepEqual(mountsBelow(join(d.state, 'containers')), []);
    } finally {
      await d.cleanup();
      await registry.stop();
      assert.deepEqual(net.teardown(), []);
    }
  });
});

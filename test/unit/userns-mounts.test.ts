import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detachAndRemove, detachBelow, isBelow, isMounted, mountPoints, mountPointsBelow } from '../../sandbox/userns/mounts.js';
import { execFileSync } from 'node:child_process';
import { decideSupport, describeSupport } from '../../sandbox/userns/probe.js';
import { layerParents, overlayOption, snapshotMount, withOverlayOption } from '../../sandbox/userns/idmapped-rootfs.js';
import { chownTree, shiftedOwner, toHostId, usernsUnavailable } from '../../sandbox/userns/fallback.js';
import { podFileOverrides, podFilesView, withoutPodMappings } from '../../sandbox/userns/idmapped-volumes.js';
import { ReadonlyViews } from '../../sandbox/userns/readonly-views.js';
import { isCrispError } from '../../common/errors.js';

const MOUNTINFO = [
  '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
  '41 22 254:0 /var/lib/s/1/fs /run/crisp/containers/abc/idmap/0 ro,relatime,idmapped - ext4 /dev/vda rw',
  '42 22 254:0 /var/lib/s/2/fs /run/crisp/containers/abc/idmap/1 ro,relatime,idmapped - ext4 /dev/vda rw',
  '43 22 254:0 /v /run/crisp/containers/abc/volumes/0 rw,relatime,idmapped - ext4 /dev/vda rw',
  '44 22 254:0 /v /run/crisp/containers/abcd/volumes/0 rw - ext4 /dev/vda rw',
  '45 22 254:0 /v /run/crisp/with\\040space rw - ext4 /dev/vda rw',
  '46 43 0:5 / /run/crisp/containers/abc/volumes/0/sub rw - tmpfs tmpfs rw',
  '',
].join('\n');

test('mountinfo: points unescaped, below a dir (not a sibling with the same prefix), deepest first', () => {
  assert.ok(mountPoints(MOUNTINFO).includes('/run/crisp/with space'));
  assert.deepEqual(mountPointsBelow('/run/crisp/containers/abc', MOUNTINFO), [
    '/run/crisp/containers/abc/volumes/0/sub',
    '/run/crisp/containers/abc/volumes/0',
    '/run/crisp/containers/abc/idmap/0',
    '/run/crisp/containers/abc/idmap/1',
  ].sort((a, b) => b.split('/').length - a.split('/').length || b.length - a.length));
  assert.ok(!mountPointsBelow('/run/crisp/containers/abc', MOUNTINFO).some((p) => p.includes('abcd')));
  assert.ok(isBelow('/a/b', '/a/') && isBelow('/a', '/a') && !isBelow('/ab', '/a'));
});

test('detaching below a directory that does not exist reads no mount table and runs nothing', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'crisp-unit-detach-'));
  const dir = join(parent, 'never-made');
  try {
    assert.equal(await detachBelow(dir), 0);
    await detachAndRemove(dir);
    assert.equal(existsSync(dir), false);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('detaching below a directory: what is mounted there goes, then the directory', { skip: process.getuid?.() !== 0 ? 'needs root to mount' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-detach-'));
  const point = join(dir, 'a', 'b');
  mkdirSync(point, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', point]);
  try {
    assert.equal(await isMounted(point), true);
    await detachAndRemove(dir);
    assert.equal(await isMounted(point), false);
    assert.equal(existsSync(dir), false);
  } finally {
    if (await isMounted(point)) execFileSync('umount', ['-l', point]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('support: idmap, chown fallback, or unavailable with the reason and the fix', () => {
  const ok = { idmap: true, overlayOverIdmap: true, reason: '' };
  const noOverlay = { idmap: true, overlayOverIdmap: false, reason: 'mount overlay over idmapped lowerdir: Invalid argument' };
  const kernel = { ok: true, reason: '' };
  assert.deepEqual(decideSupport(kernel, [ok, ok], false), {
    userNamespaces: true, kernelUserns: true, idmap: true, overlayOverIdmap: true, chownFallback: false, rootfs: 'idmap', reason: '', probeMs: 0,
  });
  const off = decideSupport(kernel, [ok, noOverlay], false);
  assert.equal(off.rootfs, 'unavailable');
  assert.equal(off.userNamespaces, false);
  assert.equal(off.idmap, true, 'volumes can still be idmapped');
  const err = usernsUnavailable(off, 'f'.repeat(64));
  assert.ok(isCrispError(err, 'FAILED_PRECONDITION'));
  assert.match(err.message, /Invalid argument/);
  assert.match(err.message, /userns_chown_fallback = true/);
  const fb = decideSupport(kernel, [noOverlay], true);
  assert.equal(fb.rootfs, 'chown');
  assert.equal(fb.userNamespaces, true);
  assert.match(describeSupport(fb), /chown fallback/);
  const none = decideSupport({ ok: false, reason: 'user namespaces are disabled' }, [], true);
  assert.equal(none.userNamespaces, false);
  assert.match(usernsUnavailable(none, 'p').message, /max_user_namespaces/);
});

test('overlay options: read, replaced in place, appended; one snapshot mount expected', () => {
  const opts = ['index=off', 'workdir=/s/9/work', 'upperdir=/s/9/fs', 'lowerdir=/s/2/fs:/s/1/fs'];
  assert.equal(overlayOption(opts, 'lowerdir'), '/s/2/fs:/s/1/fs');
  assert.equal(overlayOption(opts, 'metacopy'), '');
  assert.deepEqual(withOverlayOption(opts, 'lowerdir', '/i/0:/i/1'), ['index=off', 'workdir=/s/9/work', 'upperdir=/s/9/fs', 'lowerdir=/i/0:/i/1']);
  assert.deepEqual(withOverlayOption(opts, 'metacopy', 'on').at(-1), 'metacopy=on');
  assert.throws(() => snapshotMount([], 'x'), /expected one overlay or bind mount/);
  assert.equal(snapshotMount([{ type: 'overlay', source: 'overlay', target: '', options: opts }], 'x').type, 'overlay');
  assert.equal(ReadonlyViews.parentOf('/root/snapshots/12/fs'), '/root/snapshots');
  assert.deepEqual(layerParents(['/root/snapshots/3/fs', '/root/snapshots/1/fs', '/other/snaps/7/fs']), ['/root/snapshots', '/other/snaps'], 'one idmapped mount per layer dir, not per layer');
});

test('id shifting: into the host range, kept when already there or unmapped', () => {
  const uids = [{ containerId: 0, hostId: 196608, length: 65536 }];
  const gids = [{ containerId: 0, hostId: 262144, length: 65536 }];
  assert.equal(toHostId(0, uids), 196608);
  assert.equal(toHostId(65535, uids), 196608 + 65535);
  assert.equal(toHostId(65536, uids), undefined);
  assert.deepEqual(shiftedOwner(0, 0, uids, gids), { uid: 196608, gid: 262144 });
  assert.deepEqual(shiftedOwner(1000, 50, uids, gids), { uid: 197608, gid: 262194 });
  assert.deepEqual(shiftedOwner(196608, 262144, uids, gids), { uid: 196608, gid: 262144 }, 'a hard link seen twice is not shifted twice');
  assert.deepEqual(shiftedOwner(70000, 0, uids, gids), { uid: 70000, gid: 262144 }, 'unmapped ids stay');
});

test('pod file overrides: only the files in the pod dir, seen through the idmapped view', () => {
  const pod = {
    dir: '/var/lib/crisp/pods/p',
    runDir: '/run/crisp/pods/p',
    files: { hostname: '/var/lib/crisp/pods/p/hostname', hosts: '/var/lib/crisp/pods/p/hosts', resolvConf: '/elsewhere/resolv.conf' },
  };
  assert.equal(podFilesView(pod), '/run/crisp/pods/p/userns/etc');
  assert.deepEqual(podFileOverrides(pod), {
    '/var/lib/crisp/pods/p/hostname': '/run/crisp/pods/p/userns/etc/hostname',
    '/var/lib/crisp/pods/p/hosts': '/run/crisp/pods/p/userns/etc/hosts',
  });
});

test('chownTree walks everything once, symlinks not followed, setuid bits kept', { skip: process.getuid?.() !== 0 ? 'needs root for chown' : false }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-chown-'));
  try {
    mkdirSync(join(dir, 'a/b/c'), { recursive: true });
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, 'a/b', `f${i}`), 'x');
    writeFileSync(join(dir, 'suid'), 'x', { mode: 0o4755 });
    symlinkSync('/etc/passwd', join(dir, 'a/link'));
    const maps = [{ containerId: 0, hostId: 300000, length: 65536 }];
    const stats = await chownTree(dir, maps, maps, 4);
    assert.equal(stats.entries, 1 + 3 + 50 + 1 + 1);
    assert.equal(stats.changed, stats.entries);
    assert.equal(lstatSync(join(dir, 'a/b/f7')).uid, 300000);
    assert.equal(lstatSync(join(dir, 'a/link')).uid, 300000);
    assert.notEqual(lstatSync('/etc/passwd').uid, 300000, 'the link target is untouched');
    assert.equal(lstatSync(join(dir, 'suid')).mode & 0o7777, 0o4755);
    const again = await chownTree(dir, maps, maps);
    assert.equal(again.changed, 0, 'idempotent');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("withoutPodMappings: kubelet's copy of the pod's own mappings on a mount goes; other mappings stay", () => {
  const pod = { uids: [{ containerId: 0, hostId: 65536, length: 65536 }], gids: [{ containerId: 0, hostId: 131072, length: 65536 }] };
  const mount = (uidMappings: typeof pod.uids, gidMappings: typeof pod.gids) => ({
    containerPath: '/data',
    hostPath: '/var/lib/kubelet/pods/x/volumes/data',
    readonly: false,
    propagation: 'private' as const,
    selinuxRelabel: false,
    recursiveReadOnly: false,
    uidMappings,
    gidMappings,
  });
  const [kubelets, other, gidsDiffer, none] = withoutPodMappings(
    [mount(pod.uids, pod.gids), mount([{ containerId: 0, hostId: 1000, length: 65536 }], pod.gids), mount(pod.uids, pod.uids), mount([], [])],
    pod,
  );
  assert.deepEqual([kubelets!.uidMappings, kubelets!.gidMappings], [[], []], 'the same mappings as the pod: crisp idmaps the volume itself');
  assert.equal(other!.uidMappings[0]!.hostId, 1000, 'other uid mappings are passed on (and refused where runc cannot do them)');
  assert.equal(gidsDiffer!.gidMappings.length, 1, 'both id kinds must match');
  assert.deepEqual(none!.uidMappings, []);
});

// crisp's own layer unpack (image_unpack = "crisp", the default: crisp-untar into the embedded
// containerd's overlayfs snapshots) against containerd's differ on the same layers: every layer's
// snapshot tree must be what Diff.Apply makes of the blob (names, types, modes, owners, times, sizes,
// contents, link targets, devices, hard links, xattrs incl. overlay whiteouts and opaque dirs), for
// gzip, zstd and uncompressed layers. A wrong diff id fails the pull and leaves no snapshot and no
// staged tree behind.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, linkSync, openSync, truncateSync, writeSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { TestCrispd, pidsWhere } from './lib/crispd.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { busyboxImage, busyboxRootfs, changesLayer, dataLayer, imageFromTars, largeImage, withConfig, type TestImage } from './fixtures/images.js';
import { sleep } from '../../common/time.js';
import { buildTar } from './fixtures/tar.js';
import { ContainerdClient } from '../../backend/containerd/client.js';
import { chainIds } from '../../backend/images/unpack.js';
import { crispdWithLeasedClient } from './lib/leased-client.js';

const SNAPSHOTTER = 'overlayfs';

/** Every entry below `root` as one comparable line (hard links as groups of paths). */
function describeTree(root: string, unpackedAfter: number): string[] {
  const lines: string[] = [];
  const inodes = new Map<number, string[]>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const rel = relative(root, p);
      const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'link' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
      let what = '';
      if (st.isFile()) {
        what = `${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`;
        if (st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), rel]);
      } else if (st.isSymbolicLink()) what = `-> ${readlinkSync(p)}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) what = `rdev ${st.rdev}`;
      // Whiteouts (0:0 character devices) and parent dirs the layer has no entry for carry the time
      // they were made, with either unpacker: only that they are recent is compared.
      const made = (st.isCharacterDevice() && st.rdev === 0) || (st.isDirectory() && st.mtimeMs >= unpackedAfter);
      const mtime = made ? ' mtime (unpack time)' : ` mtime ${st.mtimeMs}`;
      lines.push(`${rel} ${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}${mtime} ${what}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  for (const paths of inodes.values()) lines.push(`hardlinks ${paths.sort().join(' = ')}`);
  const xattrs = execFileSync('getfattr', ['-R', '-h', '-d', '-m', '-', '--absolute-names', root], { encoding: 'utf8' });
  // containerd 1.6's differ drops trusted.* xattrs other than overlay's own (crisp-untar keeps them, as
  // the layer says; checked apart): compared without them.
  const kept = (l: string) => !l.startsWith('trusted.') || l.startsWith('trusted.overlay.');
  lines.push(...xattrs.split('\n').filter((l) => l && !l.startsWith('#') && kept(l)).map((l) => `xattr ${l}`));
  lines.push(...xattrs.split('\n').filter((l) => l.startsWith('# file: ')).map((l) => `xattrs of ${relative(root, l.slice('# file: '.length)) || '.'}`));
  return lines;
}

/** busybox's three layers, the first with a file naming `tag` so that each test's chain ids are its own. */
function busyboxLayers(tag: string): Buffer[] {
  const [rootfs, data, changes] = [busyboxRootfs(), dataLayer(), changesLayer()];
  return [buildTar([...rootfs, { type: 'file', path: `etc/unpack-${tag}`, data: tag, mode: 0o644 }]), buildTar(data), buildTar(changes)];
}

/**
 * A layer GNU tar makes of a tree with what the test tar writer cannot express: setuid/setgid/sticky
 * modes, other owners, devices, a FIFO, user and trusted xattrs, a file replaced by a directory of the
 * same name in a lower layer (here: new files below an existing busybox dir).
 */
function gnuTarLayer(tag: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unpack-layer-'));
  try {
    const run = (file: string, args: string[]) => execFileSync(file, args, { cwd: dir });
    mkdirSync(join(dir, 'srv/tools'), { recursive: true });
    writeFileSync(join(dir, 'srv/tools/suid'), `#!/bin/sh\necho ${tag}\n`);
    chownSync(join(dir, 'srv/tools/suid'), 1000, 2000);
    chmodSync(join(dir, 'srv/tools/suid'), 0o6755);
    mkdirSync(join(dir, 'srv/shared'));
    chmodSync(join(dir, 'srv/shared'), 0o1777);
    mkdirSync(join(dir, 'srv/owned'));
    chownSync(join(dir, 'srv/owned'), 1000, 2000);
    chmodSync(join(dir, 'srv/owned'), 0o750);
    run('mknod', ['-m', '0640', 'srv/null-like', 'c', '1', '3']);
    run('mknod', ['-m', '0600', 'srv/block', 'b', '7', '200']);
    run('mkfifo', ['-m', '0620', 'srv/pipe']);
    writeFileSync(join(dir, 'srv/attrs'), 'with xattrs\n');
    run('setfattr', ['-n', 'user.crisp', '-v', tag, 'srv/attrs']);
    run('setfattr', ['-n', 'trusted.crisp', '-v', '0x00ff10', 'srv/attrs']);
    run('setcap', ['cap_net_raw,cap_net_bind_service+ep', 'srv/tools/suid']);
    symlinkSync('../srv/attrs', join(dir, 'srv/tools/attrs-link'));
    linkSync(join(dir, 'srv/attrs'), join(dir, 'srv/tools/attrs-hard'));
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin/added-by-gnu-tar'), 'x');
    for (const p of ['srv/tools/suid', 'srv/attrs', 'bin/added-by-gnu-tar', 'srv/shared', 'srv/owned', 'srv/tools', 'srv', 'bin']) utimesSync(join(dir, p), 1_600_000_000, 1_600_000_000 + 7.25);
    return execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', dir, '-cf', '-', 'srv', 'bin'], { maxBuffer: 1 << 26 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The directory a committed snapshot's files are in, through a view of it. */
async function snapshotDir(ctd: ContainerdClient, chain: string, view: string): Promise<string> {
  const { mounts } = await ctd.snapshots.unary('View', { snapshotter: SNAPSHOTTER, key: view, parent: chain });
  const m = mounts[0]!;
  // A view of one layer is a bind of its fs dir; of more, an overlay whose first lowerdir is the top.
  return m.type === 'bind' ? m.source : m.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length).split(':')[0]!;
}

describe('crisp-untar unpack', () => {
  const d = new TestCrispd();
  let registry: TestRegistry;
  const lease = `e2e-unpack-${Date.now()}`;
  // Same layers in other compressions have the same chain ids: later pulls find them unpacked already.
  const started = Date.now();

  before(async () => {
    registry = await startRegistry({});
  });
  after(async () => {
    await registry?.stop();
  });
  const containerd = crispdWithLeasedClient(d, lease);

  const pull = (ref: string) => d.client.image.unary('PullImage', { image: { image: ref } }).then((r) => r.imageRef);
  const stagingDir = () => join(d.root, 'containerd', 'io.containerd.snapshotter.v1.overlayfs', 'crisp-staging');

  for (const compression of ['gzip', 'zstd', 'none'] as const) {
    test(`${compression} layers: each snapshot is what containerd's differ makes of the blob`, async () => {
      // The last layer has no entries for the directories its files are in: they take the lower layers' mode and owner.
      const parentless = buildTar([
        { type: 'file', path: 'srv/owned/inner/file.txt', data: 'x', mode: 0o644 },
        { type: 'file', path: 'srv/shared/new.txt', data: 'y', mode: 0o600, uid: 7 },
      ]);
      const img = imageFromTars([...busyboxLayers(compression), gnuTarLayer(compression), parentless], { compression, config: { Labels: { unpack: compression } } });
      await registry.push(img, `e2e/unpack-${compression}`, 'v1');
      assert.equal(await pull(`${registry.host}/e2e/unpack-${compression}:v1`), img.manifest.config.digest);
      const chains = chainIds(img.config.rootfs.diff_ids);
      const opts = ContainerdClient.withLease(lease);
      for (let i = 0; i < chains.length; i++) {
        const ours = await snapshotDir(containerd.client(), chains[i]!, `${lease}-view-${compression}-${i}`);
        const key = `${lease}-differ-${compression}-${i}`;
        const prep = await containerd.client().snapshots.unary('Prepare', { snapshotter: SNAPSHOTTER, key, parent: i === 0 ? '' : chains[i - 1]! }, opts);
        const layer = img.manifest.layers[i]!;
        const applied = await containerd.client().diff.unary('Apply', { diff: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, mounts: prep.mounts }, opts);
        assert.equal(applied.applied?.digest, img.config.rootfs.diff_ids[i]);
        const m = prep.mounts[0]!;
        const theirs = m.type === 'bind' ? m.source : m.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
        assert.deepEqual(describeTree(ours, started), describeTree(theirs, started), `layer ${i} (${layer.digest})`);
        if (i === chains.length - 1) {
          assert.equal(lstatSync(join(ours, 'srv/owned')).mode & 0o7777, 0o750, 'a parent dir without an entry takes the lower mode');
          assert.equal(lstatSync(join(ours, 'srv/owned')).uid, 1000, 'and the lower owner');
          assert.equal(lstatSync(join(ours, 'srv/shared')).mode & 0o7777, 0o1777);
        }
        if (i === chains.length - 2) {
          assert.match(execFileSync('getfattr', ['-h', '-n', 'trusted.crisp', '-e', 'hex', join(ours, 'srv/attrs')], { encoding: 'utf8' }), /trusted.crisp=0x00ff10/);
          assert.match(execFileSync('getcap', [join(ours, 'srv/tools/suid')], { encoding: 'utf8' }), /cap_net_bind_service,cap_net_raw=ep/);
        }
      }
      assert.deepEqual(readdirSync(stagingDir()), [], 'nothing is left in the staging dir');
      assert.match(d.logs, /layer extracted while downloading/);
    });
  }

  test('a layer crisp-untar does not read (a GNU sparse file) goes to containerd\'s differ, whose verdict stands', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crisp-unpack-sparse-'));
    let tar: Buffer;
    try {
      const file = join(dir, 'sparse.img');
      writeFileSync(file, '');
      truncateSync(file, 4 << 20);
      const fd = openSync(file, 'r+');
      writeSync(fd, Buffer.from('middle'), 0, 6, 2 << 20);
      closeSync(fd);
      tar = execFileSync('tar', ['--format=gnu', '--sparse', '--numeric-owner', '-C', dir, '-cf', '-', 'sparse.img'], { maxBuffer: 1 << 26 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const img = imageFromTars([...busyboxLayers('sparse'), tar], { config: { Labels: { unpack: 'sparse' } } });
    await registry.push(img, 'e2e/unpack-sparse', 'v1');
    // containerd 1.6's differ refuses GNU sparse entries too: the pull fails with its message, not crisp's.
    await assert.rejects(pull(`${registry.host}/e2e/unpack-sparse:v1`), /unpacking layer sha256:[0-9a-f]{64}: unhandled tar header type 83/);
    // crisp-untar refuses it while it downloads, then again from the committed blob; then the differ.
    assert.match(d.logs, /extracting while downloading did not work out; extracting the committed blob/);
    assert.match(d.logs, /crisp-untar did not extract the layer; containerd's differ applies it/);
    const chains = chainIds(img.config.rootfs.diff_ids);
    const names: string[] = [];
    for await (const res of containerd.client().snapshots.serverStream('List', { snapshotter: SNAPSHOTTER, filters: [] })) for (const i of res.info) names.push(i.name);
    assert.ok(!names.includes(chains[3]!), 'the refused layer is not unpacked');
    assert.deepEqual(readdirSync(stagingDir()), [], 'nothing is left in the staging dir');
  });

  test('crispd killed (-9) in the middle of a pull: after the restart the pull completes and nothing stays staged', async () => {
    const img = await largeImage({ sizeMB: 48, layers: 6, seed: `unpack-kill-${Date.now()}`, withBusybox: false });
    try {
      await registry.push(img, 'e2e/unpack-kill', 'v1');
      const ref = `${registry.host}/e2e/unpack-kill:v1`;
      const before = d.logs.split('layer extracted').length;
      const first = pull(ref);
      first.catch(() => undefined);
      for (let i = 0; i < 2000 && d.logs.split('layer extracted').length === before; i++) await sleep(5);
      await d.kill9();
      // No crisp-untar goes on with the killed crispd's extractions (followers die with crisp-spawner).
      const extracting = () => pidsWhere((argv) => argv[0]?.endsWith('crisp-untar') === true && argv.some((a) => a.startsWith(stagingDir())));
      for (let i = 0; i < 100 && extracting().length > 0; i++) await sleep(20);
      assert.deepEqual(extracting(), [], 'no extraction outlives the killed crispd');
      await d.start();
      assert.equal(await pull(ref), img.manifest.config.digest);
      const chains = chainIds(img.config.rootfs.diff_ids);
      for (const chain of chains) assert.ok((await containerd.client().snapshots.unary('Stat', { snapshotter: SNAPSHOTTER, key: chain })).info, `snapshot ${chain}`);
      assert.deepEqual(readdirSync(stagingDir()), [], 'what the killed crispd staged is gone');
    } finally {
      await img.cleanup();
    }
  });

  test('a diff id that does not match the layer fails the pull; no snapshot of it, nothing staged', async () => {
    const good = busyboxImage({ config: { Labels: { unpack: 'bad-diff-id' } } });
    const bogus = `sha256:${'0'.repeat(64)}`;
    const img: TestImage = withConfig(good, (c) => ({ ...c, rootfs: { ...c.rootfs, diff_ids: c.rootfs.diff_ids.map((id, i) => (i === 1 ? bogus : id)) } }));
    await registry.push(img, 'e2e/unpack-bad', 'v1');
    await assert.rejects(pull(`${registry.host}/e2e/unpack-bad:v1`), (err: Error) => {
      assert.match(err.message, /FAILED_PRECONDITION/);
      assert.match(err.message, new RegExp(`layer ${img.manifest.layers[1]!.digest}: unpacked diff id sha256:[0-9a-f]{64} does not match the image config's ${bogus}`));
      return true;
    });
    const chains = chainIds(img.config.rootfs.diff_ids);
    const names: string[] = [];
    for await (const res of containerd.client().snapshots.serverStream('List', { snapshotter: SNAPSHOTTER, filters: [] })) for (const i of res.info) names.push(i.name);
    assert.ok(!names.includes(chains[1]!) && !names.includes(chains[2]!), 'no snapshot for the bad layer or above it');
    assert.ok(!names.some((n) => n.includes(chains[1]!)), 'no prepared extraction snapshot left');
    assert.deepEqual(readdirSync(stagingDir()), [], 'nothing is left in the staging dir');
  });
});

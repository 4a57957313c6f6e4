// crisp-untar against the real kernel (root): layers made by GNU tar and by test/e2e/lib/tar-writer.ts
// (for what GNU tar will not write) are extracted into a fresh DEST beside a sentinel dir; the files,
// ids, modes, times, xattrs, whiteouts and the printed diff id are checked, escapes must stay inside
// DEST, and an overlay mounted over the result must show what the layer means.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import {
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  chmodSync,
  appendFileSync,
  truncateSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultHelperPath } from '../../native/helper-paths.js';
import { tarArchive, type TarEntry } from './lib/tar-writer.js';

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root';
const UNTAR = defaultHelperPath('crisp-untar');

let base = '';
let n = 0;
before(() => {
  if (isRoot) base = mkdtempSync(join(tmpdir(), 'crisp-e2e-untar-'));
});
after(() => {
  if (base) rmSync(base, { recursive: true, force: true });
});

function sh(cmd: string, ...args: string[]): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${res.stderr}`);
  return res.stdout;
}

/** A fresh case dir: DEST (empty), a sentinel sibling holding one file, and a place for blobs. */
function freshCase(): { dest: string; sentinel: string; blobs: string; root: string } {
  const root = join(base, `c${n++}`);
  const c = { root, dest: join(root, 'dest'), sentinel: join(root, 'sentinel'), blobs: join(base, `blobs${n}`) };
  for (const d of [c.dest, c.sentinel, c.blobs]) mkdirSync(d, { recursive: true });
  writeFileSync(join(c.sentinel, 'secret'), 'untouched');
  return c;
}

/** Everything under dir, as "path type" lines (nothing followed). */
function listing(dir: string): string[] {
  return sh('find', dir, '-printf', '%P %y %s\n').split('\n').filter(Boolean).sort();
}

function untar(blob: string, dest: string, ...flags: string[]) {
  const res = spawnSync(UNTAR, [...flags, blob, dest], { encoding: 'utf8' });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

function writeBlob(dir: string, name: string, data: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}\n`;
const xattr = (path: string, name: string) => sh('getfattr', '-h', '--absolute-names', '--only-values', '-n', name, path);
/** An xattr's value as getfattr's hex ("0x…"; --only-values would print it raw). */
const xattrHex = (path: string, name: string) =>
  sh('getfattr', '-h', '--absolute-names', '-e', 'hex', '-n', name, path)
    .split('\n')
    .find((l) => l.startsWith(`${name}=`))
    ?.slice(name.length + 1);
const ns = (path: string) => lstatSync(path, { bigint: true }).mtimeNs;

/** Asserts the sentinel and DEST's parent are as freshCase left them. */
function assertContained(c: ReturnType<typeof freshCase>): void {
  assert.deepEqual(listing(c.sentinel), [' d 4096', 'secret f 9']);
  assert.equal(readFileSync(join(c.sentinel, 'secret'), 'utf8'), 'untouched');
  assert.deepEqual(readdirSync(c.root).sort(), ['dest', 'sentinel']);
}

test('a GNU tar layer: types, ids, modes, times, xattrs; the same diff id for plain, gzip and zstd', { skip }, () => {
  const c = freshCase();
  const src = join(c.blobs, 'src');
  mkdirSync(join(src, 'dir', 'sub'), { recursive: true });
  writeFileSync(join(src, 'dir', 'file'), 'hello\n');
  writeFileSync(join(src, 'big'), Buffer.alloc(3 << 20, 7)); // spans several read buffers
  linkSync(join(src, 'dir', 'file'), join(src, 'dir', 'hard'));
  symlinkSync('../big', join(src, 'dir', 'link'));
  writeFileSync(join(src, 'suid'), '#!/bin/sh\n');
  chownSync(join(src, 'suid'), 1000, 1001);
  chmodSync(join(src, 'suid'), 0o4755);
  writeFileSync(join(src, 'bigid'), '');
  chownSync(join(src, 'bigid'), 3_000_000, 4_000_000); // > 2^21: GNU tar writes PAX uid/gid
  sh('mknod', join(src, 'null'), 'c', '1', '3');
  sh('mknod', join(src, 'loop'), 'b', '7', '200');
  sh('mkfifo', join(src, 'fifo'));
  sh('setfattr', '-n', 'user.note', '-v', 'hi', join(src, 'dir', 'file'));
  sh('setfattr', '-n', 'trusted.t', '-v', 'tv', join(src, 'dir'));
  sh('touch', '-h', '-d', '2001-02-03 04:05:06.123456789', join(src, 'dir', 'link'));
  sh('touch', '-d', '2002-02-03 04:05:06.5', join(src, 'dir', 'file'));
  utimesSync(join(src, 'dir', 'sub'), 1_000_000_000, 1_000_000_001);
  utimesSync(join(src, 'dir'), 1_100_000_000, 1_100_000_000);
  const tar = join(c.blobs, 'layer.tar');
  sh('tar', '--format=pax', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', src, '-cf', tar, '.');
  sh('gzip', '-k', tar);
  sh('zstd', '-q', '-k', tar);
  const want = sha256(readFileSync(tar));

  for (const [blob, flags] of [
    [tar, []],
    [`${tar}.gz`, []],
    [`${tar}.zst`, []],
    [`${tar}.gz`, ['--compression', 'gzip']],
    [`${tar}.zst`, ['--compression=zstd']],
    [tar, ['--compression', 'none']],
  ] as const) {
    rmSync(c.dest, { recursive: true });
    mkdirSync(c.dest);
    const res = untar(blob, c.dest, ...flags);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, want, `diff id of ${blob} ${flags.join(' ')}`);
  }
  const d = (...p: string[]) => join(c.dest, ...p);
  assert.equal(readFileSync(d('dir', 'file'), 'utf8'), 'hello\n');
  assert.ok(readFileSync(d('big')).equals(Buffer.alloc(3 << 20, 7)));
  assert.equal(lstatSync(d('dir', 'hard')).ino, lstatSync(d('dir', 'file')).ino, 'hardlink: same inode');
  assert.equal(readlinkSync(d('dir', 'link')), '../big');
  const suid = lstatSync(d('suid'));
  assert.deepEqual([suid.uid, suid.gid, suid.mode & 0o7777], [1000, 1001, 0o4755], 'setuid survives the chown');
  const bigid = lstatSync(d('bigid'));
  assert.deepEqual([bigid.uid, bigid.gid], [3_000_000, 4_000_000]);
  const nul = lstatSync(d('null'));
  assert.ok(nul.isCharacterDevice());
  assert.equal(nul.rdev, 0x103);
  const loop = lstatSync(d('loop'));
  assert.ok(loop.isBlockDevice());
  assert.equal(loop.rdev, (7 << 8) | 200, 'makedev(7, 200)');
  assert.equal(nul.mode & 0o7777, 0o644);
  assert.ok(lstatSync(d('fifo')).isFIFO());
  assert.equal(xattr(d('dir', 'file'), 'user.note'), 'hi');
  assert.equal(xattr(d('dir'), 'trusted.t'), 'tv');
  assert.equal(ns(d('dir', 'link')), 981173106123456789n, 'symlink mtime');
  assert.equal(ns(d('dir', 'file')), 1012709106500000000n, 'file mtime (PAX fraction)');
  assert.equal(ns(d('dir', 'sub')), 1_000_000_001_000_000_000n, 'directory mtime');
  assert.equal(ns(d('dir')), 1_100_000_000_000_000_000n, 'a directory keeps its mtime after its children are written');
  assertContained(c);
});

test('escapes stay inside DEST: ../ names, absolute names, writes through symlinks to / and ../..', { skip }, () => {
  const c = freshCase();
  const entries: TarEntry[] = [
    { name: '../../up2', data: 'a' },
    { name: '/abs/file', data: 'b' },
    { name: 'toroot', type: '2', linkname: '/' },
    { name: 'toroot/etc/through-root', data: 'c' },
    { name: 'updir', type: '2', linkname: '../..' },
    { name: 'updir/through-up', data: 'd' },
    { name: 'sent', type: '2', linkname: '../sentinel' },
    { name: 'sent/pwn', data: 'e' },
    { name: 'abssent', type: '2', linkname: c.sentinel },
    { name: 'abssent/pwn2', data: 'f' },
    { name: 'dotdot/../../../x/../hl', type: '1', linkname: '../../../up2' },
  ];
  const res = untar(writeBlob(c.blobs, 'esc.tar', tarArchive(entries)), c.dest);
  assert.equal(res.code, 0, res.stderr);
  const d = (...p: string[]) => join(c.dest, ...p);
  assert.equal(readFileSync(d('up2'), 'utf8'), 'a');
  assert.equal(readFileSync(d('abs', 'file'), 'utf8'), 'b');
  assert.equal(readlinkSync(d('toroot')), '/', 'the symlink is kept as written');
  assert.equal(readFileSync(d('etc', 'through-root'), 'utf8'), 'c');
  assert.equal(readFileSync(d('through-up'), 'utf8'), 'd');
  assert.equal(readFileSync(d('sentinel', 'pwn'), 'utf8'), 'e');
  assert.equal(readFileSync(join(d(), c.sentinel, 'pwn2'), 'utf8'), 'f');
  assert.equal(lstatSync(d('hl')).ino, lstatSync(d('up2')).ino);
  assertContained(c);
});

test('a hardlink to a file outside DEST is refused naming the entry; nothing outside is touched', { skip }, () => {
  const c = freshCase();
  for (const linkname of ['../sentinel/secret', `${c.sentinel}/secret`]) {
    const res = untar(writeBlob(c.blobs, 'hl.tar', tarArchive([{ name: 'usr/bin/x', type: '1', linkname }])), c.dest);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^crisp-untar: usr\/bin\/x: hardlink target .* does not exist in the layer\n$/);
  }
  assertContained(c);
});

test('whiteouts, opaque dirs, duplicates, long names, base-256 ids, PAX xattrs and times', { skip }, () => {
  const c = freshCase();
  const long150 = `${'p'.repeat(60)}/${'q'.repeat(89)}`;
  const long300 = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(98)}`;
  const long120 = `${'u'.repeat(50)}/${'v'.repeat(69)}`;
  const target200 = `/${'t'.repeat(199)}`;
  const entries: TarEntry[] = [
    { name: 'a/', type: '5' },
    { name: 'a/keep', data: 'k' },
    { name: 'a/.wh.gone', uid: 7, gid: 8, mode: 0o644 },
    { name: 'a/rep', data: 'replaced by a whiteout' },
    { name: 'a/.wh.rep' },
    { name: 'o/.wh..wh..opq' },
    { name: '.wh..wh.plnk', type: '5' },
    { name: 'dup', data: 'one' },
    { name: 'dup', data: 'two' },
    { name: 'dd/', type: '5' },
    { name: 'dd/x', data: 'x' },
    { name: 'dd', data: 'now a file' },
    { name: 'd2/', type: '5', mode: 0o700 },
    { name: 'd2/c', data: 'c' },
    { name: 'd2/', type: '5', mode: 0o750, uid: 5, gid: 6 },
    { name: 'sl', type: '2', linkname: 'x' },
    { name: 'sl', type: '5' },
    { name: long150, data: 'pax name' },
    { name: long300, data: 'gnu name', long: 'gnu' },
    { name: long120, data: 'ustar prefix', long: 'ustar' },
    { name: 'longlink', type: '2', linkname: target200, long: 'gnu' },
    { name: 'b256', uid: 3_000_000, gid: 4_000_000, base256: true },
    { name: 'paxid', pax: { uid: '5000000', gid: '6000000' } },
    { name: 'suid', mode: 0o6755, uid: 1000, gid: 1000, data: 'x' },
    { name: 'sticky/', type: '5', mode: 0o1777 },
    { name: 'bin', pax: { 'SCHILY.xattr.user.bin': Buffer.from([0, 0xff, 0x0a, 0x3d]), 'SCHILY.xattr.trusted.x': 'tx' } },
    { name: 'slx', type: '2', linkname: 'bin', pax: { 'SCHILY.xattr.user.no': 'x', 'SCHILY.xattr.trusted.yes': 'y' } },
    { name: 'slx-hard', type: '1', linkname: './slx' },
    { name: 'frac', pax: { mtime: '1600000000.5', atime: '1700000000.25' } },
    { name: 'old', pax: { mtime: '-1.5' } },
    { name: 'g-ignored', pax: { comment: 'ignored', 'LIBARCHIVE.xattr.user.y': 'eQ==' } },
  ];
  const archive = tarArchive(entries);
  const res = untar(writeBlob(c.blobs, 'w.tar.gz', gzipSync(archive)), c.dest);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, sha256(archive));
  const d = (...p: string[]) => join(c.dest, ...p);
  const gone = lstatSync(d('a', 'gone'));
  assert.ok(gone.isCharacterDevice());
  assert.deepEqual([gone.rdev, gone.mode & 0o7777, gone.uid, gone.gid], [0, 0, 7, 8], 'whiteout: 0:0 chardev, mode 0, header ids');
  assert.ok(lstatSync(d('a', 'rep')).isCharacterDevice(), 'a whiteout replaces an entry of this layer');
  assert.equal(readFileSync(d('a', 'keep'), 'utf8'), 'k');
  assert.ok(lstatSync(d('o')).isDirectory(), 'the opaque marker makes its directory');
  assert.equal(xattr(d('o'), 'trusted.overlay.opaque'), 'y');
  assert.deepEqual(readdirSync(d('o')), []);
  assert.ok(!readdirSync(d()).some((x) => x.startsWith('.wh.')), 'aufs metadata is skipped');
  assert.equal(readFileSync(d('dup'), 'utf8'), 'two');
  assert.equal(readFileSync(d('dd'), 'utf8'), 'now a file');
  const d2 = lstatSync(d('d2'));
  assert.deepEqual([d2.mode & 0o7777, d2.uid, d2.gid], [0o750, 5, 6], 'a directory over a directory takes the new metadata');
  assert.equal(readFileSync(d('d2', 'c'), 'utf8'), 'c', 'and keeps its children');
  assert.ok(lstatSync(d('sl')).isDirectory());
  assert.equal(readFileSync(d(long150), 'utf8'), 'pax name');
  assert.equal(readFileSync(d(long300), 'utf8'), 'gnu name');
  assert.equal(readFileSync(d(long120), 'utf8'), 'ustar prefix');
  assert.equal(readlinkSync(d('longlink')), target200);
  const b = lstatSync(d('b256'));
  assert.deepEqual([b.uid, b.gid], [3_000_000, 4_000_000]);
  const p = lstatSync(d('paxid'));
  assert.deepEqual([p.uid, p.gid], [5_000_000, 6_000_000]);
  assert.equal(lstatSync(d('suid')).mode & 0o7777, 0o6755);
  assert.equal(lstatSync(d('sticky')).mode & 0o7777, 0o1777);
  assert.equal(xattrHex(d('bin'), 'user.bin'), '0x00ff0a3d');
  assert.equal(xattr(d('bin'), 'trusted.x'), 'tx');
  assert.equal(xattr(d('slx'), 'trusted.yes'), 'y', 'xattrs on a symlink itself');
  assert.ok(lstatSync(d('slx-hard')).isSymbolicLink(), 'a hardlink to a symlink links the symlink itself');
  assert.equal(lstatSync(d('slx-hard')).ino, lstatSync(d('slx')).ino);
  assert.equal(spawnSync('getfattr', ['-h', '-n', 'user.no', d('slx')]).status, 1, 'user.* on a symlink: the kernel refuses it, skipped');
  const frac = lstatSync(d('frac'), { bigint: true });
  assert.equal(frac.mtimeNs, 1_600_000_000_500_000_000n);
  assert.equal(frac.atimeNs, 1_700_000_000_250_000_000n);
  assert.equal(ns(d('old')), -1_500_000_000n);
  assertContained(c);
});

test('bad input: truncated gzip, zstd or tar, unknown types, sparse files, usage → exit 1 or 2 naming the entry', { skip }, () => {
  const c = freshCase();
  const archive = tarArchive([
    { name: 'f1', data: Buffer.alloc(100_000, 1) },
    { name: 'f2', data: Buffer.alloc(100_000, 2) },
  ]);
  const noise = Buffer.from(createHash('sha512').update('x').digest('hex').repeat(2000));
  const gz = gzipSync(Buffer.concat([archive, noise]));
  const cases: [string, Buffer, RegExp][] = [
    ['cut.tar.gz', gz.subarray(0, gz.length >> 1), /^crisp-untar: (f\d: )?compressed data is truncated\n$/],
    ['trailer.tar.gz', gz.subarray(0, gz.length - 4), /^crisp-untar: compressed data is truncated\n$/],
    ['cut.tar', archive.subarray(0, 60_000), /^crisp-untar: f1: tar archive is truncated\n$/],
    ['cuthdr.tar', archive.subarray(0, 512 * 197 + 100), /^crisp-untar: tar archive is truncated\n$/],
    ['junk.tar.gz', Buffer.concat([gzipSync(archive), Buffer.from('junk')]), /^crisp-untar: trailing data after the gzip stream\n$/],
    ['sparse.tar', tarArchive([{ name: 'sp', type: 'S' }]), /^crisp-untar: sp: unsupported tar entry type 'S'\n$/],
    ['vol.tar', tarArchive([{ name: 'v', type: 'V' }]), /^crisp-untar: v: unsupported tar entry type 'V'\n$/],
    ['paxsparse.tar', tarArchive([{ name: 'ps', pax: { 'GNU.sparse.major': '1' } }]), /^crisp-untar: ps: sparse files/],
    ['badsum.tar', Buffer.concat([Buffer.alloc(100, 0x41), Buffer.alloc(412)]), /^crisp-untar: invalid tar header checksum/],
  ];
  sh('zstd', '-q', '-f', '-o', join(c.blobs, 'full.zst'), writeBlob(c.blobs, 'full.tar', archive));
  const zst = readFileSync(join(c.blobs, 'full.zst'));
  cases.push(['cut.tar.zst', zst.subarray(0, zst.length - 3), /^crisp-untar: (f\d: )?compressed data is truncated\n$|^crisp-untar: .*zstd data is corrupt/]);
  for (const [name, data, message] of cases) {
    const res = untar(writeBlob(c.blobs, name, data), c.dest);
    assert.equal(res.code, 1, `${name}: ${res.stderr}`);
    assert.match(res.stderr, message, name);
    assert.equal(res.stdout, '', name);
  }
  // A tar cut at an entry boundary without end blocks is accepted, as Go's archive/tar does.
  const noEnd = tarArchive([{ name: 'f1', data: 'x' }], { endBlocks: false });
  assert.equal(untar(writeBlob(c.blobs, 'noend.tar', noEnd), c.dest).stdout, sha256(noEnd));
  // A multi-member gzip stream is one stream: its diff id covers every member.
  const multi = Buffer.concat([gzipSync(archive.subarray(0, 70_000)), gzipSync(archive.subarray(70_000))]);
  assert.equal(untar(writeBlob(c.blobs, 'multi.tar.gz', multi), c.dest).stdout, sha256(archive));
  assert.equal(readFileSync(join(c.dest, 'f2')).length, 100_000);
  for (const args of [
    [],
    ['only-one'],
    ['--compression', 'lz4', 'a', 'b'],
    ['--bogus', 'a', 'b'],
    ['--follow', '10', 'a', 'b'], // --follow needs --compression
    ['--compression', 'gzip', '--follow', '-1', 'a', 'b'],
    ['--compression', 'gzip', '--follow-idle-ms', '5', 'a', 'b'],
  ]) {
    const res = spawnSync(UNTAR, args, { encoding: 'utf8' });
    assert.equal(res.status, 2, args.join(' '));
    assert.match(res.stderr, /^crisp-untar: usage: /);
  }
  const missing = untar(join(c.blobs, 'absent'), c.dest);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /open layer blob .*absent: No such file or directory/);
  symlinkSync(join(c.blobs, 'full.tar'), join(c.blobs, 'symlinked'));
  assert.equal(untar(join(c.blobs, 'symlinked'), c.dest).code, 1, 'BLOB is not followed when it is a symlink');
  assertContained(c);
});

test('an overlay over the extracted layer hides whited-out files and the lower side of opaque dirs', { skip }, () => {
  const c = freshCase();
  const lower = join(c.blobs, 'lower');
  const work = join(c.blobs, 'work');
  const merged = join(c.blobs, 'merged');
  for (const dir of [join(lower, 'opq'), join(lower, 'keepdir'), work, merged]) mkdirSync(dir, { recursive: true });
  writeFileSync(join(lower, 'hide'), 'lower');
  writeFileSync(join(lower, 'keep'), 'lower');
  writeFileSync(join(lower, 'opq', 'old'), 'lower');
  writeFileSync(join(lower, 'keepdir', 'old'), 'lower');
  const layer = tarArchive([
    { name: '.wh.hide' },
    { name: 'opq/', type: '5' },
    { name: 'opq/.wh..wh..opq' },
    { name: 'opq/new', data: 'upper' },
    { name: 'keepdir/new', data: 'upper' },
  ]);
  const res = untar(writeBlob(c.blobs, 'ovl.tar', layer), c.dest);
  assert.equal(res.code, 0, res.stderr);
  sh('mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${c.dest},workdir=${work}`, merged);
  try {
    assert.deepEqual(readdirSync(merged).sort(), ['keep', 'keepdir', 'opq']);
    assert.deepEqual(readdirSync(join(merged, 'opq')), ['new']);
    assert.deepEqual(readdirSync(join(merged, 'keepdir')).sort(), ['new', 'old']);
    assert.equal(readFileSync(join(merged, 'keep'), 'utf8'), 'lower');
  } finally {
    sh('umount', merged);
  }
  rmSync(work, { recursive: true, force: true }); // overlay's work/work is 0000 root: rm handles it
  assert.deepEqual(readdirSync(c.root).sort(), ['dest', 'sentinel']);
});

/** Runs crisp-untar in the background; resolves with its exit code and output once it ends. */
function untarAsync(blob: string, dest: string, ...flags: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(UNTAR, [...flags, blob, dest]);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('--follow: a blob extracted while it is written, waiting for each piece; a file that stops short or shrinks fails', { skip }, async () => {
  const c = freshCase();
  const archive = tarArchive([
    { name: 'a', data: Buffer.alloc(1_500_000, 1) },
    { name: 'd/b', data: Buffer.alloc(700_000, 2) },
  ]);
  const gz = gzipSync(archive);
  const file = join(c.blobs, 'ingest');
  writeFileSync(file, gz.subarray(0, 1000)); // a resumed download: some bytes are there already
  const run = untarAsync(file, c.dest, '--compression', 'gzip', '--follow', String(gz.length), '--follow-idle-ms', '5000');
  const step = Math.ceil(gz.length / 7);
  for (let at = 1000; at < gz.length; at += step) {
    await pause(60);
    appendFileSync(file, gz.subarray(at, Math.min(at + step, gz.length)));
  }
  appendFileSync(file, Buffer.from('bytes past SIZE are not read'));
  const res = await run;
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, sha256(archive));
  assert.ok(readFileSync(join(c.dest, 'd', 'b')).equals(Buffer.alloc(700_000, 2)));
  assert.equal(readFileSync(join(c.dest, 'a')).length, 1_500_000);

  // Stays short: fails after the idle time, naming how far it got.
  rmSync(c.dest, { recursive: true });
  mkdirSync(c.dest);
  writeFileSync(file, gz.subarray(0, 2000));
  const t0 = Date.now();
  const short = await untarAsync(file, c.dest, '--compression', 'gzip', '--follow', String(gz.length), '--follow-idle-ms', '300');
  assert.equal(short.code, 1);
  assert.match(short.stderr, new RegExp(`the layer blob stayed at 2000 of ${gz.length} bytes for 300 ms`));
  assert.ok(Date.now() - t0 >= 300, 'waited for the idle time');

  // Shrinks below what was read (a download that started over): fails at once.
  rmSync(c.dest, { recursive: true });
  mkdirSync(c.dest);
  const plain = join(c.blobs, 'plain');
  writeFileSync(plain, archive.subarray(0, 600_000));
  const shrunk = untarAsync(plain, c.dest, '--compression', 'none', '--follow', String(archive.length), '--follow-idle-ms', '10000');
  await pause(300);
  truncateSync(plain, 100);
  const r = await shrunk;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the layer blob shrank below the 600000 bytes read/);

  // A follower dies with its parent (crispd's spawner): started by a shell that exits once it runs.
  const waiting = join(c.blobs, 'waiting');
  writeFileSync(waiting, gz.subarray(0, 10));
  const sh = spawnSync('sh', ['-c', `"$0" --compression gzip --follow ${gz.length} --follow-idle-ms 60000 "$1" "$2" >/dev/null 2>&1 & echo $!; sleep 0.3`, UNTAR, waiting, c.dest], { encoding: 'utf8' });
  const orphan = Number(sh.stdout.trim());
  assert.ok(orphan > 0, sh.stderr);
  let alive = true;
  for (let i = 0; i < 100 && alive; i++) {
    await pause(20);
    alive = existsSync(`/proc/${orphan}`) && !readFileSync(`/proc/${orphan}/stat`, 'utf8').includes(') Z ');
  }
  if (alive) process.kill(orphan, 'SIGKILL'); // the test fails below; it leaves no process behind
  assert.equal(alive, false, 'the follower was killed when its parent exited');
  assertContained(c);
});

// crisp's own layer unpack for the embedded containerd's overlayfs snapshotter: crisp-untar extracts a
// layer blob from the local content store into a staging directory beside the snapshots (whiteouts
// converted to overlay's form, the diff id computed on the way), and once the parent chain is
// committed the staged tree replaces the empty upper dir of a prepared snapshot (one rename), which is
// then committed as containerd's Diff.Apply would have left it. Layers extract in parallel, each as soon
// as its blob is in the store; only the Prepare → rename → Commit steps keep the chain's order.
import { chmod, lchown, lstat, mkdir, rename, rm, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CrispError } from '../../common/errors.js';
import { describeFailure, runCommand, succeeded } from '../../native/spawner.js';
import type { Descriptor } from '../registry/oci.js';
import { localBlobPath } from './ingest-files.js';
import { diffIdMismatch } from './unpack.js';

export interface LayerExtractOptions {
  /** The crisp-untar binary. */
  untar: string;
  /** containerd's content store root (`…/io.containerd.content.v1.content`). */
  contentRoot: string;
  /** The overlayfs snapshotter's root (`…/io.containerd.snapshotter.v1.overlayfs`). */
  snapshotRoot: string;
}

type Compression = 'gzip' | 'zstd' | 'none';

const GZIP_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);
const ZSTD_TYPES = new Set(['application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd']);
const TAR_TYPES = new Set(['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.nondistributable.v1.tar']);

/** How crisp-untar reads a layer of this media type; undefined: containerd's differ must apply it (encrypted, unknown). */
export function layerCompression(mediaType: string): Compression | undefined {
  if (GZIP_TYPES.has(mediaType)) return 'gzip';
  if (ZSTD_TYPES.has(mediaType)) return 'zstd';
  if (TAR_TYPES.has(mediaType)) return 'none';
  return undefined;
}

/** A generous bound: a layer of several GiB on a slow disk still finishes; a wedged extractor does not hang the pull. */
const EXTRACT_TIMEOUT_MS = 30 * 60 * 1000;

type SnapshotMounts = readonly { type: string; source: string; options: readonly string[] }[];

/**
 * A layer's tree extracted into the staging dir, its diff id verified: `place` moves it into a prepared
 * snapshot, `discard` removes it (nothing once placed).
 */
export interface StagedLayer {
  dir: string;
  /** Directories made only as parents of entries (paths below `dir`): they take the lower layers' mode and owner. */
  madeDirs: string[];
  place(mounts: SnapshotMounts): Promise<void>;
  discard(): Promise<void>;
}

/** Extract while the blob downloads: read its ingest file as it grows (crisp-untar --follow). */
export interface FollowSource {
  /** The ingest's data file the download writes. */
  file: string;
  /** How long the file may stay short before the extraction gives up. */
  idleMs: number;
  /** Ends the extraction (the download failed, the pull was cancelled). */
  signal: AbortSignal;
}

export class LayerExtractor {
  private readonly stagingDir: string;
  private ready: Promise<boolean> | undefined;

  constructor(private readonly opts: LayerExtractOptions) {
    this.stagingDir = join(opts.snapshotRoot, 'crisp-staging');
  }

  /**
   * Whether staged trees can be renamed into snapshots: the staging dir exists on the snapshots' file
   * system. Leftovers of an earlier crispd (killed mid-extract) are removed the first time.
   */
  usable(): Promise<boolean> {
    return (this.ready ??= (async () => {
      try {
        await rm(this.stagingDir, { recursive: true, force: true });
        await mkdir(this.stagingDir, { mode: 0o700 });
        const [a, b] = await Promise.all([stat(this.stagingDir), stat(join(this.opts.snapshotRoot, 'snapshots'))]);
        return a.dev === b.dev;
      } catch {
        // No snapshots dir yet (a fresh containerd makes it at start) or no access: containerd applies layers.
        this.ready = undefined;
        return false;
      }
    })());
  }

  /** Whether this layer can be extracted here (a media type crisp-untar reads, a sha256 digest). */
  handles(layer: Descriptor): boolean {
    return layerCompression(layer.mediaType) !== undefined && localBlobPath(this.opts.contentRoot, layer.digest) !== undefined;
  }

  /**
   * Extract `layer` and check its diff id: from its blob committed in the content store, or with
   * `follow` from the ingest file its download is writing. Only the diff id vouches for what a follower
   * read (the blob's digest is checked when the download commits), so a follower's failure says nothing
   * about the layer: the caller extracts the committed blob instead.
   */
  async extract(layer: Descriptor, diffId: string, follow?: FollowSource): Promise<StagedLayer> {
    const compression = layerCompression(layer.mediaType);
    const blob = localBlobPath(this.opts.contentRoot, layer.digest);
    if (!compression || !blob) throw new CrispError('INTERNAL', `layer ${layer.digest} (${layer.mediaType}) cannot be extracted by crisp`);
    const dir = join(this.stagingDir, `${randomBytes(6).toString('hex')}-${basename(blob).slice(0, 12)}`);
    const discard = () => rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o755 });
    try {
      const source = follow ? ['--follow', String(layer.size), '--follow-idle-ms', String(Math.max(1, Math.round(follow.idleMs))), follow.file] : [blob];
      const r = await runCommand(this.opts.untar, ['--compression', compression, '--made-dirs', ...source, dir], {
        timeoutMs: EXTRACT_TIMEOUT_MS,
        ...(follow ? { signal: follow.signal } : {}),
      });
      if (!succeeded(r)) throw new CrispError('INTERNAL', `extracting layer ${layer.digest}: ${describeFailure('crisp-untar', r)}`);
      const newline = r.stdout.indexOf('\n');
      const unpacked = r.stdout.slice(0, newline);
      if (unpacked !== diffId) throw diffIdMismatch(layer, unpacked, diffId);
      const staged: StagedLayer = {
        dir,
        madeDirs: r.stdout.slice(newline + 1).split('\0').filter(Boolean),
        place: (mounts) => this.place(staged, mounts),
        discard,
      };
      return staged;
    } catch (err) {
      await discard();
      throw err;
    }
  }

  /**
   * Move a staged tree into a prepared snapshot: its upper dir (overlay with a parent, a bind of the
   * fs dir without) must be an empty dir below the snapshot root, which the rename replaces.
   */
  private async place(staged: StagedLayer, mounts: SnapshotMounts): Promise<void> {
    const upper = upperDir(mounts);
    const root = resolve(this.opts.snapshotRoot, 'snapshots') + sep;
    if (!upper || !resolve(upper).startsWith(root)) {
      throw new CrispError('INTERNAL', `prepared snapshot mounts have no upper dir below ${root}: ${JSON.stringify(mounts)}`);
    }
    await inheritDirs(staged, lowerDirs(mounts).filter((l) => resolve(l).startsWith(root)));
    await rename(staged.dir, upper);
  }
}

/** The lower layers' directories of a prepared overlay snapshot, top first. */
export function lowerDirs(mounts: readonly { type: string; options: readonly string[] }[]): string[] {
  const opt = mounts.length === 1 && mounts[0]!.type === 'overlay' ? mounts[0]!.options.find((o) => o.startsWith('lowerdir=')) : undefined;
  return opt ? opt.slice('lowerdir='.length).split(':') : [];
}

/**
 * `path` below `root` as a real directory, every component a directory, never a symlink (lower layers
 * are immutable, so nothing changes between the checks): its stats; 'absent' when the layer has nothing
 * on the way; 'hidden' when a component is something else (a file, a whiteout, a symlink), which hides
 * the layers below it there.
 */
async function realDir(root: string, path: string): Promise<Stats | 'absent' | 'hidden'> {
  let at = root;
  let st: Stats | undefined;
  for (const part of path.split('/')) {
    if (part === '' || part === '.' || part === '..') return 'hidden';
    at = join(at, part);
    try {
      st = await lstat(at);
    } catch {
      return 'absent'; // not in this layer
    }
    if (!st.isDirectory()) return 'hidden';
  }
  return st ?? 'hidden';
}

/**
 * A directory the layer has no entry for shows, in the overlay, the upper dir's metadata: it takes the
 * mode and owner of the same directory in the topmost lower layer that has one (as containerd's applier
 * does), else keeps 0755 root:root.
 */
async function inheritDirs(staged: StagedLayer, lowers: readonly string[]): Promise<void> {
  if (staged.madeDirs.length === 0 || lowers.length === 0) return;
  for (const path of staged.madeDirs) {
    // Removed or replaced by a later entry of the layer: nothing to give metadata to.
    if (typeof (await realDir(staged.dir, path)) === 'string') continue;
    for (const lower of lowers) {
      const theirs = await realDir(lower, path);
      if (theirs === 'absent') continue;
      if (theirs === 'hidden') break;
      const target = join(staged.dir, path);
      await lchown(target, theirs.uid, theirs.gid);
      await chmod(target, theirs.mode & 0o7777);
      break;
    }
  }
}

/** The writable directory of a prepared overlayfs snapshot, from its mounts. */
export function upperDir(mounts: readonly { type: string; source: string; options: readonly string[] }[]): string | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === 'bind') return m.source;
  if (m.type === 'overlay') return m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
  return undefined;
}

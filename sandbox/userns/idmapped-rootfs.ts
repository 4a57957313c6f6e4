// The rootfs of a user-namespace container without chown: the snapshot's lower layers are seen through
// an idmapped, read-only bind mount below <state>/containers/<id>/idmap/<n> (one mount of the dir that
// holds the layers, containerd's `snapshots` dir, cloned from a read-only view of it: one helper run
// per container however many layers the image has), and the overlay the shim mounts takes the layers
// inside it as its lowerdir. Image files owned by on-disk root then show as the pod's root; the
// (empty) upper and work dirs are the only things chowned, to the mapped root, so copy-ups and new
// files land on disk as the mapped ids.
import { chown, mkdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { internal, withContext } from '../../common/errors.js';
import type { RootfsMount } from '../../backend/containerd/runtime.js';
import { idmapMount } from '../../native/nshelper.js';
import { detachAndRemove, isMounted, readMountinfo } from './mounts.js';
import { ReadonlyViews } from './readonly-views.js';

export interface HostIds {
  uid: number;
  gid: number;
}

export interface IdmapRootfsInput {
  /** <state>/containers/<id>: the container's mounts live below it. */
  dir: string;
  /** The snapshot's mounts from containerd: one overlay (or one bind for an image without layers). */
  mounts: RootfsMount[];
  /** The pod's pinned user namespace file. */
  userns: string;
  /** Host ids of the container's root (uid/gid 0 in the pod's user namespace). */
  root: HostIds;
  views: ReadonlyViews;
}

export interface PreparedRootfs {
  /** What Tasks.Create gets as the task's rootfs. */
  mounts: RootfsMount[];
  /** Unmounts (MNT_DETACH) everything made for the rootfs and removes the dirs. */
  cleanup(): Promise<void>;
}

/** Value of `key=` in overlay options ("" when absent). */
export function overlayOption(options: readonly string[], key: string): string {
  return options.find((o) => o.startsWith(`${key}=`))?.slice(key.length + 1) ?? '';
}

/** The same options with `key=` replaced in place (appended when absent). */
export function withOverlayOption(options: readonly string[], key: string, value: string): string[] {
  const at = options.findIndex((o) => o.startsWith(`${key}=`));
  const opt = `${key}=${value}`;
  return at < 0 ? [...options, opt] : options.map((o, i) => (i === at ? opt : o));
}

/** The one mount a snapshot is made of; anything else is not something crisp knows how to remap. */
export function snapshotMount(mounts: readonly RootfsMount[], what: string): RootfsMount {
  const m = mounts[0];
  if (mounts.length !== 1 || !m || (m.type !== 'overlay' && m.type !== 'bind')) {
    throw internal(`${what}: expected one overlay or bind mount from the snapshotter, got ${JSON.stringify(mounts.map((x) => x.type))}`);
  }
  return m;
}

// Overlay's option parser splits on ',' and lowerdir on ':'; paths with them cannot be passed.
function checkOverlayPath(path: string, what: string): void {
  if (/[,:\\]/.test(path)) throw internal(`${what}: path ${path} contains , : or \\ and cannot be an overlay layer`);
}

/** The upper and work dirs (or a layer-less bind source) belong to the mapped root; nothing else is chowned. */
async function chownEmptyDirs(dirs: string[], root: HostIds): Promise<void> {
  for (const d of dirs) {
    const st = await stat(d);
    if (st.uid !== root.uid || st.gid !== root.gid) await chown(d, root.uid, root.gid);
  }
}

export const rootfsIdmapDir = (containerDir: string): string => join(containerDir, 'idmap');

/** Layer paths grouped by the dir that holds them, in first-seen order. */
export function layerParents(lowers: readonly string[]): string[] {
  return [...new Set(lowers.map((l) => ReadonlyViews.parentOf(l)))];
}

/**
 * Idmaps the snapshot's lower layers and returns the task's rootfs mounts. Idempotent: a mount already
 * there (crispd restarted between start steps) is kept.
 */
export async function idmapRootfs(input: IdmapRootfsInput): Promise<PreparedRootfs> {
  const what = `idmapped rootfs in ${input.dir}`;
  const m = snapshotMount(input.mounts, what);
  const base = rootfsIdmapDir(input.dir);
  const cleanup = () => detachAndRemove(base);
  if (m.type === 'bind') {
    // An image without layers: the snapshot is a single empty writable dir.
    await chownEmptyDirs([m.source], input.root);
    return { mounts: input.mounts.map((x) => ({ ...x, options: [...x.options] })), cleanup };
  }
  const lowers = overlayOption(m.options, 'lowerdir').split(':').filter(Boolean);
  const upper = overlayOption(m.options, 'upperdir');
  const work = overlayOption(m.options, 'workdir');
  if (lowers.length === 0) throw internal(`${what}: the overlay has no lowerdir`);
  if (!upper || !work) throw internal(`${what}: the overlay has no upperdir/workdir (a read-only view cannot be a container rootfs)`);
  checkOverlayPath(base, what);
  try {
    await mkdir(base, { recursive: true, mode: 0o700 });
    const mountinfo = await readMountinfo();
    const parents = layerParents(lowers);
    const mappedParents = await Promise.all(
      parents.map(async (parent, n) => {
        const dst = join(base, String(n));
        if (await isMounted(dst, mountinfo)) return dst;
        await mkdir(dst, { recursive: true, mode: 0o755 });
        await idmapMount({ userns: input.userns, src: await input.views.viewOf(parent), dst });
        return dst;
      }),
    );
    const mapped = lowers.map((l) => {
      const parent = ReadonlyViews.parentOf(l);
      return join(mappedParents[parents.indexOf(parent)]!, relative(parent, l));
    });
    for (const l of mapped) checkOverlayPath(l, what);
    await chownEmptyDirs([upper, work], input.root);
    const overlay: RootfsMount = { ...m, options: withOverlayOption(m.options, 'lowerdir', mapped.join(':')) };
    return { mounts: [overlay], cleanup };
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw withContext(what, err);
  }
}

// Where idmapped lower layers do not work (old kernel, a filesystem without idmap support), a userns
// container's rootfs can still be made by chown: the snapshot is mounted once as an overlay, every
// entry of the merged view is chowned to the pod's host ids, which copies it up into the container's
// own upper dir, and the task then gets the same overlay. With metacopy=on only metadata is copied up;
// without it every file's data is copied too. Slow either way (seconds for big images), so it is off
// unless `userns_chown_fallback = true`, and timed in the log.
import { chmod, lchown, lstat, mkdir, opendir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { runChecked } from '../../native/spawner.js';
import { failedPrecondition, internal, withContext, type CrispError } from '../../common/errors.js';
import type { IdMapping } from '../../native/nshelper.js';
import type { RootfsMount } from '../../backend/containerd/runtime.js';
import { detachAndRemove } from './mounts.js';
import { overlayOption, snapshotMount, withOverlayOption, type PreparedRootfs } from './idmapped-rootfs.js';
import type { UsernsSupport } from './probe.js';

/** The FAILED_PRECONDITION a userns container gets when this node cannot make its rootfs. */
export function usernsUnavailable(support: UsernsSupport, podId: string): CrispError {
  const why = support.reason || 'idmapped mounts are not supported';
  const fix = support.kernelUserns
    ? 'set userns_chown_fallback = true in the crisp config to make such rootfs by chown instead (slow: seconds per container for large images)'
    : 'enable user namespaces in the kernel (user.max_user_namespaces > 0)';
  return failedPrecondition(`pod ${podId.slice(0, 12)} uses a user namespace, but this node cannot give its containers an idmapped rootfs (${why}); ${fix}`);
}

/** Host id of container id `id` under `maps`; undefined when unmapped. */
export function toHostId(id: number, maps: readonly IdMapping[]): number | undefined {
  for (const m of maps) if (id >= m.containerId && id < m.containerId + m.length) return m.hostId + (id - m.containerId);
  return undefined;
}

const inHostRange = (id: number, maps: readonly IdMapping[]): boolean => maps.some((m) => id >= m.hostId && id < m.hostId + m.length);

/**
 * The owner an entry gets: shifted into the pod's host range; unchanged when already there (a hard
 * link seen twice, a resumed run) or when the image id has no mapping (it shows as nobody inside).
 */
export function shiftedOwner(uid: number, gid: number, uids: readonly IdMapping[], gids: readonly IdMapping[]): { uid: number; gid: number } {
  const u = inHostRange(uid, uids) ? uid : (toHostId(uid, uids) ?? uid);
  const g = inHostRange(gid, gids) ? gid : (toHostId(gid, gids) ?? gid);
  return { uid: u, gid: g };
}

export interface ChownStats {
  entries: number;
  changed: number;
  ms: number;
}

/** Chowns every entry below (and including) `root`, without following symlinks; a few calls in flight. */
export async function chownTree(root: string, uids: readonly IdMapping[], gids: readonly IdMapping[], concurrency = 32): Promise<ChownStats> {
  const started = performance.now();
  const queue: string[] = [root];
  let entries = 0;
  let changed = 0;
  const one = async (path: string) => {
    const st = await lstat(path);
    entries++;
    const to = shiftedOwner(st.uid, st.gid, uids, gids);
    if (to.uid !== st.uid || to.gid !== st.gid) {
      await lchown(path, to.uid, to.gid);
      changed++;
      // chown clears setuid/setgid on non-directories, also for root: put them back.
      if (!st.isDirectory() && !st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
    }
    if (st.isDirectory()) {
      const dir = await opendir(path);
      for await (const e of dir) queue.push(join(path, e.name));
    }
  };
  await new Promise<void>((resolve, reject) => {
    let active = 0;
    let failed = false;
    const pump = () => {
      while (!failed && active < concurrency && queue.length > 0) {
        active++;
        one(queue.pop()!).then(
          () => {
            active--;
            if (active === 0 && queue.length === 0) resolve();
            else pump();
          },
          (err: unknown) => {
            failed = true;
            reject(err);
          },
        );
      }
    };
    pump();
  });
  return { entries, changed, ms: performance.now() - started };
}

export interface ChownRootfsInput {
  /** <state>/containers/<id> */
  dir: string;
  mounts: RootfsMount[];
  uids: IdMapping[];
  gids: IdMapping[];
  /** Copy up metadata only (overlay metacopy=on); false copies every file's data as well. */
  metacopy: boolean;
}

export interface ChownedRootfs extends PreparedRootfs {
  /** Undefined when an earlier run had already chowned this rootfs. */
  stats?: ChownStats;
}

const MARKER = 'rootfs-chowned.json';

/** Mounts an overlay with `options` on `target`; long lowerdir lists go relative to their common dir. */
async function mountOverlay(options: string[], target: string): Promise<void> {
  let opts = options;
  let cwd: string | undefined;
  const lowers = overlayOption(options, 'lowerdir').split(':');
  if (options.join(',').length > 3500 && lowers.length > 1) {
    // mount(2) takes one page of options; containerd's shim shortens the same way.
    const parts = lowers.map((l) => l.split('/'));
    let common = 0;
    while (parts.every((p) => p[common] === parts[0]![common]) && common < parts[0]!.length - 1) common++;
    cwd = parts[0]!.slice(0, common).join('/') || '/';
    opts = withOverlayOption(options, 'lowerdir', parts.map((p) => p.slice(common).join('/')).join(':'));
  }
  await runChecked('mount', ['-t', 'overlay', 'overlay', '-o', opts.join(','), target], cwd ? { cwd } : {});
}

/**
 * Chowns the snapshot through an overlay of it and returns the task's rootfs mounts (the same overlay,
 * with metacopy=on when used). Idempotent: a marker records a finished run.
 */
export async function chownRootfs(input: ChownRootfsInput): Promise<ChownedRootfs> {
  const what = `chown rootfs in ${input.dir}`;
  const m = snapshotMount(input.mounts, what);
  const work = join(input.dir, 'chown');
  const cleanup = () => detachAndRemove(work);
  const options = input.metacopy && m.type === 'overlay' ? withOverlayOption(m.options, 'metacopy', 'on') : [...m.options];
  const taskMounts: RootfsMount[] = [{ ...m, options }];
  const marker = join(input.dir, MARKER);
  if (await readFile(marker, 'utf8').then(() => true, () => false)) return { mounts: taskMounts, cleanup };
  try {
    let stats: ChownStats;
    if (m.type === 'bind') {
      stats = await chownTree(m.source, input.uids, input.gids);
    } else {
      if (!overlayOption(m.options, 'upperdir')) throw internal('the overlay has no upperdir');
      const merged = join(work, 'merged');
      await mkdir(merged, { recursive: true, mode: 0o700 });
      await mountOverlay(options, merged);
      try {
        stats = await chownTree(merged, input.uids, input.gids);
      } finally {
        // Two overlays must not share an upper dir: this one is gone before the task mounts its own.
        await runChecked('umount', [merged]).catch(() => runChecked('umount', ['-l', merged]));
      }
    }
    await writeFile(marker, `${JSON.stringify({ metacopy: input.metacopy, ...stats })}\n`, { mode: 0o600 });
    return { mounts: taskMounts, cleanup, stats };
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw withContext(what, err);
  }
}

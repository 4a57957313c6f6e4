// What a user-namespace container binds besides its rootfs, made to look right from inside: the pod's
// /etc/hosts, /etc/hostname and /etc/resolv.conf (seen through one idmapped mount of the pod's dir,
// made once per pod), the pod's /dev/shm (a tmpfs crisp made, so its root is simply chowned to the
// mapped root), and the CRI volumes (kubelet's hostPath, emptyDir, projected dirs: each idmapped per
// container). Through an idmapped mount, on-disk root shows as the pod's root, and what the pod's root
// writes lands on disk as root again: the volume's files keep the ids the container sees.
import { chown, mkdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { errorMessage, failedPrecondition } from '../../common/errors.js';
import { idmapMount, isNsHelperError, type IdMapping } from '../../native/nshelper.js';
import type { PodRecord } from '../pods/types.js';
import type { MountSpec } from '../containers/types.js';
import { detachAndRemove, isMounted, readMountinfo } from './mounts.js';
import type { HostIds } from './idmapped-rootfs.js';

/** Everything crisp mounts for a pod's user namespace lives below <pod run dir>/userns. */
export const podUsernsDir = (pod: Pick<PodRecord, 'runDir'>): string => join(pod.runDir, 'userns');
/** The pod's dir (where its /etc files are) as the pod's root sees it. */
export const podFilesView = (pod: Pick<PodRecord, 'runDir'>): string => join(podUsernsDir(pod), 'etc');

function requireUserns(pod: Pick<PodRecord, 'id' | 'pins'>): string {
  if (!pod.pins.user) throw failedPrecondition(`pod ${pod.id.slice(0, 12)} has no pinned user namespace`);
  return pod.pins.user;
}

/** Idmaps the pod's dir once (idempotent), so its /etc files show as owned by the pod's root. */
export async function idmapPodFiles(pod: Pick<PodRecord, 'id' | 'pins' | 'dir' | 'runDir'>): Promise<void> {
  const dst = podFilesView(pod);
  if (await isMounted(dst)) return;
  await mkdir(dst, { recursive: true, mode: 0o755 });
  await idmapMount({ userns: requireUserns(pod), src: pod.dir, dst });
}

/** Source overrides for the OCI spec: each pod file that lives in the pod's dir → its idmapped path. */
export function podFileOverrides(pod: Pick<PodRecord, 'dir' | 'runDir' | 'files'>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const file of [pod.files.hostname, pod.files.hosts, pod.files.resolvConf]) {
    if (file && dirname(file) === pod.dir) out[file] = join(podFilesView(pod), basename(file));
  }
  return out;
}

/** Fallback without idmapped mounts: the pod's own /etc files are chowned to the mapped root. */
export async function chownPodFiles(pod: Pick<PodRecord, 'files'>, root: HostIds): Promise<void> {
  for (const file of [pod.files.hostname, pod.files.hosts, pod.files.resolvConf]) if (file) await chown(file, root.uid, root.gid);
}

/** The pod's /dev/shm tmpfs: its root belongs to the pod's root (mode stays 1777). */
export async function chownShm(shmPath: string, root: HostIds): Promise<void> {
  await chown(shmPath, root.uid, root.gid);
}

/** Detaches the pod's idmapped views and removes <run dir>/userns; fine when there is none. */
export async function releasePodMounts(pod: Pick<PodRecord, 'runDir'>): Promise<void> {
  await detachAndRemove(podUsernsDir(pod));
}

export const volumesIdmapDir = (containerDir: string): string => join(containerDir, 'volumes');

const sameMappings = (a: readonly IdMapping[], b: readonly IdMapping[]): boolean =>
  a.length === b.length && a.every((m, i) => m.containerId === b[i]!.containerId && m.hostId === b[i]!.hostId && m.length === b[i]!.length);

/**
 * kubelet gives every mount of a user-namespace pod the pod's own uid and gid mappings: exactly the
 * idmapped view crisp makes of each volume (idmapVolumes), so those mappings are dropped here and the
 * spec needs no idmapped mounts from the OCI runtime (runc 1.1 has none). Other mappings stay.
 */
export function withoutPodMappings(mounts: readonly MountSpec[], userns: { uids: readonly IdMapping[]; gids: readonly IdMapping[] }): MountSpec[] {
  return mounts.map((m) =>
    m.uidMappings.length > 0 && sameMappings(m.uidMappings, userns.uids) && sameMappings(m.gidMappings, userns.gids) ? { ...m, uidMappings: [], gidMappings: [] } : m,
  );
}

export interface IdmapVolumesInput {
  /** <state>/containers/<id> */
  dir: string;
  mounts: readonly MountSpec[];
  userns: string;
  log: Logger;
}

/**
 * One recursive idmapped bind per distinct CRI host path, below <dir>/volumes/<n>; returns host path →
 * idmapped path. A volume on a filesystem that cannot be idmapped stays as it is (its files then show
 * as nobody inside) and the log says so. Idempotent.
 */
export async function idmapVolumes(input: IdmapVolumesInput): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const hostPaths = [...new Set(input.mounts.map((m) => m.hostPath))];
  if (hostPaths.length === 0) return out;
  const base = volumesIdmapDir(input.dir);
  await mkdir(base, { recursive: true, mode: 0o700 });
  const mountinfo = await readMountinfo();
  await Promise.all(
    hostPaths.map(async (hostPath, n) => {
      const dst = join(base, String(n));
      if (!(await isMounted(dst, mountinfo))) {
        // The mount point has the source's kind: a dir for a dir, an empty file for anything else.
        if ((await stat(hostPath)).isDirectory()) await mkdir(dst, { recursive: true, mode: 0o755 });
        else await writeFile(dst, '', { mode: 0o600, flag: 'a' });
        try {
          await idmapMount({ userns: input.userns, src: hostPath, dst, recursive: true });
        } catch (err) {
          if (!isNsHelperError(err)) throw err;
          input.log.warn({ hostPath, err: errorMessage(err) }, 'volume cannot be idmapped; it is bound as it is (its files show as nobody in the user namespace)');
          return;
        }
      }
      out[hostPath] = dst;
    }),
  );
  return out;
}

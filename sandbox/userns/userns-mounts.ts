// The one object the pod and container controllers talk to for user-namespace pods. It knows what the
// node can do (probed once at start) and picks the way: idmapped mounts, the chown fallback, or a
// FAILED_PRECONDITION that says how to enable the fallback. Everything it mounts for a container lives
// below <state>/containers/<id>, for a pod below <pod run dir>/userns, so cleanup after a crispd
// restart needs nothing but the id.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../common/logger.js';
import { failedPrecondition } from '../../common/errors.js';
import type { RootfsMount } from '../../backend/containerd/runtime.js';
import type { PodRecord } from '../pods/types.js';
import type { MountSpec } from '../containers/types.js';
import type { UsernsSupport } from './probe.js';
import { ReadonlyViews } from './readonly-views.js';
import { idmapRootfs, type HostIds } from './idmapped-rootfs.js';
import { chownRootfs, toHostId, usernsUnavailable } from './fallback.js';
import { chownPodFiles, chownShm, idmapPodFiles, idmapVolumes, podFileOverrides, podFilesView, releasePodMounts } from './idmapped-volumes.js';
import { detachAndRemove } from './mounts.js';

export interface UsernsMountsOptions {
  /** crispd's runtime state dir (<state>): container mounts go below <state>/containers. */
  stateDir: string;
  support: UsernsSupport;
  log: Logger;
}

type UsernsPod = Pick<PodRecord, 'id' | 'pins' | 'dir' | 'runDir' | 'files' | 'spec'>;

export class UsernsMounts {
  private readonly views: ReadonlyViews;

  constructor(private readonly opts: UsernsMountsOptions) {
    this.views = new ReadonlyViews(join(opts.stateDir, 'userns', 'ro'));
  }

  get support(): UsernsSupport {
    return this.opts.support;
  }

  containerDir(id: string): string {
    return join(this.opts.stateDir, 'containers', id);
  }

  /** Host uid/gid of the pod's root. */
  mappedRoot(pod: Pick<PodRecord, 'id' | 'spec'>): HostIds {
    const userns = pod.spec.namespaces.userns;
    const uid = userns ? toHostId(0, userns.uids) : undefined;
    const gid = userns ? toHostId(0, userns.gids) : undefined;
    if (uid === undefined || gid === undefined) throw failedPrecondition(`pod ${pod.id.slice(0, 12)} has no mapping for uid/gid 0`);
    return { uid, gid };
  }

  private userns(pod: UsernsPod): string {
    if (!pod.pins.user) throw failedPrecondition(`pod ${pod.id.slice(0, 12)} has no pinned user namespace`);
    return pod.pins.user;
  }

  /** CreateContainer in a userns pod on a node that cannot make its rootfs: refuse up front. */
  requireSupport(pod: Pick<PodRecord, 'id'>): void {
    if (!this.opts.support.userNamespaces) throw usernsUnavailable(this.opts.support, pod.id);
  }

  // ---- pods ----

  /** RunPodSandbox, right after /dev/shm is mounted. */
  async preparePodShm(pod: UsernsPod, shmPath: string): Promise<void> {
    await chownShm(shmPath, this.mappedRoot(pod));
  }

  /** RunPodSandbox, once the /etc files are written: one idmapped view of the pod's dir. */
  async preparePodFiles(pod: UsernsPod): Promise<void> {
    if (this.opts.support.idmap) await idmapPodFiles(pod);
    else if (this.opts.support.chownFallback) await chownPodFiles(pod, this.mappedRoot(pod));
  }

  /** RemovePodSandbox (and a failed RunPodSandbox): what preparePodFiles mounted. Idempotent. */
  async releasePod(pod: Pick<PodRecord, 'runDir'>): Promise<void> {
    await releasePodMounts(pod);
  }

  // ---- containers ----

  /** CreateContainer: host path → the path the OCI spec binds instead (idmapped pod files and volumes). */
  async prepareContainerMounts(id: string, pod: UsernsPod, mounts: readonly MountSpec[]): Promise<Record<string, string>> {
    this.requireSupport(pod);
    if (!this.opts.support.idmap) {
      if (mounts.length > 0) this.opts.log.warn({ container: id.slice(0, 12) }, 'idmapped mounts unavailable: volumes of this userns container are not remapped');
      return {};
    }
    const volumes = await idmapVolumes({ dir: this.containerDir(id), mounts, userns: this.userns(pod), log: this.opts.log });
    return { ...podFileOverrides(pod), ...volumes };
  }

  /** StartContainer: the task's rootfs mounts, from the snapshot's (idmapped, or chowned as fallback). */
  async taskRootfs(id: string, pod: UsernsPod, snapshot: RootfsMount[]): Promise<RootfsMount[]> {
    this.requireSupport(pod);
    const dir = this.containerDir(id);
    const started = performance.now();
    if (this.opts.support.rootfs === 'idmap') {
      const r = await idmapRootfs({ dir, mounts: snapshot, userns: this.userns(pod), root: this.mappedRoot(pod), views: this.views });
      this.opts.log.debug({ container: id.slice(0, 12), ms: Math.round((performance.now() - started) * 10) / 10 }, 'idmapped rootfs ready');
      return r.mounts;
    }
    const userns = pod.spec.namespaces.userns!;
    const r = await chownRootfs({ dir, mounts: snapshot, uids: userns.uids, gids: userns.gids, metacopy: true });
    if (r.stats) {
      this.opts.log.info(
        { container: id.slice(0, 12), entries: r.stats.entries, chowned: r.stats.changed, ms: Math.round(r.stats.ms) },
        'userns rootfs made by chown (userns_chown_fallback): slow, idmapped mounts are unavailable here',
      );
    }
    return r.mounts;
  }

  /** After the task is deleted, and on RemoveContainer: every mount made for the container. Idempotent. */
  async releaseContainer(id: string): Promise<void> {
    const dir = this.containerDir(id);
    if (existsSync(dir)) await detachAndRemove(dir);
  }

  /** For verbose PodSandboxStatus. */
  describePod(pod: UsernsPod): Record<string, unknown> | null {
    if (!pod.pins.user) return null;
    const s = this.opts.support;
    return {
      rootfs: s.rootfs,
      volumes: s.idmap ? 'idmapped' : 'not remapped',
      podFiles: s.idmap ? podFilesView(pod) : 'chowned',
      mappedRoot: this.mappedRoot(pod),
    };
  }

  /** Daemon stop. Container and pod mounts stay (their tasks outlive crispd); the read-only views go. */
  async close(): Promise<void> {
    await this.views.release();
  }
}


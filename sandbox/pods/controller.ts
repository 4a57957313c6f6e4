// The pauseless pod controller: run, stop, remove, status, list and recover. A pod is a set of pinned
// namespaces (bind mounts), a /dev/shm, a cgroup, its /etc files and a CNI attachment: no process runs
// for it, except the tiny pid-namespace holder of a shareProcessNamespace pod.
import { makeDir } from '../../common/make-dir.js';
import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { Listeners } from '../../common/listeners.js';
import { UndoStack } from '../../common/undo-stack.js';
import { KeyedLock } from '../../common/keyed-lock.js';
import { processAlive } from '../../common/process.js';
import { alreadyExists, errorMessage, failedPrecondition, notFound, withContext } from '../../common/errors.js';
import { nowNanos } from '../../common/time.js';
import type { PodNetwork } from '../../cni/index.js';
import { pinNamespaces, unpinNamespaces, applySysctls } from '../../native/nshelper.js';
import { cgroupExists, createCgroup, removeCgroup, type CgroupDriver } from '../cgroups.js';
import { DefaultCgroupParent } from '../cgroup-parent.js';
import { removeJournal, unfinishedPods, writeJournal, type JournaledPod } from './creation-journal.js';
import { PodStore, POD_RECORD_FILE } from './store.js';
import { writePodFiles } from './pod-files.js';
import { unmountIfMounted } from './shm.js';
import { podFullName, type PodRecord, type PodResources, type PodSpec } from './types.js';
import { startPodPidNamespace, stopPodPidNamespace } from './pid-namespace.js';
import { NO_NRI, type NriHooks } from '../nri-hooks.js';
import type { UsernsMounts } from '../userns/userns-mounts.js';
import { timePodStartPhase } from '../../common/operation-metrics.js';
import type { PodShims } from './pod-shims.js';

/** What the pod controller needs from the container layer when a pod stops or goes away. */
export interface PodContainerHooks {
  stopAll(podId: string): Promise<void>;
  removeAll(podId: string): Promise<void>;
}

export interface PodControllerOptions {
  /** <root>/pods */
  podsDir: string;
  /** <state>/pods */
  runDir: string;
  cgroupDriver: CgroupDriver;
  /** Parent for pods kubelet gives no cgroup parent. */
  defaultCgroupParent: string;
  /** Marks that crisp made the default parent (in the state dir), so the last pod's removal removes it. */
  cgroupParentMarker: string;
  network: PodNetwork;
  podCidr: () => string;
  /** Idmapped pod files and a mapped /dev/shm for user-namespace pods. */
  userns?: UsernsMounts;
  /** Starts each pod's shim as the pod becomes ready (none: the first container starts it). */
  shims?: PodShims;
  log: Logger;
}

/** Undo steps of a half-built pod, run in reverse when a later step fails. */
/** Replaces both values (an absent one is cleared, as kubelet sends the whole state). */
function setPodResources(spec: PodSpec, r: PodResources): void {
  if (r.overhead) spec.overhead = r.overhead;
  else delete spec.overhead;
  if (r.resources) spec.resources = r.resources;
  else delete spec.resources;
}

/** How long after a pod's last task went its shim is started again (see warmShim). */
const REWARM_DELAY_MS = 500;

/** Pod lifecycle as GetContainerEvents reports it for sandboxes (containerd does the same). */
export type PodEventKind = 'created' | 'started' | 'stopped' | 'deleted';
export interface PodEvent {
  kind: PodEventKind;
  pod: PodRecord;
  at: number;
}

export class PodController {
  readonly store: PodStore;
  private readonly listeners: Listeners<PodEvent>;
  private readonly inFlight = new Map<string, Promise<string>>();
  /** Serialises stop/remove per pod so concurrent calls cannot interleave. */
  private readonly locks = new KeyedLock();
  /** Pods inside StopPodSandbox: their containers' exits warm no new shim. */
  private readonly stopping = new Set<string>();
  private readonly defaultParent: DefaultCgroupParent;
  private containers: PodContainerHooks = { stopAll: async () => undefined, removeAll: async () => undefined };

  constructor(private readonly opts: PodControllerOptions) {
    this.store = new PodStore(opts.podsDir, opts.log);
    this.defaultParent = new DefaultCgroupParent(opts.defaultCgroupParent, opts.cgroupParentMarker);
    this.listeners = new Listeners((err) => opts.log.warn({ err: errorMessage(err) }, 'pod event listener failed'));
  }

  onEvent(listener: (e: PodEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  private emit(kind: PodEventKind, pod: PodRecord): void {
    this.listeners.emit({ kind, pod, at: nowNanos() });
  }

  private nri: NriHooks = NO_NRI;

  /** Makes a pod cgroup (cgroupfs); below the default parent, marks the parent as crisp's if it makes it. */
  private makePodCgroup(path: string): Promise<boolean> {
    return this.defaultParent.holds(path) ? this.defaultParent.withParent(() => createCgroup(path)) : createCgroup(path);
  }

  /** Removes a pod cgroup crisp made, and the default parent with the last pod below it. */
  private async removePodCgroup(path: string): Promise<void> {
    const killed = await removeCgroup(path);
    if (killed.length > 0) this.opts.log.warn({ cgroup: path, pids: killed }, 'killed processes left in the pod cgroup after its containers were removed');
    if (this.defaultParent.holds(path)) await this.defaultParent.releaseIfUnused();
  }

  setContainerHooks(hooks: PodContainerHooks): void {
    this.containers = hooks;
  }

  setNri(nri: NriHooks): void {
    this.nri = nri;
  }

  private withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, fn);
  }

  /**
   * RunPodSandbox. A retry of an identical request (kubelet timed out waiting) joins the one in flight
   * or gets the finished, READY pod instead of a "name reserved" error.
   */
  run(spec: PodSpec): Promise<string> {
    const name = podFullName(spec.metadata);
    const running = this.inFlight.get(name);
    if (running) return running;
    const existing = this.store.idByName(name);
    if (existing) {
      const pod = this.store.get(existing);
      if (pod?.state === 'ready') return Promise.resolve(existing);
      return Promise.reject(alreadyExists(`pod sandbox name "${name}" is reserved by pod ${existing} (${pod?.state ?? 'being removed'}); remove it first`));
    }
    const p = this.create(spec).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, p);
    return p;
  }

  private async create(spec: PodSpec): Promise<string> {
    const id = randomBytes(32).toString('hex');
    const name = podFullName(spec.metadata);
    const log = this.opts.log.child({ pod: id.slice(0, 12), name });
    const undo = new UndoStack();
    const started = Date.now();
    this.store.reserveName(name, id);
    undo.push('name reservation', async () => this.store.releaseName(name, id));
    const rec: JournaledPod = {
      id,
      spec,
      state: 'notready',
      createdAt: nowNanos(),
      dir: this.store.podDir(id),
      runDir: join(this.opts.runDir, id),
      pins: {},
      files: { hostname: '', hosts: '', resolvConf: '' },
      ips: [],
      networkAttached: false,
      cgroup: { path: '', created: false },
    };
    const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        throw withContext(`pod ${id.slice(0, 12)} (${spec.metadata.namespace}/${spec.metadata.name}): ${what}`, err);
      }
    };
    try {
      // kubelet makes the log directory too; making it here keeps direct CRI clients working.
      if (spec.logDirectory) await mkdir(spec.logDirectory, { recursive: true, mode: 0o755 });
      await makeDir(rec.dir, 0o700);
      undo.push('pod directory', () => rm(rec.dir, { recursive: true, force: true }));
      const nsDir = join(rec.runDir, 'ns');
      const ns = spec.namespaces;
      const podNet = ns.network === 'pod';
      const hostname = podNet && spec.hostname ? spec.hostname : osHostname();
      // hostNetwork + hostIPC without a user namespace: nothing of the pod's own to pin.
      const pinAny = podNet || ns.ipc === 'pod' || ns.userns !== undefined;
      const shm = ns.ipc === 'pod' ? join(rec.runDir, 'shm') : undefined;
      if (shm) rec.shmPath = shm;
      const cgroupPath = spec.cgroupParent || (this.opts.cgroupDriver === 'systemd' ? `crisp-${id.slice(0, 12)}.slice` : `${this.opts.defaultCgroupParent}/crisp-${id}`);
      // Journaled as ours only if it does not exist yet (kubelet's own parent is never removed).
      const ownCgroup = this.opts.cgroupDriver === 'cgroupfs' && !(await cgroupExists(cgroupPath));
      rec.cgroup = { path: cgroupPath, created: ownCgroup };
      // From here on a crash leaves a journal the next start takes apart (recover()). It names the
      // cgroup and /dev/shm before they exist, so the pins, the cgroup and the tmpfs are made at the
      // same time; the pins need no entry (they are found in the ns dir).
      await writeJournal(rec);
      await mkdir(nsDir, { recursive: true, mode: 0o700 });
      undo.push('run directory', () => rm(rec.runDir, { recursive: true, force: true }));

      undo.push('pinned namespaces', () => unpinNamespaces(nsDir));
      const [pinning, cgroup] = await Promise.allSettled([
        !pinAny ? {} : step('pinning namespaces', () => timePodStartPhase('namespaces', () =>
          pinNamespaces({
            dir: nsDir,
            net: podNet,
            // lo comes up inside the helper that makes the netns: no loopback plugin exec.
            loopbackUp: podNet,
            ipc: ns.ipc === 'pod',
            uts: podNet,
            ...(ns.userns ? { user: { uidMappings: ns.userns.uids, gidMappings: ns.userns.gids } } : {}),
            ...(podNet ? { hostname } : {}),
            // /dev/shm is mounted by the same helper run (a pod with its own IPC namespace always pins)
            ...(shm ? { shm: { path: shm, sizeBytes: spec.shmSize } } : {}),
          })),
        ),
        this.opts.cgroupDriver === 'cgroupfs' ? step(`creating cgroup ${cgroupPath}`, () => this.makePodCgroup(cgroupPath)) : false,
      ]);
      // Whatever worked is undone if another part failed (a failed pin has undone itself, shm included).
      if (cgroup.status === 'fulfilled' && cgroup.value) undo.push('cgroup', () => this.removePodCgroup(cgroupPath));
      if (shm && pinning.status === 'fulfilled') undo.push('shm', () => unmountIfMounted(shm));
      for (const r of [pinning, cgroup]) if (r.status === 'rejected') throw r.reason;
      rec.cgroup = { path: cgroupPath, created: cgroup.status === 'fulfilled' && cgroup.value };
      rec.pins = pinning.status === 'fulfilled' ? { ...pinning.value } : {};

      if (Object.keys(spec.sysctls).length > 0) {
        await step('applying sysctls', () =>
          applySysctls({ ...(rec.pins.net ? { netns: rec.pins.net } : {}), ...(rec.pins.ipc ? { ipcns: rec.pins.ipc } : {}) }, spec.sysctls),
        );
      }

      const userns = this.opts.userns;
      if (shm && ns.userns && userns) await step('handing /dev/shm to the pod root', () => userns.preparePodShm(rec, shm));

      if (ns.pid === 'pod') {
        const holder = await step('starting the pod pid-namespace holder', () =>
          startPodPidNamespace(nsDir, rec.pins.user),
        );
        undo.push('pid namespace', () => stopPodPidNamespace(nsDir, holder.pid));
        rec.pins.pid = holder.path;
        rec.pidInit = holder.pid;
        await writeJournal(rec);
      }

      if (podNet) {
        const netns = rec.pins.net!;
        rec.networkAttempted = true;
        await writeJournal(rec);
        const added = await step('CNI ADD', () => timePodStartPhase('cni', () =>
          this.opts.network.add({
            containerId: id,
            netnsPath: netns,
            podName: spec.metadata.name,
            podNamespace: spec.metadata.namespace,
            podUid: spec.metadata.uid,
            portMappings: spec.portMappings,
            ...(spec.dns ? { dns: spec.dns } : {}),
            ...(this.opts.podCidr() ? { podCidr: this.opts.podCidr() } : {}),
          })),
        );
        undo.push('CNI attachment', () => this.opts.network.del({ containerId: id, netnsPath: netns }));
        rec.ips = added.podIps;
        rec.networkAttached = true;
      }

      rec.files = await step('writing /etc files', () => writePodFiles(rec.dir, hostname, rec.ips, spec.dns));
      if (ns.userns && userns) {
        undo.push('idmapped pod files', () => userns.releasePod(rec));
        await step('idmapping the pod files', () => userns.preparePodFiles(rec));
      }
      rec.state = 'ready';
      // Plugins see the pod before anyone can list it or create containers in it.
      await step('NRI RunPodSandbox', () => timePodStartPhase('nri', () => this.nri.runPodSandbox(rec)));
      delete rec.networkAttempted;
      await step('saving pod record', () => this.store.save(rec));
      await removeJournal(rec.dir);
      log.info({ ms: Date.now() - started, ips: rec.ips.map((i) => i.ip) }, 'pod sandbox ready');
      this.emit('created', rec);
      this.emit('started', rec);
      // The pod's shim starts as the answer goes out, beside kubelet's CreateContainer, so that the
      // first StartContainer finds it; started inside RunPodSandbox it competed with CNI for the CPU.
      this.opts.shims?.warm(id);
      return id;
    } catch (err) {
      await undo.unwind(log, `cleanup after failed RunPodSandbox of pod ${id.slice(0, 12)}`);
      throw err;
    }
  }

  /**
   * Settles once the pod's warm shim, if one is starting, serves: StartContainer waits for it rather
   * than have containerd start the shim a second time (its start for the task would find the group's
   * socket not yet bound and run the whole shim start-up; with the socket served it only joins).
   */
  shimReady(podId: string): Promise<void> {
    return this.opts.shims?.ready(podId) ?? Promise.resolve();
  }

  /**
   * A warm shim for a ready pod whose shim has gone (containerd ends it with the pod's last task), so
   * the next StartContainer does not pay for one; not for a pod being stopped.
   */
  warmShim(podId: string): void {
    // Without warm shims there is nothing to start again: no timer per container exit.
    if (!this.opts.shims?.warmsAhead) return;
    // Later, not at once: kubelet stops a pod's containers right before StopPodSandbox, and a shim
    // started in between would only be shut down again. Soon enough for the next init container, which
    // kubelet starts on its next pod sync (its PLEG relists every second); a restarted container comes
    // after a back-off of 10 s.
    setTimeout(() => {
      const pod = this.store.get(podId);
      if (pod?.state !== 'ready' || this.stopping.has(podId)) return;
      this.opts.shims?.warm(podId, { afterShimExit: true });
    }, REWARM_DELAY_MS).unref();
  }

  /** StopPodSandbox: stop the pod's containers, release its network. Idempotent; unknown ids are fine. */
  async stop(id: string): Promise<void> {
    const pod = this.store.find(id);
    if (!pod) return;
    this.stopping.add(pod.id);
    try {
      await this.stopLocked(pod);
    } finally {
      this.stopping.delete(pod.id);
    }
  }

  private async stopLocked(pod: PodRecord): Promise<void> {
    await this.withLock(pod.id, async () => {
      await this.containers.stopAll(pod.id);
      if (pod.networkAttached) {
        await this.opts.network.del({ containerId: pod.id, ...(pod.pins.net ? { netnsPath: pod.pins.net } : {}) }).catch((err: unknown) => {
          throw withContext(`pod ${pod.id.slice(0, 12)}: CNI DEL`, err);
        });
        pod.networkAttached = false;
      }
      if (pod.pidInit !== undefined) {
        await stopPodPidNamespace(join(pod.runDir, 'ns'), pod.pidInit);
        pod.pidInit = undefined;
      }
      // No container starts in a stopped pod: its shim goes once it serves none.
      await this.opts.shims?.retire(pod.id).catch((err: unknown) => this.opts.log.warn({ pod: pod.id.slice(0, 12), err: errorMessage(err) }, 'retiring the pod shim failed'));
      if (pod.state !== 'notready') {
        pod.state = 'notready';
        await this.nri.stopPodSandbox(pod).catch((err: unknown) => this.opts.log.warn({ pod: pod.id.slice(0, 12), err: errorMessage(err) }, 'NRI StopPodSandbox failed'));
        this.opts.log.info({ pod: pod.id.slice(0, 12) }, 'pod sandbox stopped');
        this.emit('stopped', pod);
      }
      await this.store.save(pod);
    });
  }

  /**
   * Undoes a RunPodSandbox that crispd did not live to finish, from its journal: every step is tried;
   * the journal stays for the next start if one fails.
   */
  private async takeApart(pod: JournaledPod): Promise<void> {
    const log = this.opts.log.child({ pod: pod.id.slice(0, 12) });
    const steps: [string, () => Promise<unknown>][] = [];
    if (pod.runDir) {
      const nsDir = join(pod.runDir, 'ns');
      const netns = join(nsDir, 'net');
      if (pod.networkAttempted) steps.push(['CNI DEL', () => this.opts.network.del({ containerId: pod.id, ...(existsSync(netns) ? { netnsPath: netns } : {}) })]);
      if (pod.pidInit !== undefined) steps.push(['pid namespace holder', () => stopPodPidNamespace(nsDir, pod.pidInit!)]);
      steps.push(['/dev/shm', () => unmountIfMounted(join(pod.runDir, 'shm'))]);
      const userns = this.opts.userns;
      if (pod.spec?.namespaces?.userns && userns) steps.push(['idmapped pod files', () => userns.releasePod(pod)]);
      steps.push(['pinned namespaces', () => unpinNamespaces(nsDir)]);
    }
    if (pod.cgroup?.created) steps.push(['cgroup', () => this.removePodCgroup(pod.cgroup.path)]);
    const shims = this.opts.shims;
    if (shims) steps.push(['pod shim', () => shims.forget(pod.id)]);
    let failed = false;
    for (const [what, run] of steps) {
      try {
        await run();
      } catch (err) {
        failed = true;
        log.warn({ step: what, err: errorMessage(err) }, 'undoing a pod whose creation was interrupted: step failed; retried at the next start');
      }
    }
    if (failed) return;
    // Only once nothing is mounted below them: a recursive rm would otherwise walk into a mount.
    if (pod.runDir) await rm(pod.runDir, { recursive: true, force: true });
    await rm(pod.dir, { recursive: true, force: true });
    log.info({ name: pod.spec ? podFullName(pod.spec.metadata) : undefined }, 'pod whose creation was interrupted by a crash: taken apart');
  }

  /** RemovePodSandbox: stop, remove containers, unpin everything, delete state. Idempotent. */
  async remove(id: string): Promise<void> {
    const pod = this.store.find(id);
    if (!pod) return;
    await this.stop(pod.id);
    await this.withLock(pod.id, async () => {
      if (!this.store.get(pod.id)) return;
      await this.containers.removeAll(pod.id);
      await this.opts.shims?.forget(pod.id);
      if (pod.shmPath) await unmountIfMounted(pod.shmPath);
      // Before the run dir goes: a recursive rm would otherwise walk into the idmapped pod dir.
      await this.opts.userns?.releasePod(pod);
      await unpinNamespaces(join(pod.runDir, 'ns'));
      if (pod.cgroup.created) await this.removePodCgroup(pod.cgroup.path);
      await rm(pod.runDir, { recursive: true, force: true });
      await this.nri.removePodSandbox(pod).catch((err: unknown) => this.opts.log.warn({ pod: pod.id.slice(0, 12), err: errorMessage(err) }, 'NRI RemovePodSandbox failed'));
      await this.store.delete(pod);
      this.opts.log.info({ pod: pod.id.slice(0, 12) }, 'pod sandbox removed');
      this.emit('deleted', pod);
    });
  }

  /**
   * UpdatePodSandboxResources: records the pod's new overhead and resources after NRI plugins agreed.
   * Like containerd, crisp applies nothing to a cgroup here: kubelet sizes the pod cgroup itself and
   * resizes containers with UpdateContainerResources; the pod values are for status and plugins.
   */
  async updateResources(id: string, update: PodResources): Promise<void> {
    const pod = this.store.require(id);
    const what = `pod ${pod.id.slice(0, 12)} (${pod.spec.metadata.namespace}/${pod.spec.metadata.name})`;
    await this.withLock(pod.id, async () => {
      if (!this.store.get(pod.id)) throw notFound(`${what} was removed`);
      if (pod.state !== 'ready') throw failedPrecondition(`${what} is not ready (${pod.notReadyReason ?? 'stopped'}); its resources cannot change`);
      // A plugin that refuses leaves the record as it was.
      await this.nri.updatePodSandbox(pod, update);
      const before: PodResources = { overhead: pod.spec.overhead, resources: pod.spec.resources };
      setPodResources(pod.spec, update);
      try {
        await this.store.save(pod);
      } catch (err) {
        setPodResources(pod.spec, before);
        throw withContext(`${what}: saving new resources`, err);
      }
      // The update happened; a plugin failing the notification cannot undo it (containerd only logs too).
      await this.nri.postUpdatePodSandbox(pod).catch((err: unknown) => this.opts.log.warn({ pod: pod.id.slice(0, 12), err: errorMessage(err) }, 'NRI PostUpdatePodSandbox failed'));
      this.opts.log.info({ pod: pod.id.slice(0, 12) }, 'pod sandbox resources updated');
    });
  }

  get(id: string): PodRecord {
    return this.store.require(id);
  }

  /** How a user-namespace pod's files, volumes and rootfs are remapped (verbose status); null otherwise. */
  usernsInfo(pod: PodRecord): Record<string, unknown> | null {
    return this.opts.userns?.describePod(pod) ?? null;
  }

  list(): PodRecord[] {
    return this.store.list();
  }

  /**
   * After a crispd restart: every persisted pod comes back. A READY pod whose pins vanished (the host
   * rebooted and /run was cleared) is marked NOTREADY with the reason.
   */
  async recover(): Promise<PodRecord[]> {
    for (const half of await unfinishedPods(this.store.dir, POD_RECORD_FILE)) await this.takeApart(half);
    const pods = await this.store.load();
    for (const pod of pods) {
      if (pod.state !== 'ready') continue;
      const lost = Object.entries(pod.pins).filter(([, p]) => p && !existsSync(p)).map(([k]) => k);
      const initGone = pod.pidInit !== undefined && !processAlive(pod.pidInit);
      if (lost.length > 0 || initGone) {
        pod.state = 'notready';
        pod.notReadyReason = lost.length > 0 ? `pinned namespaces lost: ${lost.join(', ')}` : 'pid namespace holder exited';
        await this.store.save(pod);
        this.opts.log.warn({ pod: pod.id.slice(0, 12), reason: pod.notReadyReason }, 'recovered pod is not ready');
      }
    }
    await this.opts.shims
      ?.recover(new Set(pods.filter((p) => p.state === 'ready').map((p) => p.id)), new Set(pods.map((p) => p.id)))
      .catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'recovering warm pod shims failed'));
    this.opts.log.info({ pods: pods.length }, 'pods recovered');
    return pods;
  }
}

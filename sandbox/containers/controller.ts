// Container lifecycle over containerd: create (rootfs snapshot + OCI spec + containerd record), start
// (task with shim-side logging, so output keeps flowing while crispd restarts), stop, remove, exit and
// OOM tracking from containerd's events, and recovery after a restart.
import { makeDir } from '../../common/make-dir.js';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join, normalize, relative, isAbsolute } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { Listeners } from '../../common/listeners.js';
import { UndoStack, allSteps } from '../../common/undo-stack.js';
import { KeyedLock } from '../../common/keyed-lock.js';
import { CrispError, alreadyExists, failedPrecondition, invalidArgument, errorMessage, withContext, isENOENT, isCrispError } from '../../common/errors.js';
import { nowNanos, sleep } from '../../common/time.js';
import type { ContainerdRuntime, ExitEvent, RootfsMount } from '../../backend/containerd/runtime.js';
import type { ImageService } from '../../backend/images/service.js';
import type { PodController } from '../pods/controller.js';
import type { PodRecord } from '../pods/types.js';
import { RecordStore } from '../record-store.js';
import { containerCgroupsPath, type CgroupDriver } from '../cgroups.js';
import { buildOciSpec, stopSignalFor, signalNumberOf, type OciHostFeatures } from './oci-spec.js';
import { resolveUser } from './user.js';
import { ImageUserFilesCache } from './image-user-files.js';
import { oomKills } from './oom-kills.js';
import { loadLocalhostProfile } from './seccomp-default.js';
import { resolveDevices, allHostDevices } from './devices.js';
import { loggerUri, reopenLog, readLoggerAck, startFifoLogger, stopLogger } from '../../native/logger.js';
import type { ContainerRecord, ContainerSpec } from './types.js';
import { NO_NRI, type NriHooks } from '../nri-hooks.js';
import { execSync, type ExecSyncResult } from './exec-sync.js';
import { CpuRate } from './stats.js';
import { makeFifos, openFifoWriter } from '../../common/fifo.js';
import type { Socket } from 'node:net';
import type { ResourceSpec } from './types.js';
import { dropUnsupportedHugepages, linuxResources, mergeLinuxResources, mergeResourceUpdate } from './oci-spec.js';
import type { UsernsMounts } from '../userns/userns-mounts.js';
import { withoutPodMappings } from '../userns/idmapped-volumes.js';
import { PreparedMounts } from './prepared-mounts.js';
import { checkMountPropagation } from './mount-propagation.js';
import { sweepExecLeftovers } from './exec-leftovers.js';
import { loadedProfiles } from '../apparmor.js';
import { applyCdiDevices, cdiDevicesFromAnnotations, loadCdiRegistry, type CdiRegistry } from './cdi.js';
import { CDI_ANNOTATION } from './nri-adjust.js';
import type { OciSpec } from './oci-types.js';
import { startPodStartPhase } from '../../common/operation-metrics.js';

export type ContainerEventKind = 'created' | 'started' | 'stopped' | 'deleted';
export interface ContainerEvent {
  kind: ContainerEventKind;
  container: ContainerRecord;
  at: number;
}

export type HostFeatures = OciHostFeatures;

export interface ContainerControllerOptions {
  /** One runc v2 shim group for every container (config `shim_grouping = "node"`); undefined: one per pod. */
  shimGroup?: string;
  /** <root>/containers */
  dir: string;
  runtime: ContainerdRuntime;
  images: ImageService;
  pods: PodController;
  cgroupDriver: CgroupDriver;
  host: HostFeatures;
  /** Scratch space for exec output (<state>/exec). */
  execDir: string;
  /** Per-container runtime state (<state>/containers): prepared mount sources. */
  runDir: string;
  /** Where CDI spec files are looked up (default /etc/cdi, /var/run/cdi). */
  cdiSpecDirs?: string[];
  /** Idmapped rootfs and volumes for user-namespace pods; without it such pods' containers are refused. */
  userns?: UsernsMounts;
  log: Logger;
}

/** The containerd label that marks a container as crisp's (with its pod id). */
const POD_LABEL = 'io.crisp.pod';
/** Which crispd made it (its records directory): another crispd on the same containerd namespace keeps its own. */
const OWNER_LABEL = 'io.crisp.records';

/** Bound of the console log kept for containers without a CRI log_path (attach reads it). */
const CONSOLE_LOG_MAX_BYTES = 1024 * 1024;

const nameKey = (podId: string, spec: ContainerSpec) => `${podId}/${spec.metadata.name}_${spec.metadata.attempt}`;


/** Overlay upper and lower dirs, top-most first, to read image files without mounting. */
export function layerDirs(mounts: RootfsMount[]): string[] {
  const m = mounts[0];
  if (!m) return [];
  if (m.type === 'bind') return [m.source];
  const opt = (k: string) => m.options.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
  return [opt('upperdir'), ...(opt('lowerdir')?.split(':') ?? [])].filter((d): d is string => Boolean(d));
}

export class ContainerController {
  readonly store: RecordStore<ContainerRecord>;
  private readonly oom = new Set<string>();
  private readonly earlyExits = new Map<string, ExitEvent>();
  /** Exits being recorded (state, task delete, NRI StopContainer), by container id. */
  private readonly exiting = new Map<string, Promise<void>>();
  /** Write ends of the stdin FIFOs of containers created with stdin, held so stdin never sees EOF early. */
  private readonly stdins = new Map<string, Socket>();
  private readonly listeners: Listeners<ContainerEvent>;
  private readonly prepared: PreparedMounts;
  private readonly locks = new KeyedLock();
  private readonly events = new AbortController();
  readonly cpuRate = new CpuRate();
  /** /etc/passwd and /etc/group per image id, for the user lookup of CreateContainer. */
  private readonly userFiles = new ImageUserFilesCache();
  /** Rootfs mounts returned by CreateContainer's snapshot Prepare, kept for StartContainer (in memory only). */
  private readonly createdRootfs = new Map<string, RootfsMount[]>();
  /** Containers whose task the exit handling deleted: RemoveContainer has no task left to delete. */
  private readonly taskDeleted = new Set<string>();

  private nri: NriHooks = NO_NRI;

  setNri(nri: NriHooks): void {
    this.nri = nri;
  }

  constructor(private readonly opts: ContainerControllerOptions) {
    // Not fsynced: a power cut ends every container anyway, and a record lost with it leaves only
    // containerd objects labelled as crisp's, which recovery removes (removeOrphans). Pod records stay
    // durable: they name the CNI attachment and cgroup that must be released after a reboot.
    this.store = new RecordStore<ContainerRecord>(opts.dir, 'container', 'container.json', (c) => nameKey(c.podId, c.spec), opts.log, false);
    this.listeners = new Listeners((err) => opts.log.warn({ err: errorMessage(err) }, 'container event listener failed'));
    this.prepared = new PreparedMounts(opts.runDir, {
      image: (ref) => opts.images.require(ref),
      viewSnapshot: (key, parent) => opts.runtime.viewSnapshot(key, parent),
      removeSnapshot: (key) => opts.runtime.removeRootfs(key),
    });
  }

  onEvent(listener: (e: ContainerEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  private emit(kind: ContainerEventKind, container: ContainerRecord): void {
    this.listeners.emit({ kind, container, at: nowNanos() });
  }

  /** Containers inside StartContainer (their task may exist, created but not yet started). */
  private readonly starting = new Set<string>();

  private withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, fn);
  }

  get(id: string): ContainerRecord {
    return this.store.require(id);
  }

  list(): ContainerRecord[] {
    return this.store.list();
  }

  byPod(podId: string): ContainerRecord[] {
    return this.store.list().filter((c) => c.podId === podId);
  }

  /** The absolute log path, refusing anything that escapes the pod's log directory. */
  private logPathFor(pod: PodRecord, spec: ContainerSpec): string {
    if (!spec.logPath) return '';
    if (!pod.spec.logDirectory) throw invalidArgument('config.log_path: the pod has no log_directory');
    if (isAbsolute(spec.logPath)) throw invalidArgument(`config.log_path: "${spec.logPath}" must be relative to the pod log directory`);
    const full = normalize(join(pod.spec.logDirectory, spec.logPath));
    const rel = relative(pod.spec.logDirectory, full);
    if (rel.startsWith('..') || isAbsolute(rel) || rel === '') {
      throw invalidArgument(`config.log_path: "${spec.logPath}" escapes the pod log directory`);
    }
    return full;
  }

  private async checkMounts(spec: ContainerSpec): Promise<void> {
    for (const [i, m] of spec.mounts.entries()) {
      if (!isAbsolute(m.containerPath)) throw invalidArgument(`config.mounts[${i}].container_path: "${m.containerPath}" must be absolute`);
      if (m.image) continue;
      try {
        await stat(m.hostPath);
      } catch (err) {
        if (isENOENT(err)) throw invalidArgument(`config.mounts[${i}].host_path: "${m.hostPath}" does not exist`);
        throw err;
      }
    }
    await checkMountPropagation(spec.mounts);
  }

  /** CreateContainer. Every step has its undo, run in reverse if a later one fails. */
  async create(podId: string, spec: ContainerSpec): Promise<string> {
    const pod = this.opts.pods.get(podId);
    if (pod.state !== 'ready') throw failedPrecondition(`pod sandbox ${pod.id} is not ready (${pod.notReadyReason ?? 'stopped'}); cannot create containers in it`);
    const key = nameKey(pod.id, spec);
    const holder = this.store.idByName(key);
    if (holder) throw alreadyExists(`container "${spec.metadata.name}" (attempt ${spec.metadata.attempt}) already exists in pod ${pod.id} as ${holder}`);
    const userns = this.usernsFor(pod);
    userns?.requireSupport(pod);
    // The name is reserved before the first await, so two concurrent creates cannot both have it.
    const id = randomBytes(32).toString('hex');
    this.store.reserveName(key, id);
    const undo = new UndoStack();
    undo.push('name', async () => this.store.releaseName(key, id));
    const log = this.opts.log.child({ container: id.slice(0, 12), pod: pod.id.slice(0, 12), name: spec.metadata.name });
    try {
      const logPath = this.logPathFor(pod, spec);
      const dir = this.store.recordDir(id);
      undo.push('dir', () => rm(dir, { recursive: true, force: true }));
      // Independent look-ups and the record directory, at once (all finished before any undo runs).
      const [image] = await allSteps([this.opts.images.require(spec.image), this.checkMounts(spec), makeDir(dir, 0o700)]);
      const cgroupsPath = containerCgroupsPath(this.opts.cgroupDriver, pod.cgroup.path, id);
      const imageRef = image.repoDigests[0] ?? image.repoTags[0] ?? image.id;

      // The containerd record goes first: it references the snapshot key, so GC leaves the rootfs alone.
      // With the image's user files known, the spec is built first and the record is created with it
      // (two containerd writes, as containerd's CRI does); otherwise the files are read from the
      // prepared rootfs and the spec is set afterwards (a third write).
      const createRecord = (oci: object) =>
        this.opts.runtime.createContainer(id, {
          spec: oci,
          image: imageRef,
          labels: { 'io.cri-containerd.kind': 'container', [POD_LABEL]: pod.id, 'io.crisp.name': spec.metadata.name, [OWNER_LABEL]: this.opts.dir },
        });
      const createWithRootfs = async (oci: object) => {
        await createRecord(oci);
        undo.push('containerd container', () => this.opts.runtime.deleteContainer(id));
        const mounts = await this.opts.runtime.prepareRootfs(id, image.topChainId);
        undo.push('rootfs', () => this.opts.runtime.removeRootfs(id));
        return mounts;
      };
      const knownFiles = this.userFiles.peek(image.id);
      let rootfs = knownFiles ? undefined : await createWithRootfs({});
      const files = knownFiles ?? (await this.userFiles.get(image.id, layerDirs(rootfs!)));
      const user = resolveUser({ security: spec.security, imageUser: image.config.config?.User ?? '', passwd: files.passwd, group: files.group });
      const devices = spec.security.privileged ? await allHostDevices() : await resolveDevices(spec.devices);
      // Recursive read-only binds and image volumes are built on the host; the spec binds those.
      undo.push('prepared mounts', () => this.prepared.release(id, spec.mounts));
      const podUserns = userns ? pod.spec.namespaces.userns : undefined;
      const mounts = await this.prepared.prepare(id, podUserns ? withoutPodMappings(spec.mounts, podUserns) : spec.mounts);
      // User-namespace pods bind idmapped views of their pod files and volumes instead of the originals.
      let mountSourceOverrides: Record<string, string> | undefined;
      if (userns) {
        undo.push('userns mounts', () => userns.releaseContainer(id));
        mountSourceOverrides = await userns.prepareContainerMounts(id, pod, mounts);
      }
      const aa = spec.security.apparmor;
      if (aa?.kind === 'localhost' && this.opts.host.apparmor) {
        const name = aa.localhostRef.replace(/^localhost\//, '');
        if (name && !(await loadedProfiles()).has(name)) {
          throw invalidArgument(`config.linux.security_context.apparmor: profile "${name}" is not loaded (apparmor_parser it first)`);
        }
      }
      const seccompProfile =
        spec.security.seccomp?.kind === 'localhost' && !spec.security.privileged
          ? await loadLocalhostProfile(spec.security.seccomp.localhostRef)
          : undefined;
      const built = buildOciSpec({
        id,
        spec: { ...spec, mounts },
        pod,
        image: image.config,
        user,
        cgroupsPath,
        host: this.opts.host,
        ...(this.opts.shimGroup ? { shimGroup: this.opts.shimGroup } : {}),
        devices,
        ...(seccompProfile ? { seccompProfile } : {}),
        ...(mountSourceOverrides ? { mountSourceOverrides } : {}),
      });
      // CDI devices, named in the request or by kubelet's cdi.k8s.io/* annotations.
      const cdiNames = [
        ...spec.cdiDevices.map((name, i) => ({ name, field: `config.CDI_devices[${i}].name` })),
        ...cdiDevicesFromAnnotations(spec.annotations).map((name) => ({ name, field: 'config.annotations[cdi.k8s.io/*]' })),
      ];
      // The spec files are read once per create, and only when a device is asked for.
      let cdiRegistry: CdiRegistry | undefined;
      const cdi = async () => (cdiRegistry ??= await loadCdiRegistry(this.opts.cdiSpecDirs));
      if (cdiNames.length > 0) await applyCdiDevices(built, cdiNames, await cdi());
      const rec: ContainerRecord = {
        id,
        podId: pod.id,
        spec,
        imageId: image.id,
        imageRef,
        state: 'created',
        createdAt: nowNanos(),
        startedAt: 0,
        finishedAt: 0,
        exitCode: 0,
        reason: '',
        message: '',
        logPath,
        pid: 0,
        dir,
        user,
        imageStopSignal: stopSignalFor(spec, image.config),
        snapshotKey: id,
        cgroupsPath,
      };
      // NRI plugins adjust the spec between CRI and OCI; a plugin's refusal fails the create.
      const oci = await this.nri.createContainer(pod, rec, built as unknown as Record<string, unknown>);
      dropUnsupportedHugepages((oci.linux as { resources?: Record<string, unknown> } | undefined)?.resources, this.opts.host);
      // CDI devices NRI plugins asked for are resolved like the request's own.
      const applied = new Set(cdiNames.map((n) => n.name));
      const fromNri = ((oci.annotations as Record<string, string> | undefined)?.[CDI_ANNOTATION] ?? '')
        .split(',')
        .filter((n) => n && !applied.has(n));
      if (fromNri.length > 0) {
        await applyCdiDevices(oci as unknown as OciSpec, fromNri.map((name) => ({ name, field: 'NRI adjustment CDI_devices' })), await cdi());
      }
      await allSteps([
        rootfs ? this.opts.runtime.updateContainerSpec(id, oci) : createWithRootfs(oci).then((m) => (rootfs = m)),
        logPath ? mkdir(dirname(logPath), { recursive: true, mode: 0o755 }) : undefined,
      ]);
      await this.store.save(rec);
      this.createdRootfs.set(id, rootfs!);
      log.info({ image: imageRef }, 'container created');
      this.emit('created', rec);
      await this.nri.postCreateContainer(pod, rec).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'NRI PostCreateContainer failed'));
      return id;
    } catch (err) {
      await undo.unwind(log, `cleanup after failed CreateContainer ${spec.metadata.name}`);
      throw isCrispError(err) ? err : withContext(`creating container ${spec.metadata.name} in pod ${pod.id.slice(0, 12)}`, err);
    }
  }

  /** StartContainer: the task is created with the logger as its stdio, so logs never depend on crispd. */
  start(id: string): Promise<void> {
    const rec = this.get(id);
    return this.withLock(rec.id, async () => {
      // A retry after crispd died inside StartContainer: the task it started was adopted at recovery.
      if (rec.state === 'running') return;
      if (rec.state !== 'created') throw failedPrecondition(`container ${rec.id} is ${rec.state}, not created; it cannot be started`);
      const pod = this.opts.pods.get(rec.podId);
      if (pod.state !== 'ready') throw failedPrecondition(`pod sandbox ${pod.id} is not ready; cannot start containers in it`);
      const connections = this.opts.runtime.connectionCount();
      this.starting.add(rec.id);
      try {
        await this.nri.startContainer(pod, rec);
        const shimReady = this.opts.pods.shimReady(pod.id);
        const rootfs = await this.taskRootfs(rec, pod);
        const io = await this.taskIO(rec);
        await shimReady;
        const containerdPhase = startPodStartPhase('containerd');
        await this.opts.runtime.createTask(rec.id, io, rootfs);
        // runc has bound the prepared sources into the container's own mount namespace: the host's
        // copies go now, so they never hold a host path busy (an rmdir of a submount point would fail).
        await this.prepared.detachSources(rec.id);
        // The shim starts the container even if the logger died before it was ready: check it is there.
        if (io.stdout.startsWith('binary://')) await readLoggerAck(this.loggerFiles(rec).ackFile).catch((err: unknown) => {
          throw failedPrecondition(`the log writer for ${rec.logPath} did not start: ${errorMessage(err)}`);
        });
        if (rec.spec.stdin) await this.openStdinWriter(rec);
        rec.pid = await this.opts.runtime.startTask(rec.id);
        containerdPhase();
        rec.state = 'running';
        rec.startedAt = nowNanos();
        await this.store.save(rec);
        this.opts.log.info({ container: rec.id.slice(0, 12), pid: rec.pid }, 'container started');
        this.emit('started', rec);
        const early = this.earlyExits.get(rec.id);
        if (early) {
          this.earlyExits.delete(rec.id);
          void this.recordExit(rec, early.exitStatus, early.exitedAt).catch((err: unknown) =>
            this.opts.log.error({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'recording an early exit failed'),
          );
        }
        await this.nri.postStartContainer(pod, rec).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'NRI PostStartContainer failed'));
      } catch (err) {
        const cleanupFailed = (what: string) => (e: unknown) =>
          this.opts.log.warn({ container: rec.id.slice(0, 12), err: errorMessage(e) }, `after a failed start: ${what} failed`);
        await this.opts.runtime.deleteTask(rec.id).catch(cleanupFailed('deleting the task'));
        await stopLogger(this.loggerFiles(rec).pidFile).catch(cleanupFailed('stopping the logger'));
        await this.releaseUsernsMounts(rec);
        rec.state = 'exited';
        rec.exitCode = 128;
        rec.reason = 'StartError';
        rec.message = errorMessage(err);
        rec.finishedAt = nowNanos();
        await this.store.save(rec);
        this.emit('stopped', rec);
        // containerd restarted in the middle (a new connection to it was made): what it answered about
        // a task it lost is no verdict on the container; the caller may retry, as for any outage.
        if (this.opts.runtime.connectionCount() !== connections) {
          throw new CrispError('UNAVAILABLE', `starting container ${rec.id.slice(0, 12)}: containerd restarted during the start: ${errorMessage(err)}`);
        }
        throw withContext(`starting container ${rec.id.slice(0, 12)}`, err);
      } finally {
        this.starting.delete(rec.id);
      }
    });
  }

  /** StopContainer: the stop signal, then SIGKILL after `timeoutSeconds`. Idempotent; unknown ids are fine (CRI). */
  async stop(id: string, timeoutSeconds: number): Promise<void> {
    const rec = this.store.find(id);
    if (!rec || rec.state !== 'running') return;
    const signal = signalNumberOf(rec.imageStopSignal || 'SIGTERM');
    if (timeoutSeconds > 0) {
      await this.opts.runtime.kill(rec.id, signal);
      if (await this.waitExit(rec, timeoutSeconds * 1000)) return this.settle(rec);
    }
    await this.opts.runtime.kill(rec.id, signalNumberOf('SIGKILL'), { all: true });
    if (!(await this.waitExit(rec, 30_000))) throw failedPrecondition(`container ${rec.id} did not exit after SIGKILL within 30 s`);
    await this.settle(rec);
  }

  /**
   * Whether the task exited within `ms`. The exit handler may delete the task (and its shim) while
   * Wait is pending, which ends the call with "ttrpc: closed" or NOT_FOUND: the task's own state
   * then decides.
   */
  private async waitExit(rec: ContainerRecord, ms: number): Promise<boolean> {
    try {
      if (await this.opts.runtime.wait(rec.id, '', ms)) return true;
    } catch (err) {
      this.opts.log.debug({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'waiting for the task ended early; checking its state');
    }
    if (rec.state !== 'running' || this.exiting.has(rec.id)) return true;
    const task = await this.opts.runtime.getTask(rec.id);
    return !task || task.status === 'stopped';
  }

  /** Wait until the exit event handler has recorded the exit (it runs concurrently). */
  private async settle(rec: ContainerRecord): Promise<void> {
    for (let i = 0; i < 100 && rec.state === 'running' && !this.exiting.has(rec.id); i++) await sleep(10);
    if (rec.state === 'running' && !this.exiting.has(rec.id)) await this.reconcile(rec);
    // NRI plugins see StopContainer before anything that follows this stop (RemoveContainer).
    await this.exitHandled(rec.id);
  }

  /** RemoveContainer: force-stops a running container; idempotent. The log file stays (kubelet's). */
  async remove(id: string): Promise<void> {
    const rec = this.store.find(id);
    if (!rec) return;
    if (rec.state === 'running') await this.stop(rec.id, 0);
    // An exit being recorded finishes first: its StopContainer reaches NRI before RemoveContainer.
    await this.exitHandled(rec.id);
    await this.withLock(rec.id, async () => {
      if (!this.store.get(rec.id)) return;
      // The exit handling deleted the task already (as containerd's CRI does on the exit event).
      if (!this.taskDeleted.has(rec.id)) await this.opts.runtime.deleteTask(rec.id);
      // A FIFO-mode logger ends at the task's EOF; one whose task never came up is ended here.
      await stopLogger(this.loggerFiles(rec).pidFile);
      // Independent of each other once the task is gone; the record goes only after all of them, so a
      // failure (a mount left behind must fail the removal) leaves it for a retry, which redoes them.
      const done = await Promise.allSettled([
        (async () => {
          await this.opts.userns?.releaseContainer(rec.id);
          await this.prepared.release(rec.id, rec.spec.mounts);
        })(),
        this.opts.runtime.deleteContainer(rec.id),
        this.opts.runtime.removeRootfs(rec.snapshotKey),
      ]);
      const failed = done.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      await this.store.delete(rec);
      this.taskDeleted.delete(rec.id);
      this.createdRootfs.delete(rec.id);
      // An OOM event after the exit was recorded, or an early exit whose StartContainer then failed,
      // would otherwise stay for the life of the daemon.
      this.oom.delete(rec.id);
      this.earlyExits.delete(rec.id);
      this.cpuRate.forget(rec.id);
      this.stdins.get(rec.id)?.destroy();
      this.stdins.delete(rec.id);
      this.opts.log.info({ container: rec.id.slice(0, 12) }, 'container removed');
      this.emit('deleted', rec);
      const pod = this.opts.pods.store.get(rec.podId);
      if (pod) await this.nri.removeContainer(pod, rec).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'NRI RemoveContainer failed'));
    });
  }

  /** The userns mount maker for a user-namespace pod; undefined for other pods. */
  private usernsFor(pod: PodRecord): UsernsMounts | undefined {
    if (!pod.pins.user) return undefined;
    if (!this.opts.userns) throw failedPrecondition(`pod ${pod.id.slice(0, 12)} uses a user namespace, but user-namespace support is not set up in this daemon`);
    return this.opts.userns;
  }

  /** The snapshot's mounts, or for a userns pod the same overlay over idmapped (or chowned) layers. */
  private async taskRootfs(rec: ContainerRecord, pod: PodRecord): Promise<RootfsMount[]> {
    // The mounts of an active snapshot never change: the ones Prepare gave CreateContainer, unless
    // crispd restarted since.
    const mounts = this.createdRootfs.get(rec.id) ?? (await this.opts.runtime.rootfsMounts(rec.snapshotKey));
    this.createdRootfs.delete(rec.id);
    const userns = this.usernsFor(pod);
    return userns ? userns.taskRootfs(rec.id, pod, mounts) : mounts;
  }

  /** Once the task is gone: the idmapped layers and volumes of a userns container (none: no-op). */
  private async releaseUsernsMounts(rec: ContainerRecord): Promise<void> {
    await this.opts.userns?.releaseContainer(rec.id).catch((err: unknown) => {
      this.opts.log.warn({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'releasing userns mounts failed');
    });
  }

  private loggerFiles(rec: ContainerRecord): { pidFile: string; ackFile: string } {
    return { pidFile: join(rec.dir, 'logger.pid'), ackFile: join(rec.dir, 'logger.ack') };
  }

  /**
   * Where the container's output is written: its CRI log, or for a container created without a
   * log_path (critest, crictl) a bounded console log of crisp's own, so attach still shows output.
   */
  outputLog(rec: ContainerRecord): { logPath: string; maxBytes?: number } {
    return rec.logPath ? { logPath: rec.logPath } : { logPath: join(rec.dir, 'console.log'), maxBytes: CONSOLE_LOG_MAX_BYTES };
  }

  /**
   * The task's stdio. Without stdin (or with a tty) the shim starts crisp-logger itself (binary://).
   * containerd's shim gives a non-terminal task no stdin with binary:// output, so such a task gets
   * plain FIFOs, and crispd starts the logger on them, detached, before Tasks.Create.
   */
  private async taskIO(rec: ContainerRecord): Promise<{ stdin: string; stdout: string; stderr: string; terminal: boolean }> {
    const files = this.loggerFiles(rec);
    const terminal = rec.spec.tty;
    const stdin = rec.spec.stdin ? await this.freshFifo(join(rec.dir, 'stdin')) : '';
    const output = this.outputLog(rec);
    if (!stdin || terminal) {
      const out = loggerUri({ ...output, ...files, tty: terminal });
      return { stdin, stdout: out, stderr: out, terminal };
    }
    // A logger left by an earlier attempt (crispd died before Tasks.Create) would hold the FIFOs.
    await stopLogger(files.pidFile);
    const [stdout, stderr] = [await this.freshFifo(join(rec.dir, 'stdout')), await this.freshFifo(join(rec.dir, 'stderr'))];
    await startFifoLogger({
      ...output,
      ...files,
      stdoutFifo: stdout,
      stderrFifo: stderr,
      containerId: rec.id,
      diagnostics: join(rec.dir, 'logger.err'),
    });
    return { stdin, stdout, stderr, terminal };
  }

  /** A new, empty FIFO at path (an old one may still hold bytes of an earlier attempt). */
  private async freshFifo(path: string): Promise<string> {
    await rm(path, { force: true });
    await makeFifos(path);
    return path;
  }

  /** Where attach writes: the stdin FIFO's write end, opened once the shim reads it (again after a restart). */
  private async openStdinWriter(rec: ContainerRecord): Promise<void> {
    if (this.stdins.has(rec.id)) return;
    const writer = await openFifoWriter(join(rec.dir, 'stdin'));
    if (writer) this.stdins.set(rec.id, writer);
  }

  /** Where attach writes the user's input (undefined: the container has no stdin). */
  stdinWriter(id: string): Socket | undefined {
    return this.stdins.get(this.get(id).id);
  }

  /** stdin_once: the first attach that ends closes the container's stdin for good. */
  async closeStdin(id: string): Promise<void> {
    const rec = this.get(id);
    this.stdins.get(rec.id)?.destroy();
    this.stdins.delete(rec.id);
    if (rec.state === 'running') {
      await this.opts.runtime.closeStdin(rec.id, '').catch((err: unknown) => this.opts.log.debug({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'closing stdin: the task is gone'));
    }
  }

  /** ReopenContainerLog: the logger reopens the (rotated-away) path; returns once it has. */
  async reopenLog(id: string): Promise<void> {
    const rec = this.get(id);
    if (rec.state !== 'running') throw failedPrecondition(`container ${rec.id} is not running`);
    if (!rec.logPath) throw failedPrecondition(`container ${rec.id} has no log path`);
    await reopenLog({ ...this.loggerFiles(rec), timeoutMs: 5000 });
  }

  private async notifyStopped(rec: ContainerRecord): Promise<void> {
    const pod = this.opts.pods.store.get(rec.podId);
    if (pod) await this.nri.stopContainer(pod, rec).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'NRI StopContainer failed'));
  }

  /**
   * Record an exit once: concurrent callers (the event stream, a reconcile, StopContainer's settle) share
   * one run, and whoever needs the exit fully handled (task deleted, NRI StopContainer sent) awaits it.
   */
  private recordExit(rec: ContainerRecord, exitStatus: number, exitedAt: number): Promise<void> {
    const pending = this.exiting.get(rec.id);
    if (pending) return pending;
    if (rec.state === 'exited') return Promise.resolve();
    const run = this.finishExit(rec, exitStatus, exitedAt).finally(() => this.exiting.delete(rec.id));
    this.exiting.set(rec.id, run);
    return run;
  }

  /** Until an exit is fully handled; the handling's own failure is logged where it runs. */
  private async exitHandled(id: string): Promise<void> {
    await this.exiting.get(id)?.catch(() => undefined);
  }

  private async finishExit(rec: ContainerRecord, exitStatus: number, exitedAt: number): Promise<void> {
    // The cgroup's own OOM-kill counter decides at once; where it cannot be read (cgroup v1, a cgroup
    // systemd removed already) containerd's OOM event, which can trail the exit, gets a moment.
    if (!this.oom.has(rec.id)) {
      const kills = await oomKills(rec.cgroupsPath);
      if (kills === undefined) await sleep(20);
      else if (kills > 0) this.oom.add(rec.id);
    }
    if ((rec.state as ContainerRecord['state']) === 'exited') return;
    rec.state = 'exited';
    rec.exitCode = exitStatus;
    rec.finishedAt = exitedAt || nowNanos();
    rec.reason = this.oom.has(rec.id) ? 'OOMKilled' : exitStatus === 0 ? 'Completed' : 'Error';
    this.oom.delete(rec.id);
    this.stdins.get(rec.id)?.destroy();
    this.stdins.delete(rec.id);
    await this.store.save(rec);
    this.opts.log.info({ container: rec.id.slice(0, 12), exitCode: exitStatus, reason: rec.reason }, 'container exited');
    this.emit('stopped', rec);
    // The shim (and the logger behind it) go away once the task is deleted. Serialised with
    // RemoveContainer, which deletes the task too.
    await this.withLock(rec.id, async () => {
      await this.opts.runtime.deleteTask(rec.id);
      this.taskDeleted.add(rec.id);
      await this.releaseUsernsMounts(rec);
    }).catch((err: unknown) => {
      this.opts.log.warn({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'deleting exited task failed');
    });
    // The pod's last task is gone and with it the pod's shim: a restarted container finds a new one warm.
    if (!this.byPod(rec.podId).some((c) => c.state === 'running')) this.opts.pods.warmShim(rec.podId);
    await this.notifyStopped(rec);
  }

  private onExit(e: ExitEvent): void {
    if (e.processId !== e.containerId) return;
    const rec = this.store.get(e.containerId);
    if (!rec) return;
    // A process that exits at once can beat StartContainer's own bookkeeping: keep the exit for it.
    if (rec.state === 'created') {
      this.earlyExits.set(rec.id, e);
      return;
    }
    if (rec.state !== 'running') return;
    void this.recordExit(rec, e.exitStatus, e.exitedAt).catch((err: unknown) =>
      this.opts.log.error({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'recording exit failed'),
    );
  }

  /** Bring one record in line with containerd (after a restart or a broken event stream). */
  private async reconcile(rec: ContainerRecord): Promise<void> {
    if (rec.state === 'created') return this.adoptStartedTask(rec);
    if (rec.state !== 'running') return;
    const task = await this.opts.runtime.getTask(rec.id);
    if (task && task.status !== 'stopped') return;
    if (task) {
      await this.recordExit(rec, task.exitStatus, task.exitedAt);
    } else {
      rec.state = 'exited';
      rec.exitCode = 255;
      rec.reason = 'Unknown';
      rec.message = 'the task was gone when crispd looked (its exit status was lost)';
      rec.finishedAt = nowNanos();
      await this.store.save(rec);
      this.emit('stopped', rec);
      await this.notifyStopped(rec);
    }
  }

  /**
   * A record still "created" whose task exists: crispd died inside StartContainer. A running task is
   * the container running (its status comes from the task); an exited one is recorded as an exit; a
   * task created but never started is deleted, so a retried StartContainer starts afresh.
   */
  private async adoptStartedTask(rec: ContainerRecord): Promise<void> {
    const task = await this.opts.runtime.getTask(rec.id);
    if (!task) return;
    if (task.status === 'running' || task.status === 'paused') {
      rec.state = 'running';
      rec.pid = task.pid;
      rec.startedAt ||= nowNanos();
      await this.store.save(rec);
      this.opts.log.info({ container: rec.id.slice(0, 12), pid: task.pid }, 'container started before a crash of crispd: adopted as running');
      this.emit('started', rec);
      return;
    }
    if (task.status === 'stopped') {
      rec.state = 'running';
      await this.recordExit(rec, task.exitStatus, task.exitedAt);
      return;
    }
    await this.opts.runtime.deleteTask(rec.id);
    await stopLogger(this.loggerFiles(rec).pidFile);
  }

  /**
   * containerd containers this crispd made (label io.crisp.records = its records dir) with no record: crispd died inside
   * CreateContainer after the containerd record and before its own. Their task, container, rootfs
   * snapshot, prepared mounts and record directory go, so nothing outlives the interrupted call.
   */
  private async removeOrphans(): Promise<void> {
    const ids = await this.opts.runtime.containerIdsWithLabel(OWNER_LABEL, this.opts.dir);
    for (const id of ids) {
      if (this.store.get(id)) continue;
      try {
        await this.opts.runtime.kill(id, signalNumberOf('SIGKILL'), { all: true });
        await this.opts.runtime.deleteTask(id);
        await this.prepared.release(id, []);
        await this.opts.userns?.releaseContainer(id);
        await this.opts.runtime.deleteContainer(id);
        await this.opts.runtime.removeRootfs(id);
        await rm(this.store.recordDir(id), { recursive: true, force: true });
        this.opts.log.info({ container: id.slice(0, 12) }, 'container whose creation was interrupted by a crash: removed');
      } catch (err) {
        this.opts.log.warn({ container: id.slice(0, 12), err: errorMessage(err) }, 'removing a container left by an interrupted CreateContainer failed; retried at the next start');
      }
    }
  }

  /** Load records, reconcile them with containerd, and follow its events. */
  async recover(): Promise<void> {
    void sweepExecLeftovers(this.opts.execDir, this.opts.log).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'sweeping leftover exec directories failed'));
    const recs = await this.store.load();
    await this.removeOrphans().catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'looking for containers left by interrupted creates failed'));
    for (const rec of recs) {
      try {
        await this.reconcile(rec);
        if (rec.state === 'running' && rec.spec.stdin) await this.openStdinWriter(rec);
      } catch (err) {
        this.opts.log.warn({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'reconciling container failed');
      }
    }
    void this.opts.runtime.followEvents(
      {
        onExit: (e) => this.onExit(e),
        // Only crisp's own containers: the mark goes when the record does (remove).
        onOom: (id) => {
          if (this.store.get(id)) this.oom.add(id);
        },
        onReconnect: () => {
          for (const rec of this.store.list()) {
            // A StartContainer in flight has a created, not yet started task, which reconcile would take
            // for one left by a crash and delete under its feet; that call sorts out its own task.
            if (this.starting.has(rec.id)) continue;
            void this.reconcile(rec).catch((err: unknown) =>
              this.opts.log.warn({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'reconciling after the event stream reconnected failed'),
            );
          }
        },
      },
      this.opts.log,
      this.events.signal,
    );
    this.opts.log.info({ containers: recs.length, running: recs.filter((r) => r.state === 'running').length }, 'containers recovered');
  }

  close(): void {
    this.events.abort();
  }

  /** Pod hooks: StopPodSandbox kills the pod's containers; RemovePodSandbox removes them. */
  async stopAllInPod(podId: string): Promise<void> {
    await Promise.all(this.byPod(podId).map((c) => this.stop(c.id, 0)));
  }

  async removeAllInPod(podId: string): Promise<void> {
    await Promise.all(this.byPod(podId).map((c) => this.remove(c.id)));
  }

  /** Bytes and inodes of the container's writable layer. */
  async writableLayerUsage(id: string): Promise<{ bytes: number; inodes: number }> {
    return this.opts.runtime.rootfsUsage(this.get(id).snapshotKey);
  }

  /** UpdateContainerResources: the running task's cgroup, then the stored spec and record. */
  async updateResources(id: string, resources: ResourceSpec): Promise<void> {
    const rec = this.get(id);
    await this.withLock(rec.id, async () => {
      if (rec.state === 'exited') throw failedPrecondition(`container ${rec.id} has exited; its resources cannot change`);
      const pod = this.opts.pods.get(rec.podId);
      const linux = await this.nri.updateContainer(pod, rec, linuxResources(resources, this.opts.host) as unknown as Record<string, unknown>);
      await this.applyResources(rec, linux);
      rec.spec.resources = mergeResourceUpdate(rec.spec.resources, resources);
      await this.store.save(rec);
      await this.nri.postUpdateContainer(pod, rec).catch((err: unknown) => this.opts.log.warn({ err: errorMessage(err) }, 'NRI PostUpdateContainer failed'));
    });
  }

  /** New resources to the running task's cgroup and into the stored OCI spec (caller holds the lock). */
  private async applyResources(rec: ContainerRecord, linux: Record<string, unknown>): Promise<void> {
    dropUnsupportedHugepages(linux, this.opts.host);
    if (rec.state === 'running') await this.opts.runtime.updateResources(rec.id, linux);
    const spec = await this.ociSpec(rec.id);
    const specLinux = (spec.linux ?? {}) as Record<string, unknown>;
    spec.linux = { ...specLinux, resources: mergeLinuxResources((specLinux.resources as Record<string, unknown>) ?? {}, linux) };
    await this.opts.runtime.updateContainerSpec(rec.id, spec);
  }

  /** Resources an NRI plugin asked for (unsolicited update): straight to the cgroup and the stored spec. */
  async applyLinuxResources(id: string, linux: Record<string, unknown>): Promise<void> {
    const rec = this.get(id);
    await this.withLock(rec.id, () => this.applyResources(rec, linux));
  }

  /** An NRI plugin evicted the container: stop it and say why in its status. */
  async evict(id: string, reason: string): Promise<void> {
    const rec = this.get(id);
    await this.stop(rec.id, 0);
    rec.message = `evicted by an NRI plugin: ${reason}`;
    await this.store.save(rec);
  }

  /** ExecSync in a running container, with the container's own process settings. */
  async execSync(id: string, cmd: string[], timeoutSeconds: number): Promise<ExecSyncResult> {
    const rec = this.get(id);
    const spec = await this.ociSpec(rec.id);
    const processSpec = (spec.process ?? {}) as Record<string, unknown>;
    return execSync({ runtime: this.opts.runtime, container: rec, processSpec, cmd, timeoutSeconds, workDir: this.opts.execDir });
  }

  /** The first tag of the image `imageId` names, if it is there and has one (see withImageNames). */
  async imageTag(imageId: string): Promise<string | undefined> {
    return (await this.opts.images.status(imageId))?.repoTags[0];
  }

  /** The OCI spec crisp gave containerd (for verbose status and exec). */
  async ociSpec(id: string): Promise<Record<string, unknown>> {
    return this.opts.runtime.containerSpec(id);
  }
}

// The container-runtime side of containerd as the sandbox layer needs it: container records with an
// OCI spec, rootfs snapshots, tasks and exec processes, and the task event stream. Narrow and typed,
// so sandbox/ never sees containerd's wire types.
import type { ContainerdClient } from './client.js';
import { codecFor } from '../../common/proto-registry.js';
import { isNotFound, isAlreadyExists, withContext, errorMessage } from '../../common/errors.js';
import type { Mount } from '../../gen/containerd.types.js';
import { Status } from '../../gen/containerd.v1.types.js';
import type { TaskExit, TaskOOM, TaskStart } from '../../gen/containerd.events.js';
import type { Envelope } from '../../gen/containerd.services.events.v1.js';
import type { Options as RuncOptions } from '../../gen/containerd.runc.v1.js';
import type { Logger } from '../../common/logger.js';
import { sleep } from '../../common/time.js';

export const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
export const PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
export const RESOURCES_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
export const RUNC_OPTIONS_TYPE_URL = 'containerd.runc.v1.Options';

export type RootfsMount = Mount;

export interface TaskState {
  pid: number;
  status: 'created' | 'running' | 'stopped' | 'paused' | 'unknown';
  exitStatus: number;
  /** Nanoseconds since the epoch (0 when not exited). */
  exitedAt: number;
}

export interface ExitEvent {
  containerId: string;
  /** The process id: the container id for the init process, the exec id otherwise. */
  processId: string;
  pid: number;
  exitStatus: number;
  exitedAt: number;
}

export interface TaskEvents {
  onExit(e: ExitEvent): void;
  onOom(containerId: string): void;
  onStart?(containerId: string, pid: number): void;
  /** The stream broke and was re-established: state may have changed meanwhile. */
  onReconnect(): void;
}

export interface RuntimeOptions {
  runtimeType: string;
  /** runc's state root for this crispd, keeping instances apart. */
  runcRoot: string;
  systemdCgroup: boolean;
  binaryName: string;
  snapshotter: string;
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

/** A task create that met its pod's shim exiting (see createTask). */
const SHIM_GONE = /failed to (?:create shim task|start shim)\b.*(?:ttrpc: closed|connect: (?:connection refused|no such file or directory)|connection reset by peer)/s;
const SHIM_GONE_RETRIES = 2;

function tsNanos(ts: { seconds: number; nanos: number } | null | undefined): number {
  return ts ? ts.seconds * 1e9 + ts.nanos : 0;
}

const STATUS: Record<number, TaskState['status']> = {
  [Status.CREATED]: 'created',
  [Status.RUNNING]: 'running',
  [Status.STOPPED]: 'stopped',
  [Status.PAUSED]: 'paused',
  [Status.PAUSING]: 'paused',
};

export class ContainerdRuntime {
  constructor(
    private readonly ctd: ContainerdClient,
    private readonly opts: RuntimeOptions,
  ) {}

  private runtimeOptions(handler: { binaryName?: string }) {
    const value: Partial<RuncOptions> = {
      root: this.opts.runcRoot,
      systemdCgroup: this.opts.systemdCgroup,
      binaryName: handler.binaryName || this.opts.binaryName,
    };
    return { type_url: RUNC_OPTIONS_TYPE_URL, value: codecFor<RuncOptions>('containerd.runc.v1.Options').encode(value) };
  }

  async createContainer(id: string, args: { spec: object; image: string; labels: Record<string, string>; binaryName?: string }): Promise<void> {
    try {
      await this.ctd.containers.unary('Create', {
        container: {
          id,
          labels: args.labels,
          image: args.image,
          runtime: { name: this.opts.runtimeType, options: this.runtimeOptions(args) },
          spec: { type_url: SPEC_TYPE_URL, value: json(args.spec) },
          snapshotter: this.opts.snapshotter,
          snapshotKey: id,
        },
      });
    } catch (err) {
      throw withContext(`containerd container ${id}`, err);
    }
  }

  async updateContainerSpec(id: string, spec: object): Promise<void> {
    await this.ctd.containers.unary('Update', {
      container: { id, spec: { type_url: SPEC_TYPE_URL, value: json(spec) } },
      updateMask: { paths: ['spec'] },
    });
  }

  /** The OCI spec stored with the container. */
  async containerSpec(id: string): Promise<Record<string, unknown>> {
    try {
      const c = (await this.ctd.containers.unary('Get', { id })).container;
      return c?.spec ? (JSON.parse(c.spec.value.toString('utf8')) as Record<string, unknown>) : {};
    } catch (err) {
      throw withContext(`containerd container ${id}`, err);
    }
  }

  async deleteContainer(id: string): Promise<void> {
    try {
      await this.ctd.containers.unary('Delete', { id });
    } catch (err) {
      if (!isNotFound(err)) throw withContext(`deleting containerd container ${id}`, err);
    }
  }

  /** Ids of the containerd containers whose label `label` is `value`. */
  async containerIdsWithLabel(label: string, value: string): Promise<string[]> {
    try {
      const res = await this.ctd.containers.unary('List', { filters: [`labels."${label}"==${JSON.stringify(value)}`] });
      return res.containers.map((c) => c.id);
    } catch (err) {
      throw withContext(`listing containerd containers labelled ${label}`, err);
    }
  }

  async containerExists(id: string): Promise<boolean> {
    try {
      await this.ctd.containers.unary('Get', { id });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** A writable snapshot for the container's rootfs on top of the image's top layer. */
  async prepareRootfs(key: string, parent: string): Promise<RootfsMount[]> {
    try {
      const res = await this.ctd.snapshots.unary('Prepare', { snapshotter: this.opts.snapshotter, key, parent, labels: {} });
      return res.mounts;
    } catch (err) {
      if (isAlreadyExists(err)) return this.rootfsMounts(key);
      throw withContext(`preparing rootfs snapshot ${key}`, err);
    }
  }

  /**
   * A read-only view of an image's layers (image volumes). It is a GC root of its own, so containerd
   * keeps it and the layers under it until crisp removes it (removeRootfs).
   */
  async viewSnapshot(key: string, parent: string): Promise<RootfsMount[]> {
    try {
      const labels = { 'containerd.io/gc.root': new Date().toISOString() };
      return (await this.ctd.snapshots.unary('View', { snapshotter: this.opts.snapshotter, key, parent, labels })).mounts;
    } catch (err) {
      if (isAlreadyExists(err)) return this.rootfsMounts(key);
      throw withContext(`viewing snapshot ${parent} as ${key}`, err);
    }
  }

  async rootfsMounts(key: string): Promise<RootfsMount[]> {
    try {
      return (await this.ctd.snapshots.unary('Mounts', { snapshotter: this.opts.snapshotter, key })).mounts;
    } catch (err) {
      throw withContext(`rootfs mounts of ${key}`, err);
    }
  }

  async removeRootfs(key: string): Promise<void> {
    try {
      await this.ctd.snapshots.unary('Remove', { snapshotter: this.opts.snapshotter, key });
    } catch (err) {
      if (!isNotFound(err)) throw withContext(`removing rootfs snapshot ${key}`, err);
    }
  }

  /** Bytes and inodes of the container's writable layer. */
  async rootfsUsage(key: string): Promise<{ bytes: number; inodes: number }> {
    const res = await this.ctd.snapshots.unary('Usage', { snapshotter: this.opts.snapshotter, key });
    return { bytes: res.size, inodes: res.inodes };
  }

  async createTask(id: string, io: { stdin: string; stdout: string; stderr: string; terminal: boolean }, rootfs: RootfsMount[]): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.ctd.tasks.unary('Create', { containerId: id, rootfs, ...io });
        return res.pid;
      } catch (err) {
        // The runc shim groups a pod's containers (io.kubernetes.cri.sandbox-id) and exits once its
        // last task is deleted. With no pause task holding it, a create that reached the shim as it
        // was shutting down fails; containerd has cleaned that attempt up (bundle, shim), so a fresh
        // create starts a new shim. Seen with containerd 1.6 and 2.1 alike (a few creates in a hundred
        // when a pod's only other container has just exited).
        if (attempt < SHIM_GONE_RETRIES && SHIM_GONE.test(errorMessage(err))) {
          await sleep(50 * (attempt + 1));
          continue;
        }
        throw withContext(`creating task ${id}`, err);
      }
    }
  }

  /** Connections made to containerd so far (see ContainerdClient.connectionCount). */
  connectionCount(): number {
    return this.ctd.connectionCount();
  }

  async startTask(id: string, execId = ''): Promise<number> {
    try {
      return (await this.ctd.tasks.unary('Start', { containerId: id, execId })).pid;
    } catch (err) {
      throw withContext(`starting ${execId ? `exec ${execId} in ` : 'task '}${id}`, err);
    }
  }

  async kill(id: string, signal: number, opts: { execId?: string; all?: boolean } = {}): Promise<void> {
    try {
      await this.ctd.tasks.unary('Kill', { containerId: id, execId: opts.execId ?? '', signal, all: opts.all ?? false });
    } catch (err) {
      if (isNotFound(err) || /process already finished|not found/i.test(errorMessage(err))) return;
      throw withContext(`signalling ${id}`, err);
    }
  }

  /** Blocks until the process exits (or the timeout passes: undefined). */
  async wait(id: string, execId = '', timeoutMs = 0, signal?: AbortSignal): Promise<{ exitStatus: number; exitedAt: number } | undefined> {
    try {
      const res = await this.ctd.tasks.unary('Wait', { containerId: id, execId }, { timeoutMs, ...(signal ? { signal } : {}) });
      return { exitStatus: res.exitStatus, exitedAt: tsNanos(res.exitedAt) };
    } catch (err) {
      if (/deadline|cancel/i.test(errorMessage(err))) return undefined;
      if (isNotFound(err)) return undefined;
      throw withContext(`waiting for ${execId || id}`, err);
    }
  }

  async getTask(id: string): Promise<TaskState | undefined> {
    try {
      const p = (await this.ctd.tasks.unary('Get', { containerId: id, execId: '' })).process;
      if (!p) return undefined;
      return { pid: p.pid, status: STATUS[p.status] ?? 'unknown', exitStatus: p.exitStatus, exitedAt: tsNanos(p.exitedAt) };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw withContext(`task status of ${id}`, err);
    }
  }

  /** Delete the task (its shim goes away); the exit status when it had one. */
  async deleteTask(id: string): Promise<{ exitStatus: number; exitedAt: number } | undefined> {
    try {
      const res = await this.ctd.tasks.unary('Delete', { containerId: id });
      return { exitStatus: res.exitStatus, exitedAt: tsNanos(res.exitedAt) };
    } catch (err) {
      // "ttrpc: closed": the shim went away under a concurrent delete; the task is gone either way.
      if (isNotFound(err) || /ttrpc: closed/.test(errorMessage(err))) return undefined;
      throw withContext(`deleting task ${id}`, err);
    }
  }

  async exec(id: string, execId: string, processSpec: object, io: { stdin: string; stdout: string; stderr: string; terminal: boolean }): Promise<void> {
    try {
      await this.ctd.tasks.unary('Exec', { containerId: id, execId, spec: { type_url: PROCESS_TYPE_URL, value: json(processSpec) }, ...io });
    } catch (err) {
      throw withContext(`exec in ${id}`, err);
    }
  }

  async deleteExec(id: string, execId: string): Promise<void> {
    try {
      await this.ctd.tasks.unary('DeleteProcess', { containerId: id, execId });
    } catch (err) {
      if (!isNotFound(err)) throw withContext(`deleting exec ${execId} in ${id}`, err);
    }
  }

  async resizePty(id: string, execId: string, width: number, height: number): Promise<void> {
    await this.ctd.tasks.unary('ResizePty', { containerId: id, execId, width, height });
  }

  async closeStdin(id: string, execId: string): Promise<void> {
    await this.ctd.tasks.unary('CloseIO', { containerId: id, execId, stdin: true });
  }

  async updateResources(id: string, resources: object): Promise<void> {
    try {
      await this.ctd.tasks.unary('Update', { containerId: id, resources: { type_url: RESOURCES_TYPE_URL, value: json(resources) }, annotations: {} });
    } catch (err) {
      throw withContext(`updating resources of ${id}`, err);
    }
  }

  async pids(id: string): Promise<number[]> {
    const res = await this.ctd.tasks.unary('ListPids', { containerId: id });
    return res.processes.map((p) => p.pid);
  }

  /**
   * Follow containerd's task events (exit, OOM, start) until `signal` aborts, re-subscribing after a
   * broken stream (containerd restarted) and telling the handler so it can reconcile.
   */
  async followEvents(handler: TaskEvents, log: Logger, signal: AbortSignal): Promise<void> {
    const exitCodec = codecFor<TaskExit>('containerd.events.TaskExit');
    const oomCodec = codecFor<TaskOOM>('containerd.events.TaskOOM');
    const startCodec = codecFor<TaskStart>('containerd.events.TaskStart');
    let first = true;
    while (!signal.aborted) {
      const stream = this.ctd.events.serverStream('Subscribe', { filters: ['topic~="/tasks/"'] }, { signal });
      try {
        if (!first) handler.onReconnect();
        first = false;
        for await (const env of stream as AsyncIterable<Envelope>) {
          if (env.namespace !== this.ctd.options.namespace || !env.event) continue;
          try {
            if (env.topic === '/tasks/exit') {
              const e = exitCodec.decode(env.event.value);
              handler.onExit({ containerId: e.containerId, processId: e.id, pid: e.pid, exitStatus: e.exitStatus, exitedAt: tsNanos(e.exitedAt) });
            } else if (env.topic === '/tasks/oom') {
              handler.onOom(oomCodec.decode(env.event.value).containerId);
            } else if (env.topic === '/tasks/start') {
              const e = startCodec.decode(env.event.value);
              handler.onStart?.(e.containerId, e.pid);
            }
          } catch (err) {
            log.warn({ topic: env.topic, err: errorMessage(err) }, 'undecodable containerd event');
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        log.warn({ err: errorMessage(err) }, 'containerd event stream broke; re-subscribing');
      }
      if (!signal.aborted) await sleep(500, signal).catch(() => undefined);
    }
  }
}

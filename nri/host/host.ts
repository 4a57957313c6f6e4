// The NRI host: accepts external plugins on the NRI socket, runs the pre-installed ones, takes each
// through registration, Configure and Synchronize, and fans crisp's pod and container lifecycle out
// to them (NriHooks). Events go out one at a time in the order crisp raised them; within an event
// plugins are called in index order and each sees the request as the earlier ones changed it.
// Every call has a timeout; a plugin that times out or breaks the protocol is dropped (and its
// process restarted, for pre-installed ones) while crisp carries on, unless it is required.
import net from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import { claimSocketPath } from '../../common/unix-socket.js';
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../../common/logger.js';
import { CrispError, errorMessage, failedPrecondition } from '../../common/errors.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import {
  Event,
  type Container,
  type ContainerAdjustment,
  type ContainerEviction,
  type ContainerUpdate,
  type PodSandbox,
  type PostCreateContainerRequest,
  type UpdateContainersRequest,
  type UpdateContainersResponse,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import type { LinuxResourcesJson, NriHooks, NriRuntimeAccess, OciSpecJson } from '../../sandbox/nri-hooks.js';
import type { PodRecord, PodResources } from '../../sandbox/pods/types.js';
import type { ContainerRecord } from '../../sandbox/containers/types.js';
import { applyContainerAdjustment, applyContainerUpdate } from '../../sandbox/containers/nri-adjust.js';
import { mergeLinuxResources } from '../../sandbox/containers/oci-spec.js';
import { isTtrpcError } from '../transport/ttrpc.js';
import { status } from '../../common/grpc-types.js';
import { EVENT_METHOD, STATE_CHANGE_FALLBACK, eventNames, type WireEvent } from './events.js';
import { comparePlugins, matchesPlugin, qualifiedName, type PluginIdentity } from './identity.js';
import { PluginSupervisor, discoverPluginFiles, readPluginConfig, type Backoff, type PluginFile } from './launcher.js';
import { AdjustmentMerger, UpdateMerger } from './merge.js';
import { containerMessage, criResourcesToNri, ociResourcesToNri, podMessage } from './messages.js';
import { Ownership } from './owners.js';
import { PluginSession, isFatalCallError, type PluginKind, type SessionState } from './plugin-session.js';
import { RuntimeView } from './runtime-view.js';
import { SerialQueue } from './serial.js';
import { DEFAULT_SYNC_PART_BYTES } from './sync.js';

export interface NriHostOptions {
  access: NriRuntimeAccess;
  /** Used as given: the caller names the component (crispd: `component: "nri"`). */
  logger: Logger;
  runtimeVersion: string;
  /** Sent to plugins in Configure. */
  runtimeName?: string;
  /** External plugins connect here. */
  socketPath?: string;
  /** Pre-installed plugins (NN-name executables) that crisp starts itself. */
  pluginDir?: string;
  /** NN-name.conf / name.conf drop-ins for pre-installed plugins. */
  pluginConfigDir?: string;
  registrationTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Plugins ("name" or "NN-name") without which pods and containers may not be created or changed. */
  requiredPlugins?: string[];
  /** Listen on socketPath for plugins started by others. */
  enableExternal?: boolean;
  /** Restart delay of crashed pre-installed plugins (doubles up to maxMs). */
  restartBackoff?: Backoff;
  /** Largest Synchronize message; the state is split into parts above it (tests lower it). */
  syncPartBytes?: number;
}

export const NRI_DEFAULTS = {
  runtimeName: 'crisp',
  socketPath: '/var/run/nri/nri.sock',
  pluginDir: '/opt/nri/plugins',
  pluginConfigDir: '/etc/nri/conf.d',
  registrationTimeoutMs: 5000,
  requestTimeoutMs: 2000,
  restartBackoff: { initialMs: 1000, maxMs: 60_000 },
} as const;

export type PluginHealth = SessionState | 'restarting' | 'missing';

/** One line of `crisp nri plugins`. */
export interface NriPluginInfo {
  name: string;
  index: string;
  kind: PluginKind | 'required';
  events: string[];
  health: PluginHealth;
  /** ISO time of the current connection, or null when not connected. */
  connectedAt: string | null;
  /** Disconnects crisp did not ask for: timeouts, protocol errors, crashes, failed setup. */
  failures: number;
  pid?: number;
  lastError?: string;
  required: boolean;
}

/** Updates and evictions plugins asked for during an event, applied once the event is done. */
interface Followups {
  source: string;
  updates: ContainerUpdate[];
  evictions: ContainerEviction[];
}

/** An event a synchronizing plugin missed, delivered after its snapshot; returns its followups. */
type BacklogItem = (session: PluginSession) => Promise<Followups | undefined>;

const adjustmentCodec = codecFor<ContainerAdjustment>('nri.pkg.api.v1alpha1.ContainerAdjustment');

function short(id: string): string {
  return id.slice(0, 12);
}
function describePod(pod: PodRecord): string {
  return `pod ${pod.spec.metadata.namespace}/${pod.spec.metadata.name} (${short(pod.id)})`;
}
function describeContainer(pod: PodRecord, c: ContainerRecord): string {
  return `container ${c.spec.metadata.name} (${short(c.id)}) in ${describePod(pod)}`;
}

export class NriHost implements NriHooks {
  private readonly opts: Required<Omit<NriHostOptions, 'access' | 'logger'>> & Pick<NriHostOptions, 'access' | 'logger'>;
  private readonly log: Logger;
  private readonly view: RuntimeView;
  private readonly lock = new SerialQueue();
  private readonly sessions = new Set<PluginSession>();
  private readonly supervisors = new Map<string, PluginSupervisor>();
  private readonly failures = new Map<string, number>();
  private readonly lastErrors = new Map<string, string>();
  /** Sessions between their Synchronize snapshot and readiness, with the events they missed. */
  private readonly backlogs = new Map<PluginSession, BacklogItem[]>();
  private readonly syncing = new Map<PluginSession, Promise<void>>();
  private readonly setups = new Set<Promise<void>>();
  private server: net.Server | undefined;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';

  constructor(options: NriHostOptions) {
    const o = options;
    this.opts = {
      access: o.access,
      logger: o.logger,
      runtimeVersion: o.runtimeVersion,
      runtimeName: o.runtimeName ?? NRI_DEFAULTS.runtimeName,
      socketPath: o.socketPath ?? NRI_DEFAULTS.socketPath,
      pluginDir: o.pluginDir ?? NRI_DEFAULTS.pluginDir,
      pluginConfigDir: o.pluginConfigDir ?? NRI_DEFAULTS.pluginConfigDir,
      registrationTimeoutMs: o.registrationTimeoutMs ?? NRI_DEFAULTS.registrationTimeoutMs,
      requestTimeoutMs: o.requestTimeoutMs ?? NRI_DEFAULTS.requestTimeoutMs,
      requiredPlugins: o.requiredPlugins ?? [],
      enableExternal: o.enableExternal ?? true,
      restartBackoff: o.restartBackoff ?? NRI_DEFAULTS.restartBackoff,
      syncPartBytes: o.syncPartBytes ?? DEFAULT_SYNC_PART_BYTES,
    };
    this.log = options.logger;
    this.view = new RuntimeView(options.access, this.log);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Starts the pre-installed plugins and waits until each is ready or has failed, then listens for
   * external ones. Throws when the plugin directory holds an executable that is not NN-name, or the
   * socket cannot be set up.
   */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`NRI host cannot start: it is ${this.state}`);
    this.state = 'running';
    try {
      await this.startPlugins();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startPlugins(): Promise<void> {
    const { files, skipped } = await discoverPluginFiles(this.opts.pluginDir);
    for (const s of skipped) this.log.info({ path: s.path, reason: s.reason }, 'NRI: skipping file in plugin directory');
    for (const file of files) this.supervise(file);
    await Promise.all([...this.supervisors.values()].map((s) => s.start()));
    await Promise.allSettled([...this.setups]);
    if (this.opts.enableExternal) await this.listen();
    this.log.info(
      { socket: this.opts.enableExternal ? this.opts.socketPath : undefined, preinstalled: files.map(qualifiedName), required: this.opts.requiredPlugins },
      'NRI host started',
    );
  }

  /** Stops listening, disconnects every plugin and SIGKILLs the pre-installed ones. */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    const wasListening = this.server !== undefined;
    this.state = 'stopping';
    for (const s of this.sessions) s.closedByHost = true;
    // server.close() reports back only once every accepted connection is gone, so close those too.
    const server = this.server;
    this.server = undefined;
    const serverClosed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : undefined;
    for (const s of [...this.sessions]) s.close(new Error('crisp NRI host stopping'));
    await Promise.all([...this.supervisors.values()].map((s) => s.stop()));
    await serverClosed;
    if (wasListening) await unlink(this.opts.socketPath).catch(() => undefined);
    this.state = 'stopped';
    this.log.info('NRI host stopped');
  }

  /** Every plugin crisp knows of: connected, restarting, or required but missing. */
  plugins(): NriPluginInfo[] {
    const out: NriPluginInfo[] = [];
    const seen = new Set<string>();
    const required = (id: PluginIdentity) => this.opts.requiredPlugins.some((ref) => matchesPlugin(ref, id));
    for (const s of this.sessions) {
      if (!s.identity || s.isClosed) continue;
      const q = qualifiedName(s.identity);
      seen.add(q);
      const sup = this.supervisors.get(q);
      out.push({
        name: s.identity.name,
        index: s.identity.index,
        kind: s.kind,
        events: eventNames(s.events),
        health: s.state,
        connectedAt: s.connectedAt.toISOString(),
        failures: this.failures.get(q) ?? 0,
        ...(s.kind === 'launched' && sup?.pid !== undefined ? { pid: sup.pid } : {}),
        ...(this.lastErrors.has(q) ? { lastError: this.lastErrors.get(q)! } : {}),
        required: required(s.identity),
      });
    }
    for (const [q, sup] of this.supervisors) {
      if (seen.has(q)) continue;
      seen.add(q);
      out.push({
        name: sup.file.name,
        index: sup.file.index,
        kind: 'launched',
        events: [],
        health: sup.running ? 'registering' : 'restarting',
        connectedAt: null,
        failures: this.failures.get(q) ?? 0,
        ...(sup.pid !== undefined ? { pid: sup.pid } : {}),
        ...(this.lastErrors.has(q) ? { lastError: this.lastErrors.get(q)! } : {}),
        required: required(sup.file),
      });
    }
    // Plugins that failed and are gone (external ones crisp cannot restart) stay visible.
    for (const [q, failures] of this.failures) {
      if (seen.has(q)) continue;
      const dash = q.indexOf('-');
      const id = { index: q.slice(0, dash), name: q.slice(dash + 1) };
      out.push({
        ...id,
        kind: 'external',
        events: [],
        health: 'closed',
        connectedAt: null,
        failures,
        ...(this.lastErrors.has(q) ? { lastError: this.lastErrors.get(q)! } : {}),
        required: required(id),
      });
    }
    for (const ref of this.opts.requiredPlugins) {
      if (out.some((p) => matchesPlugin(ref, p) && p.health !== 'closed')) continue;
      const closed = out.findIndex((p) => matchesPlugin(ref, p));
      if (closed >= 0) {
        out[closed] = { ...out[closed]!, health: 'missing' };
        continue;
      }
      const dash = /^[0-9]{2}-/.test(ref);
      const id = { index: dash ? ref.slice(0, 2) : '', name: dash ? ref.slice(3) : ref };
      const q = dash ? ref : '';
      out.push({
        ...id,
        kind: 'required',
        events: [],
        health: 'missing',
        connectedAt: null,
        failures: q ? (this.failures.get(q) ?? 0) : 0,
        ...(q && this.lastErrors.has(q) ? { lastError: this.lastErrors.get(q)! } : {}),
        required: true,
      });
    }
    return out.sort(comparePlugins);
  }

  private async listen(): Promise<void> {
    const path = this.opts.socketPath;
    // containerd 2.x serves NRI on the same default path: never take its socket (its plugins would be lost).
    await claimSocketPath(path, 'the NRI socket', 'nri_socket');
    const server = net.createServer((sock) => this.adopt(sock, 'external'));
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => reject(new Error(`listening on NRI socket ${path}: ${err.message}`, { cause: err }));
      server.once('error', fail);
      server.listen(path, () => {
        server.off('error', fail);
        // Plugins run as root; nobody else may connect, whatever the umask was.
        chmod(path, 0o600).then(resolve, fail);
      });
    });
    server.on('error', (err) => this.log.error({ err: err.message }, 'NRI socket error'));
    this.server = server;
  }

  private supervise(file: PluginFile): void {
    const q = qualifiedName(file);
    const sup: PluginSupervisor = new PluginSupervisor(file, {
      logger: this.log,
      backoff: this.opts.restartBackoff,
      onStarted: (trunk: net.Socket, child: ChildProcess) => {
        if (this.state !== 'running') {
          trunk.destroy();
          child.kill('SIGKILL');
          return;
        }
        this.adopt(trunk, 'launched', file, sup);
      },
    });
    this.supervisors.set(q, sup);
  }

  // ---------------------------------------------------------------- sessions

  private adopt(trunk: net.Socket, kind: PluginKind, identity?: PluginIdentity, sup?: PluginSupervisor): void {
    if (this.state !== 'running') {
      trunk.destroy();
      return;
    }
    const session = new PluginSession({
      kind,
      trunk,
      logger: this.log,
      registrationTimeoutMs: this.opts.registrationTimeoutMs,
      requestTimeoutMs: this.opts.requestTimeoutMs,
      ...(identity ? { identity } : {}),
      admit: (id, s) => this.admit(id, s),
      onUpdateContainers: (s, req) => this.onUpdateContainers(s, req),
    });
    this.sessions.add(session);
    void session.closed.then((reason) => this.onSessionClosed(session, reason, sup));
    const setup = this.setUp(session, sup);
    this.setups.add(setup);
    void setup.finally(() => this.setups.delete(setup));
  }

  /** Refuses an identity another live plugin already has. */
  private admit(id: PluginIdentity, session: PluginSession): string | undefined {
    if (this.state !== 'running') return 'crisp NRI host is stopping';
    for (const other of this.sessions) {
      if (other === session || other.isClosed || !other.identity) continue;
      if (other.identity.name === id.name && other.identity.index === id.index) {
        return `plugin ${qualifiedName(id)} is already registered`;
      }
    }
    return undefined;
  }

  private async setUp(session: PluginSession, sup?: PluginSupervisor): Promise<void> {
    try {
      await session.registered;
      const config = session.kind === 'launched' ? await readPluginConfig(this.opts.pluginConfigDir, session.identity!) : '';
      await session.configure(config, this.opts.runtimeName, this.opts.runtimeVersion);
      if (session.isClosed) return;
      session.state = 'synchronizing';
      await this.synchronize(session, sup);
    } catch (err) {
      if (!session.isClosed) session.close(new Error(`setup failed in ${session.state}: ${errorMessage(err)}`, { cause: err }));
    }
  }

  /**
   * Snapshot, Synchronize, apply its updates, deliver what happened meanwhile, then ready. The
   * snapshot and the start of the backlog happen in one locked section, so every event is either in
   * the snapshot or in the backlog; the backlog is delivered in another locked section, so the plugin
   * sees it before any later event.
   */
  private async synchronize(session: PluginSession, sup?: PluginSupervisor): Promise<void> {
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    try {
      const snapshot = await this.lock.run(async () => {
        if (session.isClosed) throw new Error('disconnected before Synchronize');
        this.backlogs.set(session, []);
        this.syncing.set(session, finished);
        return this.view.snapshot();
      });
      const pods = snapshot.pods.map(podMessage);
      const containers = snapshot.containers.map((c) => containerMessage(c.rec, c.spec));
      const updates = await session.synchronize(pods, containers, this.opts.syncPartBytes);
      session.logger.info({ pods: pods.length, containers: containers.length, parts: session.syncParts, updates: updates.length }, 'NRI plugin synchronized');
      await this.applyFollowups({ source: `${session.label} Synchronize`, updates, evictions: [] });
      const followups = await this.lock.run(async () => {
        const out: Followups[] = [];
        const backlog = this.backlogs.get(session) ?? [];
        this.backlogs.delete(session);
        for (const item of backlog) {
          if (session.isClosed) break;
          try {
            const f = await item(session);
            if (f) out.push(f);
          } catch (err) {
            if (!isFatalCallError(err)) session.logger.warn({ err: errorMessage(err) }, 'NRI plugin failed an event delivered after Synchronize');
          }
        }
        if (session.isClosed) throw new Error(`disconnected while catching up: ${session.closeReason?.message ?? ''}`);
        session.state = 'ready';
        if (sup) sup.markReady();
        session.logger.info({ events: eventNames(session.events), backlog: backlog.length }, 'NRI plugin ready');
        return out;
      });
      for (const f of followups) await this.applyFollowups(f);
    } finally {
      this.backlogs.delete(session);
      this.syncing.delete(session);
      done();
    }
  }

  private onSessionClosed(session: PluginSession, reason: Error, sup?: PluginSupervisor): void {
    this.sessions.delete(session);
    this.backlogs.delete(session);
    const label = session.label;
    if (session.closedByHost || this.state !== 'running') {
      session.logger.debug({ reason: reason.message }, 'NRI plugin disconnected');
      return;
    }
    // A registered external plugin that simply went away is no failure; anything else is.
    const hangUp = /peer closed the connection|connection closed$/.test(reason.message);
    if (session.kind === 'external' && session.identity && hangUp && session.state !== 'registering') {
      this.lastErrors.set(qualifiedName(session.identity), reason.message);
      session.logger.info({ reason: reason.message }, 'NRI plugin disconnected');
    } else {
      // Unregistered external connections have no identity to count against; they are only logged.
      const key = session.identity ? qualifiedName(session.identity) : sup ? qualifiedName(sup.file) : undefined;
      if (key) {
        this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
        this.lastErrors.set(key, reason.message);
      }
      session.logger.warn({ reason: reason.message, failures: key ? this.failures.get(key) : undefined }, `NRI plugin ${label} disconnected`);
    }
    // A pre-installed plugin is restarted (after a backoff) once its process is gone.
    sup?.kill();
  }

  private onUpdateContainers(session: PluginSession, req: UpdateContainersRequest): Promise<Input<UpdateContainersResponse>> {
    return this.applyFollowups({ source: `${session.label} UpdateContainers`, updates: req.update, evictions: req.evict }).then((failed) => ({ failed }));
  }

  // ---------------------------------------------------------------- event plumbing

  private get active(): boolean {
    return this.state === 'running';
  }

  /** Ready plugins subscribed to `event`, in call order. */
  private readyFor(event: Event): PluginSession[] {
    return [...this.sessions].filter((s) => s.state === 'ready' && s.subscribes(event)).sort((a, b) => comparePlugins(a.identity!, b.identity!));
  }

  private backlogsFor(event: Event): BacklogItem[][] {
    return [...this.backlogs].filter(([s]) => !s.isClosed && s.subscribes(event)).map(([, b]) => b);
  }

  private get anyPluginActive(): boolean {
    for (const s of this.sessions) if (s.state === 'ready') return true;
    return this.backlogs.size > 0;
  }

  /**
   * Lets plugins that are synchronizing right now take part in an event that can change things
   * (bounded). With `requiredOnly`, waits only for required plugins, so that a notification is
   * refused only if a required plugin really is missing; other plugins get it from their backlog.
   */
  private async waitForSyncing(requiredOnly = false): Promise<void> {
    const pending = [...this.syncing]
      .filter(([s]) => !requiredOnly || (s.identity && this.opts.requiredPlugins.some((ref) => matchesPlugin(ref, s.identity!))))
      .map(([, done]) => done);
    if (pending.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(pending), new Promise<void>((r) => (timer = setTimeout(r, Math.max(this.opts.registrationTimeoutMs, this.opts.requestTimeoutMs))))]);
    clearTimeout(timer);
  }

  /** FAILED_PRECONDITION unless every required plugin is connected and ready. */
  private checkRequired(op: string): void {
    if (!this.active) return;
    const missing = this.opts.requiredPlugins.filter(
      (ref) => ![...this.sessions].some((s) => s.state === 'ready' && s.identity && matchesPlugin(ref, s.identity)),
    );
    if (missing.length === 0) return;
    const detail = missing.map((ref) => {
      const why = this.lastErrors.get(ref) ?? [...this.lastErrors].find(([q]) => q.endsWith(`-${ref}`))?.[1];
      return why ? `"${ref}" (last error: ${why})` : `"${ref}"`;
    });
    throw failedPrecondition(`${op}: required NRI plugin ${detail.join(', ')} is not connected; refused until it is back`);
  }

  /** After a fatal error of `session` in an event that needs required plugins: fail if it is one. */
  private checkLostRequired(session: PluginSession, op: string, enforce: boolean): void {
    if (!enforce || !session.identity) return;
    if (this.opts.requiredPlugins.some((ref) => matchesPlugin(ref, session.identity!))) {
      throw failedPrecondition(`${op}: required NRI plugin ${session.label} failed and was disconnected: ${session.closeReason?.message ?? ''}`);
    }
  }

  private pluginError(session: PluginSession, method: string, op: string, err: unknown): CrispError {
    const detail = isTtrpcError(err) ? err.details : errorMessage(err);
    return failedPrecondition(`${op}: NRI plugin ${session.label} failed ${method}: ${detail}`, err);
  }

  /**
   * One notification event to one plugin, with the StateChange fallback for pre-v0.12 plugins.
   * `extra` adds the event's own request fields (UpdatePodSandbox's resources).
   */
  private async deliver(session: PluginSession, event: WireEvent, pod: Input<PodSandbox>, container?: Input<Container>, extra?: object): Promise<void> {
    const base = container ? { pod, container } : { pod };
    const request = { ...base, ...extra };
    const viaStateChange = () => session.call('StateChange', { event, ...base });
    if (session.stateChangeOnly && STATE_CHANGE_FALLBACK.has(event)) {
      await viaStateChange();
      return;
    }
    // The notification requests all share the {pod, container} shape (UpdatePodSandbox adds its resources).
    const method = EVENT_METHOD[event] as 'PostCreateContainer';
    try {
      await session.call(method, request as Input<PostCreateContainerRequest>);
    } catch (err) {
      if (!(isTtrpcError(err, 'status') && err.code === status.UNIMPLEMENTED && STATE_CHANGE_FALLBACK.has(event))) throw err;
      session.stateChangeOnly = true;
      session.logger.info({ event: EVENT_METHOD[event] }, 'NRI plugin predates per-event RPCs; using StateChange from now on');
      await viaStateChange();
    }
  }

  /**
   * Delivers a notification event to every subscribed plugin. Events that gate an operation (run a
   * pod, start a container) stop at the first plugin error; pure notifications reach every plugin
   * and then report the first error.
   */
  private async notify(
    event: WireEvent,
    pod: PodRecord,
    container: ContainerRecord | undefined,
    opts: { gate: boolean; before?: () => void; after?: () => void; extra?: object },
  ): Promise<void> {
    const op = `NRI ${EVENT_METHOD[event]} for ${container ? describeContainer(pod, container) : describePod(pod)}`;
    if (opts.gate) await this.waitForSyncing(true);
    if (!this.anyPluginActive) {
      if (opts.gate) this.checkRequired(op);
      opts.before?.();
      opts.after?.();
      return;
    }
    let first: CrispError | undefined;
    await this.lock.run(async () => {
      if (opts.gate) this.checkRequired(op);
      opts.before?.();
      const targets = this.readyFor(event);
      const backlogs = this.backlogsFor(event);
      if (targets.length > 0 || backlogs.length > 0) {
        const podMsg = podMessage(pod);
        const ctrMsg = container ? containerMessage(container, await this.view.spec(container.id)) : undefined;
        for (const b of backlogs) b.push(async (s) => void (await this.deliver(s, event, podMsg, ctrMsg, opts.extra)));
        for (const s of targets) {
          try {
            await this.deliver(s, event, podMsg, ctrMsg, opts.extra);
          } catch (err) {
            if (isFatalCallError(err)) {
              this.checkLostRequired(s, op, opts.gate);
              continue;
            }
            const e = this.pluginError(s, EVENT_METHOD[event], op, err);
            if (opts.gate) throw e;
            first ??= e;
          }
        }
      }
      // The event happened whatever a plugin thought of it.
      opts.after?.();
    });
    if (first) throw first;
  }

  /** Applies plugin-requested updates through crisp, then evictions; returns the updates that failed. */
  private async applyFollowups(f: Followups): Promise<ContainerUpdate[]> {
    const failed: ContainerUpdate[] = [];
    for (const u of f.updates) {
      try {
        const next = applyContainerUpdate(await this.view.resources(u.containerId), u);
        await this.opts.access.updateContainerResources(u.containerId, next);
        this.view.setResources(u.containerId, next);
        this.log.info({ source: f.source, container: short(u.containerId) }, 'NRI: container resources updated');
      } catch (err) {
        failed.push(u);
        this.log[u.ignoreFailure ? 'debug' : 'warn']({ source: f.source, container: short(u.containerId), err: errorMessage(err) }, 'NRI: container update failed');
      }
    }
    for (const e of f.evictions) {
      try {
        this.log.info({ source: f.source, container: short(e.containerId), reason: e.reason }, 'NRI: evicting container');
        await this.opts.access.evictContainer(e.containerId, e.reason);
      } catch (err) {
        this.log.warn({ source: f.source, container: short(e.containerId), err: errorMessage(err) }, 'NRI: eviction failed');
      }
    }
    return failed;
  }

  // ---------------------------------------------------------------- NriHooks

  async runPodSandbox(pod: PodRecord): Promise<void> {
    if (!this.active) return;
    try {
      await this.notify(Event.RUN_POD_SANDBOX, pod, undefined, { gate: true, before: () => this.view.notePod(pod) });
    } catch (err) {
      // crisp undoes the pod: it must not show up in later snapshots.
      this.view.forgetPod(pod.id);
      throw err;
    }
  }

  async stopPodSandbox(pod: PodRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.STOP_POD_SANDBOX, pod, undefined, { gate: false, before: () => this.view.notePod(pod) });
  }

  async removePodSandbox(pod: PodRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.REMOVE_POD_SANDBOX, pod, undefined, { gate: false, after: () => this.view.forgetPod(pod.id) });
  }

  /** Gates UpdatePodSandboxResources: a plugin error fails it. No StateChange fallback (upstream has none). */
  async updatePodSandbox(pod: PodRecord, update: PodResources): Promise<void> {
    if (!this.active) return;
    const extra = {
      ...(update.overhead ? { overheadLinuxResources: criResourcesToNri(update.overhead) } : {}),
      ...(update.resources ? { linuxResources: criResourcesToNri(update.resources) } : {}),
    };
    await this.notify(Event.UPDATE_POD_SANDBOX, pod, undefined, { gate: true, extra });
  }

  async postUpdatePodSandbox(pod: PodRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.POST_UPDATE_POD_SANDBOX, pod, undefined, { gate: false, before: () => this.view.notePod(pod) });
  }

  async createContainer(pod: PodRecord, container: ContainerRecord, spec: OciSpecJson): Promise<OciSpecJson> {
    if (!this.active) return spec;
    const op = `NRI CreateContainer for ${describeContainer(pod, container)}`;
    await this.waitForSyncing();
    const result = await this.lock.run(async () => {
      this.checkRequired(op);
      const targets = this.readyFor(Event.CREATE_CONTAINER);
      const validators = this.readyFor(Event.VALIDATE_CONTAINER_ADJUSTMENT);
      const backlogs = this.backlogsFor(Event.CREATE_CONTAINER);
      if (targets.length === 0 && validators.length === 0 && backlogs.length === 0) {
        this.view.noteContainer(container, spec);
        return { spec, followups: undefined };
      }
      const podMsg = podMessage(pod);
      const owners = new Ownership();
      const adjustments = new AdjustmentMerger(container.id, owners);
      const updates = new UpdateMerger(owners, { creating: container.id });
      const evictions: ContainerEviction[] = [];
      let current = spec;
      for (const s of targets) {
        let reply;
        try {
          reply = await s.call('CreateContainer', { pod: podMsg, container: containerMessage(container, current) });
        } catch (err) {
          if (isFatalCallError(err)) {
            this.checkLostRequired(s, op, true);
            continue;
          }
          throw this.pluginError(s, 'CreateContainer', op, err);
        }
        try {
          adjustments.add(reply.adjust, s.label);
          updates.add(reply.update, s.label);
        } catch (err) {
          throw failedPrecondition(`${op}: ${errorMessage(err)}`, err);
        }
        // Later plugins see the container as adjusted so far.
        if (reply.adjust) current = applyContainerAdjustment(current, reply.adjust);
        evictions.push(...reply.evict);
      }
      for (const i of updates.ignored) this.log.info({ plugin: i.plugin, container: short(i.containerId), reason: i.reason }, 'NRI: conflicting update ignored (ignore_failure)');
      const finalMsg = containerMessage(container, current);
      if (validators.length > 0) await this.validate(validators, podMsg, finalMsg, adjustments, updates, op);
      this.view.noteContainer(container, current);
      for (const b of backlogs) b.push((s) => this.lateCreate(s, podMsg, finalMsg));
      return { spec: current, followups: { source: op, updates: updates.list(), evictions } };
    });
    if (result.followups) await this.applyFollowups(result.followups);
    return result.spec;
  }

  /** ValidateContainerAdjustment to every validator at once; any rejection or failure fails the create. */
  private async validate(
    validators: PluginSession[],
    pod: Input<PodSandbox>,
    container: Input<Container>,
    adjustments: AdjustmentMerger,
    updates: UpdateMerger,
    op: string,
  ): Promise<void> {
    const plugins = [...this.sessions]
      .filter((s) => s.state === 'ready' && s.identity)
      .sort((a, b) => comparePlugins(a.identity!, b.identity!))
      .map((s) => ({ name: s.identity!.name, index: s.identity!.index }));
    const request = {
      pod,
      container,
      adjust: adjustments.merged,
      update: updates.list(),
      owners: adjustments.owners.toProto(),
      plugins,
    };
    const verdicts = await Promise.all(
      validators.map(async (v) => {
        try {
          const r = await v.call('ValidateContainerAdjustment', request);
          return r.reject ? `validator "${v.label}" rejected container adjustment, reason: ${r.reason}` : undefined;
        } catch (err) {
          return `validator "${v.label}" failed: ${isTtrpcError(err) ? err.details : errorMessage(err)}`;
        }
      }),
    );
    const rejection = verdicts.find((v) => v !== undefined);
    if (rejection) throw failedPrecondition(`${op}: ${rejection}`);
  }

  /** CreateContainer for a plugin that was synchronizing when the container was created. */
  private async lateCreate(s: PluginSession, pod: Input<PodSandbox>, container: Input<Container>): Promise<Followups> {
    const reply = await s.call('CreateContainer', { pod, container });
    if (reply.adjust && adjustmentCodec.encode(reply.adjust).length > 0) {
      s.logger.warn({ container: short(container.id ?? '') }, 'NRI plugin adjusted a container created while it was synchronizing; adjustment ignored');
    }
    return { source: `${s.label} CreateContainer (late)`, updates: reply.update.filter((u) => u.containerId !== container.id), evictions: reply.evict };
  }

  async postCreateContainer(pod: PodRecord, container: ContainerRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.POST_CREATE_CONTAINER, pod, container, { gate: false, before: () => this.view.noteContainer(container) });
  }

  async startContainer(pod: PodRecord, container: ContainerRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.START_CONTAINER, pod, container, { gate: true, before: () => this.view.noteContainer(container) });
  }

  async postStartContainer(pod: PodRecord, container: ContainerRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.POST_START_CONTAINER, pod, container, { gate: false, before: () => this.view.noteContainer(container) });
  }

  async updateContainer(pod: PodRecord, container: ContainerRecord, resources: LinuxResourcesJson): Promise<LinuxResourcesJson> {
    if (!this.active) return resources;
    const op = `NRI UpdateContainer for ${describeContainer(pod, container)}`;
    await this.waitForSyncing();
    const result = await this.lock.run(async () => {
      this.checkRequired(op);
      const targets = this.readyFor(Event.UPDATE_CONTAINER);
      const backlogs = this.backlogsFor(Event.UPDATE_CONTAINER);
      if (targets.length === 0 && backlogs.length === 0) return { resources, followups: undefined };
      const podMsg = podMessage(pod);
      const spec = await this.view.spec(container.id);
      // As containerd sends it: the container as it is (its current resources), and what is asked for.
      const ctrMsg = containerMessage(container, spec);
      const updates = new UpdateMerger(new Ownership());
      const evictions: ContainerEviction[] = [];
      let current = resources;
      for (const s of targets) {
        let reply;
        try {
          reply = await s.call('UpdateContainer', { pod: podMsg, container: ctrMsg, linuxResources: ociResourcesToNri(current) });
        } catch (err) {
          if (isFatalCallError(err)) {
            this.checkLostRequired(s, op, true);
            continue;
          }
          throw this.pluginError(s, 'UpdateContainer', op, err);
        }
        try {
          updates.add(reply.update, s.label);
        } catch (err) {
          throw failedPrecondition(`${op}: ${errorMessage(err)}`, err);
        }
        // An update of the container being updated replaces what was asked for, field by field.
        const own = updates.get(container.id);
        current = own ? applyContainerUpdate(resources, own) : resources;
        evictions.push(...reply.evict);
      }
      for (const i of updates.ignored) this.log.info({ plugin: i.plugin, container: short(i.containerId), reason: i.reason }, 'NRI: conflicting update ignored (ignore_failure)');
      const finalRes = ociResourcesToNri(current);
      for (const b of backlogs) {
        b.push(async (s) => {
          const reply = await s.call('UpdateContainer', { pod: podMsg, container: ctrMsg, linuxResources: finalRes });
          return { source: `${s.label} UpdateContainer (late)`, updates: reply.update.filter((u) => u.containerId !== container.id), evictions: reply.evict };
        });
      }
      // What the container has afterwards: the update over what it had, as crisp writes it to the spec.
      const had = (spec?.linux as { resources?: LinuxResourcesJson } | undefined)?.resources ?? {};
      this.view.setResources(container.id, mergeLinuxResources(had, current));
      return { resources: current, followups: { source: op, updates: updates.list(container.id), evictions } };
    });
    if (result.followups) await this.applyFollowups(result.followups);
    return result.resources;
  }

  async postUpdateContainer(pod: PodRecord, container: ContainerRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.POST_UPDATE_CONTAINER, pod, container, { gate: false, before: () => this.view.noteContainer(container) });
  }

  /** StopContainer: plugins may answer with updates for other containers (resources freed up). */
  async stopContainer(pod: PodRecord, container: ContainerRecord): Promise<void> {
    if (!this.active) return;
    const op = `NRI StopContainer for ${describeContainer(pod, container)}`;
    if (!this.anyPluginActive) {
      this.view.noteContainer(container);
      return;
    }
    const followups = await this.lock.run(async () => {
      this.view.noteContainer(container);
      const targets = this.readyFor(Event.STOP_CONTAINER);
      const backlogs = this.backlogsFor(Event.STOP_CONTAINER);
      if (targets.length === 0 && backlogs.length === 0) return undefined;
      const podMsg = podMessage(pod);
      const ctrMsg = containerMessage(container, await this.view.spec(container.id));
      const stopCall = async (s: PluginSession): Promise<Followups> => {
        const reply = await s.call('StopContainer', { pod: podMsg, container: ctrMsg });
        const own = reply.update.filter((u) => u.containerId === container.id);
        if (own.length > 0) s.logger.info({ container: short(container.id) }, 'NRI plugin asked to update a stopped container; ignored');
        return { source: `${s.label} StopContainer`, updates: reply.update.filter((u) => u.containerId !== container.id), evictions: [] };
      };
      for (const b of backlogs) b.push(stopCall);
      const updates = new UpdateMerger(new Ownership());
      let first: CrispError | undefined;
      for (const s of targets) {
        let reply: Followups;
        try {
          reply = await stopCall(s);
        } catch (err) {
          if (!isFatalCallError(err)) first ??= this.pluginError(s, 'StopContainer', op, err);
          continue;
        }
        try {
          updates.add(reply.updates, s.label);
        } catch (err) {
          first ??= failedPrecondition(`${op}: ${errorMessage(err)}`, err);
        }
      }
      for (const i of updates.ignored) this.log.info({ plugin: i.plugin, container: short(i.containerId), reason: i.reason }, 'NRI: conflicting update ignored (ignore_failure)');
      return { followups: { source: op, updates: updates.list(), evictions: [] }, first };
    });
    if (!followups) return;
    await this.applyFollowups(followups.followups);
    if (followups.first) throw followups.first;
  }

  async removeContainer(pod: PodRecord, container: ContainerRecord): Promise<void> {
    if (!this.active) return;
    await this.notify(Event.REMOVE_CONTAINER, pod, container, { gate: false, after: () => this.view.forgetContainer(container.id) });
  }
}

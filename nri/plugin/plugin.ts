// A TypeScript NRI plugin: connects to the runtime (the NRI socket, or fd 3 when the runtime
// launched it), registers, serves the Plugin service with the handlers it was given and can send
// unsolicited container updates; optionally it dials again when the runtime restarts. Framing
// follows what Go runtimes can read (the mux's default 4096-byte first frame, nri-protocol.md §3a),
// so the same plugin works with containerd and crisp.
import net from 'node:net';
import { basename } from 'node:path';
import { type Input } from '../../common/proto-registry.js';
import {
  Event,
  PluginName,
  RuntimeName,
  type ConfigureRequest,
  type Container,
  type ContainerAdjustment,
  type ContainerEviction,
  type ContainerUpdate,
  type CreateContainerResponse,
  type LinuxResources,
  type PluginMethods,
  type PodSandbox,
  type RuntimeMethods,
  type UpdateContainerResponse,
  type ValidateContainerAdjustmentRequest,
  type ValidateContainerAdjustmentResponse,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import { Mux, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from '../transport/mux.js';
import { TtrpcClient, TtrpcServer } from '../transport/ttrpc.js';
import { TypedTtrpcClient, registerTtrpcService, type TypedTtrpcHandlers } from '../transport/typed-ttrpc.js';
import { EVENT_METHOD, eventBit, eventMask, type WireEvent } from '../host/events.js';
import { checkPluginIndex, checkPluginName, parseQualifiedName, type PluginIdentity } from '../host/identity.js';

export { Event };
export type { PodSandbox, Container, ContainerAdjustment, ContainerUpdate, ContainerEviction, LinuxResources, ConfigureRequest };

export const DEFAULT_NRI_SOCKET = '/var/run/nri/nri.sock';
const SDK_NRI_VERSION = 'v0.12.2';

type Awaitable<T> = T | Promise<T>;

/** What onCreateContainer may return: just an adjustment, or the full response. */
export type CreateContainerResult = Input<ContainerAdjustment> | Input<CreateContainerResponse> | void;
/** What onUpdateContainer may return: the updates, or the full response (with evictions). */
export type UpdateContainerResult = Input<ContainerUpdate>[] | Input<UpdateContainerResponse> | void;

export interface PluginHandlers {
  /** The runtime's Configure; may narrow the subscription by returning event names. */
  onConfigure?(req: ConfigureRequest): Awaitable<void | { events?: string[] }>;
  /** The runtime's state when the plugin connects (split parts already joined). */
  onSynchronize?(pods: PodSandbox[], containers: Container[]): Awaitable<Input<ContainerUpdate>[] | void>;
  onShutdown?(): Awaitable<void>;
  onRunPodSandbox?(pod: PodSandbox): Awaitable<void>;
  onStopPodSandbox?(pod: PodSandbox): Awaitable<void>;
  onRemovePodSandbox?(pod: PodSandbox): Awaitable<void>;
  onUpdatePodSandbox?(pod: PodSandbox, overhead: LinuxResources | null, resources: LinuxResources | null): Awaitable<void>;
  onPostUpdatePodSandbox?(pod: PodSandbox): Awaitable<void>;
  onCreateContainer?(pod: PodSandbox, container: Container): Awaitable<CreateContainerResult>;
  onPostCreateContainer?(pod: PodSandbox, container: Container): Awaitable<void>;
  onStartContainer?(pod: PodSandbox, container: Container): Awaitable<void>;
  onPostStartContainer?(pod: PodSandbox, container: Container): Awaitable<void>;
  onUpdateContainer?(pod: PodSandbox, container: Container, resources: LinuxResources | null): Awaitable<UpdateContainerResult>;
  onPostUpdateContainer?(pod: PodSandbox, container: Container): Awaitable<void>;
  onStopContainer?(pod: PodSandbox, container: Container): Awaitable<Input<ContainerUpdate>[] | void>;
  onRemoveContainer?(pod: PodSandbox, container: Container): Awaitable<void>;
  onValidateContainerAdjustment?(req: ValidateContainerAdjustmentRequest): Awaitable<Input<ValidateContainerAdjustmentResponse> | void>;
  /** Events that arrive as StateChange (the runtime thinks this is an old plugin, or `legacy` is set). */
  onStateChange?(event: Event, pod: PodSandbox | null, container: Container | null): Awaitable<void>;
}

export interface PluginOptions extends PluginHandlers {
  /** Default: NRI_PLUGIN_NAME, else the NN-name of the script file. */
  name?: string;
  /** Two digits. Default: NRI_PLUGIN_IDX, else the NN-name of the script file. */
  index?: string;
  /** Dial this socket. Default: fd NRI_PLUGIN_SOCKET when launched by the runtime, else /var/run/nri/nri.sock. */
  socketPath?: string;
  /** Subscribe to exactly these events (names as in EVENT_METHOD); default: those with a handler. */
  events?: string[];
  /**
   * Behave like a pre-v0.12 plugin: the dedicated notification RPCs answer UNIMPLEMENTED, so the
   * runtime must send those events as StateChange (they then reach the same handlers).
   */
  legacy?: boolean;
  registrationTimeoutMs?: number;
  /**
   * When the runtime goes away after registration, dial the socket again (with backoff) and register
   * anew (the runtime then sends a fresh Synchronize), instead of closing for good. Go stubs leave
   * this to a supervisor restarting the plugin. Only for plugins that dial a socket: a launched
   * plugin's fd 3 cannot come back.
   */
  reconnect?: boolean | ReconnectOptions;
  /** The plugin closed for good: stop(), or the runtime went away and `reconnect` is off. */
  onClose?(reason: Error): void;
  /** With `reconnect`: the connection was lost; the plugin keeps dialing. */
  onDisconnect?(reason: Error): void;
  /** With `reconnect`: registered again after a lost connection. */
  onReconnect?(): void;
}

export interface ReconnectOptions {
  /** First delay before dialing again (default 200 ms); doubles after every failed attempt. */
  initialMs?: number;
  /** Longest delay between attempts (default 10 s). */
  maxMs?: number;
}

const NOTIFY_HANDLERS: [WireEvent, keyof PluginHandlers][] = [
  [Event.RUN_POD_SANDBOX, 'onRunPodSandbox'],
  [Event.STOP_POD_SANDBOX, 'onStopPodSandbox'],
  [Event.REMOVE_POD_SANDBOX, 'onRemovePodSandbox'],
  [Event.POST_UPDATE_POD_SANDBOX, 'onPostUpdatePodSandbox'],
  [Event.POST_CREATE_CONTAINER, 'onPostCreateContainer'],
  [Event.START_CONTAINER, 'onStartContainer'],
  [Event.POST_START_CONTAINER, 'onPostStartContainer'],
  [Event.POST_UPDATE_CONTAINER, 'onPostUpdateContainer'],
  [Event.REMOVE_CONTAINER, 'onRemoveContainer'],
];
const ALL_HANDLERS: [WireEvent, keyof PluginHandlers][] = [
  ...NOTIFY_HANDLERS,
  [Event.CREATE_CONTAINER, 'onCreateContainer'],
  [Event.UPDATE_CONTAINER, 'onUpdateContainer'],
  [Event.STOP_CONTAINER, 'onStopContainer'],
  [Event.UPDATE_POD_SANDBOX, 'onUpdatePodSandbox'],
  [Event.VALIDATE_CONTAINER_ADJUSTMENT, 'onValidateContainerAdjustment'],
];

/** The plugin's identity from options, the environment, or the script's NN-name file name. */
function resolveIdentity(opts: PluginOptions): PluginIdentity {
  let name = opts.name ?? process.env.NRI_PLUGIN_NAME;
  let index = opts.index ?? process.env.NRI_PLUGIN_IDX;
  if (name === undefined || index === undefined) {
    const script = basename(process.argv[1] ?? '').replace(/\.(c|m)?js$/, '');
    try {
      const id = parseQualifiedName(script);
      name ??= id.name;
      index ??= id.index;
    } catch {
      // fall through to the checks below
    }
  }
  if (index === undefined) throw new Error('NRI plugin has no index: pass `index`, set NRI_PLUGIN_IDX, or name the script NN-name');
  name ??= basename(process.argv[1] ?? 'plugin');
  const why = checkPluginName(name) ?? checkPluginIndex(index);
  if (why) throw new Error(`NRI plugin identity: ${why}`);
  return { name, index };
}

function isCreateResponse(r: NonNullable<CreateContainerResult>): r is Input<CreateContainerResponse> {
  return 'adjust' in r || 'update' in r || 'evict' in r;
}

export class Plugin {
  readonly identity: PluginIdentity;
  readonly ready: Promise<void>;
  readonly closed: Promise<Error>;
  private readonly opts: PluginOptions;
  private readonly reconnect: Required<ReconnectOptions> | undefined;
  private started = false;
  private stopped = false;
  private finished = false;
  private socket: net.Socket | undefined;
  private mux: Mux | undefined;
  private runtime: TypedTtrpcClient<RuntimeMethods> | undefined;
  private rawRuntime: TtrpcClient | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private resolveReady!: () => void;
  private resolveClosed!: (reason: Error) => void;
  private syncParts: { pods: PodSandbox[]; containers: Container[] } = { pods: [], containers: [] };

  constructor(opts: PluginOptions) {
    this.opts = opts;
    this.identity = resolveIdentity(opts);
    const policy = opts.reconnect === true ? {} : opts.reconnect || undefined;
    this.reconnect = policy && !this.launched ? { initialMs: policy.initialMs ?? 200, maxMs: policy.maxMs ?? 10_000 } : undefined;
    this.ready = new Promise((r) => (this.resolveReady = r));
    this.closed = new Promise((r) => (this.resolveClosed = r));
  }

  /** The subscription this plugin asks for. */
  get eventMask(): number {
    if (this.opts.events) return eventMask(this.opts.events);
    let mask = 0;
    for (const [event, handler] of ALL_HANDLERS) if (this.opts[handler]) mask |= eventBit(event);
    return mask;
  }

  /** Connects and registers; resolves once the runtime accepted the registration. */
  async start(): Promise<void> {
    if (this.started) throw new Error('NRI plugin already started');
    this.started = true;
    await this.connectAndRegister(true);
  }

  /** Unsolicited updates (and evictions); resolves with the updates the runtime could not apply. */
  async updateContainers(update: Input<ContainerUpdate>[], evict: Input<ContainerEviction>[] = [], timeoutMs = 5000): Promise<ContainerUpdate[]> {
    if (!this.runtime || this.mux?.closed !== false) throw new Error('NRI plugin not connected');
    return (await this.runtime.call('UpdateContainers', { update, evict }, timeoutMs)).failed;
  }

  /** Disconnects for good (also stops reconnecting). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.mux?.close();
    this.finish(new Error('NRI plugin stopped'));
  }

  /** Diagnostics and tests: bytes straight onto the connection, bypassing all framing. */
  writeRaw(bytes: Uint8Array): void {
    if (!this.socket) throw new Error('NRI plugin not started');
    this.socket.write(bytes);
  }

  /** Diagnostics and tests: calls any method name on the runtime's side. */
  callRuntimeRaw(service: string, method: string, payload: Uint8Array = Buffer.alloc(0), timeoutMs = 5000): Promise<Buffer> {
    if (!this.rawRuntime) throw new Error('NRI plugin not started');
    return this.rawRuntime.call(service, method, payload, timeoutMs);
  }

  private get launched(): boolean {
    const fd = process.env.NRI_PLUGIN_SOCKET;
    return !this.opts.socketPath && fd !== undefined && /^[0-9]+$/.test(fd);
  }

  /**
   * One connection: mux, Plugin server, Runtime client, RegisterPlugin. A connection lost before it
   * registered is final only for the first one (start() then fails); a reconnect attempt just fails.
   */
  private async connectAndRegister(first: boolean): Promise<void> {
    const socket = await this.connect();
    if (this.stopped) {
      socket.destroy();
      throw new Error('NRI plugin stopped');
    }
    this.socket = socket;
    const label = `${this.identity.index}-${this.identity.name}`;
    const mux = new Mux(socket, { name: `NRI plugin ${label}` });
    this.mux = mux;
    this.syncParts = { pods: [], containers: [] };
    const server = new TtrpcServer(mux.open(PLUGIN_SERVICE_CONN), { name: `${label} Plugin server` });
    this.rawRuntime = new TtrpcClient(mux.open(RUNTIME_SERVICE_CONN), { name: `${label} Runtime client` });
    this.runtime = new TypedTtrpcClient<RuntimeMethods>(this.rawRuntime, RuntimeName);
    registerTtrpcService<PluginMethods>(server, PluginName, this.serviceHandlers());
    let registered = false;
    let refused = false;
    mux.onClose((reason) => {
      const why = reason ?? new Error('NRI connection closed');
      if (registered) this.connectionLost(why);
      else if (first && !refused) this.finish(why);
    });
    try {
      await this.runtime.call(
        'RegisterPlugin',
        { pluginName: this.identity.name, pluginIdx: this.identity.index, NRIVersion: SDK_NRI_VERSION },
        this.opts.registrationTimeoutMs ?? 5000,
      );
    } catch (err) {
      // The rejection is the report (start() fails, or the next attempt is scheduled), not onClose.
      refused = true;
      mux.close();
      throw err;
    }
    registered = true;
    // Closed while the reply was on its way: the close listener saw registered=false.
    if (mux.closed) this.connectionLost(new Error('NRI connection closed right after registering'));
  }

  private connectionLost(reason: Error): void {
    if (this.stopped || !this.reconnect) {
      this.finish(reason);
      return;
    }
    this.opts.onDisconnect?.(reason);
    this.scheduleRetry(this.reconnect.initialMs);
  }

  private scheduleRetry(delayMs: number): void {
    const policy = this.reconnect!;
    this.retryTimer = setTimeout(() => {
      if (this.stopped) return;
      this.connectAndRegister(false).then(
        () => this.opts.onReconnect?.(),
        () => {
          if (!this.stopped) this.scheduleRetry(Math.min(delayMs * 2, policy.maxMs));
        },
      );
    }, delayMs);
  }

  private finish(reason: Error): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.retryTimer);
    this.opts.onClose?.(reason);
    this.resolveClosed(reason);
  }

  private connect(): Promise<net.Socket> {
    if (this.launched) {
      return Promise.resolve(new net.Socket({ fd: Number(process.env.NRI_PLUGIN_SOCKET), readable: true, writable: true }));
    }
    const path = this.opts.socketPath ?? DEFAULT_NRI_SOCKET;
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(sock);
      });
      sock.once('error', (err) => reject(new Error(`connecting to NRI socket ${path}: ${err.message}`, { cause: err })));
    });
  }

  private serviceHandlers(): TypedTtrpcHandlers<PluginMethods> {
    const h = this.opts;
    const handlers: TypedTtrpcHandlers<PluginMethods> = {
      Configure: async (req) => {
        const narrowed = await h.onConfigure?.(req);
        return { events: narrowed?.events ? eventMask(narrowed.events) : this.eventMask };
      },
      Synchronize: async (req) => {
        this.syncParts.pods.push(...req.pods);
        this.syncParts.containers.push(...req.containers);
        if (req.more) return { more: true };
        const { pods, containers } = this.syncParts;
        this.syncParts = { pods: [], containers: [] };
        const update = (await h.onSynchronize?.(pods, containers)) ?? [];
        this.resolveReady();
        return { update };
      },
      Shutdown: async () => {
        await h.onShutdown?.();
        return {};
      },
      StateChange: async (req) => {
        await this.dispatchNotification(req.event, req.pod, req.container);
        return {};
      },
    };
    // Every method answers, with or without a handler: a plugin whose mask is 0 is subscribed to
    // everything. Only `legacy` leaves the notification RPCs out, so the runtime falls back.
    if (!h.legacy) {
      for (const [event] of NOTIFY_HANDLERS) {
        const method = EVENT_METHOD[event] as 'PostCreateContainer';
        handlers[method] = async (req) => {
          await this.dispatchNotification(event, req.pod, req.container);
          return {};
        };
      }
    }
    handlers.CreateContainer = async (req) => {
      const r = await h.onCreateContainer?.(req.pod!, req.container!);
      if (!r) return {};
      return isCreateResponse(r) ? r : { adjust: r };
    };
    handlers.UpdateContainer = async (req) => {
      const r = await h.onUpdateContainer?.(req.pod!, req.container!, req.linuxResources);
      if (!r) return {};
      return Array.isArray(r) ? { update: r } : r;
    };
    handlers.StopContainer = async (req) => ({ update: (await h.onStopContainer?.(req.pod!, req.container!)) ?? [] });
    handlers.UpdatePodSandbox = async (req) => {
      await h.onUpdatePodSandbox?.(req.pod!, req.overheadLinuxResources, req.linuxResources);
      return {};
    };
    handlers.ValidateContainerAdjustment = async (req) => (await h.onValidateContainerAdjustment?.(req)) ?? {};
    return handlers;
  }

  private async dispatchNotification(event: Event, pod: PodSandbox | null, container: Container | null): Promise<void> {
    const entry = NOTIFY_HANDLERS.find(([e]) => e === event);
    const handler = entry ? this.opts[entry[1]] : undefined;
    if (handler) {
      await (handler as (p: PodSandbox | null, c: Container | null) => Awaitable<void>).call(this.opts, pod, container);
    } else if (this.opts.onStateChange) {
      await this.opts.onStateChange(event, pod, container);
    }
  }
}

// One connected plugin, from the runtime's side: the mux over its socket, our Runtime service on
// conn 2 (RegisterPlugin, UpdateContainers), our client of its Plugin service on conn 1, and the
// registration / Configure / Synchronize steps. Any transport failure (timeout, hang-up, broken
// framing, a call of a method we do not serve) closes the whole session with the reason.
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import { traced } from '../../common/tracing.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import type { Request as TtrpcRequest } from '../../gen/ttrpc.js';
import {
  PluginName,
  RuntimeName,
  type Container,
  type ContainerUpdate,
  type PluginMethods,
  type PodSandbox,
  type RuntimeMethods,
  type UpdateContainersRequest,
  type UpdateContainersResponse,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import { Mux, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from '../transport/mux.js';
import { status } from '../../common/grpc-types.js';
import { TtrpcClient, TtrpcError, TtrpcServer, isTtrpcError, TTRPC_TYPE_REQUEST } from '../transport/ttrpc.js';
import { TtrpcChannel } from '../transport/ttrpc-channel.js';
import { TypedTtrpcClient, registerTtrpcService } from '../transport/typed-ttrpc.js';
import { effectiveEventMask, eventBit, type Event } from './events.js';
import { checkPluginIndex, checkPluginName, qualifiedName, type PluginIdentity } from './identity.js';
import { splitSyncState } from './sync.js';
import { timeNriCall } from '../../common/operation-metrics.js';

export type PluginKind = 'external' | 'launched';
export type SessionState = 'registering' | 'configuring' | 'synchronizing' | 'ready' | 'closed';

/** The NRI API version crisp implements, sent in Configure. */
export const NRI_VERSION = 'v0.12.2';

const requestCodec = codecFor<TtrpcRequest>('ttrpc.Request');
const RUNTIME_METHODS: ReadonlySet<string> = new Set<keyof RuntimeMethods>(['RegisterPlugin', 'UpdateContainers']);
/** Lets the error reply to a refused registration reach the plugin before the socket closes. */
const REFUSAL_LINGER_MS = 50;

export interface PluginSessionOptions {
  kind: PluginKind;
  /** The connected socket (accepted, or our end of a launched plugin's socket pair). */
  trunk: Duplex;
  logger: Logger;
  registrationTimeoutMs: number;
  requestTimeoutMs: number;
  /** A launched plugin keeps the identity of its file name, whatever it registers with. */
  identity?: PluginIdentity;
  /** At registration: why this identity must be refused (e.g. a duplicate), or undefined. */
  admit(id: PluginIdentity, session: PluginSession): string | undefined;
  /** An unsolicited UpdateContainers from the plugin. */
  onUpdateContainers(session: PluginSession, req: UpdateContainersRequest): Promise<Input<UpdateContainersResponse>>;
}

/** Transport failures end the session; a status the plugin answered with does not. */
export function isFatalCallError(err: unknown): boolean {
  return isTtrpcError(err) && (err.failure === 'timeout' || err.failure === 'closed' || err.failure === 'protocol');
}

let nextSerial = 1;

export class PluginSession {
  readonly kind: PluginKind;
  /** Unique per session, for logs before the plugin has a name. */
  readonly serial = nextSerial++;
  readonly connectedAt = new Date();
  identity: PluginIdentity | undefined;
  state: SessionState = 'registering';
  /** Subscription mask from Configure (0 until configured). */
  events = 0;
  /** How many messages the last Synchronize took (more than 1 when the state was split). */
  syncParts = 0;
  /** Set once the plugin answered a dedicated event RPC with UNIMPLEMENTED (a pre-v0.12 plugin). */
  stateChangeOnly = false;
  closeReason: Error | undefined;
  /** Whether the session ended because crisp is stopping (not a plugin failure). */
  closedByHost = false;
  readonly registered: Promise<void>;
  readonly closed: Promise<Error>;

  private readonly opts: PluginSessionOptions;
  private readonly mux: Mux;
  private readonly plugin: TypedTtrpcClient<PluginMethods>;
  private log: Logger;
  private registrationTimer: NodeJS.Timeout | undefined;
  private resolveRegistered!: () => void;
  private rejectRegistered!: (err: Error) => void;
  private resolveClosed!: (reason: Error) => void;
  private refusing = false;

  constructor(opts: PluginSessionOptions) {
    this.opts = opts;
    this.kind = opts.kind;
    this.log = opts.logger.child({ nriPlugin: opts.identity ? qualifiedName(opts.identity) : `external#${this.serial}` });
    this.registered = new Promise<void>((resolve, reject) => {
      this.resolveRegistered = resolve;
      this.rejectRegistered = reject;
    });
    this.registered.catch(() => undefined);
    this.closed = new Promise<Error>((resolve) => (this.resolveClosed = resolve));

    this.mux = new Mux(opts.trunk, { name: `NRI plugin ${this.label}` });
    // Open both conns in this tick: frames for conns not yet open would be dropped.
    const runtimeConn = this.mux.open(RUNTIME_SERVICE_CONN);
    const pluginConn = this.mux.open(PLUGIN_SERVICE_CONN);
    const server = new TtrpcServer(runtimeConn, { name: `${this.label} Runtime server` });
    this.watchRequests(runtimeConn);
    registerTtrpcService<RuntimeMethods>(server, RuntimeName, {
      RegisterPlugin: async (req) => this.onRegister(req.pluginName, req.pluginIdx, req.NRIVersion),
      UpdateContainers: async (req) => {
        if (this.state === 'registering') throw new Error('UpdateContainers before RegisterPlugin');
        return opts.onUpdateContainers(this, req);
      },
    });
    const client = new TtrpcClient(pluginConn, { name: `${this.label} Plugin client` });
    this.plugin = new TypedTtrpcClient<PluginMethods>(client, PluginName);

    this.mux.onClose((reason) => this.close(reason ?? new Error('connection closed')));
    server.onClose((reason) => this.close(reason));
    client.onClose((reason) => this.close(reason));
    this.registrationTimer = setTimeout(
      () => this.close(new Error(`no RegisterPlugin within ${opts.registrationTimeoutMs}ms`)),
      opts.registrationTimeoutMs,
    );
  }

  /** "NN-name" once known, else a placeholder for logs. */
  get label(): string {
    return this.identity ? qualifiedName(this.identity) : this.opts.identity ? qualifiedName(this.opts.identity) : `external#${this.serial}`;
  }

  get name(): string {
    return this.identity?.name ?? '';
  }

  get index(): string {
    return this.identity?.index ?? '';
  }

  get logger(): Logger {
    return this.log;
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  subscribes(event: Event): boolean {
    return (this.events & eventBit(event)) !== 0;
  }

  /**
   * Calls a Plugin-service method with the request timeout (or `timeoutMs`). A transport failure
   * closes the session before the error is rethrown; a status from the plugin is only rethrown.
   */
  async call<K extends keyof PluginMethods & string>(
    method: K,
    request: Input<PluginMethods[K]['request']>,
    timeoutMs = this.opts.requestTimeoutMs,
  ): Promise<PluginMethods[K]['response']> {
    if (this.closeReason) {
      throw new TtrpcError('closed', status.UNAVAILABLE, `${this.label}: ${method}: plugin is disconnected: ${this.closeReason.message}`);
    }
    try {
      return await traced(`nri.${method}`, { 'nri.plugin': this.label }, () =>
        timeNriCall(this.label, method, () => this.plugin.call(method, request, timeoutMs), (err) => isTtrpcError(err, 'timeout')),
      );
    } catch (err) {
      if (isFatalCallError(err)) this.close(new Error(`${method} failed: ${(err as Error).message}`, { cause: err }));
      throw err;
    }
  }

  /** Configure: sends the runtime's identity, the timeouts and the config; learns the event mask. */
  async configure(config: string, runtimeName: string, runtimeVersion: string): Promise<void> {
    const reply = await this.call('Configure', {
      config,
      runtimeName,
      runtimeVersion,
      registrationTimeout: this.opts.registrationTimeoutMs,
      requestTimeout: this.opts.requestTimeoutMs,
      NRIVersion: NRI_VERSION,
    });
    this.events = effectiveEventMask(reply.events);
  }

  /**
   * Synchronize with the given state, split into parts when it is too large for one message. It ends
   * the plugin's registration, so the whole exchange shares the registration timeout (a plugin may
   * take a while to reconcile what already runs; events meanwhile wait in its backlog). Returns the
   * updates the plugin asked for.
   */
  async synchronize(pods: Input<PodSandbox>[], containers: Input<Container>[], partBytes: number): Promise<ContainerUpdate[]> {
    const parts = splitSyncState(pods, containers, partBytes);
    this.syncParts = parts.length;
    const budget = Math.max(this.opts.registrationTimeoutMs, this.opts.requestTimeoutMs);
    const deadline = Date.now() + budget;
    for (let i = 0; i < parts.length; i++) {
      const more = i < parts.length - 1;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Synchronize: no answer to all ${parts.length} parts within ${budget}ms`);
      const reply = await this.call('Synchronize', { ...parts[i]!, more }, left);
      if (!more) return reply.update;
      if (!reply.more || reply.update.length > 0) {
        throw new Error(`plugin does not handle split sync requests (part ${i + 1} of ${parts.length} answered without more=true)`);
      }
    }
    return [];
  }

  /** Ends the session (idempotent; the first reason wins). */
  close(reason: Error): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeReason = reason;
    if (this.registrationTimer) clearTimeout(this.registrationTimer);
    this.rejectRegistered(reason);
    this.mux.close(reason);
    this.resolveClosed(reason);
  }

  private async onRegister(name: string, index: string, version: string): Promise<Input<RuntimeMethods['RegisterPlugin']['response']>> {
    if (this.state !== 'registering' || this.refusing) return this.refuse('RegisterPlugin called twice');
    let id: PluginIdentity;
    if (this.opts.identity) {
      // A launched plugin is whoever its file name says, whatever it registers as.
      id = this.opts.identity;
    } else {
      const why = checkPluginName(name) ?? checkPluginIndex(index);
      if (why) return this.refuse(why);
      id = { name, index };
    }
    const refusal = this.opts.admit(id, this);
    if (refusal) return this.refuse(refusal);
    this.identity = id;
    this.log = this.opts.logger.child({ nriPlugin: qualifiedName(id) });
    if (this.registrationTimer) clearTimeout(this.registrationTimer);
    this.registrationTimer = undefined;
    this.state = 'configuring';
    this.log.info({ kind: this.kind, nriVersion: version || undefined }, 'NRI plugin registered');
    this.resolveRegistered();
    return {};
  }

  private refuse(why: string): never {
    this.refusing = true;
    setTimeout(() => this.close(new Error(`registration refused: ${why}`)), REFUSAL_LINGER_MS).unref();
    throw new Error(why);
  }

  /**
   * A second reader of the Runtime-service conn: the ttrpc server answers an unknown method with
   * UNIMPLEMENTED and carries on, but a plugin calling methods we never offered is broken, so the
   * session is dropped right after that answer.
   */
  private watchRequests(conn: Duplex): void {
    new TtrpcChannel(conn, {
      name: `${this.label} request watch`,
      receives: TTRPC_TYPE_REQUEST,
      onFrame: (_streamId, _flags, data) => {
        let req: TtrpcRequest;
        try {
          req = requestCodec.decode(data);
        } catch (err) {
          setImmediate(() => this.close(new Error(`sent an undecodable request: ${(err as Error).message}`)));
          return;
        }
        if (req.service !== RuntimeName || !RUNTIME_METHODS.has(req.method)) {
          setImmediate(() => this.close(new Error(`called unknown method /${req.service}/${req.method}`)));
        }
      },
      onClose: () => undefined,
    });
  }
}

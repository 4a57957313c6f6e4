// crispd's lifecycle: an explicit state machine (INITIALIZED → STARTING → RUNNING → STOPPING →
// STOPPED, or FAILED) that wires the layers together at start and takes them down in reverse order.
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import { ContainerdClient } from '../backend/containerd/client.js';
import { EmbeddedContainerd } from '../backend/containerd/embedded.js';
import { createInstrument } from '../cri/instrument.js';
import { startCriServer, prepareSocket, socketPath, type CriServer } from '../cri/server.js';
import { lockStateDir } from './state-lock.js';
import { runtimeHandlers, imageHandlers } from '../cri/services.js';
import { NodeStatus } from '../sandbox/node-status.js';
import { RegistryClient } from '../backend/registry/client.js';
import { ImageService } from '../backend/images/service.js';
import { unavailable, invalidArgument, errorMessage } from '../common/errors.js';
import type { CrispConfig } from './config.js';
import { join } from 'node:path';
import { createPodNetwork } from '../cni/index.js';
import { PodController } from '../sandbox/pods/controller.js';
import { ContainerController } from '../sandbox/containers/controller.js';
import { ContainerdRuntime } from '../backend/containerd/runtime.js';
import { WarmShims } from '../backend/containerd/warm-shims.js';
import { ColdPodShims } from '../backend/containerd/cold-pod-shims.js';
import { resolveShimBinary } from '../backend/containerd/shim-binary.js';
import { ensureDefaultProfile } from '../sandbox/apparmor.js';
import { CniStatusCache } from '../cni/status-cache.js';
import { probeHostFeatures } from '../sandbox/host-features.js';
import type { NriHost } from '../nri/host/index.js';
import { crispVersion } from '../common/version.js';
import { probeUsernsSupport, describeSupport } from '../sandbox/userns/probe.js';
import { UsernsMounts } from '../sandbox/userns/userns-mounts.js';
import { allowTraversal } from '../sandbox/userns/state-dirs.js';
import { readFileSync } from 'node:fs';
import { StreamingServer } from '../cri/streaming/server.js';
import { SandboxStreaming } from '../sandbox/streaming.js';
import { CriClient } from '../cri/client.js';
import { MetricsServer, registerRuntimeMetrics, instrumentImagePulls } from './metrics-server.js';
import { SdNotify } from './sd-notify.js';
import { UndoStack } from '../common/undo-stack.js';
import { checkHelper, defaultHelperPath, isExecutableFile, useHelperPath } from '../native/helper-paths.js';
import { registerOperationMetrics } from '../common/operation-metrics.js';
import { startTracing } from './tracing.js';

/** The runc v2 shim group of every container with `shim_grouping = "node"` (containerd's address and namespace make it this crispd's own). */
const NODE_SHIM_GROUP = 'crisp-node';

export type DaemonState = 'INITIALIZED' | 'STARTING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

export class Crispd {
  private state: DaemonState = 'INITIALIZED';
  /** Undo steps registered as resources come up; run in reverse on stop or on a failed start. */
  private readonly undo = new UndoStack();
  private cri: CriServer | undefined;
  private embedded: EmbeddedContainerd | undefined;
  private notify: SdNotify | undefined;
  /** A Version call over the CRI socket, as kubelet makes it (readiness, /healthz). */
  private criAnswers: (() => Promise<unknown>) | undefined;
  /** Arms /healthz once crispd runs. */
  private healthChecks: (() => void) | undefined;
  readonly metrics = new Registry();

  constructor(
    private readonly config: CrispConfig,
    private readonly log: Logger,
  ) {}

  get currentState(): DaemonState {
    return this.state;
  }

  async start(): Promise<void> {
    if (this.state !== 'INITIALIZED') throw new Error(`crispd cannot start from state ${this.state}`);
    this.state = 'STARTING';
    // systemd (Type=notify): READY=1 once the CRI socket answers; children never see NOTIFY_SOCKET.
    this.notify = SdNotify.fromEnvironment(this.log.child({ component: 'sd_notify' }));
    try {
      await this.startLayers();
      this.state = 'RUNNING';
      this.log.info({ socket: this.cri?.path }, 'crispd is serving CRI');
      this.healthChecks?.();
      if (this.notify.enabled) {
        await this.criAnswers?.();
        await this.notify.ready(`serving CRI on ${this.cri?.path}`);
      }
    } catch (err) {
      this.state = 'FAILED';
      await this.runUndo();
      throw err;
    }
  }

  private async startLayers(): Promise<void> {
    const c = this.config;
    // prom-client's process and Node metrics only where /metrics serves them: their event-loop-lag monitor
    // samples on a 10 ms timer, which would wake an idle crispd 100 times a second for nobody.
    if (c.metrics_address !== '') collectDefaultMetrics({ register: this.metrics, prefix: 'crisp_' });
    registerOperationMetrics(this.metrics);
    // Checked before anything starts: a missing helper stops the start naming its key.
    const helpers = { nshelper: checkHelper('crisp-nshelper', c.nshelper_path), logger: checkHelper('crisp-logger', c.logger_path) };
    useHelperPath('crisp-nshelper', helpers.nshelper);
    useHelperPath('crisp-logger', helpers.logger);
    this.log.info({ helpers }, 'native helpers');
    const timeoutMs = c.containerd_timeout * 1000;
    // Refuse early, before touching containerd, when another daemon owns the socket or state dir.
    await prepareSocket(socketPath(c.socket));
    const lock = lockStateDir(c.state);
    this.undo.push('state lock', () => lock.release());
    // Bound before anything else starts: an address that cannot be bound stops the start naming the key.
    let metricsServer: MetricsServer | undefined;
    if (c.metrics_address !== '') {
      const server = new MetricsServer({ address: c.metrics_address, registry: this.metrics, log: this.log.child({ component: 'metrics' }) });
      await server.start();
      metricsServer = server;
      this.undo.push('metrics server', () => server.stop());
    }

    const stopTracing = await startTracing(c, process.env, { log: this.log.child({ component: 'tracing' }), registry: this.metrics });
    if (stopTracing) this.undo.push('tracing', stopTracing);

    let address = c.containerd_address;
    if (address === '') {
      const embedded = new EmbeddedContainerd({
        binary: c.containerd_binary,
        root: c.root,
        state: c.state,
        snapshotter: c.snapshotter,
        startTimeoutMs: timeoutMs,
        ...this.shimStartHelper(c),
        log: this.log.child({ component: 'containerd' }),
      });
      await embedded.start();
      this.embedded = embedded;
      this.undo.push('embedded containerd', () => embedded.stop(c.shutdown_timeout * 1000));
      address = embedded.address;
    }

    const containerd = new ContainerdClient({ address, namespace: c.containerd_namespace, timeoutMs });
    this.undo.push('containerd client', () => containerd.close());
    if (c.containerd_address !== '') {
      try {
        await containerd.ping(Math.min(timeoutMs, 5000));
      } catch (err) {
        throw unavailable(
          `containerd_address ${address}: ${errorMessage(err)}. Start that containerd, or leave containerd_address empty to use the embedded one`,
        );
      }
    }

    const network = createPodNetwork({
      confDir: c.cni_conf_dir,
      binDirs: c.cni_bin_dirs,
      cacheDir: join(c.root, 'cni', 'results'),
      timeoutMs: c.cni_timeout * 1000,
      logger: this.log.child({ component: 'cni' }),
    });
    // Once per start: whether userns pods get idmapped mounts, the chown fallback, or nothing.
    const usernsSupport = await probeUsernsSupport({ stateDir: c.state, rootDir: c.root, chownFallback: c.userns_chown_fallback });
    this.log.info({ userns: usernsSupport }, describeSupport(usernsSupport));
    if (usernsSupport.userNamespaces) await allowTraversal([c.state, ...(this.embedded ? [join(c.state, 'containerd')] : [])]);
    const userns = new UsernsMounts({ stateDir: c.state, support: usernsSupport, log: this.log.child({ component: 'userns' }) });
    this.undo.push('userns read-only layer views', () => userns.close());
    // Status is polled by kubelet every few seconds: plugins are asked again only after a change.
    const networkStatus = new CniStatusCache(() => network.status(), c.cni_conf_dir);
    this.undo.push('CNI status watcher', async () => networkStatus.close());
    const handlerList = ['', ...Object.keys(c.runtimes)].map((name) => ({
      name,
      recursiveReadOnlyMounts: true,
      userNamespaces: usernsSupport.userNamespaces,
    }));
    const node = new NodeStatus({
      containerd,
      containerdAddress: address,
      embedded: this.embedded !== undefined,
      network: async () => {
        const st = await networkStatus.get();
        return { ready: st.ready, reason: st.reason ?? '', message: st.message ?? '' };
      },
      // The default handler is listed as "" (what kubelet asks for) and under its own name. Both come from
      // the configuration and the start-time probe, so the list is made once (Status reads it per call).
      handlers: () => handlerList,
      cgroupDriver: c.cgroup_driver as 'systemd' | 'cgroupfs',
      userns: usernsSupport,
    });
    const instrument = createInstrument(this.log.child({ component: 'cri' }), this.metrics);
    const registry = new RegistryClient({
      hosts: { configPath: c.image_config_path },
      logger: this.log.child({ component: 'registry' }),
    });
    this.undo.push('registry client', () => registry.close());
    const images = instrumentImagePulls(new ImageService(containerd, registry, {
      snapshotter: c.snapshotter,
      maxConcurrentDownloads: c.image_max_concurrent_downloads,
      progressTimeoutMs: c.image_pull_progress_timeout * 1000,
      progressDir: join(c.state, 'pulls'),
      ...(this.embedded ? { contentRoot: this.embedded.paths.contentRoot } : {}),
      ...this.localExtract(c),
      pinned: c.image_pinned,
      log: this.log.child({ component: 'images' }),
    }), this.metrics);
    // ImageStatus/ListImages answer from memory once containerd's image events are followed.
    this.undo.push('image event stream', images.followEvents());
    const warm = this.warmShims(c, address);
    if (warm) this.undo.push('warm pod shims', () => warm.close());
    const shims = warm ?? new ColdPodShims({ containerdAddress: address, namespace: c.containerd_namespace, log: this.log.child({ component: 'shims' }) });
    const pods = new PodController({
      podsDir: join(c.root, 'pods'),
      runDir: join(c.state, 'pods'),
      cgroupDriver: c.cgroup_driver as 'systemd' | 'cgroupfs',
      defaultCgroupParent: c.cgroup_parent,
      cgroupParentMarker: join(c.state, 'cgroup-parent-created'),
      network,
      podCidr: () => node.getPodCidr(),
      userns,
      shims,
      log: this.log.child({ component: 'pods' }),
    });
    await pods.recover();
    const handler = c.runtimes[c.default_runtime_handler]!;
    const runtime = new ContainerdRuntime(containerd, {
      runtimeType: handler.runtime_type,
      runcRoot: join(c.state, 'runc'),
      systemdCgroup: c.cgroup_driver === 'systemd',
      binaryName: handler.binary_name,
      snapshotter: c.snapshotter,
    });
    const host = probeHostFeatures();
    if (!host.hugetlb) this.log.warn('no hugetlb cgroup controller on this host: hugepage limits are not applied');
    if (host.apparmor) host.apparmorDefaultLoaded = await ensureDefaultProfile(this.log.child({ component: 'apparmor' }));
    const containers = new ContainerController({
      dir: join(c.root, 'containers'),
      runtime,
      images,
      pods,
      cgroupDriver: c.cgroup_driver as 'systemd' | 'cgroupfs',
      host,
      ...(c.shim_grouping === 'node' ? { shimGroup: NODE_SHIM_GROUP } : {}),
      execDir: join(c.state, 'exec'),
      runDir: join(c.state, 'containers'),
      cdiSpecDirs: c.cdi_spec_dirs,
      userns,
      log: this.log.child({ component: 'containers' }),
    });
    pods.setContainerHooks({ stopAll: (id) => containers.stopAllInPod(id), removeAll: (id) => containers.removeAllInPod(id) });
    await containers.recover();
    let nriHost: NriHost | undefined;
    if (c.nri_enabled) {
      // The NRI host and its ttrpc transport load only when NRI is on.
      const { NriHost } = await import('../nri/host/index.js');
      const nri = new NriHost({
        access: {
          pods: () => pods.list(),
          containers: () => containers.list(),
          containerSpec: (id) => containers.ociSpec(id),
          updateContainerResources: (id, linux) => containers.applyLinuxResources(id, linux),
          evictContainer: (id, reason) => containers.evict(id, reason),
        },
        logger: this.log.child({ component: 'nri' }),
        runtimeVersion: crispVersion(),
        socketPath: c.nri_socket,
        pluginDir: c.nri_plugin_dir,
        pluginConfigDir: c.nri_plugin_config_dir,
        requiredPlugins: c.nri_required_plugins,
        // Configure carries them to plugins as whole milliseconds.
        registrationTimeoutMs: Math.max(1, Math.round(c.nri_registration_timeout * 1000)),
        requestTimeoutMs: Math.max(1, Math.round(c.nri_request_timeout * 1000)),
        enableExternal: true,
      });
      await nri.start();
      nriHost = nri;
      this.undo.push('NRI host', () => nri.stop());
      pods.setNri(nri);
      containers.setNri(nri);
      node.setNriPlugins(() => nri.plugins());
    }
    this.undo.push('container event stream', () => containers.close());
    const podMapping = {
      handlers: Object.keys(c.runtimes),
      defaultHandler: c.default_runtime_handler,
      cgroupDriver: c.cgroup_driver as 'systemd' | 'cgroupfs',
      podLogRoot: c.pod_log_root,
    };
    const readPem = (key: 'streaming_tls_cert' | 'streaming_tls_key') => {
      try {
        return readFileSync(c[key]);
      } catch (err) {
        throw invalidArgument(`config key "${key}": ${errorMessage(err)}`);
      }
    };
    const streaming = new StreamingServer({
      address: c.streaming_address,
      port: c.streaming_port,
      ...(c.streaming_tls_cert ? { tls: { cert: readPem('streaming_tls_cert'), key: readPem('streaming_tls_key') } } : {}),
      idleTimeoutMs: c.streaming_idle_timeout * 1000,
      tokenTtlMs: c.streaming_url_ttl * 1000,
      runtime: new SandboxStreaming({ containers, pods, runtime, execDir: join(c.state, 'exec'), log: this.log.child({ component: 'streaming' }) }),
      log: this.log.child({ component: 'streaming' }),
    });
    await streaming.start();
    this.undo.push('streaming server', () => streaming.stop());
    registerRuntimeMetrics(this.metrics, {
      version: crispVersion(),
      pods: () => pods.list(),
      containers: () => containers.list(),
      ...(nriHost ? { nriPlugins: () => nriHost.plugins() } : {}),
      containerdPing: (ms) => containerd.ping(ms),
      streamingSessions: () => streaming.activeSessions,
    });
    const deps = { node, images, pods, podMapping, containers, streaming };
    this.cri = await startCriServer(socketPath(c.socket), instrument, runtimeHandlers(deps), imageHandlers(deps));
    const cri = this.cri;
    this.undo.push('CRI server', async () => {
      const bound = c.shutdown_timeout * 1000;
      const done = cri.shutdown();
      const left = await instrument.drain(bound);
      if (left > 0) {
        this.log.warn({ inFlight: left }, 'shutdown: cancelling calls still running after shutdown_timeout');
        cri.forceShutdown();
      }
      await Promise.race([done, new Promise((r) => setTimeout(r, 1000).unref())]);
    });
    const probe = new CriClient(`unix://${cri.path}`, 2000);
    this.undo.push('CRI probe client', () => probe.close());
    const criAnswers = () => probe.runtime.unary('Version', { version: 'v1' });
    this.criAnswers = criAnswers;
    if (metricsServer) {
      const server = metricsServer;
      this.healthChecks = () =>
        server.setHealthChecks([
          { name: 'cri', check: criAnswers },
          { name: 'containerd', check: (ms) => containerd.ping(ms) },
        ]);
    }
  }

  /**
   * crisp unpacks layers itself (crisp-untar into the embedded containerd's overlayfs snapshots) unless
   * told not to, the containerd is external, the snapshotter is another, or crisp-untar is missing.
   */
  private localExtract(c: CrispConfig): { localExtract?: { untar: string; snapshotRoot: string } } {
    if (c.image_unpack !== 'crisp' || !this.embedded || c.snapshotter !== 'overlayfs') return {};
    const untar = defaultHelperPath('crisp-untar');
    if (!isExecutableFile(untar)) {
      this.log.warn({ path: untar }, 'crisp-untar not found; containerd unpacks image layers');
      return {};
    }
    return { localExtract: { untar, snapshotRoot: join(this.embedded.paths.root, 'io.containerd.snapshotter.v1.overlayfs') } };
  }

  /** crisp-shim-start for the embedded containerd, when configured and built or installed. */
  private shimStartHelper(c: CrispConfig): { shimStartHelper?: string } {
    if (!c.shim_start_helper) return {};
    const helper = defaultHelperPath('crisp-shim-start');
    if (isExecutableFile(helper)) return { shimStartHelper: helper };
    this.log.warn({ path: helper }, 'crisp-shim-start not found; containerd runs the shim for every task start');
    return {};
  }

  /**
   * Warm pod shims need the shim binary the embedded containerd would run for the default handler
   * (found the way containerd finds it); with an external containerd crisp cannot know it.
   */
  private warmShims(c: CrispConfig, address: string): WarmShims | undefined {
    const runtimeType = c.runtimes[c.default_runtime_handler]?.runtime_type ?? '';
    if (!c.warm_pod_shims || !this.embedded || runtimeType !== 'io.containerd.runc.v2') return undefined;
    // One node-wide shim: containerd starts it with the node's first container; nothing per pod to warm.
    if (c.shim_grouping === 'node') return undefined;
    const lookup = this.embedded.shimLookup();
    // Behind crisp-shim-start the real shim is named in containerd's environment: start that one.
    const shimBinary = lookup && (lookup.runcShim ?? resolveShimBinary(runtimeType, lookup));
    if (!lookup || !shimBinary) {
      this.log.warn({ runtimeType }, 'no shim binary found for warm pod shims; the first container of each pod starts its shim');
      return undefined;
    }
    return new WarmShims({
      dir: join(c.state, 'shims'),
      shimBinary,
      // containerd runs its shims through crisp-shim-start: the warm start does too.
      ...(lookup.runcShim && this.embedded.shimStartHelper ? { starter: this.embedded.shimStartHelper } : {}),
      containerdAddress: address,
      ttrpcAddress: `${address}.ttrpc`,
      containerdBinary: lookup.containerdBinary,
      namespace: c.containerd_namespace,
      log: this.log.child({ component: 'shims' }),
    });
  }

  private async runUndo(): Promise<void> {
    await this.undo.unwind(this.log, 'crispd shutdown');
  }

  /** Graceful stop: refuse new calls, let running ones finish (bounded), stop the embedded containerd. */
  async stop(): Promise<void> {
    if (this.state === 'STOPPING' || this.state === 'STOPPED') return;
    this.state = 'STOPPING';
    this.log.info('crispd stopping');
    if (this.notify?.enabled) await this.notify.stopping();
    await this.runUndo();
    this.state = 'STOPPED';
    this.log.info('crispd stopped');
  }
}

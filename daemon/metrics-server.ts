// crispd's observability endpoint (config `metrics_address`, off when empty): GET /metrics answers the
// Prometheus text format from crispd's prom-client registry, GET /healthz answers 200 when the CRI socket
// answers a Version call and containerd answers a ping, 503 otherwise (and while crispd starts or stops).
//
// The runtime metrics registered here are collected at scrape time from their owners (nothing is counted
// twice, nothing runs between scrapes). Names follow containerd's and CRI-O's where they have an
// equivalent (CRI-O's crio_ prefix becomes crisp_), crisp_ for the rest:
//   crisp_pods{state}, crisp_containers{state}                         pods and containers by CRI state
//   crisp_image_pulls_success_total, crisp_image_pulls_failure_total{error},
//   crisp_image_pulls_bytes_total                                      CRI-O's names
//   crisp_in_progress_image_pulls                                      containerd's (cri) name
//   crisp_image_pull_duration_seconds{status}
//   crisp_nri_plugin_connected{plugin,kind,required}, crisp_nri_plugin_failures_total{plugin}
//   crisp_containerd_up, crisp_streaming_sessions, crisp_build_info{version}
// The per-RPC metrics come from cri/instrument.ts; crisp_process_* and crisp_nodejs_* from prom-client.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { status, statusName } from '../common/grpc-types.js';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { errorMessage, invalidArgument } from '../common/errors.js';
import { parseListenAddress } from './listen-address.js';
import { toStatus } from '../cri/instrument.js';
import type { PullOptions, PullResult } from '../backend/images/pull.js';
import type { NriPluginInfo } from '../nri/host/index.js';

/** One /healthz check: resolves when healthy, rejects with the reason. */
export interface HealthCheck {
  name: string;
  check: (timeoutMs: number) => Promise<unknown>;
}

export interface MetricsServerOptions {
  /** The config value, e.g. "127.0.0.1:9099". */
  address: string;
  registry: Registry;
  log: Logger;
  /** The config key, for errors. Default "metrics_address". */
  key?: string;
  /** Per check. Default 2000. */
  healthTimeoutMs?: number;
}

export class MetricsServer {
  private readonly server: Server;
  private checks: HealthCheck[] | undefined;
  private bound = '';

  constructor(private readonly opts: MetricsServerOptions) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        opts.log.warn({ err: errorMessage(err), path: req.url }, 'metrics request failed');
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end(`${errorMessage(err)}\n`);
      });
    });
    // Scrapers keep connections open; they must not hold crispd's shutdown.
    this.server.keepAliveTimeout = 5000;
  }

  /** Bind; an address that cannot be bound fails naming the config key. Resolves to "host:port". */
  async start(): Promise<string> {
    const key = this.opts.key ?? 'metrics_address';
    const { host, port } = parseListenAddress(key, this.opts.address);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(invalidArgument(`config key "${key}": cannot listen on ${this.opts.address}: ${err.message}`));
      this.server.once('error', onError);
      const done = () => {
        this.server.off('error', onError);
        resolve();
      };
      if (host === '') this.server.listen(port, done);
      else this.server.listen(port, host, done);
    });
    this.server.on('error', (err) => this.opts.log.warn({ err: err.message }, 'metrics server error'));
    const a = this.server.address() as AddressInfo;
    this.bound = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    this.opts.log.info({ address: this.bound, paths: ['/metrics', '/healthz'] }, 'metrics server listening');
    return this.bound;
  }

  /** "host:port" once bound. */
  get address(): string {
    return this.bound;
  }

  /** What /healthz checks; until this is called (crispd still starting) it answers 503. */
  setHealthChecks(checks: HealthCheck[]): void {
    this.checks = checks;
  }

  async stop(): Promise<void> {
    this.checks = undefined;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Length': '0' }).end();
      return;
    }
    if (path === '/metrics') {
      const body = await this.opts.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.opts.registry.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/healthz') {
      const { ok, body } = await this.health();
      res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: try /metrics or /healthz\n');
  }

  /** Kubernetes' verbose healthz format: one [+]/[-] line per check, then the verdict. */
  async health(): Promise<{ ok: boolean; body: string }> {
    const checks = this.checks;
    if (!checks) return { ok: false, body: '[-]crispd failed: not serving (starting or stopping)\nhealthz check failed\n' };
    const timeoutMs = this.opts.healthTimeoutMs ?? 2000;
    const results = await Promise.all(
      checks.map(async (c) => {
        try {
          await withTimeout(c.check(timeoutMs), timeoutMs + 500, `${c.name} check timed out`);
          return { name: c.name, error: undefined };
        } catch (err) {
          return { name: c.name, error: errorMessage(err).replace(/\s+/g, ' ') };
        }
      }),
    );
    const ok = results.every((r) => r.error === undefined);
    const lines = results.map((r) => (r.error === undefined ? `[+]${r.name} ok` : `[-]${r.name} failed: ${r.error}`));
    return { ok, body: `${lines.join('\n')}\nhealthz check ${ok ? 'passed' : 'failed'}\n` };
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Where the scrape-time metrics come from. */
export interface RuntimeMetricSources {
  version: string;
  pods: () => readonly { state: string }[];
  containers: () => readonly { state: string }[];
  /** Absent when NRI is disabled. */
  nriPlugins?: () => readonly NriPluginInfo[];
  /** Resolves when containerd answers. */
  containerdPing: (timeoutMs: number) => Promise<unknown>;
  streamingSessions: () => number;
}

const POD_STATES = ['ready', 'notready'];
const CONTAINER_STATES = ['created', 'running', 'exited', 'unknown'];

function countBy(items: readonly { state: string }[], states: readonly string[]): Map<string, number> {
  const counts = new Map(states.map((s) => [s, 0]));
  for (const i of items) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
  return counts;
}

/** Gauges read from the controllers, the NRI host, containerd and the streaming server at scrape time. */
export function registerRuntimeMetrics(registry: Registry, sources: RuntimeMetricSources): void {
  const registers = [registry];
  new Gauge({
    name: 'crisp_build_info',
    help: 'crisp version (always 1)',
    labelNames: ['version'],
    registers,
    collect() {
      this.set({ version: sources.version }, 1);
    },
  });
  new Gauge({
    name: 'crisp_pods',
    help: 'Pod sandboxes by CRI state (ready, notready)',
    labelNames: ['state'],
    registers,
    collect() {
      for (const [state, n] of countBy(sources.pods(), POD_STATES)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'crisp_containers',
    help: 'Containers by CRI state (created, running, exited, unknown)',
    labelNames: ['state'],
    registers,
    collect() {
      for (const [state, n] of countBy(sources.containers(), CONTAINER_STATES)) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'crisp_containerd_up',
    help: 'Whether containerd answered a ping at scrape time (1) or not (0)',
    registers,
    async collect() {
      try {
        await sources.containerdPing(1000);
        this.set(1);
      } catch {
        this.set(0);
      }
    },
  });
  new Gauge({
    name: 'crisp_streaming_sessions',
    help: 'Exec, attach and port-forward sessions open on the streaming server',
    registers,
    collect() {
      this.set(sources.streamingSessions());
    },
  });
  const nriPlugins = sources.nriPlugins;
  if (nriPlugins) {
    const plugin = (p: NriPluginInfo) => `${p.index}-${p.name}`;
    new Gauge({
      name: 'crisp_nri_plugin_connected',
      help: 'NRI plugins crisp knows of: 1 while connected (registering, synchronizing or ready), 0 while gone or restarting',
      labelNames: ['plugin', 'kind', 'required'],
      registers,
      collect() {
        this.reset();
        for (const p of nriPlugins()) {
          const up = p.connectedAt !== null && p.health !== 'closed';
          this.set({ plugin: plugin(p), kind: p.kind, required: String(p.required) }, up ? 1 : 0);
        }
      },
    });
    new Counter({
      name: 'crisp_nri_plugin_failures_total',
      help: 'Disconnects of an NRI plugin crisp did not ask for (timeouts, protocol errors, crashes, failed setup)',
      labelNames: ['plugin'],
      registers,
      collect() {
        this.reset();
        for (const p of nriPlugins()) this.inc({ plugin: plugin(p) }, p.failures);
      },
    });
  }
}

/** The one method of the image service the pull metrics wrap. */
export interface Puller {
  pull(reference: string, options?: PullOptions): Promise<PullResult>;
}

/**
 * Count the pulls of `images` (wrapping its `pull`): successes, failures by gRPC code (CRI-O's
 * `error` label), bytes received from registries, pulls in progress, duration. Returns `images`.
 */
export function instrumentImagePulls<T extends Puller>(images: T, registry: Registry): T {
  const registers = [registry];
  const success = new Counter({ name: 'crisp_image_pulls_success_total', help: 'Successful image pulls', registers });
  const failure = new Counter({
    name: 'crisp_image_pulls_failure_total',
    help: 'Failed image pulls by error (the gRPC code PullImage answered)',
    labelNames: ['error'],
    registers,
  });
  const bytes = new Counter({
    name: 'crisp_image_pulls_bytes_total',
    help: 'Bytes image pulls received from registries (layers already present and resumed data excluded)',
    registers,
  });
  const inProgress = new Gauge({ name: 'crisp_in_progress_image_pulls', help: 'Image pulls running now', registers });
  const duration = new Histogram({
    name: 'crisp_image_pull_duration_seconds',
    help: 'Image pull duration by status (success, failure)',
    labelNames: ['status'],
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers,
  });
  const pull = images.pull.bind(images);
  images.pull = async (reference: string, options: PullOptions = {}): Promise<PullResult> => {
    inProgress.inc();
    const end = duration.startTimer();
    let received = 0;
    const onProgress = options.onProgress;
    try {
      const result = await pull(reference, {
        ...options,
        onProgress: (p) => {
          const now = p.received ?? received;
          if (now > received) bytes.inc(now - received);
          received = Math.max(received, now);
          onProgress?.(p);
        },
      });
      success.inc();
      end({ status: 'success' });
      return result;
    } catch (err) {
      const code = toStatus(err).code ?? status.UNKNOWN;
      failure.inc({ error: statusName(code) ?? String(code) });
      end({ status: 'failure' });
      throw err;
    } finally {
      inProgress.dec();
    }
  };
  return images;
}

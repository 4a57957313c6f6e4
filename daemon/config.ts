// crispd configuration: one declarative schema gives the defaults, the documented default file
// (`crisp config default`), and validation that names the offending key.
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { invalidArgument, isENOENT } from '../common/errors.js';
import { parseListenAddress } from './listen-address.js';
import { tracesUrl } from './tracing-settings.js';

type Scalar = string | number | boolean;
type Value = Scalar | string[] | Record<string, RuntimeHandlerConfig>;

export interface RuntimeHandlerConfig {
  runtime_type: string;
  /** Path to the runc binary ("" = the shim's default lookup). */
  binary_name: string;
  /** Extra features this handler supports. */
  privileged_without_host_devices: boolean;
}

export interface CrispConfig {
  socket: string;
  root: string;
  state: string;
  log_level: string;
  containerd_address: string;
  containerd_binary: string;
  containerd_namespace: string;
  containerd_timeout: number;
  cgroup_driver: string;
  cgroup_parent: string;
  default_runtime_handler: string;
  shutdown_timeout: number;
  pod_log_root: string;
  cni_conf_dir: string;
  cni_bin_dirs: string[];
  cni_timeout: number;
  image_config_path: string;
  image_pull_progress_timeout: number;
  image_max_concurrent_downloads: number;
  image_unpack: string;
  image_pinned: string[];
  snapshotter: string;
  streaming_address: string;
  streaming_port: number;
  streaming_idle_timeout: number;
  streaming_tls_cert: string;
  streaming_tls_key: string;
  streaming_url_ttl: number;
  streaming_allow_insecure_remote: boolean;
  nri_enabled: boolean;
  nri_socket: string;
  nri_plugin_dir: string;
  nri_plugin_config_dir: string;
  nri_required_plugins: string[];
  nri_registration_timeout: number;
  nri_request_timeout: number;
  userns_chown_fallback: boolean;
  warm_pod_shims: boolean;
  shim_grouping: string;
  shim_start_helper: boolean;
  cdi_spec_dirs: string[];
  metrics_address: string;
  nshelper_path: string;
  logger_path: string;
  tracing_endpoint: string;
  tracing_sampling_rate_per_million: number;
  log_format: string;
  runtimes: Record<string, RuntimeHandlerConfig>;
}

interface KeyDoc {
  doc: string;
  oneOf?: string[];
  min?: number;
  /** The number must be above 0 (fractions allowed): a zero timeout would fail every call. */
  positive?: boolean;
}

/** Loopback only: 127.0.0.0/8, ::1, localhost. */
function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address);
}

export const DEFAULT_CONFIG: CrispConfig = {
  socket: '/run/crisp/crisp.sock',
  root: '/var/lib/crisp',
  state: '/run/crisp',
  log_level: 'info',
  containerd_address: '',
  containerd_binary: 'containerd',
  containerd_namespace: 'k8s.io',
  containerd_timeout: 30,
  cgroup_driver: 'cgroupfs',
  cgroup_parent: '/crisp',
  default_runtime_handler: 'runc',
  shutdown_timeout: 10,
  pod_log_root: '',
  cni_conf_dir: '/etc/cni/net.d',
  cni_bin_dirs: ['/opt/cni/bin', '/usr/lib/cni'],
  cni_timeout: 60,
  image_config_path: '/etc/crisp/certs.d',
  image_pull_progress_timeout: 300,
  image_max_concurrent_downloads: 3,
  image_unpack: 'crisp',
  image_pinned: [],
  snapshotter: 'overlayfs',
  streaming_address: '127.0.0.1',
  streaming_port: 0,
  streaming_idle_timeout: 14400,
  streaming_tls_cert: '',
  streaming_tls_key: '',
  streaming_url_ttl: 60,
  streaming_allow_insecure_remote: false,
  nri_enabled: true,
  nri_socket: '/var/run/nri/nri.sock',
  nri_plugin_dir: '/opt/nri/plugins',
  nri_plugin_config_dir: '/etc/nri/conf.d',
  nri_required_plugins: [],
  nri_registration_timeout: 5,
  nri_request_timeout: 2,
  userns_chown_fallback: false,
  warm_pod_shims: true,
  shim_grouping: 'pod',
  shim_start_helper: true,
  cdi_spec_dirs: ['/etc/cdi', '/var/run/cdi'],
  metrics_address: '',
  nshelper_path: '',
  logger_path: '',
  tracing_endpoint: '',
  tracing_sampling_rate_per_million: 1_000_000,
  log_format: 'json',
  runtimes: {
    runc: { runtime_type: 'io.containerd.runc.v2', binary_name: '', privileged_without_host_devices: false },
  },
};

const DOCS: Record<keyof CrispConfig, KeyDoc> = {
  socket: { doc: 'CRI gRPC socket (mode 0660; a parent directory crisp creates is 0700)' },
  root: { doc: 'persistent state: pod/container records, CNI cache, embedded containerd root' },
  state: { doc: 'runtime state: pinned namespaces, FIFOs, embedded containerd state' },
  log_level: { doc: 'trace, debug, info, warn, error or fatal', oneOf: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] },
  containerd_address: { doc: 'socket of an existing containerd; empty = start an embedded containerd child' },
  containerd_binary: { doc: 'containerd binary for the embedded child (looked up in PATH)' },
  containerd_namespace: { doc: 'containerd namespace for everything crisp creates' },
  containerd_timeout: { doc: 'seconds to wait for containerd at start and per call', min: 1 },
  cgroup_driver: { doc: 'cgroupfs or systemd', oneOf: ['cgroupfs', 'systemd'] },
  cgroup_parent: { doc: 'default parent cgroup for pods kubelet gives none for' },
  default_runtime_handler: { doc: 'runtime handler used when a pod names none' },
  shutdown_timeout: { doc: 'seconds in-flight calls get to finish on SIGTERM', min: 0 },
  pod_log_root: { doc: 'opt-in restriction: when set, pod log directories must lie below it (empty = any absolute path, as containerd and CRI-O accept)' },
  cni_conf_dir: { doc: 'CNI network configurations (lowest-sorted valid file wins)' },
  cni_bin_dirs: { doc: 'directories searched for CNI plugin binaries, in order' },
  cni_timeout: { doc: 'seconds one CNI plugin call may take', min: 1 },
  image_config_path: { doc: 'registry host configuration in containerd hosts.toml layout (<dir>/<host>/hosts.toml)' },
  image_pull_progress_timeout: { doc: 'seconds a pull may make no byte progress before it is cancelled', min: 1 },
  image_max_concurrent_downloads: { doc: 'layers fetched at once per pull', min: 1 },
  image_unpack: {
    doc: 'who unpacks layers: crisp (crisp-untar, in parallel as layers arrive; embedded containerd with overlayfs only) or containerd (its differ)',
    oneOf: ['crisp', 'containerd'],
  },
  image_pinned: { doc: 'image references reported as pinned (never garbage collected by kubelet)' },
  snapshotter: { doc: 'containerd snapshotter for image layers and container rootfs' },
  streaming_address: { doc: 'address the exec/attach/port-forward streaming server listens on' },
  streaming_port: { doc: 'streaming server port (0 = a free port)', min: 0 },
  streaming_idle_timeout: { doc: 'seconds an idle streaming session stays open', min: 1 },
  streaming_tls_cert: { doc: 'PEM certificate for the streaming server; with streaming_tls_key it serves https (empty = plain http)' },
  streaming_tls_key: { doc: 'PEM private key for streaming_tls_cert (both or neither)' },
  streaming_url_ttl: { doc: 'seconds an exec/attach/port-forward URL stays usable (once)', positive: true },
  streaming_allow_insecure_remote: { doc: 'allow plain http on a non-loopback streaming_address (otherwise TLS is required there, as for kubelet)' },
  nri_enabled: { doc: 'run the NRI host' },
  nri_socket: { doc: 'socket external NRI plugins connect to' },
  nri_plugin_dir: { doc: 'pre-installed NRI plugins (NN-name) launched by crisp' },
  nri_plugin_config_dir: { doc: 'configuration for pre-installed NRI plugins' },
  nri_required_plugins: { doc: 'NRI plugins ("name" or "NN-name") without which pods and containers are not created or changed' },
  nri_registration_timeout: { doc: 'seconds a connected NRI plugin has to register; then it is dropped', positive: true },
  nri_request_timeout: { doc: 'seconds an NRI plugin has to answer one call (Configure, Synchronize, an event); then it is dropped', positive: true },
  userns_chown_fallback: { doc: 'allow chown-based rootfs for user-namespace pods where idmapped mounts are unavailable' },
  warm_pod_shims: { doc: "start each pod's runc shim as RunPodSandbox answers (embedded containerd with a runc v2 default handler only)" },
  shim_grouping: {
    doc: 'pod: one runc v2 shim per pod (as containerd); node: one shim for every container on the node (less memory; a shim crash then touches every container)',
    oneOf: ['pod', 'node'],
  },
  shim_start_helper: { doc: "run the runc v2 shim's start and delete commands through crisp-shim-start, without the Go shim command's start-up (embedded containerd with a 1.x shim only)" },
  cdi_spec_dirs: { doc: 'Container Device Interface spec directories, later ones winning for a device named in several' },
  metrics_address: { doc: 'HOST:PORT serving Prometheus /metrics and /healthz (e.g. "127.0.0.1:9099"; empty = off; a port that cannot be bound stops the daemon)' },
  nshelper_path: {
    doc: 'crisp-nshelper binary (namespaces, idmapped mounts, port-forward relay); empty = native/build/crisp-nshelper of the source checkout crispd runs from when built, else /usr/libexec/crisp/crisp-nshelper (the package\'s)',
  },
  logger_path: {
    doc: 'crisp-logger binary the runc shim starts for container logs (named in each new task\'s binary:// stdout URI); empty = native/build/crisp-logger of the source checkout when built, else /usr/libexec/crisp/crisp-logger',
  },
  tracing_endpoint: {
    doc: 'OpenTelemetry collector for traces, OTLP over HTTP: spans are POSTed as JSON to <endpoint>/v1/traces (e.g. "http://127.0.0.1:4318"; empty = tracing off unless OTEL_EXPORTER_OTLP_ENDPOINT is set)',
  },
  tracing_sampling_rate_per_million: {
    doc: 'traces sampled per million new ones (0 to 1000000); a call whose caller (kubelet) sent a trace context follows its sampled flag',
    min: 0,
  },
  log_format: { doc: 'json (one object per line) or text (logfmt: time=… level=… msg=…)', oneOf: ['json', 'text'] },
  runtimes: { doc: 'runtime handlers: [runtimes.NAME] runtime_type, binary_name, privileged_without_host_devices' },
};

const HANDLER_KEYS: Record<keyof RuntimeHandlerConfig, 'string' | 'boolean'> = {
  runtime_type: 'string',
  binary_name: 'string',
  privileged_without_host_devices: 'boolean',
};

function checkType(key: string, value: unknown, expected: Value): void {
  const fail = (what: string) => {
    throw invalidArgument(`config key "${key}": expected ${what}, got ${JSON.stringify(value)}`);
  };
  if (Array.isArray(expected)) {
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) fail('a list of strings');
  } else if (typeof expected === 'object') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('a table');
  } else if (typeof value !== typeof expected) {
    fail(`a ${typeof expected}`);
  }
}

function validateHandlers(value: Record<string, unknown>): Record<string, RuntimeHandlerConfig> {
  const out: Record<string, RuntimeHandlerConfig> = {};
  for (const [name, raw] of Object.entries(value)) {
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw invalidArgument(`config key "runtimes.${name}": invalid handler name`);
    if (typeof raw !== 'object' || raw === null) throw invalidArgument(`config key "runtimes.${name}": expected a table`);
    const handler: RuntimeHandlerConfig = { ...DEFAULT_CONFIG.runtimes.runc };
    for (const [k, v] of Object.entries(raw)) {
      const kind = HANDLER_KEYS[k as keyof RuntimeHandlerConfig];
      if (!kind) throw invalidArgument(`config key "runtimes.${name}.${k}": unknown key`);
      if (typeof v !== kind) throw invalidArgument(`config key "runtimes.${name}.${k}": expected a ${kind}`);
      (handler as unknown as Record<string, unknown>)[k] = v;
    }
    out[name] = handler;
  }
  return out;
}

/** Merge `overrides` (from the file or flags) over the defaults, rejecting unknown keys and bad values. */
export function resolveConfig(...layers: Record<string, unknown>[]): CrispConfig {
  const config: CrispConfig = structuredClone(DEFAULT_CONFIG);
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      if (!(key in DOCS)) throw invalidArgument(`config key "${key}": unknown key (see \`crisp config default\`)`);
      const k = key as keyof CrispConfig;
      checkType(key, value, DEFAULT_CONFIG[k]);
      const doc = DOCS[k];
      if (doc.oneOf && !doc.oneOf.includes(value as string)) {
        throw invalidArgument(`config key "${key}": ${JSON.stringify(value)} is not one of ${doc.oneOf.join(', ')}`);
      }
      if (doc.min !== undefined && (value as number) < doc.min) {
        throw invalidArgument(`config key "${key}": must be at least ${doc.min}`);
      }
      if (doc.positive && !((value as number) > 0 && Number.isFinite(value))) {
        throw invalidArgument(`config key "${key}": must be a number of seconds above 0, got ${JSON.stringify(value)}`);
      }
      if (k === 'runtimes') {
        config.runtimes = { ...config.runtimes, ...validateHandlers(value as Record<string, unknown>) };
      } else {
        (config as unknown as Record<string, unknown>)[k] = value;
      }
    }
  }
  if (!config.streaming_tls_cert && !config.streaming_allow_insecure_remote && !isLoopback(config.streaming_address)) {
    throw invalidArgument(
      `config key "streaming_address": ${config.streaming_address} is not a loopback address; set streaming_tls_cert and streaming_tls_key, or streaming_allow_insecure_remote = true`,
    );
  }
  if ((config.streaming_tls_cert === '') !== (config.streaming_tls_key === '')) {
    throw invalidArgument('config keys "streaming_tls_cert" and "streaming_tls_key": set both or neither');
  }
  for (const key of ['nshelper_path', 'logger_path'] as const) {
    if (config[key] !== '' && !config[key].startsWith('/')) throw invalidArgument(`config key "${key}": must be an absolute path, got ${JSON.stringify(config[key])}`);
  }
  if (config.metrics_address !== '') parseListenAddress('metrics_address', config.metrics_address);
  if (config.tracing_endpoint !== '') tracesUrl('config key "tracing_endpoint"', config.tracing_endpoint);
  const rate = config.tracing_sampling_rate_per_million;
  if (!Number.isInteger(rate) || rate > 1_000_000) {
    throw invalidArgument(`config key "tracing_sampling_rate_per_million": expected a whole number from 0 to 1000000, got ${rate}`);
  }
  if (!config.runtimes[config.default_runtime_handler]) {
    throw invalidArgument(`config key "default_runtime_handler": no [runtimes.${config.default_runtime_handler}] table`);
  }
  return config;
}

/** Read a TOML config file; a missing file is fine only when it was not asked for explicitly. */
export function loadConfigFile(path: string, explicit: boolean): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (isENOENT(err) && !explicit) return {};
    throw invalidArgument(`config file ${path}: ${(err as Error).message}`);
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw invalidArgument(`config file ${path}: ${(err as Error).message}`);
  }
}

function tomlValue(v: Scalar | string[]): string {
  return Array.isArray(v) ? `[${v.map((s) => JSON.stringify(s)).join(', ')}]` : JSON.stringify(v);
}

/** The documented default configuration, as TOML. */
export function defaultConfigToml(): string {
  const lines = ['# crispd configuration (default: /etc/crisp/config.toml). Every key with its default.', ''];
  for (const [key, doc] of Object.entries(DOCS) as [keyof CrispConfig, KeyDoc][]) {
    if (key === 'runtimes') continue;
    lines.push(`# ${doc.doc}`, `${key} = ${tomlValue(DEFAULT_CONFIG[key] as Scalar | string[])}`, '');
  }
  lines.push(`# ${DOCS.runtimes.doc}`);
  for (const [name, h] of Object.entries(DEFAULT_CONFIG.runtimes)) {
    lines.push(`[runtimes.${name}]`);
    for (const [k, v] of Object.entries(h)) lines.push(`${k} = ${tomlValue(v as Scalar)}`);
  }
  return `${lines.join('\n')}\n`;
}

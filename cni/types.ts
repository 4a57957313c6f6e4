// Types shared by the CNI modules: JSON values, network configs as the spec defines them, what the
// caller (sandbox/) knows about a pod attachment, and the typed view of a plugin's result.

export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A JSON object: not null, not an array. */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One plugin entry of a network config list. Unknown keys are the plugin's own and pass through. */
export interface PluginConf {
  type: string;
  [key: string]: JsonValue;
}

/** A validated network config list (a single-plugin `.conf` is wrapped into one). */
export interface NetworkConfigList {
  cniVersion: string;
  name: string;
  disableCheck?: boolean;
  plugins: PluginConf[];
  [key: string]: JsonValue | undefined;
}

/** The network picked from the conf dir, and where it came from. */
export interface LoadedNetwork {
  file: string;
  list: NetworkConfigList;
}

export interface SkippedConfig {
  file: string;
  reason: string;
}

// ---- what the caller passes: a pod, its netns and its runtime (capability) arguments ----

export type PortProtocol = 'tcp' | 'udp' | 'sctp';

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: PortProtocol;
  /** Empty or absent: all host addresses. */
  hostIP?: string;
}

/** Rates in bits per second, bursts in bits (the bandwidth plugin's units). */
export interface BandwidthLimits {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

export interface DnsConfig {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

export interface PodAttachment {
  /** The sandbox id; becomes CNI_CONTAINERID and K8S_POD_INFRA_CONTAINER_ID. */
  containerId: string;
  netnsPath: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  /** Interface name inside the pod; default eth0. */
  ifName?: string;
  portMappings?: PortMapping[];
  bandwidth?: BandwidthLimits;
  dns?: DnsConfig;
  /** Pod CIDR as CRI's UpdateRuntimeConfig gives it: one CIDR or a comma-separated dual-stack pair. */
  podCidr?: string;
}

/** DEL needs only the ids; the rest comes from the cache (or, without one, from here). */
export type PodDetachment = Pick<PodAttachment, 'containerId'> & Partial<Omit<PodAttachment, 'containerId'>>;

// ---- results ----

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  mtu?: number;
}

export interface CniIpConfig {
  /** CIDR notation, e.g. 10.88.0.5/24. */
  address: string;
  gateway?: string;
  /** Index into `interfaces`. */
  interface?: number;
  family: 4 | 6;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers: string[];
  domain?: string;
  search: string[];
  options: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIpConfig[];
  routes: CniRoute[];
  dns: CniDns;
}

/** An address of the pod, ready for PodSandboxStatus. */
export interface PodIp {
  ip: string;
  prefixLength: number;
  family: 4 | 6;
  gateway?: string;
}
